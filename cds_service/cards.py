"""Stage 5: rule matches -> CDS Hooks cards.

Policies applied here, in this order (from the public contract):
1. ``suppressed_by``: a more specific card for the same order makes the general one redundant;
2. noise control: when a contraindication fires for an order, its start-up guidance cards are left out;
3. ``order-sign`` returns warning and critical cards only (guidance belongs to ``order-select``);
4. at most one card per rule id; cards sorted critical -> warning -> info, then in rule-book order.

A card's words come from the rule (or the variant that matched) in ``rules/rules.yaml``; its
``{placeholders}`` and evidence lines come from the fact domains that declare them. A card is read in
seconds (``../shared/design/cards.md``): the summary says the danger or the action first; the detail holds
**Why** (one or two sentences), **Patient** (the facts behind it, one line each, at most
``MAX_FACT_LINES``) and **Do** (one sentence); the source is in ``source`` only, and the long content is on
the rule's page, linked from the card.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cds_service.cdshooks import INDICATORS, Card, Coding, Hook, Link, Source, Suggestion
from cds_service.engine import Match
from cds_service.facts import ClinicalFacts
from cds_service.facts.orders import OrderFacts
from cds_service.facts.wording import ingredient_name
from cds_service.knowledge.rulebook import Rule, RuleBook, Variant
from cds_service.knowledge.terminology import PROJECT
from cds_service.suggestions import BUILDERS, SuggestionContext

RULE_SYSTEM = f"{PROJECT}/CodeSystem/rule"
OVERRIDE_SYSTEM = f"{PROJECT}/CodeSystem/override-reason"
_SEVERITY = {indicator: rank for rank, indicator in enumerate(INDICATORS)}
_SUMMARY_LIMIT = 139
MAX_FACT_LINES = 3
MAX_ECHOED = 200
"""Characters of one name, text or value from the record that a card repeats."""


@dataclass(frozen=True)
class CardContext:
    facts: ClinicalFacts
    rulebook: RuleBook
    hook: Hook
    patient_id: str
    user_id: str | None
    encounter_id: str | None
    rules_url: str | None = None
    """Where the service's rule pages are (``https://cds.example.org/rules``); no link without it."""


def render(matches: Iterable[Match], ctx: CardContext) -> tuple[Card, ...]:
    orders = {order.key: order for order in ctx.facts.orders}
    # rule id -> order key -> index of the first (highest-precedence) variant that matched
    fired: dict[str, dict[str, int]] = {}
    for match in matches:
        per_order = fired.setdefault(match.rule_id, {})
        per_order[match.fact_id] = min(per_order.get(match.fact_id, match.variant), match.variant)

    rules = {rule.id: rule for rule in ctx.rulebook.rules}
    contraindicated = {
        key
        for rule_id, hits in fired.items()
        for key, variant in hits.items()
        if rules[rule_id].variants[variant].category == "contraindication"
    }
    cards: list[tuple[int, int, Card]] = []
    for rule_id, hits in fired.items():
        rule = rules[rule_id]
        kept = {
            key: variant
            for key, variant in hits.items()
            if not any(key in fired.get(other, {}) for other in rule.suppressed_by)
            and not (rule.category == "guidance" and key in contraindicated)
        }
        if not kept:
            continue
        # the most severe variant that matched any order words the card (ties: rule-book precedence)
        variant = min(
            (rule.variants[v] for v in kept.values()),
            key=lambda v: (_SEVERITY[v.indicator], rule.variants.index(v)),
        )
        if ctx.hook == "order-sign" and variant.indicator == "info":
            continue
        matched = [orders[key] for key in sorted(kept)]
        cards.append((_SEVERITY[variant.indicator], rule.position, _card(rule, variant, matched, ctx)))
    return tuple(card for _, _, card in sorted(cards, key=lambda item: (item[0], item[1])))


