"""Stage 2: collect the patient's data, whatever its origin, and know what could not be obtained.

CDS Hooks gives prefetch values three meanings, kept apart here:

* key **absent**: the EHR did not (or could not) prefetch it -> fetch it from ``fhirServer``; with no
  ``fhirServer`` a required key makes the request fail with 412;
* value **null**: the EHR has no such data -> the domain is *empty*, which is a real answer;
* an **OperationOutcome** (or a fetch that fails): the data exists but could not be read -> the domain
  is *unavailable*, and the rules must say they could not verify it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from cds_service.errors import BadRequest, PreconditionFailed
from cds_service.logs import log_fields
from cds_service.services import DOMAINS, Domain, PrefetchTemplate, ServiceDefinition
from cds_service.urls import within_any
from cds_service.validate import HookRequest

log = logging.getLogger("naltrexone_cds.gather")

_MAX_PROBLEM_TEXT = 200


class Availability(StrEnum):
    PRESENT = "present"
    EMPTY = "empty"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What a fetch of one template produced: a resource (usually a Bundle), or why it failed."""

    resource: Mapping[str, Any] | None = None
    failure: str | None = None


class FetchSession(Protocol):
    """One request's access to its EHR's FHIR server, within one time budget."""

    def search(self, templates: Sequence[PrefetchTemplate]) -> Mapping[str, FetchResult]: ...

    def read_medications(self, ids: Iterable[str]) -> Mapping[str, Mapping[str, Any]]: ...


class Fetcher(Protocol):
    """Gets what prefetch lacks from the EHR's FHIR server (the request names it and its token)."""

    def allows(self, request: HookRequest) -> bool:
        """Whether this request's fhirServer may be queried (present, and on any configured allowlist)."""
        ...

    def open(self, request: HookRequest) -> FetchSession: ...


@dataclass(frozen=True, slots=True)
class DomainData:
    availability: Availability
    problems: tuple[str, ...] = ()
    """Why the domain is unavailable, in words an integrator can act on."""


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """The patient's resources by type (deduplicated), and the availability of each data domain."""

    resources: Mapping[str, tuple[Mapping[str, Any], ...]]
    domains: Mapping[Domain, DomainData]
    sources: Mapping[str, str] = field(default_factory=dict)
    """Prefetch key -> where its data came from: ``prefetch``, ``prefetch (null)``, ``fhirServer``..."""

    def of_type(self, resource_type: str) -> tuple[Mapping[str, Any], ...]:
        return self.resources.get(resource_type, ())

    def availability(self, domain: Domain) -> Availability:
        return self.domains[domain].availability


class _Collector:
    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, Mapping[str, Any]]] = {}
        self.anonymous: dict[str, list[Mapping[str, Any]]] = {}

    def add(self, resource: Mapping[str, Any]) -> None:
        resource_type = resource["resourceType"]
        resource_id = resource.get("id")
        if isinstance(resource_id, str):
            self.by_type.setdefault(resource_type, {}).setdefault(resource_id, resource)
        else:
            self.anonymous.setdefault(resource_type, []).append(resource)

    def freeze(self) -> dict[str, tuple[Mapping[str, Any], ...]]:
        types = set(self.by_type) | set(self.anonymous)
        return {t: tuple(self.by_type.get(t, {}).values()) + tuple(self.anonymous.get(t, ())) for t in types}


