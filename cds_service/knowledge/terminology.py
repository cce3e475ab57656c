"""Value sets (FHIR ValueSet files under ``rules/valuesets/``) and the text lexicon, loaded once.

Membership is exact-code for RxNorm, NDC, SNOMED CT and LOINC, and code-prefix (``is-a``) for
ICD-10-CM, whose hierarchy is its code structure. A ValueSet with an ``expansion`` (the CDC sets) is
read from it; otherwise from its ``compose``. Codes are compared after normalising the forms
EHRs send: OID system URIs, ICD-10 codes without the dot, NDCs with or without hyphens.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds_service.facts.result_text import ResultVocabulary

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
CPT = "http://www.ama-assn.org/go/cpt"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PROJECT = "http://naltrexone-cds.org/fhir"

_SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.69": NDC,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "urn:oid:2.16.840.1.113883.5.83": V3_INTERPRETATION,
    "http://hl7.org/fhir/v3/ObservationInterpretation": V3_INTERPRETATION,
}

Code = tuple[str, str]


class TerminologyError(ValueError):
    """A value set or lexicon file cannot be used; raised at start-up."""


def normalise_system(system: str) -> str:
    system = system.strip().rstrip("/")
    return _SYSTEM_ALIASES.get(system, system)


def normalise_code(system: str, code: str) -> str:
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    if system == NDC:
        return _ndc11(code)
    return code


def _ndc11(code: str) -> str:
    """NDC in the 11-digit 5-4-2 form when the hyphens say how to pad it."""
    parts = code.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)
    return code.replace("-", "")


@dataclass(frozen=True, slots=True)
class ValueSet:
    url: str
    codes: frozenset[Code]
    prefixes: tuple[Code, ...]  # (system, code prefix) for ICD-10-CM is-a filters
    excluded: frozenset[Code]

    _prefixes_by_system: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_system: dict[str, list[str]] = {}
        for system, prefix in self.prefixes:
            by_system.setdefault(system, []).append(prefix)
        object.__setattr__(self, "_prefixes_by_system", {s: tuple(p) for s, p in by_system.items()})

    def contains(self, system: str, code: str) -> bool:
        key = (system, code)
        if key in self.excluded:
            return False
        if key in self.codes:
            return True
        prefixes = self._prefixes_by_system.get(system)
        return prefixes is not None and code.startswith(prefixes)


class ValueSetLibrary:
    """Every ValueSet under a directory, expanded once; looked up by id or canonical url."""

    def __init__(self, directory: Path) -> None:
        self._raw: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.rglob("*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            if resource.get("resourceType") != "ValueSet" or "url" not in resource:
                raise TerminologyError(f"{path} is not a ValueSet with a url")
            if resource["url"] in self._raw:
                raise TerminologyError(f"{path}: url {resource['url']} is defined twice")
            self._raw[resource["url"]] = resource
        self._by_id = {r["id"]: url for url, r in self._raw.items() if "id" in r}
        self._expanded: dict[str, ValueSet] = {}
        for url in self._raw:
            self._expand(url, ())

    def __len__(self) -> int:
        return len(self._raw)

    def get(self, name: str) -> ValueSet:
        url = self._by_id.get(name, name)
        try:
            return self._expanded[url]
        except KeyError:
            raise TerminologyError(f"no value set {name!r}") from None

    def version_summary(self) -> dict[str, str]:
        return {
            r.get("id", url): str(r.get("version") or r.get("date") or "") for url, r in self._raw.items()
        }

    def _expand(self, url: str, stack: tuple[str, ...]) -> ValueSet:
        if url in self._expanded:
            return self._expanded[url]
        if url in stack:
            raise TerminologyError(f"value set {url} includes itself via {' -> '.join(stack)}")
        resource = self._raw.get(url)
        if resource is None:
            raise TerminologyError(f"value set {url} is referenced by {stack[-1]} but not defined")
        codes: set[Code] = set()
        prefixes: list[Code] = []
        excluded: set[Code] = set()
        for item in resource.get("expansion", {}).get("contains", []):
            codes.add(_code(item["system"], item["code"]))
        # A published expansion is the enumerated result of its compose (whose filters may need a
        # terminology server): when present it is used as is.
        compose = {} if "expansion" in resource else resource.get("compose", {})
        for include in compose.get("include", []):
            for nested in include.get("valueSet", []):
                other = self._expand(nested, (*stack, url))
                codes |= other.codes
                prefixes.extend(other.prefixes)
                excluded |= other.excluded
            system = include.get("system")
            if system is None:
                continue
            for concept in include.get("concept", []):
                codes.add(_code(system, concept["code"]))
            for rule in include.get("filter", []):
                if rule.get("property") != "concept" or rule.get("op") != "is-a":
                    raise TerminologyError(f"{url}: only concept is-a filters are supported")
                prefixes.append(_code(system, rule["value"]))
        for exclude in compose.get("exclude", []):
            for concept in exclude.get("concept", []):
                excluded.add(_code(exclude["system"], concept["code"]))
        expanded = ValueSet(url, frozenset(codes - excluded), tuple(prefixes), frozenset(excluded))
        self._expanded[url] = expanded
        return expanded


@functools.lru_cache(maxsize=65536)
def _code(system: str, code: str) -> Code:
    """Normalised (system, code); memoised, as a record repeats the same few hundred codes."""
    system = normalise_system(system)
    return system, normalise_code(system, code)


def codings(concept: Any) -> Iterable[Code]:
    """The (system, code) pairs of a CodeableConcept, normalised; malformed entries are skipped."""
    if not isinstance(concept, Mapping):
        return
    coding_list = concept.get("coding")
    for coding in coding_list if isinstance(coding_list, list) else ():
        if isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and code:
                yield _code(system, code)


def concept_texts(concept: Any) -> list[str]:
    """Every human-readable string of a CodeableConcept (its text and its codings' displays)."""
    if not isinstance(concept, Mapping):
        return []
    texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
    coding_list = concept.get("coding")
    for coding in coding_list if isinstance(coding_list, list) else ():
        if isinstance(coding, Mapping) and isinstance(coding.get("display"), str):
            texts.append(coding["display"])
    return texts


class Lexicon:
    """Word patterns for recognising uncoded or unknown-coded concepts by their text."""

    def __init__(self, patterns: Mapping[str, list[str]]) -> None:
        try:
            self._patterns = {
                name: re.compile("|".join(f"(?:{p})" for p in items), re.IGNORECASE)
                for name, items in patterns.items()
            }
        except re.error as exc:
            raise TerminologyError(f"lexicon pattern does not compile: {exc}") from exc
        # A record repeats the same names (a lab's "ALT", a refill's drug) thousands of times: each
        # (pattern, text) is searched once. Bounded, so a stream of unique texts cannot grow it.
        self._search = functools.lru_cache(maxsize=65536)(self._search_uncached)

    def _search_uncached(self, name: str, text: str) -> bool:
        return self._patterns[name].search(text) is not None

    def names(self) -> frozenset[str]:
        return frozenset(self._patterns)

    def matches(self, name: str, texts: Iterable[str]) -> bool:
        if name not in self._patterns:
            raise KeyError(name)
        return any(self._search(name, text) for text in texts)


@dataclass(frozen=True)
class Terminology:
    valuesets: ValueSetLibrary
    lexicon: Lexicon
    result_words: ResultVocabulary

    def in_valueset(self, name: str, concept: Any) -> bool:
        valueset = self.valuesets.get(name)
        return any(valueset.contains(system, code) for system, code in codings(concept))

    def any_code_in(self, name: str, codes: Iterable[Code]) -> bool:
        valueset = self.valuesets.get(name)
        return any(valueset.contains(system, code) for system, code in codes)


def load_terminology(rules_dir: Path) -> Terminology:
    lexicon_file = rules_dir / "lexicon.yaml"
    try:
        patterns = yaml.safe_load(lexicon_file.read_text(encoding="utf-8"))["patterns"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise TerminologyError(f"{lexicon_file}: {exc!r}") from exc
    return Terminology(
        valuesets=ValueSetLibrary(rules_dir / "valuesets"),
        lexicon=Lexicon(patterns),
        result_words=ResultVocabulary.load(rules_dir / "result_words.yaml"),
    )
