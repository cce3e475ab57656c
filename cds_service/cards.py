"""Stage 5: rule matches -> CDS Hooks cards.

Policies applied here, in this order (from the public contract):
1. ``suppressed_by``: a more specific card for the same order makes the general one redundant;
2. noise control: when a contraindication fires for an order, its start-up guidance cards are left out;
3. ``order-sign`` returns warning and critical cards only (guidance belongs to ``order-select``);
4. at most one card per rule id; cards sorted critical -> warning -> info, then in rule-book order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from cds_service.engine import Match
from cds_service.facts import ClinicalFacts, OrderFacts, PatientFacts
from cds_service.facts.medications import Exposure, format_mg
from cds_service.facts.observations import Finding
from cds_service.policy import Policy
from cds_service.rulebook import INDICATORS, Rule, RuleBook, Variant
from cds_service.suggestions import BUILDERS, SuggestionContext
from cds_service.terminology import PROJECT

RULE_SYSTEM = f"{PROJECT}/CodeSystem/rule"
OVERRIDE_SYSTEM = f"{PROJECT}/CodeSystem/override-reason"
_SEVERITY = {indicator: rank for rank, indicator in enumerate(INDICATORS)}
_SUMMARY_LIMIT = 139
_DOMAIN_NAMES = {
    "medications": "medications",
    "conditions": "conditions",
    "allergies": "allergies",
    "observations": "laboratory results",
}


@dataclass(frozen=True)
class CardContext:
    facts: ClinicalFacts
    rulebook: RuleBook
    policy: Policy
    hook: str
    patient_id: str
    user_id: str
    encounter_id: str | None


def render(matches: Iterable[Match], ctx: CardContext) -> list[dict[str, Any]]:
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
    cards: list[tuple[int, int, dict[str, Any]]] = []
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
        matched_orders = [orders[key] for key in sorted(kept)]
        cards.append((_SEVERITY[variant.indicator], rule.position, _card(rule, variant, matched_orders, ctx)))
    return [card for _, _, card in sorted(cards, key=lambda item: (item[0], item[1]))]


def _card(rule: Rule, variant: Variant, orders: Sequence[OrderFacts], ctx: CardContext) -> dict[str, Any]:
    order = orders[0]
    values = template_values(order, ctx.facts.patient, ctx.policy)
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _fit(variant.summary.format_map(values)),
        "detail": _detail(rule, variant, orders, values, ctx),
        "indicator": variant.indicator,
        "source": {
            "label": variant.source.label,
            "url": variant.source.url,
            "topic": {"system": RULE_SYSTEM, "code": rule.id, "display": rule.title},
        },
    }
    suggestions = []
    for name in variant.suggestions:
        for each in orders:
            suggestion = BUILDERS[name](
                SuggestionContext(
                    each, ctx.facts.patient, ctx.policy, ctx.patient_id, ctx.user_id, ctx.encounter_id
                )
            )
            if suggestion is not None:
                suggestions.append(suggestion)
    if suggestions:
        suggestions[0]["isRecommended"] = True
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    if rule.override_reasons:
        card["overrideReasons"] = [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in rule.override_reasons
        ]
    return card


def _fit(summary: str) -> str:
    summary = " ".join(summary.split())
    return summary if len(summary) <= _SUMMARY_LIMIT else summary[: _SUMMARY_LIMIT - 1].rstrip() + "…"


def _detail(
    rule: Rule, variant: Variant, orders: Sequence[OrderFacts], values: Mapping[str, str], ctx: CardContext
) -> str:
    # Names, ids and texts come from the EHR's data: escaped so they cannot add links, HTML or emphasis.
    safe_values = {key: markdown_safe(value) for key, value in values.items()}
    lines = [variant.detail.format_map(safe_values), ""]
    reviewed = "; ".join(markdown_safe(f"{o.label} ({o.reference})") for o in orders)
    lines += [f"**Order reviewed:** {reviewed}", ""]
    evidence = [
        line for name in rule.evidence for line in EVIDENCE[name](orders[0], ctx.facts.patient, ctx.policy)
    ]
    if evidence:
        lines.append("**Patient data behind this card:**")
        lines += [f"- {markdown_safe(line)}" for line in evidence]
        lines.append("")
    lines += [f"**What to do:** {variant.advice.format_map(safe_values)}", ""]
    lines.append(
        f"**Source:** [{variant.source.title}]({variant.source.url}), {variant.source.section}. "
        f"Rule `{rule.id}`, rules {ctx.rulebook.version}."
    )
    return "\n".join(lines)


_MARKDOWN_SPECIALS = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#"} | {"\n": " ", "\r": " "})


def markdown_safe(text: str) -> str:
    return text.translate(_MARKDOWN_SPECIALS)


# ---------------------------------------------------------------------------------- template values


def _names(items: Iterable[str], limit: int = 2) -> str:
    names = list(dict.fromkeys(_short(n) for n in items))
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _short(name: str, limit: int = 50) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def _day(value: date | None) -> str:
    return value.isoformat() if value else "unknown date"


def template_values(order: OrderFacts, patient: PatientFacts, policy: Policy) -> dict[str, str]:
    """Every ``{placeholder}`` a rule text may use (rulebook.py refuses any other)."""
    opioid_names = (
        [e.product.name for e in patient.current_opioids]
        or [name for _, name in patient.draft_opioids]
        or [e.product.name for e in patient.recent_opioids]
    )
    last_end = max((e.end for e in patient.recent_opioids if e.end), default=None)
    plan = order.ldn_plan
    dose = order.dosing.dose_mg
    values = {
        "opioid_names": _names(opioid_names),
        "washout_short": str(policy.washout_days_short_acting),
        "washout_long": str(policy.washout_days_long_acting),
        "last_opioid_date": _day(last_end),
        "earliest_start": _day(patient.earliest_start),
        "uds_positive_date": _day(patient.uds_positive.day if patient.uds_positive else None),
        "uds_negative_date": _day(max((f.day for f in patient.uds_cleared_by if f.day), default=None)),
        "unreadable_summary": _unreadable_summary(patient.unreadable_results),
        "challenge_date": _day(patient.challenge_latest.day if patient.challenge_latest else None),
        "hepatic_names": _names(d.name for d in patient.hepatic),
        "lft_summary": _lft_summary(patient),
        "lft_lookback": str(policy.lft_lookback_days),
        "lft_warning_multiple": f"{policy.lft_warning_uln_multiple:g}",
        "lft_critical_multiple": f"{policy.lft_critical_uln_multiple:g}",
        "bilirubin_multiple": f"{policy.bilirubin_uln_multiple_with_lft:g}",
        "order_dosing": order.dosing.description,
        "order_dose": format_mg(dose) if dose is not None else "with no dose",
        "dose_problem": "no dose stated"
        if dose is None
        else f"an unrecognised regimen ({order.dosing.description})",
        "ldn_max": f"{policy.ldn_max_dose_mg:g}",
        "ldn_start": f"{policy.ldn_start_dose_mg:g}",
        "ldn_step": f"{policy.ldn_step_mg:g}",
        "ldn_interval": str(policy.ldn_step_min_days),
        "naltrexone_names": _names(e.product.name for e in order.naltrexone_blockade),
        "blockade_oral": str(policy.blockade_days_oral),
        "blockade_injection": str(policy.blockade_days_injection),
        "antidiarrheal_names": _names(e.product.name for e in patient.antidiarrheals_current),
        "prior_naltrexone": str(policy.prior_naltrexone_days),
        "uds_recent": str(policy.uds_recent_days),
        "opioid_lookback": str(policy.opioid_exposure_lookback_days),
        "challenge_lookback": str(policy.naloxone_challenge_lookback_days),
        "labs_gap": "Laboratory results could not be obtained, so an existing result may have been missed."
        if "observations" in patient.unavailable
        else "",
        "formulation_problem": "this order is extended/slow-release"
        if order.product.extended_release
        else "this order splits a commercial 50 mg tablet",
        "missing_domains": ", ".join(_DOMAIN_NAMES.get(d, d) for d in sorted(patient.unavailable)) or "none",
    }
    values.update(_ldn_values(order, plan, policy))
    return values


def _ldn_values(order: OrderFacts, plan: Any, policy: Policy) -> dict[str, str]:
    dose = order.dosing.dose_mg
    if plan is None:
        return {"ldn_plan_summary": "", "ldn_plan_detail": "", "ldn_advice": ""}
    target = format_mg(plan.planned_dose_mg)
    on_plan = dose is not None and dose <= plan.planned_dose_mg
    step, maximum = f"{policy.ldn_step_mg:g} mg", f"{policy.ldn_max_dose_mg:g} mg"
    if plan.previous is None:
        summary = (
            f"start at {target} at bedtime, +{step} no faster than weekly, max {maximum}."
            if on_plan
            else f"this first order is {_dose(dose)}; start at {target} at bedtime and titrate weekly."
        )
        detail = "No earlier low-dose naltrexone order is on record, so this is a new start."
    else:
        previous = (
            format_mg(plan.previous.dose_mg) if plan.previous.dose_mg is not None else "an unknown dose"
        )
        due = _day(plan.next_step_day)
        summary = (
            f"next step {target} (was {previous}); titration on plan."
            if on_plan
            else f"{_dose(dose)} is beyond the next step ({target}, from {previous}; next increase {due})."
        )
        started = _day(plan.previous.start)
        detail = (
            f"The current dose on record is {previous} (started {started}); the next increase is due {due}."
        )
    advice = (
        f"Continue titration: +{step} no faster than every {policy.ldn_step_min_days} days, to {maximum}."
        if on_plan
        else f"Change this order to {target} at bedtime."
    )
    return {"ldn_plan_summary": summary, "ldn_plan_detail": detail, "ldn_advice": advice}


def _dose(dose: float | None) -> str:
    return format_mg(dose) if dose is not None else "no dose"


_TEST_NAMES = {"screen": "urine opioid screen", "challenge": "naloxone challenge", "liver": "liver test"}


def _unreadable_summary(findings: Sequence[Finding]) -> str:
    names = list(dict.fromkeys(_TEST_NAMES.get(f.test, f.name) for f in findings))
    if not names:
        return "A result"
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    latest = max((f.day for f in findings if f.day), default=None)
    when = f" of {latest.isoformat()}" if latest and len(findings) == 1 else ""
    plural = "results" if len(findings) > 1 else "result"
    return f"The {joined} {plural}{when}"


def _lft_summary(patient: PatientFacts) -> str:
    parts = []
    for name, finding in (("ALT", patient.alt), ("AST", patient.ast)):
        if finding and finding.uln_multiple is not None:
            parts.append(f"{name} {finding.uln_multiple:.1f}× ULN ({_day(finding.day)})")
    if (
        patient.bilirubin
        and patient.bilirubin.uln_multiple is not None
        and patient.bilirubin.uln_multiple >= 1
    ):
        parts.append(f"bilirubin {patient.bilirubin.uln_multiple:.1f}× ULN")
    return ", ".join(parts) or "Liver enzymes raised"


# ---------------------------------------------------------------------------------- evidence lines

EvidenceWriter = Callable[[OrderFacts, PatientFacts, Policy], list[str]]


def _exposures(items: Iterable[Exposure]) -> list[str]:
    return [e.evidence() for e in items]


def _recent(order: OrderFacts, patient: PatientFacts, policy: Policy) -> list[str]:
    lines = []
    for exposure in patient.recent_opioids:
        washout = policy.washout_days(long_acting=exposure.product.long_acting)
        kind = "methadone/buprenorphine" if exposure.product.long_acting else "short-acting"
        safe = exposure.end + timedelta(days=washout) if exposure.end else None
        lines.append(f"{exposure.evidence()}; {kind}: {washout} opioid-free days → from {_day(safe)}")
    return lines


def _liver(order: OrderFacts, patient: PatientFacts, policy: Policy) -> list[str]:
    lines = []
    for finding in (patient.alt, patient.ast, patient.bilirubin):
        if finding is None or finding.value is None:
            continue
        uln = f"{finding.uln:g}" if finding.uln else "unknown"
        origin = "lab reference range" if finding.uln_from_lab else "configured default"
        multiple = f"{finding.uln_multiple:.1f}× ULN" if finding.uln_multiple is not None else "ULN unknown"
        lines.append(
            finding.evidence(f"{finding.value:g} {finding.unit or ''} (ULN {uln}, {origin}): {multiple}")
        )
    return lines


def _uds_reason(order: OrderFacts, patient: PatientFacts, policy: Policy) -> list[str]:
    lines = [d.evidence() for d in patient.oud]
    lines += [e.evidence() for e in patient.opioids_within_lookback[:5]]
    return lines


def _gap(domains: Iterable[str]) -> EvidenceWriter:
    wanted = tuple(domains)

    def write(order: OrderFacts, patient: PatientFacts, policy: Policy) -> list[str]:
        lines = [
            f"{_DOMAIN_NAMES[domain]}: {problem}"
            for domain in wanted
            for problem in patient.unavailable.get(domain, ())
        ]
        if "medications" in wanted:
            lines += [
                f"medication not identified — {e.reference}, {e.detail}"
                for e in patient.unidentified_medications
            ]
        return lines

    return write


def _absent(text: Callable[[PatientFacts, Policy], str]) -> EvidenceWriter:
    return lambda order, patient, policy: [text(patient, policy)]


def _since(patient: PatientFacts, days: int) -> str:
    return (patient.today - timedelta(days=days)).isoformat()


EVIDENCE: dict[str, EvidenceWriter] = {
    "order": lambda o, p, pol: [f"{o.label} — {o.reference} (regimen: {o.regimen})"],
    "current_opioids": lambda o, p, pol: _exposures(p.current_opioids),
    "draft_opioids": lambda o, p, pol: [
        f"{name} — {ref}, ordered in this session" for ref, name in p.draft_opioids
    ],
    "recent_opioids": _recent,
    "withdrawal": lambda o, p, pol: [d.evidence() for d in p.withdrawal],
    "oud": lambda o, p, pol: [d.evidence() for d in p.oud],
    "uds_positive": lambda o, p, pol: (
        [p.uds_positive.evidence("positive")] + [f.evidence("negative, newer") for f in p.uds_cleared_by]
        if p.uds_positive
        else []
    ),
    "unreadable_results": lambda o, p, pol: [f.evidence() for f in p.unreadable_results],
    "uds_reason": _uds_reason,
    "challenge": lambda o, p, pol: (
        [p.challenge_latest.evidence("failed (withdrawal signs)")] if p.challenge_latest else []
    ),
    "hepatic": lambda o, p, pol: [d.evidence() for d in p.hepatic],
    "decompensated": lambda o, p, pol: list(p.decompensated_cirrhosis or p.cirrhosis),
    "liver_tests": _liver,
    "allergies": lambda o, p, pol: [a.evidence() for a in p.allergies],
    "naloxone_allergies": lambda o, p, pol: [a.evidence() for a in p.naloxone_allergies],
    "pregnancy": lambda o, p, pol: list(p.pregnancy),
    "naltrexone_blockade": lambda o, p, pol: _exposures(o.naltrexone_blockade),
    "antidiarrheals": lambda o, p, pol: _exposures(p.antidiarrheals_current),
    "ldn_previous": lambda o, p, pol: (
        [o.ldn_plan.previous.evidence()] if o.ldn_plan and o.ldn_plan.previous else []
    ),
    "medications_gap": _gap(["medications"]),
    "clinical_gap": _gap(["conditions", "allergies", "observations"]),
    "uds_absence": _absent(
        lambda p, pol: f"no readable urine opioid screen dated on or after {_since(p, pol.uds_recent_days)}"
    ),
    "challenge_absence": _absent(
        lambda p, pol: (
            f"no naloxone challenge result on or after {_since(p, pol.naloxone_challenge_lookback_days)}"
        )
    ),
    "lft_absence": _absent(
        lambda p, pol: f"no ALT or AST result dated on or after {_since(p, pol.lft_lookback_days)}"
    ),
    "naloxone_absence": _absent(
        lambda p, pol: (
            f"no naloxone or nalmefene prescription since {_since(p, pol.naloxone_rescue_lookback_days)}"
        )
    ),
}

TEMPLATE_NAMES = frozenset(
    {
        "opioid_names",
        "washout_short",
        "washout_long",
        "last_opioid_date",
        "earliest_start",
        "uds_positive_date",
        "uds_negative_date",
        "unreadable_summary",
        "challenge_date",
        "hepatic_names",
        "lft_summary",
        "lft_lookback",
        "lft_warning_multiple",
        "lft_critical_multiple",
        "bilirubin_multiple",
        "order_dosing",
        "order_dose",
        "dose_problem",
        "ldn_max",
        "ldn_start",
        "ldn_step",
        "ldn_interval",
        "naltrexone_names",
        "blockade_oral",
        "blockade_injection",
        "antidiarrheal_names",
        "prior_naltrexone",
        "uds_recent",
        "opioid_lookback",
        "challenge_lookback",
        "labs_gap",
        "formulation_problem",
        "missing_domains",
        "ldn_plan_summary",
        "ldn_plan_detail",
        "ldn_advice",
    }
)
