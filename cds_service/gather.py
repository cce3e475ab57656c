"""Stage 2: collect the patient's data, whatever its origin, and know what could not be obtained.

``gather`` is called once per request and returns the complete ``PatientRecord``: the prefetched data,
what was fetched from ``fhirServer`` for the keys the EHR left out, and the Medications that orders and
history reference. CDS Hooks gives a prefetch key three meanings, kept apart here (``KeyOutcome``):

* key **absent**: the EHR did not (or could not) prefetch it -> fetched from ``fhirServer``; with no
  ``fhirServer`` a required key makes the request fail with 412, an optional one is *not provided*;
* value **null**: the EHR has no such data -> the data is *empty*, which is a real answer;
* an **OperationOutcome**, a search that reports an error, a paged result whose further pages were not
  sent, a fetch that fails, or a ``fhirServer`` the service may not query -> *unavailable*: the cards say
  what could not be verified.

Each data domain (``rules/services.yaml``) is then present, empty or unavailable, and says what its
absence means (``DataDomain.gap``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from cds_service import metrics
from cds_service.errors import BadRequest, PreconditionFailed
from cds_service.fhir import MEDICATION_HISTORY_TYPES, referenced_id
from cds_service.knowledge.services import DataDomain, PrefetchTemplate, ServiceDefinition
from cds_service.logs import log_fields
from cds_service.urls import within_any
from cds_service.validate import HookRequest

log = logging.getLogger("naltrexone_cds.gather")

_MAX_PROBLEM_TEXT = 200


class Availability(StrEnum):
    PRESENT = "present"
    EMPTY = "empty"
    UNAVAILABLE = "unavailable"


class KeyOutcome(StrEnum):
    """What became of one prefetch template in this request."""

    PREFETCHED = "prefetched"
    NULL = "null (the EHR has no such data)"
    REPORTED_ERROR = "the EHR reported an error"
    FETCHED = "fetched from fhirServer"
    FETCH_FAILED = "fhirServer could not be read"
    REFUSED = "fhirServer may not be queried"
    NOT_PROVIDED = "not provided (optional)"


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
        """Whether this request's fhirServer is on the deployment's allowlist (if it has one)."""
        ...

    def open(self, request: HookRequest) -> FetchSession: ...


@dataclass(frozen=True, slots=True)
class DomainData:
    domain: DataDomain
    availability: Availability
    problems: tuple[str, ...] = ()
    """Why the domain is unavailable, in words an integrator can act on."""


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """The patient's resources by type (deduplicated), and the availability of each data domain."""

    resources: Mapping[str, tuple[Mapping[str, Any], ...]]
    domains: Mapping[str, DomainData]
    keys: Mapping[str, KeyOutcome] = field(default_factory=dict)
    """Prefetch key -> what became of it."""

    def of_type(self, resource_type: str) -> tuple[Mapping[str, Any], ...]:
        return self.resources.get(resource_type, ())

    def availability(self, domain: str) -> Availability:
        return self.domains[domain].availability

    def unavailable(self) -> tuple[DomainData, ...]:
        return tuple(d for d in self.domains.values() if d.availability is Availability.UNAVAILABLE)


