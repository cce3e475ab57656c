"""``naltrexone-cds lint``: how a request captured from an EHR fares here, before go-live.

For integration teams: whether the service would answer it or refuse it (and why), each deviation from
CDS Hooks 2.0.1 it tolerates (the names its request log line carries), the prefetch keys the client did
not send (fetched from ``fhirServer``, or said on cards to be missing), and the resources that are not
valid FHIR R4 (checked with fhir.resources, R4B models: R4B changed no resource this service reads).
The request goes through the service's own pipeline, so what it refuses lint refuses too; nothing is
fetched from ``fhirServer`` (those queries count as failed, as when the EHR's server is down) and nothing
is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from cds_service.errors import CdsError
from cds_service.gather import FetchResult
from cds_service.knowledge.services import PrefetchTemplate, ServiceDefinition
from cds_service.leniency import DEVIATIONS, normalise
from cds_service.pipeline import Pipeline
from cds_service.validate import HookRequest, decode_json, parse_hook_request

MAX_FHIR_PROBLEMS = 20
"""Resources reported per request: enough to see the pattern, short enough to read."""


@dataclass(frozen=True)
class Deviation:
    name: str
    meaning: str


@dataclass(frozen=True)
class FhirProblem:
    where: str
    """Which resource, e.g. ``prefetch.labResults[2] Observation/o1``."""
    problem: str


@dataclass(frozen=True)
class LintReport:
    service_id: str
    refused: str | None
    """The 4xx message the service would answer with; ``None`` when it would answer with cards."""
    deviations: tuple[Deviation, ...] = ()
    prefetch_missing: tuple[str, ...] = ()
    """This service's prefetch keys the request does not carry."""
    fhir_problems: tuple[FhirProblem, ...] = ()
    cards: tuple[str, ...] = ()
    """Rule ids of the cards the service would answer with (nothing fetched)."""

    @property
    def conforming(self) -> bool:
        return self.refused is None and not self.deviations and not self.fhir_problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "conforming": self.conforming}


class NothingFetched:
    """The ``Fetcher`` lint runs the pipeline with: every query fails, nothing leaves this machine."""

    def allows(self, request: HookRequest) -> bool:
        return True

    def open(self, request: HookRequest) -> NothingFetched:
        return self

    def search(self, templates: Sequence[PrefetchTemplate]) -> dict[str, FetchResult]:
        return {template.key: FetchResult(failure="not fetched by lint") for template in templates}

    def read_medications(self, ids: Iterable[str]) -> dict[str, Mapping[str, Any]]:
        return {}


def lint(raw: bytes, pipeline: Pipeline, service_id: str | None = None) -> LintReport:
    """The report for one request body; ``pipeline`` is the deployment's, built with ``NothingFetched``
    and no audit."""
    try:
        body = decode_json(raw)
    except CdsError as error:
        return LintReport(service_id or "", refused=error.message)
    service = _service(body, pipeline.services, service_id)
    try:
        request = parse_hook_request(service, body)
    except CdsError as error:
        return LintReport(service.id, refused=error.message)
    deviations = tuple(Deviation(name, DEVIATIONS[name]) for name in request.deviations)
    normalised = normalise(service.hook, body).body
    prefetch = normalised.get("prefetch") or {}
    missing = tuple(t.key for t in service.prefetch if t.key not in prefetch)
    try:
        response = pipeline.run(service, body)
    except CdsError as error:
        return LintReport(service.id, refused=error.message, deviations=deviations, prefetch_missing=missing)
    return LintReport(
        service.id,
        refused=None,
        deviations=deviations,
        prefetch_missing=missing,
        fhir_problems=tuple(_fhir_problems(normalised)),
        cards=tuple(card.rule_id for card in response.cards),
    )


def _service(
    body: Any, services: Mapping[str, ServiceDefinition], service_id: str | None
) -> ServiceDefinition:
    if service_id:
        return services[service_id]
    hook = body.get("hook") if isinstance(body, dict) else None
    matching = [s for s in services.values() if s.hook == hook]
    return matching[0] if matching else next(iter(services.values()))


def _fhir_problems(request: Mapping[str, Any]) -> Iterator[FhirProblem]:
    from fhir.resources.R4B import get_fhir_model_class  # slow to import: only lint needs it
    from pydantic import ValidationError

    found = 0
    for where, resource in _located_resources(request):
        try:
            model = get_fhir_model_class(resource["resourceType"])
        except (KeyError, ValueError):
            yield FhirProblem(where, f"{resource['resourceType']!r} is not an R4 resource type")
            found += 1
        else:
            try:
                model.model_validate(resource)
            except ValidationError as error:
                yield FhirProblem(where, _first_errors(error))
                found += 1
            except Exception as error:
                yield FhirProblem(where, f"could not be checked as FHIR R4 ({type(error).__name__})")
                found += 1
        if found >= MAX_FHIR_PROBLEMS:
            return


def _first_errors(error: Any, limit: int = 3) -> str:
    """The first few field errors, each as ``path: message``, without the offending values."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '(resource)'}: {item['msg']}"
        for item in error.errors()[:limit]
    ]
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _located_resources(request: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for entry in request["context"]["draftOrders"].get("entry", []):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if _is_resource(resource):
            yield f"context.draftOrders {_name(resource)}", resource
    for key, value in (request.get("prefetch") or {}).items():
        if not _is_resource(value):
            continue
        if value["resourceType"] != "Bundle":
            yield f"prefetch.{key} {_name(value)}", value
            continue
        # the Bundle itself, then each entry's resource: one problem is reported where it is
        yield f"prefetch.{key} Bundle", {k: v for k, v in value.items() if k != "entry"}
        for index, entry in enumerate(value.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if _is_resource(resource):
                yield f"prefetch.{key}[{index}] {_name(resource)}", resource


def _is_resource(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(value, Mapping) and isinstance(value.get("resourceType"), str)


def _name(resource: Mapping[str, Any]) -> str:
    identifier = resource.get("id")
    return (
        f"{resource['resourceType']}/{identifier}"
        if isinstance(identifier, str)
        else resource["resourceType"]
    )


def render_text(report: LintReport) -> str:
    if report.refused is not None:
        return f"{report.service_id or 'request'}: REFUSED (HTTP 4xx): {report.refused}"
    verdict = "conforms to CDS Hooks 2.0.1 and FHIR R4" if report.conforming else "answered, with deviations"
    lines = [f"{report.service_id}: {verdict}"]
    if report.deviations:
        lines += ["", "Tolerated deviations (the request log line names them):"]
        width = max(len(d.name) for d in report.deviations)
        lines += [f"  {d.name:<{width}}  {d.meaning}" for d in report.deviations]
    if report.prefetch_missing:
        lines += [
            "",
            "Prefetch keys not sent (fetched from fhirServer when the request has one; otherwise a",
            "required key is a 412, and data that cannot be obtained is named on the cards):",
            "  " + ", ".join(report.prefetch_missing),
        ]
    if report.fhir_problems:
        lines += ["", "Not valid FHIR R4 (read anyway where the fields the rules use are readable):"]
        lines += [f"  {p.where}: {p.problem}" for p in report.fhir_problems]
    lines += ["", "Cards it would answer with (nothing fetched from fhirServer):"]
    lines.append("  " + (", ".join(report.cards) or "none (no naltrexone or opioid order was identified)"))
    return "\n".join(lines)


def render_json(report: LintReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)
