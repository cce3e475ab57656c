"""Stage 3: FHIR data -> clinical facts. Pure functions; "today" is an input, never read here.

The facts come from the domain modules of this package (``opioid_exposure``, ``screens``, ``liver``...):
each declares, in one place, the facts it derives, the rule facts, card placeholders and evidence lines it
offers, and the value sets it reads (``domain.py``). This module finds every domain by itself, so the
vocabulary the rule book is checked against (``vocabulary()``) is derived, never kept by hand, and a new
domain is one new module.

``derive`` turns one request's inputs into ``ClinicalFacts``: the reviewed orders, and for each the flat
fact the rules match (``engine_facts``); a card's placeholders and evidence lines are read from the same
derived facts when the card is written.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.facts.domain import DeclarationError, Declared, Derivation, Domain, EngineValue, Inputs
from cds_service.facts.orders import ORDERS, OrderFacts
from cds_service.knowledge.policy import Policy

__all__ = ["ClinicalFacts", "Inputs", "Vocabulary", "derive", "domains", "vocabulary"]

_LIBRARY_MODULES = frozenset({"domain", "medications", "reference", "result_text", "wording"})


@functools.cache
def domains() -> tuple[Domain[Any], ...]:
    """Every ``Domain`` declared by a module of this package, in module order."""
    found: list[Domain[Any]] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name in _LIBRARY_MODULES:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        # a module also sees the domains it imports: each is counted once
        found += [
            v for v in vars(module).values() if isinstance(v, Domain) and all(v is not f for f in found)
        ]
    _check_unique(found)
    return tuple(found)


def _check_unique(found: list[Domain[Any]]) -> None:
    for kind in ("facts", "placeholders", "evidence_lines"):
        owner: dict[str, str] = {}
        for domain in found:
            for name in getattr(domain, kind):
                if name in owner:
                    raise DeclarationError(f"{kind} {name!r} is declared by {owner[name]} and {domain.name}")
                owner[name] = domain.name


@dataclass(frozen=True)
class Vocabulary:
    """Every name the rule book may use, with its meaning and owning domain: derived from the domains."""

    facts: Mapping[str, Declared]
    placeholders: Mapping[str, Declared]
    evidence: Mapping[str, Declared]
    valuesets: frozenset[str]
    owners: Mapping[str, Domain[Any]]
    """Fact, placeholder or evidence name -> the domain that declares it."""


@functools.cache
def vocabulary() -> Vocabulary:
    facts: dict[str, Declared] = {}
    placeholders: dict[str, Declared] = {}
    evidence: dict[str, Declared] = {}
    owners: dict[str, Domain[Any]] = {}
    valuesets: set[str] = set()
    for domain in domains():
        facts.update(domain.facts)
        placeholders.update(domain.placeholders)
        evidence.update(domain.evidence_lines)
        for name in (*domain.facts, *domain.placeholders, *domain.evidence_lines):
            owners[name] = domain
        valuesets.update(domain.valuesets)
    return Vocabulary(facts, placeholders, evidence, frozenset(valuesets), owners)


class ClinicalFacts:
    """One request's facts: the reviewed orders, and what each rule, card text and evidence list asks."""

    def __init__(self, derivation: Derivation) -> None:
        self._derivation = derivation
        self.orders: tuple[OrderFacts, ...] = derivation.of(ORDERS).reviewed
        self._vocabulary = vocabulary()
        self.engine_facts: tuple[dict[str, EngineValue], ...] = tuple(map(self._engine_fact, self.orders))
        """One flat fact per reviewed order, what the rules match (every domain is derived for it)."""

    @property
    def inputs(self) -> Inputs:
        return self._derivation.inputs

    @property
    def policy(self) -> Policy:
        return self._derivation.inputs.policy

    def of(self, domain: Domain[Any]) -> Any:
        return self._derivation.of(domain)

    def _engine_fact(self, order: OrderFacts) -> dict[str, EngineValue]:
        """The flat fact the rules match for ``order`` (rules/README.md lists the names).

        durable-rules treats a missing property as "no match" but a null as present: a fact whose value
        is ``None`` is left out."""
        fact: dict[str, EngineValue] = {"id": order.key}
        for name, declared in self._vocabulary.facts.items():
            value = declared.function(self._derivation.of(self._vocabulary.owners[name]), order)
            if value is not None:
                fact[name] = value
        return fact

    def placeholder(self, name: str, order: OrderFacts) -> str:
        declared = self._vocabulary.placeholders[name]
        facts = self._derivation.of(self._vocabulary.owners[name])
        text: str = declared.function(facts, order, self.policy)
        return text

    def evidence(self, name: str, order: OrderFacts) -> list[str]:
        declared = self._vocabulary.evidence[name]
        lines: list[str] = declared.function(
            self._derivation.of(self._vocabulary.owners[name]), order, self.policy
        )
        return lines


def derive(inputs: Inputs) -> ClinicalFacts:
    """The request's facts: every domain derived once."""
    return ClinicalFacts(Derivation(inputs))