def gather(
    service: ServiceDefinition,
    request: HookRequest,
    fetcher: Fetcher | None,
    *,
    fhir_servers: tuple[str, ...] | None = None,
) -> PatientRecord:
    """The patient record for ``request``: prefetch, then fhirServer for what prefetch lacks.

    A ``fhirServer`` outside the deployment's allowlist or outside ``fhir_servers`` (the authenticated
    client's own FHIR servers; ``None`` when not bound to a client) is never queried: its data counts as
    unavailable. Raises ``PreconditionFailed`` (412) when required data is absent and nothing can fetch it.
    """
    collector = _Collector()
    keys: dict[str, KeyOutcome] = {}
    problems: dict[str, str] = {}
    for resource in request.draft_resources:
        if resource["resourceType"] == "Medication":
            collector.add(resource)  # drafts are not history, but the Medications they carry are needed
    declared = {template.key for template in service.prefetch}
    absent = [t for t in service.prefetch if t.key not in request.prefetch]
    for template in service.prefetch:
        if template.key in request.prefetch:
            value = request.prefetch[template.key]
            keys[template.key] = _take(template.key, value, f"prefetch.{template.key}", collector, problems)
    for key, value in request.prefetch.items():
        if key not in declared and value is not None:
            # data under keys this service did not ask for is still the patient's data
            _add_resource_or_bundle(value, f"prefetch.{key}", collector)
    refused = _refusal(request, fetcher, fhir_servers)
    session = (
        fetcher.open(request)
        if fetcher is not None and request.fhir_server is not None and refused is None
        else None
    )
    if absent:
        _fill_absent(request, absent, session, refused, collector, keys, problems)
    if session is not None:
        unresolved = _unresolved_medications(collector, request.draft_resources)
        if unresolved:
            for medication in session.read_medications(unresolved).values():
                collector.add(medication)
    return PatientRecord(
        resources=collector.freeze(),
        domains=_domain_availability(service, keys, problems, collector.with_data),
        keys=keys,
    )


class _Collector:
    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, Mapping[str, Any]]] = {}
        self.anonymous: dict[str, list[Mapping[str, Any]]] = {}
        self.added = 0
        self.with_data: set[str] = set()
        """Prefetch keys that brought at least one resource."""

    def add(self, resource: Mapping[str, Any]) -> None:
        self.added += 1
        resource_type = resource["resourceType"]
        resource_id = resource.get("id")
        if isinstance(resource_id, str):
            self.by_type.setdefault(resource_type, {}).setdefault(resource_id, resource)
        else:
            self.anonymous.setdefault(resource_type, []).append(resource)

    def freeze(self) -> dict[str, tuple[Mapping[str, Any], ...]]:
        types = set(self.by_type) | set(self.anonymous)
        return {t: tuple(self.by_type.get(t, {}).values()) + tuple(self.anonymous.get(t, ())) for t in types}


def _refusal(
    request: HookRequest, fetcher: Fetcher | None, fhir_servers: tuple[str, ...] | None
) -> str | None:
    """Why the request's fhirServer may not be queried, or ``None`` when it may (or there is none)."""
    server = request.fhir_server
    if server is None or fetcher is None:
        return None
    if not fetcher.allows(request):
        reason = "the EHR's FHIR server is not on this service's allowlist"
        reason_code = "not_on_allowlist"
    elif fhir_servers is not None and not within_any(server, fhir_servers):
        reason = "the EHR's FHIR server is not one configured for the calling system"
        reason_code = "not_the_callers"
    else:
        return None
    metrics.count_fhir_refusal(reason_code)
    log.warning("fhirServer refused", extra=log_fields(reason=reason, fhir_host=urlsplit(server).hostname))
    return reason


def _fill_absent(
    request: HookRequest,
    absent: Sequence[PrefetchTemplate],
    session: FetchSession | None,
    refused: str | None,
    collector: _Collector,
    keys: dict[str, KeyOutcome],
    problems: dict[str, str],
) -> None:
    if refused is not None:
        # A fhirServer the service may not query is an unreachable one (never a 412: the EHR did name one).
        for template in absent:
            keys[template.key] = KeyOutcome.REFUSED
            problems[template.key] = f"not sent, and {refused}"
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
            keys[template.key] = KeyOutcome.NOT_PROVIDED
        return
    results = session.search(absent)
    for template in absent:
        result = results.get(template.key, FetchResult(failure="not fetched"))
        if result.failure is not None or result.resource is None:
            keys[template.key] = KeyOutcome.FETCH_FAILED
            problems[template.key] = (
                f"not sent, and the EHR's FHIR server failed: {result.failure or 'no data'}"
            )
        else:
            outcome = _take(template.key, result.resource, f"fhirServer {template.key}", collector, problems)
            keys[template.key] = KeyOutcome.FETCHED if outcome is KeyOutcome.PREFETCHED else outcome