class PrefetchReading:
    """What the request's own prefetch holds, before anything is fetched.

    The pipeline looks at it first (e.g. to resolve the ordered medication) and calls ``complete``
    only when the orders need the patient's record.
    """

    def __init__(self, service: ServiceDefinition, request: HookRequest) -> None:
        self._service = service
        self._collector = _Collector()
        self._outcome: dict[str, Availability] = {}
        self._problems: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._absent: list[PrefetchTemplate] = []
        for resource in _contained_in_drafts(request.draft_resources):
            self._collector.add(resource)
        declared = {template.key for template in service.prefetch}
        for template in service.prefetch:
            if template.key not in request.prefetch:
                self._absent.append(template)
                continue
            self._sources[template.key] = "prefetch"
            value = request.prefetch[template.key]
            _take(
                template.key,
                value,
                f"prefetch.{template.key}",
                self._collector,
                self._outcome,
                self._problems,
            )
        # Data under keys this service did not ask for is still the patient's data: use it.
        for key, value in request.prefetch.items():
            if key not in declared and value is not None:
                _add_resource_or_bundle(value, f"prefetch.{key}", self._collector)

    def medications(self) -> dict[str, Mapping[str, Any]]:
        """Medication resources by id (from prefetch and the draft orders' bundle)."""
        return dict(self._collector.by_type.get("Medication", {}))

    def complete(
        self, request: HookRequest, fetcher: Fetcher | None, *, fhir_servers: tuple[str, ...] | None = None
    ) -> PatientRecord:
        """The patient record, fetching what prefetch lacks; 412 if required data cannot be had.

        A ``fhirServer`` outside the deployment's allowlist or outside ``fhir_servers`` (the authenticated
        client's own FHIR servers) is never queried: its data counts as unreachable, and the cards say
        what could not be verified."""
        refused = _refusal(request, fetcher, fhir_servers)
        session = (
            fetcher.open(request)
            if fetcher is not None and request.fhir_server is not None and refused is None
            else None
        )
        if self._absent:
            _fill_absent(
                request,
                self._absent,
                session,
                refused,
                self._collector,
                self._outcome,
                self._problems,
                self._sources,
            )
            self._absent = []
        if session is not None:
            unresolved = _unresolved_medications(self._collector, request.draft_resources)
            if unresolved:
                for medication in session.read_medications(unresolved).values():
                    self._collector.add(medication)
        domains = _domain_availability(self._service.prefetch, self._outcome, self._problems)
        return PatientRecord(resources=self._collector.freeze(), domains=domains, sources=dict(self._sources))


def gather(service: ServiceDefinition, request: HookRequest, fetcher: Fetcher | None) -> PatientRecord:
    return PrefetchReading(service, request).complete(request, fetcher)


def _refusal(
    request: HookRequest, fetcher: Fetcher | None, fhir_servers: tuple[str, ...] | None
) -> str | None:
    """Why the request's fhirServer may not be queried, or ``None`` when it may (or there is none)."""
    server = request.fhir_server
    if server is None or fetcher is None:
        return None
    if not fetcher.allows(request):
        reason = "fhirServer is not on this deployment's allowlist"
    elif fhir_servers is not None and not within_any(server, fhir_servers):
        reason = "fhirServer is not one of the FHIR servers configured for the calling client"
    else:
        return None
    log.warning("fhirServer refused", extra=log_fields(reason=reason, fhir_host=urlsplit(server).hostname))
    return reason


def _fill_absent(
    request: HookRequest,
    absent: list[PrefetchTemplate],
    session: FetchSession | None,
    refused: str | None,
    collector: _Collector,
    outcome: dict[str, Availability],
    problems: dict[str, str],
    sources: dict[str, str],
) -> None:
    if refused is not None:
        # A fhirServer the service may not query is an unreachable one: the data is unavailable, and
        # the cards say what could not be verified (never a 412: the EHR did name a server).
        for template in absent:
            outcome[template.key] = Availability.UNAVAILABLE
            problems[template.key] = f"'{template.key}' was not prefetched, and {refused}"
            sources[template.key] = "fhirServer (refused)"
        return
    if session is None:
        required = [t.key for t in absent if t.required]
        if required:
            reason = (
                "the request has no fhirServer to fetch them from"
                if request.fhir_server is None
                else "this deployment does not fetch from fhirServer"
            )
            raise PreconditionFailed(
                "prefetch is missing "
                + ", ".join(repr(k) for k in required)
                + f" and {reason}; send them as prefetch (templates at GET /cds-services) or send fhirServer",
                expression="prefetch",
            )
        for template in absent:
            outcome[template.key] = Availability.EMPTY
            sources[template.key] = "not provided (optional)"
        return
    results = session.search(absent)
    for template in absent:
        result = results.get(template.key, FetchResult(failure="not fetched"))
        sources[template.key] = "fhirServer"
        if result.failure is not None or result.resource is None:
            outcome[template.key] = Availability.UNAVAILABLE
            problems[template.key] = (
                f"'{template.key}' could not be read from fhirServer: {result.failure or 'no data'}"
            )
        else:
            _take(template.key, result.resource, f"fhirServer {template.key}", collector, outcome, problems)


def _unresolved_medications(collector: _Collector, drafts: Iterable[Mapping[str, Any]]) -> set[str]:
    """Ids of Medications referenced (not contained) by drafts or medication history but not at hand."""
    known = set(collector.by_type.get("Medication", {}))
    wanted: set[str] = set()
    history = (r for t in _MEDICATION_TYPES for r in collector.by_type.get(t, {}).values())
    for resource in (*drafts, *history):
        reference = resource.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, Mapping) else None
        if not isinstance(ref, str) or ref.startswith("#"):
            continue
        parts = [p for p in ref.split("/") if p]
        if len(parts) >= 2 and parts[-2] == "Medication" and parts[-1] not in known:
            wanted.add(parts[-1])
    return wanted