class _Placeholders(Mapping[str, str]):
    """A card's ``{placeholder}`` values, computed only when the text uses them."""

    def __init__(self, facts: ClinicalFacts, order: OrderFacts, escape: bool) -> None:
        self._facts, self._order, self._escape = facts, order, escape

    def __getitem__(self, name: str) -> str:
        value = shown(self._facts.placeholder(name, self._order))
        return markdown_safe(value) if self._escape else value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _card(rule: Rule, variant: Variant, orders: Sequence[OrderFacts], ctx: CardContext) -> Card:
    facts = ctx.facts
    suggestions: list[Suggestion] = []
    for name in variant.suggestions:
        for order in orders:
            context = SuggestionContext(order, facts, ctx.patient_id, ctx.user_id, ctx.encounter_id)
            offered = BUILDERS[name](context)
            if offered is not None:
                suggestions.append(offered)
    if suggestions:
        first = suggestions[0]
        suggestions[0] = Suggestion(first.label, first.uuid, first.actions, is_recommended=True)
    links = (
        (Link(f"{rule.title}: details and sources", f"{ctx.rules_url.rstrip('/')}/{rule.id}"),)
        if ctx.rules_url
        else ()
    )
    return Card(
        uuid=str(uuid.uuid4()),
        summary=fit_summary(variant.summary.format_map(_Placeholders(facts, orders[0], escape=False))),
        detail=_detail(rule, variant, orders, ctx),
        indicator=variant.indicator,
        source=Source(
            label=variant.source.label,
            url=variant.source.url,
            topic=Coding(RULE_SYSTEM, rule.id, rule.title),
        ),
        suggestions=tuple(suggestions),
        override_reasons=tuple(
            Coding(OVERRIDE_SYSTEM, code, display) for code, display in rule.override_reasons
        ),
        links=links,
    )


def fit_summary(summary: str) -> str:
    """One line under 140 characters, cut at a word (never inside one) when it must be cut."""
    summary = " ".join(summary.split())
    if len(summary) <= _SUMMARY_LIMIT:
        return summary
    cut = summary[: _SUMMARY_LIMIT - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _detail(rule: Rule, variant: Variant, orders: Sequence[OrderFacts], ctx: CardContext) -> str:
    # Names, ids and texts come from the EHR's data: escaped so they cannot add links, HTML or emphasis.
    values = _Placeholders(ctx.facts, orders[0], escape=True)
    parts = [f"**Why:** {variant.detail.format_map(values)}".strip()]
    facts = [
        f"ordered: {ingredient_name(o.product.name)} {o.dosing.description} ({o.reference})" for o in orders
    ]
    facts = facts if len(orders) > 1 else []
    facts += [line for name in rule.evidence for line in ctx.facts.evidence(name, orders[0])]
    if facts:
        lines = [f"- {markdown_safe(shown(line, MAX_ECHOED * 2))}" for line in facts[:MAX_FACT_LINES]]
        if len(facts) > MAX_FACT_LINES:
            lines.append(f"- and {len(facts) - MAX_FACT_LINES} more in the record")
        parts.append("**Patient:**\n" + "\n".join(lines))
    parts.append(f"**Do:** {variant.advice.format_map(values)}")
    return "\n\n".join(parts)


_MARKDOWN_SPECIALS = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#"} | {"\n": " ", "\r": " "})


# Control characters break lines and terminals; direction overrides and invisible characters can make a
# card read differently from what it says (U+202E turns "gm 05" into "50 mg").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ud800-\udfff\U000e0000-\U000e007f]"
)  # the last range: Unicode "tag" characters, invisible text that can smuggle words past a reader


def shown(text: str, limit: int = MAX_ECHOED) -> str:
    """Text from the record as a card shows it: without control, invisible or direction-changing
    characters, on one line, and at most ``limit`` characters (cut at a word and marked as cut)."""
    cleaned = " ".join(_INVISIBLE.sub("", _CONTROL.sub(" ", text)).split())
    if len(cleaned) <= limit:
        return cleaned
    return cleaned[: limit - 7].rsplit(" ", 1)[0] + " […cut]"


def markdown_safe(text: str) -> str:
    return text.translate(_MARKDOWN_SPECIALS)