def _take(key: str, value: Any, where: str, collector: _Collector, problems: dict[str, str]) -> KeyOutcome:
    """Adds one prefetch value's resources; says what the value was."""
    if value is None:
        return KeyOutcome.NULL
    if value.get("resourceType") == "OperationOutcome":
        problems[key] = f"the EHR reported an error ({_outcome_text(value)})"
        return KeyOutcome.REPORTED_ERROR
    before = collector.added
    _add_resource_or_bundle(value, where, collector)
    if collector.added > before:
        collector.with_data.add(key)
    failed = _search_failure(value)
    if failed:
        problems[key] = f"the EHR's search reported an error ({failed})"
        return KeyOutcome.REPORTED_ERROR
    if value.get("resourceType") == "Bundle" and _has_next_page(value):
        problems[key] = "only the first page of results was sent"
        return KeyOutcome.REPORTED_ERROR
    return KeyOutcome.PREFETCHED


def _unresolved_medications(collector: _Collector, drafts: Iterable[Mapping[str, Any]]) -> set[str]:
    """Ids of Medications referenced (not contained) by drafts or medication history but not at hand."""
    known = set(collector.by_type.get("Medication", {}))
    history = (r for t in MEDICATION_HISTORY_TYPES for r in collector.by_type.get(t, {}).values())
    wanted: set[str] = set()
    for resource in (*drafts, *history):
        reference = resource.get("medicationReference")
        medication_id = referenced_id(reference, "Medication") if isinstance(reference, Mapping) else None
        if medication_id is not None and medication_id not in known:
            wanted.add(medication_id)
    return wanted


def _add_resource_or_bundle(value: Mapping[str, Any], where: str, collector: _Collector) -> None:
    if value.get("resourceType") != "Bundle":
        collector.add(value)
        return
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        raise BadRequest(f"{where}.entry must be an array", expression=f"{where}.entry")
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None and isinstance(entry, dict):
            continue  # an entry without a resource (e.g. a deleted one) carries no data
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise BadRequest(
                f"{where}.entry[{index}].resource must be a FHIR resource with a resourceType",
                expression=f"{where}.entry[{index}]",
            )
        if not _is_search_outcome(entry, resource):
            collector.add(resource)


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
            listed = resource.get("issue")
            issues = [i for i in listed if isinstance(i, dict)] if isinstance(listed, list) else []
            severities = {i.get("severity") for i in issues if isinstance(i.get("severity"), str)}
            codes = {i.get("code") for i in issues if isinstance(i.get("code"), str)}
            # a search cut short (even as a mere warning) did not return everything asked for
            if severities & {"error", "fatal"} or codes & _RESULTS_CUT_SHORT:
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
            details = issue.get("details")
            text = (
                issue.get("diagnostics")
                or (details.get("text") if isinstance(details, dict) else None)
                or issue.get("code")
            )
            if isinstance(text, str):
                texts.append(text)
    joined = "; ".join(texts) or "no details given"
    return joined if len(joined) <= _MAX_PROBLEM_TEXT else joined[: _MAX_PROBLEM_TEXT - 1] + "…"


_RESULTS_CUT_SHORT = frozenset({"incomplete", "too-costly", "throttled", "timeout"})
"""OperationOutcome issue codes (FHIR R4 IssueType) saying the results are not all there."""

_UNAVAILABLE = frozenset({KeyOutcome.REPORTED_ERROR, KeyOutcome.FETCH_FAILED, KeyOutcome.REFUSED})


def _domain_availability(
    service: ServiceDefinition,
    keys: Mapping[str, KeyOutcome],
    problems: Mapping[str, str],
    with_data: set[str],
) -> dict[str, DomainData]:
    domains: dict[str, DomainData] = {}
    for domain in service.domains:
        templates = [t.key for t in service.prefetch if t.domain == domain.name]
        if any(keys.get(k) in _UNAVAILABLE for k in templates):
            found = tuple(problems[k] for k in templates if k in problems)
            domains[domain.name] = DomainData(domain, Availability.UNAVAILABLE, found)
        elif any(k in with_data for k in templates):
            domains[domain.name] = DomainData(domain, Availability.PRESENT)
        else:
            domains[domain.name] = DomainData(domain, Availability.EMPTY)
    return domains
