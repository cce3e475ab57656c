"""How a clinical domain declares what it knows: one place per fact, placeholder, evidence line and value set.

Each module of ``cds_service.facts`` that reads one part of the record (opioid exposure, urine screens,
liver, allergies...) builds one ``Domain``: a ``derive`` function that turns the record into the domain's
own facts (once per request), and, registered on it with decorators,

* ``@DOMAIN.fact(name, meaning)``: a value the rules test (``rules/rules.yaml`` ``when``), per order;
* ``@DOMAIN.placeholder(name, meaning)``: a ``{name}`` a card's text may use;
* ``@DOMAIN.evidence(name)``: the patient-data lines a card lists under ``evidence``;
* ``valuesets=(...)``: the value sets it looks codes up in (a missing one stops start-up).

``cds_service.facts`` finds every module's domain itself: adding a domain is adding a module. Nothing
else keeps a list of names; the rule book is checked against what the domains declare.

A domain's ``derive`` receives the request's ``Derivation``: the inputs (record, orders, terminology,
policy, today) and ``of(OTHER)``, the facts of another domain, derived once and shared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cds_service.fhir import Resource
from cds_service.knowledge.policy import Policy
from cds_service.knowledge.terminology import Terminology

if TYPE_CHECKING:
    from cds_service.facts.orders import ClassifiedOrder, OrderFacts
    from cds_service.gather import PatientRecord
    from cds_service.validate import HookRequest

T = TypeVar("T")
EngineValue = bool | int | float | str
FactFunction = Callable[[Any, "OrderFacts"], EngineValue | None]
PlaceholderFunction = Callable[[Any, "OrderFacts", Policy], str]
EvidenceFunction = Callable[[Any, "OrderFacts", Policy], list[str]]


class DeclarationError(ValueError):
    """Two domains declare the same name, or a declaration is malformed (raised at import)."""


@dataclass(frozen=True)
class Inputs:
    """What a request gives every domain to read."""

    request: HookRequest
    record: PatientRecord
    reviewed: Sequence[ClassifiedOrder]
    """The orders under review (the selections at order-select; every order at order-sign)."""
    drafts: Sequence[ClassifiedOrder]
    """Every MedicationRequest of the session's draft orders, reviewed or not."""
    medications: Mapping[str, Resource]
    """Medication resources by id (and by fullUrl for those in the draft orders' Bundle)."""
    terminology: Terminology
    policy: Policy
    today: date


class Derivation:
    """One request's facts, domain by domain, each derived at most once."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self._facts: dict[str, Any] = {}

    def of(self, domain: Domain[T]) -> T:
        if domain.name not in self._facts:
            self._facts[domain.name] = domain.derive(self)
        facts: T = self._facts[domain.name]
        return facts


@dataclass(frozen=True)
class Declared:
    """A name a domain declares, with its meaning (for rules/README.md) and how to compute it."""

    name: str
    meaning: str
    function: Callable[..., Any]


@dataclass(eq=False)
class Domain(Generic[T]):
    name: str
    derive: Callable[[Derivation], T]
    valuesets: tuple[str, ...] = ()
    facts: dict[str, Declared] = field(default_factory=dict)
    placeholders: dict[str, Declared] = field(default_factory=dict)
    evidence_lines: dict[str, Declared] = field(default_factory=dict)

    def fact(self, name: str, meaning: str) -> Callable[[Callable[[T, OrderFacts], Any]], Callable[..., Any]]:
        """Registers a rule fact: ``function(domain_facts, order) -> bool | number | str | None``
        (``None``: the fact is absent for that order; a rule comparing it does not match)."""
        return self._register(self.facts, name, meaning)

    def placeholder(
        self, name: str, meaning: str
    ) -> Callable[[Callable[[T, OrderFacts, Policy], str]], Callable[..., Any]]:
        """Registers a card text placeholder: ``function(domain_facts, order, policy) -> str``."""
        return self._register(self.placeholders, name, meaning)

    def evidence(
        self, name: str, meaning: str = ""
    ) -> Callable[[Callable[[T, OrderFacts, Policy], list[str]]], Callable[..., Any]]:
        """Registers an evidence list: ``function(domain_facts, order, policy) -> lines``."""
        return self._register(self.evidence_lines, name, meaning)

    def _register(
        self, table: dict[str, Declared], name: str, meaning: str
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            if name in table:
                raise DeclarationError(f"domain {self.name!r} declares {name!r} twice")
            table[name] = Declared(name, meaning, function)
            return function

        return register
