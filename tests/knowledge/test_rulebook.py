"""The rule, policy and value set files: the contract is complete, and authoring mistakes stop start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cds_service import create_app
from cds_service.facts import vocabulary
from cds_service.facts.reference import with_reference_tables
from cds_service.knowledge.rulebook import RuleBookError
from cds_service.pipeline import default_knowledge
from tests.support import RULES, copy_rules, open_settings
from tests.support.rule_contract import ADDITIONS, CONTRACT


def test_every_contract_rule_exists_with_its_indicators() -> None:
    rulebook = default_knowledge().rulebook
    indicators = {rule.id: {v.indicator for v in rule.variants} for rule in rulebook.rules}
    for rule_id, allowed in (CONTRACT | ADDITIONS).items():
        assert rule_id in indicators, f"{rule_id} is missing"
        assert indicators[rule_id] <= allowed, f"{rule_id}: {indicators[rule_id]} not within {allowed}"
    assert set(indicators) == set(CONTRACT) | set(ADDITIONS), "a new rule id: add it to ADDITIONS"


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


def test_the_rules_readme_tables_are_the_declarations_and_every_rule_is_listed() -> None:
    readme = (RULES / "README.md").read_text()
    assert with_reference_tables(readme) == readme, "run: naltrexone-cds vocabulary --readme rules/README.md"
    for name in vocabulary().facts:
        assert f"| `{name}` |" in readme
    data = yaml.safe_load((RULES / "rules.yaml").read_text())
    for rule in data["rules"]:
        assert f"`{rule['id']}`" in readme, f"rule {rule['id']} is not in the rules/README.md table"
