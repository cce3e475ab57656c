"""Policy values: overrides change behaviour, bad overrides stop start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.knowledge.policy import PolicyError, load_policy
from fhir_fixtures import clinical as c
from tests.support import RULES, answer, by_rule, pipeline_for


def test_policy_overrides_change_behaviour(tmp_path: Path) -> None:
    override = tmp_path / "local-policy.yaml"
    override.write_text("washout_days_short_acting: 7\ndefault_uln:\n  alt_u_per_l: 33\n")
    policy = load_policy(RULES, override)
    assert policy.washout_days_short_acting == 7 and policy.default_uln.alt_u_per_l == 33
    assert policy.default_uln.ast_u_per_l == 40
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-16, days_supply=8))  # ended 9 days ago
    assert "opioid-recent" not in by_rule(answer(pipeline_for(policy_file=override), body))  # 9 >= 7 days
    assert "opioid-recent" in by_rule(answer(pipeline_for(), body))  # 9 < 10 days


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("washout_day_short: 7\n", "unknown policy keys"),
        ("washout_days_short_acting: seven\n", "must be a whole number"),
        ("washout_days_short_acting: -1\n", "must be positive"),
        ("hepatic_contraindication_indicator: info\n", "critical or warning"),
        ("lft_critical_uln_multiple: 2\n", "must not be below"),
        ("stale_active_prescription_is_current: maybe\n", "true or false"),
    ],
)
def test_bad_policy_overrides_are_refused(tmp_path: Path, content: str, message: str) -> None:
    override = tmp_path / "local-policy.yaml"
    override.write_text(content)
    with pytest.raises(PolicyError, match=message):
        load_policy(RULES, override)


def test_hepatic_contraindication_severity_is_configurable(tmp_path: Path) -> None:
    override = tmp_path / "local-policy.yaml"
    override.write_text("hepatic_contraindication_indicator: warning\n")
    body = c.scenario(c.condition(c.SNOMED, "37871000", "Acute hepatitis"))
    cards = by_rule(answer(pipeline_for(policy_file=override), body))
    assert cards["hepatic-contraindication"]["indicator"] == "warning"
    assert "lft-needed" not in cards  # still a contraindication for noise control


@pytest.mark.parametrize(
    ("name", "body", "rule_id"),
    [
        (
            "single_opioid_dose_indicator",
            c.scenario(c.administration(c.OXYCODONE, given=-2)),
            "opioid-recent",
        ),
        (
            "ldn_recent_short_acting_opioid_indicator",
            c.scenario(c.dispense(c.OXYCODONE, handed=-8, days_supply=3), order=c.ldn_order()),
            "opioid-recent",
        ),
        (
            "ldn_hepatic_indicator",
            c.scenario(c.condition(c.SNOMED, "37871000", "Acute hepatitis"), order=c.ldn_order()),
            "hepatic-contraindication",
        ),
    ],
)
def test_severities_where_clinicians_differ_are_configurable(
    tmp_path: Path, name: str, body: dict[str, object], rule_id: str
) -> None:
    assert by_rule(answer(pipeline_for(), body))[rule_id]["indicator"] == "warning"
    override = tmp_path / "local-policy.yaml"
    override.write_text(f"{name}: critical\n")
    assert by_rule(answer(pipeline_for(policy_file=override), body))[rule_id]["indicator"] == "critical"
