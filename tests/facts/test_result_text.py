"""The free-text result reader against a corpus of real-world phrasings (tests/data/result_phrases.yaml).

The corpus was written independently of the reader, from the reading rules alone: lab comments,
point-of-care cups listing several analytes, nursing flowsheets, abbreviations, negations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.facts.result_text import ResultVocabulary
from cds_service.resources import default_rules_dir

CORPUS = yaml.safe_load(
    (Path(__file__).parents[1] / "data" / "result_phrases.yaml").read_text(encoding="utf-8")
)
WORDS = ResultVocabulary.load(default_rules_dir() / "result_words.yaml")
OPIATES_SCREEN = WORDS.analytes_named(["Opiates [Presence] in Urine by Screen method"])


def _case_id(case: dict[str, Any]) -> str:
    return str(case["text"])[:60]


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS["screens"]) >= 150
    assert len(CORPUS["challenges"]) >= 50


@pytest.mark.parametrize("case", CORPUS["screens"], ids=_case_id)
def test_screen_phrasing(case: dict[str, Any]) -> None:
    reading = WORDS.read_screen(case["text"], OPIATES_SCREEN)
    assert reading.reading == case["expected"], case.get("note", "")


@pytest.mark.parametrize("case", CORPUS["challenges"], ids=_case_id)
def test_challenge_phrasing(case: dict[str, Any]) -> None:
    assert WORDS.read_challenge(case["text"]) == case["expected"], case.get("note", "")
