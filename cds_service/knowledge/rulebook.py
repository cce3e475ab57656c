"""``rules/rules.yaml``: the rules, their card text and sources, checked and compiled at start-up.

Every mistake a rule author can make is caught here, before the service answers anything: an unknown
fact name (durable-rules would silently never match it), an unknown policy placeholder, a template
variable the cards cannot fill, an unknown suggestion, source or override reason.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from cds_service.cdshooks import INDICATORS, Indicator
from cds_service.knowledge.policy import Policy

Category = Literal["contraindication", "caution", "guidance", "data-gap"]

CATEGORIES: tuple[Category, ...] = ("contraindication", "caution", "guidance", "data-gap")
ORDER_KINDS = ("naltrexone-oral", "naltrexone-low-dose", "naltrexone-xr", "naltrexone-bupropion", "opioid")
_OPERATORS = frozenset({"$and", "$or", "$lt", "$lte", "$gt", "$gte", "$neq", "$ex", "$nex"})
_PLACEHOLDER = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")
_WORDING_FIELDS = frozenset({"summary", "detail", "advice", "source", "suggestions"})
_RULE_FIELDS = frozenset(
    {
        "id",
        "title",
        "category",
        "applies_to",
        "when",
        "indicator",
        "variants",
        "summary",
        "detail",
        "advice",
        "evidence",
        "source",
        "suggestions",
        "override_reasons",
        "suppressed_by",
        "fires",
        "page",
    }
)
_POLICY_REFERENCE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class RuleBookError(ValueError):
    """rules.yaml cannot be used as written."""


@dataclass(frozen=True, slots=True)
class Source:
    title: str
    url: str
    section: str

    @property
    def label(self) -> str:
        return f"{self.title}: {self.section}"


@dataclass(frozen=True, slots=True)
class Variant:
    indicator: Indicator
    condition: Mapping[str, Any]
    """The complete durable-rules condition on the order fact (applies_to, when and variant when)."""
    category: Category
    """Usually the rule's; a variant may differ (opioid-recent is a caution, not a contraindication, for
    low-dose naltrexone, so it does not hold back low-dose guidance)."""
    summary: str
    detail: str
    advice: str
    source: Source
    suggestions: tuple[str, ...]
    """The rule's, unless the variant words the card differently (a newer negative screen: no "repeat
    the screen"; an oral order: the oral label, not the injection's)."""
    when: Mapping[str, Any] | None = None
    """The variant's own condition as written (policy values filled in), for the rule pages."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    category: Category
    applies_to: tuple[str, ...]
    variants: tuple[Variant, ...]
    summary: str
    detail: str
    advice: str
    evidence: tuple[str, ...]
    source: Source
    suggestions: tuple[str, ...]
    override_reasons: tuple[tuple[str, str], ...]
    suppressed_by: tuple[str, ...]
    position: int
    fires: str
    """When it fires, in words (the rule's page and the rules README)."""
    when: Mapping[str, Any] | None = None
    """The rule's condition as written (policy values filled in), for the rule pages."""
    policy_names: tuple[str, ...] = ()
    """The policy values its conditions, indicators and page quote (``{{name}}``)."""
    page: str = ""
    """Markdown for the rule's page: the long content a card links to (procedure, schedule, how to record).
    ``{{name}}`` quotes a policy value in force."""


@dataclass(frozen=True)
class RuleBook:
    rules: tuple[Rule, ...]
    version: str

    def get(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.rules)


def load_rulebook(
    path: Path,
    policy: Policy,
    *,
    fact_names: Iterable[str],
    template_names: Iterable[str],
    evidence_names: Iterable[str],
    suggestion_names: Iterable[str],
) -> RuleBook:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        sources, reasons, entries = data["sources"], data["override_reasons"], data["rules"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise RuleBookError(f"{path}: {exc!r}") from exc
    context = _Context(
        policy=policy.as_template_values(),
        facts=frozenset(fact_names),
        templates=frozenset(template_names),
        evidence=frozenset(evidence_names),
        suggestions=frozenset(suggestion_names),
        sources=sources,
        reasons=reasons,
    )
    rules = tuple(_rule(entry, position, context) for position, entry in enumerate(entries))
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise RuleBookError(f"{path}: rule ids must be unique")
    for rule in rules:
        unknown = set(rule.suppressed_by) - set(ids)
        if unknown:
            raise RuleBookError(f"rule {rule.id}: suppressed_by names unknown rules {sorted(unknown)}")
    version = str(data.get("version") or _fingerprint(path))
    return RuleBook(rules=rules, version=version)


def _fingerprint(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@dataclass(frozen=True)
class _Context:
    policy: Mapping[str, Any]
    facts: frozenset[str]
    templates: frozenset[str]
    evidence: frozenset[str]
    suggestions: frozenset[str]
    sources: Mapping[str, Any]
    reasons: Mapping[str, str]


def _rule(entry: Mapping[str, Any], position: int, context: _Context) -> Rule:
    rule_id = entry.get("id", f"#{position}")
    where = f"rule {rule_id}"
    unknown = set(entry) - _RULE_FIELDS
    if unknown:
        raise RuleBookError(f"{where}: unknown fields {sorted(unknown)}")
    try:
        category = entry["category"]
        if category not in CATEGORIES:
            raise RuleBookError(f"{where}: category {category!r} is not one of {CATEGORIES}")
        applies_to = tuple(entry["applies_to"])
        bad_kinds = set(applies_to) - set(ORDER_KINDS)
        if not applies_to or bad_kinds:
            raise RuleBookError(f"{where}: applies_to has unknown kinds {sorted(bad_kinds)}")
        base = [_kinds_condition(applies_to)]
        rule_when = _condition(entry["when"], context, where) if "when" in entry else None
        if rule_when is not None:
            base.append(rule_when)
        wording = _wording(entry, None, context, where)
        variants = _variants(entry, base, wording, context, where)
        evidence = tuple(entry.get("evidence", ()))
        if set(evidence) - context.evidence:
            raise RuleBookError(f"{where}: unknown evidence {sorted(set(evidence) - context.evidence)}")
        reasons = tuple((code, context.reasons[code]) for code in entry.get("override_reasons", ()))
        fires = " ".join(_page(str(entry["fires"]), context, where).split())
        page = _page(str(entry.get("page", "")), context, where)
    except KeyError as exc:
        raise RuleBookError(f"{where}: missing or unknown {exc}") from exc
    return Rule(
        id=rule_id,
        title=entry["title"],
        category=category,
        applies_to=applies_to,
        variants=variants,
        summary=wording.summary,
        detail=wording.detail,
        advice=wording.advice,
        evidence=evidence,
        source=wording.source,
        suggestions=wording.suggestions,
        override_reasons=reasons,
        suppressed_by=tuple(entry.get("suppressed_by", ())),
        position=position,
        fires=fires,
        page=page,
        when=rule_when,
        policy_names=tuple(sorted(set(_POLICY_REFERENCE.findall(json.dumps(entry))))),
    )


def _page(markdown: str, context: _Context, where: str) -> str:
    """The page text with its ``{{policy}}`` references filled in; an unknown name stops start-up."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in context.policy:
            raise RuleBookError(f"{where}.page: unknown policy value {name!r}")
        return (
            format(context.policy[name], "g")
            if isinstance(context.policy[name], float)
            else str(context.policy[name])
        )

    return _POLICY_REFERENCE.sub(value, markdown.strip())


@dataclass(frozen=True, slots=True)
class _Wording:
    summary: str
    detail: str
    advice: str
    source: Source
    suggestions: tuple[str, ...]


def _wording(spec: Mapping[str, Any], inherited: _Wording | None, context: _Context, where: str) -> _Wording:
    """A card's words: the entry's own fields, each falling back to ``inherited`` (the rule's)."""

    def text(name: str) -> str:
        if name not in spec:
            if inherited is None:
                raise KeyError(name)
            inherited_text: str = getattr(inherited, name)
            return inherited_text
        _check_template(spec[name], context, f"{where}.{name}")
        return " ".join(str(spec[name]).split())

    if "source" in spec:
        source_entry = context.sources[spec["source"]["ref"]]
        source = Source(source_entry["title"], source_entry["url"], spec["source"]["section"])
    elif inherited is not None:
        source = inherited.source
    else:
        raise KeyError("source")
    if "suggestions" in spec:
        suggestions = tuple(spec["suggestions"] or ())
        if set(suggestions) - context.suggestions:
            raise RuleBookError(
                f"{where}: unknown suggestions {sorted(set(suggestions) - context.suggestions)}"
            )
    else:
        suggestions = inherited.suggestions if inherited is not None else ()
    return _Wording(text("summary"), text("detail"), text("advice"), source, suggestions)


def _variants(
    entry: Mapping[str, Any], base: list[Mapping[str, Any]], wording: _Wording, context: _Context, where: str
) -> tuple[Variant, ...]:
    category = entry["category"]
    if "variants" in entry:
        if "indicator" in entry:
            raise RuleBookError(f"{where}: give either indicator or variants, not both")
        specs = entry["variants"]
    else:
        specs = [{"indicator": entry["indicator"]}]
    variants = []
    for spec in specs:
        unknown = set(spec) - {"indicator", "when", "category"} - _WORDING_FIELDS
        if unknown:
            raise RuleBookError(f"{where}: unknown variant fields {sorted(unknown)}")
        indicator = _substitute(spec["indicator"], context, where)
        if indicator not in INDICATORS:
            raise RuleBookError(f"{where}: indicator {indicator!r} is not one of {INDICATORS}")
        parts = list(base)
        own_when = _condition(spec["when"], context, where) if "when" in spec else None
        if own_when is not None:
            parts.append(own_when)
        variant_category = spec.get("category", category)
        if variant_category not in CATEGORIES:
            raise RuleBookError(f"{where}: category {variant_category!r} is not one of {CATEGORIES}")
        condition = {"$and": parts} if len(parts) > 1 else parts[0]
        own = _wording(spec, wording, context, where)
        variants.append(
            Variant(
                indicator=indicator,
                condition=condition,
                category=variant_category,
                summary=own.summary,
                detail=own.detail,
                advice=own.advice,
                source=own.source,
                suggestions=own.suggestions,
                when=own_when,
            )
        )
    if not variants:
        raise RuleBookError(f"{where}: no variants")
    return tuple(variants)


def _kinds_condition(kinds: tuple[str, ...]) -> Mapping[str, Any]:
    if len(kinds) == 1:
        return {"kind": kinds[0]}
    return {"$or": [{"kind": kind} for kind in kinds]}


def _condition(node: Any, context: _Context, where: str) -> Any:
    """Validates a durable-rules condition and fills in its ``{{policy}}`` placeholders."""
    if not isinstance(node, Mapping) or len(node) != 1:
        raise RuleBookError(f"{where}: each condition must be a mapping with one key, got {node!r}")
    ((key, value),) = node.items()
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise RuleBookError(f"{where}: {key} needs a non-empty list")
        return {key: [_condition(item, context, where) for item in value]}
    if key.startswith("$"):
        if key not in _OPERATORS:
            raise RuleBookError(f"{where}: unknown operator {key}")
        return {key: _condition(value, context, where)}
    if key not in context.facts:
        raise RuleBookError(f"{where}: unknown fact {key!r} (see rules/README.md for the fact names)")
    return {key: _substitute(value, context, where)}


def _substitute(value: Any, context: _Context, where: str) -> Any:
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        if match:
            name = match.group(1)
            if name not in context.policy:
                raise RuleBookError(f"{where}: unknown policy value {{{{{name}}}}}")
            return context.policy[name]
    return value


def _check_template(template: str, context: _Context, where: str) -> None:
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in context.templates:
            raise RuleBookError(f"{where}: unknown placeholder {{{name}}}")
