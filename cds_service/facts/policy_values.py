"""Policy values a card's text quotes ("{washout_short} days"): the numbers in force (rules/policy.yaml)."""

from __future__ import annotations

from cds_service.facts.domain import Derivation, Domain
from cds_service.facts.orders import OrderFacts
from cds_service.knowledge.policy import Policy


def _nothing(derivation: Derivation) -> None:
    return None


POLICY_VALUES = Domain("policy-values", _nothing)
QUOTED: dict[str, str] = {}
"""Placeholder -> the policy value it quotes (the rule pages show the values behind a card's words)."""


def _quote(name: str, meaning: str, value: str) -> None:
    def write(facts: None, order: OrderFacts, policy: Policy) -> str:
        return format(getattr(policy, value), "g")

    POLICY_VALUES.placeholder(name, meaning)(write)
    QUOTED[name] = value


for _name, _meaning, _value in (
    ("washout_short", "opioid-free days after short-acting opioids", "washout_days_short_acting"),
    ("washout_long", "opioid-free days after methadone or buprenorphine", "washout_days_long_acting"),
    ("lft_lookback", "days liver tests count", "lft_lookback_days"),
    ("lft_warning_multiple", "ALT/AST multiple of ULN for a warning", "lft_warning_uln_multiple"),
    ("lft_critical_multiple", "ALT/AST multiple of ULN for a critical card", "lft_critical_uln_multiple"),
    (
        "bilirubin_multiple",
        "bilirubin multiple of ULN that makes raised enzymes critical",
        "bilirubin_uln_multiple_with_lft",
    ),
    ("ldn_max", "low-dose maximum (mg)", "ldn_max_dose_mg"),
    ("ldn_start", "low-dose starting dose (mg)", "ldn_start_dose_mg"),
    ("ldn_step", "low-dose step (mg)", "ldn_step_mg"),
    ("ldn_interval", "days between low-dose steps", "ldn_step_min_days"),
    ("blockade_oral", "days oral naltrexone blocks opioids", "blockade_days_oral"),
    ("blockade_injection", "days the injection blocks opioids", "blockade_days_injection"),
    ("prior_naltrexone", "days a naltrexone course counts as recent", "prior_naltrexone_days"),
    ("uds_recent", "days a urine screen counts", "uds_recent_days"),
    ("opioid_lookback", "days opioid exposure counts as recent", "opioid_exposure_lookback_days"),
    ("challenge_lookback", "days a naloxone challenge counts", "naloxone_challenge_lookback_days"),
):
    _quote(_name, _meaning, _value)