_MEDICATION_TYPES = (
    "MedicationRequest",
    "MedicationDispense",
    "MedicationStatement",
    "MedicationAdministration",
)


def _take(
    key: str,
    value: Any,
    where: str,
    collector: _Collector,
    outcome: dict[str, Availability],
    problems: dict[str, str],
) -> None:
    if value is None:
        outcome[key] = Availability.EMPTY
        return
    if value.get("resourceType") == "OperationOutcome":
        outcome[key] = Availability.UNAVAILABLE
        problems[key] = f"the EHR reported an error for '{key}': {_outcome_text(value)}"
        return
    if value.get("resourceType") == "Bundle" and _has_next_page(value):
        outcome[key] = Availability.UNAVAILABLE
        problems[key] = f"'{key}' is paged and the further pages were not retrieved"
    added = _add_resource_or_bundle(value, where, collector)
    failed = _search_failure(value)
    if failed:
        outcome[key] = Availability.UNAVAILABLE
        problems[key] = f"the search for '{key}' reported an error: {failed}"
    elif key not in outcome:
        outcome[key] = Availability.PRESENT if added else Availability.EMPTY


def _add_resource_or_bundle(value: Mapping[str, Any], where: str, collector: _Collector) -> int:
    """Adds a resource, or each resource of a Bundle; returns how many data resources were added."""
    if value.get("resourceType") != "Bundle":
        collector.add(value)
        return 1
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        raise BadRequest(f"{where}.entry must be an array", expression=f"{where}.entry")
    added = 0
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None and isinstance(entry, dict):
            continue  # an entry without a resource (e.g. a deleted one) carries no data
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise BadRequest(
                f"{where}.entry[{index}].resource must be a FHIR resource with a resourceType",
                expression=f"{where}.entry[{index}]",
            )
        if _is_search_outcome(entry, resource):
            continue
        collector.add(resource)
        added += 1
    return added


def _is_search_outcome(entry: Mapping[str, Any], resource: Mapping[str, Any]) -> bool:
    search = entry.get("search")
    return resource["resourceType"] == "OperationOutcome" or (
        isinstance(search, dict) and search.get("mode") == "outcome"
    )


def _search_failure(bundle: Mapping[str, Any]) -> str | None:
    """An OperationOutcome entry with an error means the search did not run as asked."""
    if bundle.get("resourceType") != "Bundle":
        return None
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            severities = {i.get("severity") for i in resource.get("issue", []) if isinstance(i, dict)}
            if severities & {"error", "fatal"}:
                return _outcome_text(resource)
    return None


def _has_next_page(bundle: Mapping[str, Any]) -> bool:
    links = bundle.get("link", [])
    return isinstance(links, list) and any(
        isinstance(link, dict) and link.get("relation") == "next" and link.get("url") for link in links
    )


def _outcome_text(outcome: Mapping[str, Any]) -> str:
    texts = []
    for issue in outcome.get("issue", []) if isinstance(outcome.get("issue"), list) else []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            if isinstance(text, str):
                texts.append(text)
    joined = "; ".join(texts) or "no details given"
    return joined if len(joined) <= _MAX_PROBLEM_TEXT else joined[: _MAX_PROBLEM_TEXT - 1] + "…"


def _contained_in_drafts(drafts: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Draft orders are not history, but the Medications they carry or sit beside are needed."""
    for resource in drafts:
        if resource["resourceType"] == "Medication":
            yield resource


def _domain_availability(
    templates: Sequence[PrefetchTemplate],
    outcome: Mapping[str, Availability],
    problems: Mapping[str, str],
) -> dict[Domain, DomainData]:
    domains: dict[Domain, DomainData] = {}
    for domain in DOMAINS:
        keys = [t.key for t in templates if t.domain == domain]
        states = [outcome.get(k, Availability.EMPTY) for k in keys]
        if Availability.UNAVAILABLE in states:
            domains[domain] = DomainData(
                Availability.UNAVAILABLE, tuple(problems[k] for k in keys if k in problems)
            )
        elif Availability.PRESENT in states:
            domains[domain] = DomainData(Availability.PRESENT)
        else:
            domains[domain] = DomainData(Availability.EMPTY)
    return domains
