"""Stage 1, before reading: the request shapes real CDS clients send, brought to the CDS Hooks 2.0.1 shape.

A service that refuses a request gives the prescriber no advice at all, so what the advice does not need
may be missing or sit where an older client puts it; what it needs (the patient, the draft orders) must be
there and readable. ``openapi.yaml`` says exactly what is accepted; each deviation tolerated here is named
(``DEVIATIONS``), for the request's log line and the ``lint`` command. Refused, with the field named:
a request without a patient, a patient given twice differently, and DSTU2 resources (``MedicationOrder``),
which are a different FHIR version, not a different shape.

The body is never modified in place: what changes is copied.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from cds_service.cdshooks import Hook
from cds_service.errors import BadRequest, SchemaViolation
from cds_service.fhir import parse_reference

DEVIATIONS = {
    "user-at-top-level": "the user is given at the top level (`user` or `userId`, a pre-1.0 shape)",
    "no-user": "no user is given (the audit trail records the user as absent)",
    "patient-at-top-level": "the patient is given at the top level (`patient`, a pre-1.0 shape)",
    "typed-context-ids": "context ids carry a resource type (`Patient/…`, `Encounter/…`)",
    "draft-not-a-bundle": "the draft orders are one resource, not a Bundle",
    "bare-bundle-entries": "Bundle entries are the resources themselves, without `resource`",
    "medication-prescribe": "the deprecated medication-prescribe hook (context.medications)",
    "prefetch-in-context": "prefetch sits in context.prefetch, not at the top level",
    "nested-bundles": "a Bundle entry is itself a Bundle (or a batch-response), read entry by entry",
    "bundle-without-type": "a Bundle has no `type` (required by FHIR R4)",
    "untyped-selections": "selections give a bare id, without `MedicationRequest/`",
    "hook-instance-not-uuid": "hookInstance is not a UUID",
    "prefetch-batch-entries": "prefetch values are batch-response entries ({response, resource})",
    "unreadable-prefetch-item": "a prefetch batch entry without a FHIR resource (whatever its status), or a "
    "Bundle inside an answer that cannot be read, read as a failed query",
    "unknown-fields": "fields CDS Hooks 2.0.1 does not define were ignored",
    "stu3-resources": "FHIR STU3 resources, read as R4 where the fields the rules read agree",
    "long-resource-ids": "resource ids longer than FHIR's 64 characters (Epic's draft orders), kept as sent",
}
"""Deviation -> what it means, in words (the README's client compatibility table lists them too)."""

_REQUEST_FIELDS = frozenset(
    {"hook", "hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch", "extension"}
)
_LEGACY_FIELDS = frozenset({"user", "userId", "patient"})
_CONTEXT_FIELDS = frozenset(
    {
        "userId",
        "patientId",
        "encounterId",
        "selections",
        "draftOrders",
        "medications",
        "prefetch",
        "extension",
    }
)
_DSTU2_ONLY = frozenset({"MedicationOrder"})
_FHIR_ID_LENGTH = 64
_STATUS = re.compile(r"\d{3}\b")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_NESTING = 4
"""Bundles inside Bundles read this deep; a deeper one is a failed query (in the draft orders, a 400)."""


@dataclass(frozen=True)
class Normalised:
    body: dict[str, Any]
    """The request in the CDS Hooks 2.0.1 shape of its hook (medication-prescribe: with draftOrders)."""
    deviations: tuple[str, ...]


def normalise(hook: Hook, body: Mapping[str, Any]) -> Normalised:
    """``body`` (already checked against its hook's schema) in the 2.0.1 shape, and what was tolerated."""
    found: list[str] = []
    request = dict(body)
    context = dict(request["context"])
    request["context"] = context
    if set(request) - _REQUEST_FIELDS - _LEGACY_FIELDS or set(context) - _CONTEXT_FIELDS:
        found.append("unknown-fields")
    _user(request, context, found)
    _patient(request, context, found)
    if not _UUID.fullmatch(str(request.get("hookInstance", ""))):
        found.append("hook-instance-not-uuid")
    encounter = context.get("encounterId")
    if isinstance(encounter, str) and encounter.startswith("Encounter/"):
        context["encounterId"] = encounter.removeprefix("Encounter/")
        found.append("typed-context-ids")
    if hook == "medication-prescribe":
        found.append("medication-prescribe")
        context["draftOrders"] = _as_bundle(context.pop("medications"), found)
    else:
        context["draftOrders"] = _as_bundle(context["draftOrders"], found)
    if isinstance(context.get("prefetch"), Mapping):
        found.append("prefetch-in-context")
        # where a key is in both places, the top-level (2.0.1) one is the answer
        request["prefetch"] = {**context["prefetch"], **(request.get("prefetch") or {})}
    context.pop("prefetch", None)
    if any(isinstance(s, str) and "/" not in s for s in context.get("selections") or ()):
        found.append("untyped-selections")
    if isinstance(request.get("prefetch"), Mapping):
        request["prefetch"] = _prefetch(request["prefetch"], found)
    # one pass over every resource (a record may hold 10,000): DSTU2 refused, STU3 and long ids named
    stu3 = long_ids = False
    for resource in _resources(request):
        _refuse_dstu2(resource)
        stu3 = stu3 or _stu3(resource)
        long_ids = long_ids or len(str(resource.get("id", ""))) > _FHIR_ID_LENGTH
    if stu3:
        found.append("stu3-resources")
    if long_ids:
        found.append("long-resource-ids")
    return Normalised(request, tuple(dict.fromkeys(found)))


def _user(request: dict[str, Any], context: dict[str, Any], found: list[str]) -> None:
    """The user: context.userId; else the pre-1.0 top-level ``user``/``userId``; else recorded as absent."""
    if "user" in request or "userId" in request:
        found.append("user-at-top-level")
    if isinstance(context.get("userId"), str):
        return
    legacy = request.get("user") or request.get("userId")
    if isinstance(legacy, str) and legacy:
        context["userId"] = legacy
    else:
        context["userId"] = None
        found.append("no-user")


def _patient(request: dict[str, Any], context: dict[str, Any], found: list[str]) -> None:
    legacy = request.get("patient")
    given = context.get("patientId")
    if "patient" in request:
        found.append("patient-at-top-level")
    if isinstance(given, str) and "/" in given:
        found.append("typed-context-ids")
    if given is None:
        if not isinstance(legacy, str) or not legacy:
            raise SchemaViolation(
                "context.patientId: 'patientId' is a required property", expression="context.patientId"
            )
        context["patientId"] = legacy
    elif isinstance(legacy, str) and _bare(legacy) != _bare(given):
        raise BadRequest(
            "the top-level patient and context.patientId name different patients", expression="patient"
        )


def _bare(patient: str) -> str:
    parsed = parse_reference(patient)
    return parsed[1] if parsed is not None and parsed[0] == "Patient" else patient


def _as_bundle(value: Any, found: list[str]) -> dict[str, Any]:
    """Draft orders as a Bundle of ``{resource}`` entries, whatever shape they came in."""
    if isinstance(value, list):
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in value]}
        return _readable_entries(bundle, found, drafts=True)
    if value.get("resourceType") != "Bundle":
        found.append("draft-not-a-bundle")
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": value}]}
    if "type" not in value:
        found.append("bundle-without-type")
    return _readable_entries(value, found, drafts=True)


