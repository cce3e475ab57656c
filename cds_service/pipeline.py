"""One CDS Hooks call, start to finish: validate -> gather -> facts -> engine -> cards.

Nothing here knows about HTTP; the Flask views and the ``evaluate`` command both call ``Pipeline.run``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cds_service import contract
from cds_service.audit import CardAudit
from cds_service.cards import CardContext, render
from cds_service.errors import NotFound
from cds_service.facts import classify_orders, derive, engine_fact, medication_index
from cds_service.facts.fhir import local_day, set_local_timezone
from cds_service.facts.medications import ProductClass
from cds_service.facts.orders import ClassifiedOrder
from cds_service.fhir_client import FetchPolicy, shared_fetcher
from cds_service.gather import Fetcher, PrefetchReading
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.logs import log_fields
from cds_service.resources import default_rules_dir
from cds_service.services import ServiceDefinition, load_services
from cds_service.settings import Settings
from cds_service.validate import parse_hook_request

Clock = Callable[[], datetime]
log = logging.getLogger("naltrexone_cds.pipeline")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Pipeline:
    services: Mapping[str, ServiceDefinition]
    knowledge: Knowledge
    fetcher: Fetcher | None = None
    clock: Clock = utc_now
    audit: CardAudit | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        fetcher: Fetcher | None = None,
        audit: CardAudit | None = None,
    ) -> Pipeline:
        """Loads services, rules, value sets and schemas: everything slow happens here, once."""
        rules_dir = settings.rules_dir or default_rules_dir()
        set_local_timezone(ZoneInfo(settings.timezone))
        # Compile the request schemas (both validators) here, in the gunicorn master, not on each
        # worker's first request.
        for schema in ("OrderSelectRequest", "OrderSignRequest", "FeedbackRequest"):
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
            knowledge=load_knowledge(rules_dir, settings.policy_file),
            fetcher=fetcher,
            clock=clock,
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
        self, service: ServiceDefinition, body: Any, *, fhir_servers: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        """The cards for one hook call. ``fhir_servers``: where the authenticated client's ``fhirServer``
        may point (``None``: not bound to a client, only the deployment's allowlist applies)."""
        request = parse_hook_request(service, body)
        candidates = [order for order in request.reviewed_orders if _names_a_medication(order)]
        if not candidates:
            # e.g. the sandbox's first order-select, fired before a drug is chosen
            return {"cards": []}
        k = self.knowledge
        reading = PrefetchReading(service, request)
        local = medication_index(reading.medications().values(), request.draft_full_urls)
        first_look = classify_orders(candidates, local, k.terminology, k.policy)
        if not any(o.relevant or o.product.product_class is ProductClass.UNIDENTIFIED for o in first_look):
            return {"cards": []}  # nothing naltrexone- or opioid-related: no patient data needed

        record = reading.complete(request, self.fetcher, fhir_servers=fhir_servers)
        medications = medication_index(record.of_type("Medication"), request.draft_full_urls)
        # An order is classified again only if fetching brought Medications its first look lacked.
        known = {id(o.resource): o for o in first_look} if _same_index(local, medications) else {}

        def classified(orders: Sequence[Mapping[str, Any]]) -> list[ClassifiedOrder]:
            return [
                known.get(id(order)) or classify_orders([order], medications, k.terminology, k.policy)[0]
                for order in orders
            ]

        reviewed = [o for o in classified(candidates) if o.relevant]
        if not reviewed:
            log.warning("no reviewed order could be identified", extra=log_fields(orders=len(candidates)))
            return {"cards": []}
        drafts = classified(
            [d for d in request.draft_resources if d.get("resourceType") == "MedicationRequest"]
        )
        today = local_day(self.clock())
        facts = derive(
            reviewed, drafts, request.draft_resources, record, medications, k.terminology, k.policy, today
        )
        matches = k.engine.evaluate([engine_fact(order, facts.patient, k.policy) for order in facts.orders])
        context = CardContext(
            facts=facts,
            rulebook=k.rulebook,
            policy=k.policy,
            hook=service.hook,
            patient_id=request.patient_id,
            user_id=request.user_id,
            encounter_id=request.encounter_id,
        )
        cards = render(matches, context)
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
        return {"cards": cards}


def _same_index(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    return first.keys() == second.keys() and all(first[key] is second[key] for key in first)


def _names_a_medication(order: Mapping[str, Any]) -> bool:
    return bool(order.get("medicationCodeableConcept") or order.get("medicationReference"))
