"""The facts stage without Flask: a scenario's request validated, gathered and derived, as the pipeline
does it, so that each fact domain can be tested directly."""

from __future__ import annotations

from datetime import date
from typing import Any

from cds_service.facts import ClinicalFacts
from cds_service.facts.orders import identify_orders, medication_index, resolve
from cds_service.gather import gather
from cds_service.knowledge.services import load_services
from cds_service.pipeline import default_knowledge, derive_facts
from cds_service.resources import default_rules_dir
from cds_service.validate import parse_hook_request
from fhir_fixtures import clinical as c

SERVICES = load_services(default_rules_dir())
KNOWLEDGE = default_knowledge()
TERMS = KNOWLEDGE.terminology
POLICY = KNOWLEDGE.policy


def facts_of(
    *resources: Any, today: date = c.TODAY, hook: str = "order-select", **scenario: Any
) -> ClinicalFacts:
    """The derived facts of ``c.scenario(*resources, **scenario)`` as of ``today``."""
    knowledge = default_knowledge()
    service = SERVICES[f"naltrexone-{hook}"]
    request = parse_hook_request(service, c.scenario(*resources, hook=hook, **scenario))
    record = gather(service, request, None)
    medications = medication_index(record.of_type("Medication"), request.draft_full_urls)
    triage = identify_orders(request, knowledge.terminology, knowledge.policy)
    orders = resolve(triage, medications, knowledge.terminology, knowledge.policy)
    return derive_facts(request, record, orders, medications, knowledge, today)


def fact(facts: ClinicalFacts, name: str, order: int = 0) -> Any:
    """One rule fact of one reviewed order (``None`` when the fact is absent for it)."""
    return facts.engine_facts[order].get(name)