def _readable_entries(
    bundle: Mapping[str, Any], found: list[str], depth: int = 0, *, drafts: bool = False
) -> dict[str, Any]:
    """``bundle`` with every entry ``{resource}``: bare resources wrapped, the entries of a Bundle inside
    an entry (or of a batch-response) read in its place, a batch entry that failed turned into an error
    outcome entry (the search did not run as asked: its data is unavailable, said on a card). A Bundle
    inside that cannot be read (entries not a list, nested too deep) is a failed query too — or, among the
    draft orders, a 400: an order in it could be the one under review."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return dict(bundle)
    if bundle.get("type") != "batch-response" and all(map(_plain_entry, entries)):
        return dict(bundle)  # the usual searchset: nothing to unwrap (checked without building a copy)
    if bundle.get("type") == "batch-response":
        found.append("nested-bundles")
    readable: list[Any] = []
    for entry in entries:
        if _is_bare(entry):
            found.append("bare-bundle-entries")
            entry = {"resource": entry}
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(entry, Mapping) and "response" in entry and not _is_resource(resource):
            readable.append({"resource": _batch_entry(entry, found), "search": {"mode": "outcome"}})
            continue
        if _is_resource(resource) and resource["resourceType"] == "Bundle":
            found.append("nested-bundles")
            if isinstance(resource.get("entry"), list) and depth < _MAX_NESTING:
                readable.extend(_readable_entries(resource, found, depth + 1, drafts=drafts)["entry"])
                continue
            if "entry" not in resource:
                continue  # an empty Bundle: nothing in it
            if drafts:
                raise BadRequest(
                    "context.draftOrders holds a Bundle whose entries cannot be read (not a list, or "
                    f"Bundles nested more than {_MAX_NESTING} deep)",
                    expression="context.draftOrders",
                )
            found.append("unreadable-prefetch-item")
            readable.append({"resource": _failed_query("a Bundle inside the answer could not be read")})
            continue
        readable.append(entry)
    return {**bundle, "entry": readable}


def _plain_entry(entry: Any) -> bool:
    """``{resource}`` with a resource that is not a Bundle, and no batch ``response`` to read."""
    if not isinstance(entry, Mapping) or "response" in entry:
        return False
    resource = entry.get("resource")
    return isinstance(resource, Mapping) and resource.get("resourceType") != "Bundle"


def _is_resource(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(value, Mapping) and isinstance(value.get("resourceType"), str)


def _is_bare(entry: Any) -> bool:
    return (
        isinstance(entry, Mapping) and "resource" not in entry and isinstance(entry.get("resourceType"), str)
    )


def _prefetch(prefetch: Mapping[str, Any], found: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in prefetch.items():
        if isinstance(value, Mapping) and "response" in value and not _is_resource(value):
            found.append("prefetch-batch-entries")
            value = _batch_entry(value, found)
        if isinstance(value, Mapping) and value.get("resourceType") == "Bundle":
            value = _readable_entries(value, found)
        result[key] = value
    return result


def _batch_entry(entry: Mapping[str, Any], found: list[str]) -> Any:
    """A batch-response entry's resource; an entry without a readable one is a query that failed (its data
    is unavailable, said on a card), never "no data"."""
    resource = entry.get("resource")
    if isinstance(resource, Mapping) and isinstance(resource.get("resourceType"), str):
        return resource
    response = entry.get("response")
    # only the status code is kept: the rest is client text, and this one goes onto a card
    status = _STATUS.match(str(response.get("status", ""))) if isinstance(response, Mapping) else None
    found.append("unreadable-prefetch-item")
    if status is not None and status.group().startswith("2"):
        # a search or read that succeeded returns a resource (an empty searchset at least): without one,
        # what the EHR holds is unknown, not "nothing"
        return _failed_query(f"query answered {status.group()} without a result")
    return _failed_query(
        f"query failed with status {status.group()}" if status else "query result unreadable"
    )


def _failed_query(diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}],
    }


def _resources(request: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for entry in request["context"]["draftOrders"].get("entry", []):
        if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
            yield entry["resource"]
    for value in (request.get("prefetch") or {}).values():
        if not isinstance(value, Mapping):
            continue
        yield value
        for entry in value.get("entry", []) if isinstance(value.get("entry"), list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                yield entry["resource"]


def _refuse_dstu2(resource: Mapping[str, Any]) -> None:
    kind = resource.get("resourceType")
    if isinstance(kind, str) and kind in _DSTU2_ONLY:
        raise BadRequest(
            f"the request carries a FHIR DSTU2 {kind}: this service reads FHIR R4 (and STU3) "
            "MedicationRequest; set the CDS client or its FHIR server to R4",
            expression="context.draftOrders",
        )


def _stu3(resource: Mapping[str, Any]) -> bool:
    """STU3 markers in the fields the rules read: statuses as plain strings, MedicationRequest.context,
    a dose on the Dosage itself."""
    kind = resource.get("resourceType")
    if kind in ("Condition", "AllergyIntolerance"):
        return any(
            isinstance(resource.get(status), str) for status in ("clinicalStatus", "verificationStatus")
        )
    if kind != "MedicationRequest":
        return False
    if "context" in resource and "encounter" not in resource:
        return True
    dosages = resource.get("dosageInstruction")
    return isinstance(dosages, list) and any(isinstance(d, Mapping) and "doseQuantity" in d for d in dosages)
