"""Allergies to naltrexone and to naloxone or nalmefene, and an intolerance that is not hypersensitivity."""

from __future__ import annotations

from fhir_fixtures import clinical as c
from tests.support.derivations import fact, facts_of


def test_a_naltrexone_allergy() -> None:
    facts = facts_of(c.allergy(c.rx("7243", "naltrexone")))
    assert fact(facts, "naltrexone_allergy") is True and fact(facts, "naltrexone_intolerance_only") is False


def test_a_nausea_intolerance_is_only_an_intolerance() -> None:
    entry = c.allergy(c.rx("7243", "naltrexone"))
    entry.update(type="intolerance", criticality="low", reaction=[{"manifestation": [{"text": "Nausea"}]}])
    assert fact(facts_of(entry), "naltrexone_intolerance_only") is True


def test_a_naloxone_allergy_and_its_severity() -> None:
    mild = facts_of(c.allergy({"text": "Naloxone"}))
    assert fact(mild, "naloxone_allergy") is True and fact(mild, "naloxone_allergy_severe") is False
    entry = c.allergy({"text": "NARCAN"})
    entry.update(reaction=[{"manifestation": [{"text": "Anaphylaxis"}], "severity": "severe"}])
    assert fact(facts_of(entry), "naloxone_allergy_severe") is True
