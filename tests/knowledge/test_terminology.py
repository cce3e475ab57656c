"""Value sets: references resolve, and naltrexone and opioids stay apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service import create_app
from cds_service.knowledge.terminology import TerminologyError, ValueSetLibrary
from tests.support import RULES, copy_rules, open_settings


def test_a_value_set_referencing_an_unknown_canonical_stops_start_up(tmp_path: Path) -> None:
    rules_dir = copy_rules(tmp_path)
    path = rules_dir / "valuesets" / "opioid-medications.json"
    path.write_text(path.read_text().replace("methadone-medications", "methadone-meds", 1))
    with pytest.raises(TerminologyError, match="not defined"):
        create_app(open_settings(rules_dir=rules_dir))


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
