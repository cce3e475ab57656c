"""The fact domains: every name declared once, by one module, and no registry kept by hand anywhere.

A rule that needs a new fact, or a new data domain, is one new declaration in one module (see
CONTRIBUTING.md). These tests fail if a hand-kept list of names comes back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cds_service.facts import domains, vocabulary
from cds_service.facts.domain import DeclarationError, Derivation, Domain
from cds_service.pipeline import default_knowledge

PACKAGE = Path(__file__).resolve().parents[2] / "cds_service"
# Names the old code kept by hand, one list per registry: they must not come back.
_HAND_KEPT = {"FACT_NAMES", "TEMPLATE_NAMES", "EVIDENCE", "REQUIRED_VALUESETS", "_DOMAIN_NAMES"}


def test_no_registry_of_names_is_kept_by_hand() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Name):
                    assert target.id not in _HAND_KEPT, f"{path}: {target.id} is a hand-kept registry"


def test_every_domain_module_is_found_and_every_name_has_one_owner() -> None:
    found = {domain.name for domain in domains()}
    assert {"orders", "opioid-exposure", "urine-screens", "naloxone-challenge", "liver", "allergies"} <= found
    names = vocabulary()
    assert set(names.facts) == {n for d in domains() for n in d.facts}
    for name in (*names.facts, *names.placeholders, *names.evidence):
        assert names.owners[name] in domains()


def test_every_declared_fact_placeholder_and_evidence_has_a_meaning() -> None:
    names = vocabulary()
    for table in (names.facts, names.placeholders):
        for name, declared in table.items():
            assert declared.meaning.strip(), f"{name} has no meaning"


def test_the_rule_book_uses_only_declared_names_and_every_value_set_exists() -> None:
    knowledge = default_knowledge()  # load_rulebook refuses undeclared names
    for name in vocabulary().valuesets:
        knowledge.terminology.valuesets.get(name)


def test_a_name_declared_twice_is_refused() -> None:
    domain: Domain[None] = Domain("twice", lambda derivation: None)
    domain.fact("x", "first")(lambda facts, order: True)
    with pytest.raises(DeclarationError, match="twice"):
        domain.fact("x", "second")(lambda facts, order: False)


def test_a_domain_is_derived_once_per_request() -> None:
    calls: list[int] = []

    def derive(derivation: Derivation) -> int:
        calls.append(1)
        return len(calls)

    counted: Domain[int] = Domain("counted", derive)
    derivation = Derivation(inputs=None)  # type: ignore[arg-type]
    assert derivation.of(counted) == derivation.of(counted) == 1
    assert calls == [1]
