"""One CDS Hooks call, start to finish: validate -> gather -> facts -> engine -> cards.

Nothing here knows about HTTP; the Flask views and the ``evaluate`` command both call ``Pipeline.run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cds_service import contract
from cds_service.cards import CardContext, render
from cds_service.errors import NotFound
from cds_service.facts import classify_orders, derive, engine_fact, relevant
from cds_service.facts.medications import ProductClass
from cds_service.gather import Fetcher, PrefetchReading
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.resources import default_rules_dir
from cds_service.services import ServiceDefinition, load_services
from cds_service.settings import Settings
from cds_service.validate import parse_hook_request

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Pipeline:
    services: Mapping[str, ServiceDefinition]
    knowledge: Knowledge
    fetcher: Fetcher | None = None
    clock: Clock = utc_now

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock = utc_now, fetcher: Fetcher | None = None
    ) -> Pipeline:
        """Loads services, rules, value sets and schemas: everything slow happens here, once."""
        rules_dir = settings.rules_dir or default_rules_dir()
        contract.validator("OrderSelectRequest")  # compile the request schemas before the first request
        contract.validator("OrderSignRequest")
        return cls(
            services=load_services(rules_dir),
            knowledge=load_knowledge(rules_dir, settings.policy_file),
            fetcher=fetcher,
            clock=clock,
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

    def run(self, service: ServiceDefinition, body: Any) -> dict[str, Any]:
        request = parse_hook_request(service, body)
        candidates = [order for order in request.reviewed_orders if _names_a_medication(order)]
        if not candidates:
            # e.g. the sandbox's first order-select, fired before a drug is chosen
            return {"cards": []}
        k = self.knowledge
        reading = PrefetchReading(service, request)
        first_look = classify_orders(candidates, reading.medications(), k.terminology, k.policy)
        if not any(
            relevant(kind) or p.product_class is ProductClass.UNIDENTIFIED for _, p, _, kind in first_look
        ):
            return {"cards": []}  # nothing naltrexone- or opioid-related: no patient data needed

        record = reading.complete(request, self.fetcher)
        medications = {m["id"]: m for m in record.of_type("Medication") if isinstance(m.get("id"), str)}
        reviewed = [
            c for c in classify_orders(candidates, medications, k.terminology, k.policy) if relevant(c[3])
        ]
        if not reviewed:
            return {"cards": []}
        facts = derive(
            reviewed, request.draft_resources, record, k.terminology, k.policy, self.clock().date()
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
        return {"cards": render(matches, context)}


def _names_a_medication(order: Mapping[str, Any]) -> bool:
    return bool(order.get("medicationCodeableConcept") or order.get("medicationReference"))
