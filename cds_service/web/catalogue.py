"""What the rule pages show, built once at start-up from the rule book, the declared facts and the policy
in force (a local policy file included): one ``RuleView`` per rule, and the policy table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.facts import vocabulary
from cds_service.facts.policy_values import QUOTED
from cds_service.knowledge import Knowledge
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.rulebook import Rule, Source, Variant
from cds_service.suggestions import DESCRIPTIONS

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_KIND_WORDS = {
    "naltrexone-oral": "oral naltrexone",
    "naltrexone-low-dose": "low-dose naltrexone",
    "naltrexone-xr": "extended-release injection",
    "naltrexone-bupropion": "naltrexone/bupropion",
    "opioid": "opioid orders",
}
_OPERATORS = {"$lt": "<", "$lte": "≤", "$gt": ">", "$gte": "≥", "$neq": "≠"}


@dataclass(frozen=True)
class PolicyValue:
    name: str
    value: str
    default: str
    """The bundled value: differs from ``value`` when a local policy file overrides it."""

    @property
    def overridden(self) -> bool:
        return self.value != self.default


@dataclass(frozen=True)
class VariantView:
    indicator: str
    category: str
    condition: str
    """The variant's own condition in words ("always" for the default)."""
    summary: str
    detail: str
    advice: str
    source: Source


@dataclass(frozen=True)
class RuleView:
    id: str
    title: str
    category: str
    applies_to: tuple[str, ...]
    fires: str
    condition: str
    variants: tuple[VariantView, ...]
    page: str
    sources: tuple[Source, ...]
    suggestions: tuple[tuple[str, str], ...]
    override_reasons: tuple[tuple[str, str], ...]
    suppressed_by: tuple[str, ...]
    policy: tuple[PolicyValue, ...]
    facts: tuple[tuple[str, str], ...]
    """The facts its conditions test, with their meanings."""

    @property
    def indicators(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.indicator for v in self.variants))

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["indicators"] = list(self.indicators)
        data["policy"] = [{"name": p.name, "value": p.value, "default": p.default} for p in self.policy]
        data["sources"] = [dataclasses.asdict(s) for s in self.sources]
        data["suggestions"] = [{"name": n, "description": d} for n, d in self.suggestions]
        data["override_reasons"] = [{"code": c, "display": d} for c, d in self.override_reasons]
        data["facts"] = [{"name": n, "meaning": m} for n, m in self.facts]
        return data


@dataclass(frozen=True)
class Catalogue:
    version: str
    rules: tuple[RuleView, ...]
    policy: tuple[PolicyValue, ...]

    def rule(self, rule_id: str) -> RuleView | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def build_catalogue(knowledge: Knowledge, bundled: Policy) -> Catalogue:
    """``bundled``: the policy of the rules directory alone, to show which values are local overrides."""
    policy = _policy_values(knowledge.policy, bundled)
    by_name = {p.name: p for p in policy}
    rules = tuple(_rule_view(rule, knowledge.policy, by_name) for rule in knowledge.rulebook.rules)
    return Catalogue(knowledge.version, rules, policy)


def _policy_values(policy: Policy, bundled: Policy) -> tuple[PolicyValue, ...]:
    values, defaults = policy.as_template_values(), bundled.as_template_values()
    return tuple(
        PolicyValue(name, _shown(value), _shown(defaults.get(name))) for name, value in values.items()
    )


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return format(value, "g")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _rule_view(rule: Rule, policy: Policy, by_name: Mapping[str, PolicyValue]) -> RuleView:
    texts = [t for v in rule.variants for t in (v.summary, v.detail, v.advice)]
    quoted = {QUOTED[name] for text in texts for name in _PLACEHOLDER.findall(text) if name in QUOTED}
    policy_names = sorted(quoted | set(rule.policy_names))
    tested = _facts_in([rule.when, *(v.when for v in rule.variants)])
    meanings = vocabulary().facts
    return RuleView(
        id=rule.id,
        title=rule.title,
        category=rule.category,
        applies_to=tuple(_KIND_WORDS.get(k, k) for k in rule.applies_to),
        fires=rule.fires,
        condition=_words(rule.when) if rule.when else "every order it applies to",
        variants=tuple(_variant_view(v, policy) for v in rule.variants),
        page=rule.page,
        sources=tuple(dict.fromkeys([rule.source, *(v.source for v in rule.variants)])),
        suggestions=tuple(
            (name, DESCRIPTIONS[name])
            for name in dict.fromkeys(s for v in rule.variants for s in v.suggestions)
        ),
        override_reasons=rule.override_reasons,
        suppressed_by=rule.suppressed_by,
        policy=tuple(by_name[name] for name in policy_names if name in by_name),
        facts=tuple((name, meanings[name].meaning) for name in tested if name in meanings),
    )


def _variant_view(variant: Variant, policy: Policy) -> VariantView:
    return VariantView(
        indicator=variant.indicator,
        category=variant.category,
        condition=_words(variant.when) if variant.when else "otherwise",
        summary=_template(variant.summary, policy),
        detail=_template(variant.detail, policy),
        advice=_template(variant.advice, policy),
        source=variant.source,
    )


def _template(text: str, policy: Policy) -> str:
    """A card template as a reviewer reads it: policy values filled in, patient facts named «like this»."""
    placeholders = vocabulary().placeholders

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in QUOTED:
            return _shown(getattr(policy, QUOTED[name]))
        meaning = placeholders[name].meaning if name in placeholders else name
        return f"«{meaning}»"

    return _PLACEHOLDER.sub(fill, text)


def _facts_in(conditions: Sequence[Mapping[str, Any] | None]) -> list[str]:
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key.startswith("$"):
                    walk(value)
                else:
                    found[key] = None
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for condition in conditions:
        walk(condition)
    return list(found)


def _words(node: Any) -> str:
    """A durable-rules condition in plain notation: ``opioid_active``, ``not pregnant``, ``dose_mg ≥ 50``."""
    if not isinstance(node, Mapping) or len(node) != 1:
        return str(node)
    ((key, value),) = node.items()
    if key in ("$and", "$or"):
        joined = f" {key[1:]} ".join(_words(item) for item in value)
        return f"({joined})" if key == "$or" and len(value) > 1 else joined
    if key in _OPERATORS:
        ((fact, bound),) = value.items()
        return f"{fact} {_OPERATORS[key]} {_shown(bound)}"
    if key in ("$ex", "$nex"):
        ((fact, _),) = value.items()
        return f"{fact} is {'known' if key == '$ex' else 'unknown'}"
    if value is True:
        return str(key)
    if value is False:
        return f"not {key}"
    return f"{key} is {value}"
