"""The rule, policy and value set files: the contract is complete, and authoring mistakes stop start-up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cds_service import create_app
from cds_service.knowledge.policy import PolicyError, load_policy
from cds_service.knowledge.rulebook import RuleBookError
from cds_service.knowledge.terminology import TerminologyError, ValueSetLibrary
from cds_service.resources import default_rules_dir
from fhir_fixtures import clinical as c
from tests.support import NOW, open_settings
from tests.support.rule_contract import CONTRACT

RULES = default_rules_dir()


def test_every_contract_rule_exists_with_its_indicators() -> None:
    rulebook = create_app(open_settings()).extensions["naltrexone_cds"].pipeline.knowledge.rulebook
    indicators = {rule.id: {v.indicator for v in rule.variants} for rule in rulebook.rules}
    for rule_id, allowed in CONTRACT.items():
        assert rule_id in indicators, f"{rule_id} is missing"
        assert indicators[rule_id] <= allowed, f"{rule_id}: {indicators[rule_id]} not within {allowed}"
    assert set(indicators) - set(CONTRACT) == {
        "patient-data-unverified",
        "result-unreadable",
        "naloxone-hypersensitivity",
    }


def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def edit_rules(rules_dir: Path, edit: str, replacement: str) -> None:
    path = rules_dir / "rules.yaml"
    text = path.read_text()
    assert edit in text
    path.write_text(text.replace(edit, replacement, 1))


@pytest.mark.parametrize(
    ("edit", "replacement", "message"),
    [
        ("opioid_withdrawal: true}", "opioid_withdrawl: true}", "unknown fact 'opioid_withdrawl'"),
        ('"{{lft_warning_uln_multiple}}"', '"{{lft_warning_multiple}}"', "unknown policy value"),
        ("suggestions: [cancel-order]", "suggestions: [cancel-everything]", "unknown suggestions"),
        ("{uds_positive_date}", "{uds_date}", "unknown placeholder {uds_date}"),
        ("indicator: info\n", "indicator: notice\n", "is not one of"),
        ("category: guidance", "category: advice", "category 'advice'"),
        ("override_reasons: [rechallenge-passed", "override_reasons: [no-such-reason", "no-such-reason"),
        ("$gte: {dose_mg: 50}", "$between: {dose_mg: 50}", "unknown operator $between"),
        ("applies_to: [naltrexone-xr]", "applies_to: [naltrexone-implant]", "unknown kinds"),
    ],
)
def test_authoring_mistakes_stop_start_up(tmp_path: Path, edit: str, replacement: str, message: str) -> None:
    rules_dir = copy_rules(tmp_path)
    edit_rules(rules_dir, edit, replacement)
    with pytest.raises(
        RuleBookError, match=message.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")
    ):
        create_app(open_settings(rules_dir=rules_dir))


def test_a_value_set_referencing_an_unknown_canonical_stops_start_up(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    path = rules_dir / "valuesets" / "opioid-medications.json"
    path.write_text(path.read_text().replace("methadone-medications", "methadone-meds", 1))
    with pytest.raises(TerminologyError, match="not defined"):
        create_app(open_settings(rules_dir=rules_dir))


def test_policy_overrides_change_behaviour(tmp_path: Path) -> None:
    override = tmp_path / "local-policy.yaml"
    override.write_text("washout_days_short_acting: 7\ndefault_uln:\n  alt_u_per_l: 33\n")
    policy = load_policy(RULES, override)
    assert policy.washout_days_short_acting == 7 and policy.default_uln.alt_u_per_l == 33
    assert policy.default_uln.ast_u_per_l == 40
    app = create_app(open_settings(policy_file=override), clock=lambda: NOW)
    body = c.scenario(c.dispense(c.OXYCODONE, handed=-16, days_supply=8))  # ended 9 days ago
    codes = {
        card["source"]["topic"]["code"]
        for card in app.test_client().post("/cds-services/naltrexone-order-select", json=body).json["cards"]
    }
    assert "opioid-recent" not in codes  # 9 >= 7 days
    default = create_app(open_settings(), clock=lambda: NOW)
    codes = {
        card["source"]["topic"]["code"]
        for card in default.test_client()
        .post("/cds-services/naltrexone-order-select", json=body)
        .json["cards"]
    }
    assert "opioid-recent" in codes  # 9 < 10 days


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
    app = create_app(open_settings(policy_file=override), clock=lambda: NOW)
    body = c.scenario(c.condition(c.SNOMED, "37871000", "Acute hepatitis"))
    cards = app.test_client().post("/cds-services/naltrexone-order-select", json=body).json["cards"]
    hepatic = next(card for card in cards if card["source"]["topic"]["code"] == "hepatic-contraindication")
    assert hepatic["indicator"] == "warning"
    codes = {card["source"]["topic"]["code"] for card in cards}
    assert "lft-needed" not in codes  # still a contraindication for noise control


def test_value_sets_keep_naltrexone_and_opioids_apart() -> None:
    library = ValueSetLibrary(RULES / "valuesets")
    naltrexone, opioids = library.get("naltrexone-products"), library.get("opioid-medications")
    assert not naltrexone.codes & opioids.codes
    assert library.get("morphine-naltrexone").codes <= opioids.codes
    screens = library.get("opioid-urine-screens")
    assert not screens.contains("http://loinc.org", "19609-7")  # naltrexone in urine
    assert screens.contains("http://loinc.org", "19295-5")
    oud = library.get("opioid-use-disorder")
    assert oud.contains("http://hl7.org/fhir/sid/icd-10-cm", "F1120")  # is-a F11


def test_the_rules_readme_documents_every_fact_and_placeholder() -> None:
    from cds_service.facts import vocabulary

    readme = (RULES / "README.md").read_text()
    for name in sorted(vocabulary().facts):
        assert f"`{name}`" in readme, f"fact {name} is not documented in rules/README.md"
    for name in sorted(vocabulary().placeholders):
        assert f"`{{{name}}}`" in readme, f"placeholder {{{name}}} is not documented in rules/README.md"
    data = yaml.safe_load((RULES / "rules.yaml").read_text())
    for rule in data["rules"]:
        assert f"`{rule['id']}`" in readme, f"rule {rule['id']} is not in the rules/README.md table"
