"""One CDS Hooks call, start to finish: validate -> gather -> facts -> engine -> cards.

Nothing here knows about HTTP; the Flask views and the ``evaluate`` command both call ``Pipeline.run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cds_service.errors import NotFound
from cds_service.gather import Fetcher, gather
from cds_service.services import ServiceDefinition
from cds_service.validate import parse_hook_request

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Pipeline:
    services: Mapping[str, ServiceDefinition]
    fetcher: Fetcher | None = None
    clock: Clock = utc_now

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
        orders = [order for order in request.reviewed_orders if _names_a_medication(order)]
        if not orders:
            # e.g. the sandbox's first order-select, fired before a drug is chosen
            return {"cards": []}
        gather(service, request, self.fetcher)
        return {"cards": []}


def _names_a_medication(order: Mapping[str, Any]) -> bool:
    return bool(order.get("medicationCodeableConcept") or order.get("medicationReference"))
