"""One CDS Hooks call, start to finish, each stage once and in one direction:

    validate -> orders -> gather -> facts -> engine -> cards -> audit

``validate`` checks the body; ``orders`` tells, from the request alone, whether any reviewed order is
naltrexone or an opioid (if none, nothing else runs: no patient data is fetched for another drug);
``gather`` returns the complete record, prefetch and fhirServer; ``facts`` derives what the rules test;
the rule engine matches; ``cards`` words the matches; the audit records what was said.

Nothing here knows about HTTP; the Flask views and the ``evaluate`` command both call ``Pipeline.run``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cds_service import contract
from cds_service.audit import CardAudit
from cds_service.cards import CardContext, render
from cds_service.cdshooks import CdsResponse
from cds_service.clock import Calendar
from cds_service.errors import NotFound
from cds_service.facts import ClinicalFacts, Inputs, derive, vocabulary
from cds_service.facts.orders import Triage, identify_orders, medication_index, resolve
from cds_service.fhir import Resource
from cds_service.fhir_client import FetchPolicy, shared_fetcher
from cds_service.gather import Fetcher, PatientRecord, gather
from cds_service.knowledge import Knowledge, RuleVocabulary, load_knowledge
from cds_service.knowledge.services import ServiceDefinition, load_services
from cds_service.logs import log_fields
from cds_service.resources import default_rules_dir
from cds_service.settings import Settings
from cds_service.suggestions import BUILDERS
from cds_service.validate import HookRequest, parse_hook_request

log = logging.getLogger("naltrexone_cds.pipeline")


def rule_vocabulary() -> RuleVocabulary:
    """The names the rule book may use: declared by the fact domains and the suggestion builders."""
    names = vocabulary()
    return RuleVocabulary(
        facts=frozenset(names.facts),
        placeholders=frozenset(names.placeholders),
        evidence=frozenset(names.evidence),
        suggestions=frozenset(BUILDERS),
        valuesets=names.valuesets,
    )


def derive_facts(
    request: HookRequest,
    record: PatientRecord,
    orders: Triage,
    medications: Mapping[str, Resource],
    knowledge: Knowledge,
    today: date,
) -> ClinicalFacts:
    """The facts stage for orders already resolved against the gathered record."""
    return derive(
        Inputs(
            request=request,
            record=record,
            reviewed=orders.reviewed,
            drafts=orders.drafts,
            medications=medications,
            terminology=knowledge.terminology,
            policy=knowledge.policy,
            today=today,
        )
    )


def default_knowledge(rules_dir: Path | None = None, policy_file: Path | None = None) -> Knowledge:
    """The rules, value sets and policy as the service loads them (for the ``evaluate`` command, tests)."""
    return load_knowledge(rules_dir or default_rules_dir(), policy_file, rule_vocabulary())


@dataclass(frozen=True)
class Pipeline:
    services: Mapping[str, ServiceDefinition]
    knowledge: Knowledge
    calendar: Calendar
    fetcher: Fetcher | None = None
    audit: CardAudit | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        calendar: Calendar,
        fetcher: Fetcher | None = None,
        audit: CardAudit | None = None,
    ) -> Pipeline:
        """Loads services, rules, value sets and schemas: everything slow happens here, once."""
        rules_dir = settings.rules_dir or default_rules_dir()
        # Compile the request schemas (both validators) here, in the gunicorn master, not on each
        # worker's first request.
        for schema in (
            "OrderSelectRequest",
            "OrderSignRequest",
            "MedicationPrescribeRequest",
            "FeedbackRequest",
        ):
            contract.validator(schema)
            contract.fast_validator(schema)
        if fetcher is None and settings.fhir_fetch:
            fetcher = shared_fetcher(
                FetchPolicy(
                    budget_seconds=settings.fhir_budget_ms / 1000,
                    max_pages=settings.fhir_max_pages,
                    allowed_servers=settings.fhir_server_allowlist,
                )
            )
        return cls(
            services=load_services(rules_dir),
            knowledge=default_knowledge(rules_dir, settings.policy_file),
            calendar=calendar,
            fetcher=fetcher,
            audit=audit,
        )

    def service_for_hook(self, hook: str) -> ServiceDefinition:
        for service in self.services.values():
            if service.hook == hook:
                return service
        raise NotFound(f"no service answers the {hook!r} hook")

    def service(self, service_id: str) -> ServiceDefinition:
        try:
            return self.services[service_id]
        except KeyError:
            raise NotFound(
                f"there is no CDS service {service_id!r}; GET /cds-services lists "
                + ", ".join(repr(s) for s in self.services)
            ) from None

    def run(
        self,
        service: ServiceDefinition,
        body: Any,
        *,
        fhir_servers: tuple[str, ...] | None = None,
        rules_url: str | None = None,
    ) -> CdsResponse:
        """The cards for one hook call. ``fhir_servers``: where the authenticated client's ``fhirServer``
        may point (``None``: not bound to a client, only the deployment's allowlist applies);
        ``rules_url``: where the rule pages the cards link to are served."""
        k = self.knowledge
        request = parse_hook_request(service, body)
        triage = identify_orders(request, k.terminology, k.policy)
        if not triage.needs_review:
            # e.g. another drug, or the sandbox's first call before a drug is chosen
            return CdsResponse(deviations=request.deviations)
        record = gather(service, request, self.fetcher, fhir_servers=fhir_servers)
        medications = medication_index(record.of_type("Medication"), request.draft_full_urls)
        orders = resolve(triage, medications, k.terminology, k.policy)
        if not any(o.relevant for o in orders.reviewed):
            log.warning(
                "no reviewed order could be identified", extra=log_fields(orders=len(orders.reviewed))
            )
            return CdsResponse(deviations=request.deviations)
        facts = derive_facts(request, record, orders, medications, k, self.calendar.today())
        matches = k.engine.evaluate(facts.engine_facts)
        cards = render(
            matches,
            CardContext(
                facts=facts,
                rulebook=k.rulebook,
                hook=service.hook,
                patient_id=request.patient_id,
                user_id=request.user_id,
                encounter_id=request.encounter_id,
                rules_url=rules_url,
            ),
        )
        if self.audit is not None:
            self.audit.record(
                hook=service.hook,
                service_id=service.id,
                hook_instance=request.hook_instance,
                patient_id=request.patient_id,
                user_id=request.user_id,
                rules_version=k.version,
                cards=cards,
            )
        return CdsResponse(cards, request.deviations)
