"""Stage 1: turn a request body into a checked ``HookRequest``, or raise a precise 4xx.

Strict where a mistake would change the advice (types of the fields the rules read, selections that
name no draft order, a draft order for another patient), tolerant of the harmless shapes real clients
send (no ``Bundle.type``, ``category`` as one object, ``Patient/<id>`` as ``patientId``, an
``extension`` anywhere, a non-UUID ``hookInstance``), and of the older shapes ``leniency`` brings to the
2.0.1 shape (each named).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
from jsonschema.exceptions import ValidationError

from cds_service import contract
from cds_service.cdshooks import Hook
from cds_service.errors import BadRequest, HookMismatch, MalformedJson, SchemaViolation
from cds_service.fhir import parse_reference
from cds_service.knowledge.services import ServiceDefinition
from cds_service.leniency import normalise

_REQUEST_SCHEMA = {
    "order-select": "OrderSelectRequest",
    "order-sign": "OrderSignRequest",
    "medication-prescribe": "MedicationPrescribeRequest",
}


@dataclass(frozen=True, slots=True)
class FhirAuthorization:
    token_type: str
    access_token: str = field(repr=False)
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class HookRequest:
    hook: Hook
    hook_instance: str
    patient_id: str
    user_id: str | None
    """None when the client sent no user (an older client may not): recorded as absent, never made up."""
    encounter_id: str | None
    fhir_server: str | None
    fhir_authorization: FhirAuthorization | None = field(repr=False)
    draft_resources: tuple[Mapping[str, Any], ...]
    """Every resource in ``context.draftOrders``."""
    draft_full_urls: Mapping[str, Mapping[str, Any]]
    """Draft resources by their Bundle ``fullUrl`` (references like ``urn:uuid:...`` point at them)."""
    reviewed_orders: tuple[Mapping[str, Any], ...]
    """The MedicationRequests under review: the selected ones (order-select) or all (order-sign)."""
    prefetch: Mapping[str, Any] = field(repr=False)
    deviations: tuple[str, ...] = ()
    """The request-shape deviations tolerated (``leniency.DEVIATIONS``)."""


def decode_json(raw: bytes) -> Any:
    """Parse a request body; anything that is not plain JSON text is a ``MalformedJson``."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"the body is not UTF-8 text (byte {exc.start} is invalid)") from None
    if not text.strip():
        raise MalformedJson("the body is empty; a CDS Hooks request is a JSON object")
    if _LONG_DIGIT_RUN not in raw.translate(_DIGITS_AS_NINES):
        # orjson reads the same JSON about five times faster, and refuses what the standard parser below
        # refuses (NaN, lone surrogates, nesting past ~1,000 levels); only then does that parser run,
        # to say precisely what is wrong. It reads integers beyond 64 bits as floats, so a body with a
        # run of 19 or more digits anywhere goes to the standard parser, which keeps them exact.
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise MalformedJson("the body is not acceptable JSON: it is nested too deeply") from None
    except ValueError:  # Python's guard against integers of more than 4,300 digits
        line, column = _position(text, _HUGE_INTEGER.search(text))
        raise MalformedJson(
            f"the body holds a number too long to be a value (line {line}, column {column})"
        ) from None
    if _SURROGATE_ESCAPE.search(text):  # rare: only then walk the body for the culprit
        where = _lone_surrogate(body)
        if where is not None:
            raise MalformedJson(
                f"{where} holds a lone UTF-16 surrogate (U+D800 to U+DFFF), which is not a character",
                expression=where,
            )
    return body


_HUGE_INTEGER = re.compile(r"\d{4000,}")
# A run of 19 digits, found as 19 nines once every digit is a nine: a C-speed scan, where a regular
# expression costs more than parsing the whole body.
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_LONG_DIGIT_RUN = b"9" * 19
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _position(text: str, match: re.Match[str] | None) -> tuple[int, int]:
    offset = match.start() if match else 0
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _lone_surrogate(body: Any) -> str | None:
    """The path of the first key or string that is not encodable Unicode, walked without recursion."""
    pending: list[tuple[str, Any]] = [("(body)", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return f"{path}.(a key)"
                pending.append((key if path == "(body)" else f"{path}.{key}", item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MAX_DRAFT_DEPTH = 64
"""Objects and arrays inside one draft order; its suggestions copy and echo it, so the bound is here."""


def _draft_defect(value: Any, limit: int) -> Literal["too deep", "not finite"] | None:
    """What makes a draft order impossible to copy into a suggestion: nesting past ``limit``, or a
    number past the largest float (``1e400`` reads as infinity, which JSON cannot carry back)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return "too deep"
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                pending.append((child, depth + 1))
            elif isinstance(child, float) and not math.isfinite(child):
                return "not finite"
    return None


def _non_finite_path(value: Any, path: str) -> str:
    pending: list[tuple[str, Any]] = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            pending.extend((f"{where}.{key}", child) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return path


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def parse_hook_request(service: ServiceDefinition, body: Any) -> HookRequest:
    if not isinstance(body, dict):
        raise SchemaViolation(f"the body must be a JSON object, not {_json_type(body)}")
    hook = body.get("hook")
    if isinstance(hook, str) and hook != service.hook:
        raise HookMismatch(
            f"service {service.id!r} answers the {service.hook!r} hook; the request is for {hook!r}",
            expression="hook",
        )
    error = contract.first_error(_REQUEST_SCHEMA[service.hook], body)
    if error is not None:
        if not error.absolute_path:
            raise SchemaViolation(f"the request is not valid: {_describe(error)}")
        path = contract.json_path(error)
        raise SchemaViolation(f"{path}: {_describe(error)}", expression=path)

    normalised = normalise(service.hook, body)
    body = normalised.body
    context = body["context"]
    if "nested-bundles" in normalised.deviations:
        # entries read out of a Bundle inside the draft orders were not under the request schema's eye
        error = contract.first_error("DraftOrdersBundle", context["draftOrders"])
        if error is not None:
            path = contract.json_path(error).replace("(body)", "")
            where = "context.draftOrders" + (f".{path}" if path and not path.startswith("[") else path)
            raise SchemaViolation(f"{where} (inside a nested Bundle): {_describe(error)}", expression=where)
    patient_id = _bare_patient_id(context["patientId"])
    draft_entries = context["draftOrders"].get("entry", [])
    for index, entry in enumerate(draft_entries):
        where = f"context.draftOrders.entry[{index}].resource"
        defect = _draft_defect(entry["resource"], MAX_DRAFT_DEPTH)
        if defect == "too deep":
            raise SchemaViolation(
                f"{where} is nested more than {MAX_DRAFT_DEPTH} levels deep (no FHIR resource needs that)",
                expression=where,
            )
        if defect == "not finite":
            where = _non_finite_path(entry["resource"], where)
            raise SchemaViolation(
                f"{where} is a number too large to be a decimal (it reads as infinity)", expression=where
            )
    draft_resources = tuple(entry["resource"] for entry in draft_entries)
    if service.hook == "order-select":
        selected = _select(draft_entries, context["selections"])
    else:
        selected = draft_resources
    # A reviewed order naming another patient is answered with a card (rule patient-mismatch), not
    # refused: a refusal would show the prescriber nothing.
    reviewed = tuple(r for r in selected if r["resourceType"] == "MedicationRequest")

    authorization = body.get("fhirAuthorization")
    return HookRequest(
        hook=service.hook,
        hook_instance=body["hookInstance"],
        patient_id=patient_id,
        user_id=context["userId"],
        encounter_id=context.get("encounterId"),
        fhir_server=body.get("fhirServer"),
        fhir_authorization=FhirAuthorization(
            token_type="Bearer", access_token=authorization["access_token"], scope=authorization.get("scope")
        )
        if authorization
        else None,
        draft_resources=draft_resources,
        draft_full_urls={
            entry["fullUrl"]: entry["resource"] for entry in draft_entries if entry.get("fullUrl")
        },
        reviewed_orders=reviewed,
        prefetch=body.get("prefetch") or {},
        deviations=normalised.deviations,
    )


def _bare_patient_id(value: str) -> str:
    """``Patient/123`` and ``https://ehr/fhir/Patient/123`` both mean ``123``."""
    parsed = parse_reference(value)
    return parsed[1] if parsed is not None and parsed[0] == "Patient" else value


def _select(entries: list[dict[str, Any]], selections: list[str]) -> tuple[Mapping[str, Any], ...]:
    """The draft resources named by ``selections`` (``Type/id``; a bare id or a fullUrl also match)."""
    chosen: list[Mapping[str, Any]] = []
    for index, selection in enumerate(selections):
        matches = [entry["resource"] for entry in entries if _names(entry, selection)]
        if not matches:
            raise BadRequest(
                f"context.selections[{index}] {selection!r} names no resource in context.draftOrders",
                expression=f"context.selections[{index}]",
            )
        chosen.extend(m for m in matches if not any(m is c for c in chosen))
    return tuple(chosen)


def _names(entry: Mapping[str, Any], selection: str) -> bool:
    resource = entry["resource"]
    resource_id = resource.get("id")
    if resource_id is not None and selection in (f"{resource['resourceType']}/{resource_id}", resource_id):
        return True
    full_url = entry.get("fullUrl")
    return bool(full_url) and selection == full_url


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _describe(error: ValidationError) -> str:
    """A short message naming what is wrong, without echoing (possibly large or private) values."""
    kind, expected = error.validator, cast(Any, error.validator_value)
    if kind == "required":
        return error.message
    if kind == "type":
        return f"must be of JSON type {expected}"
    if kind == "const":
        return f"must be {json.dumps(expected)}"
    if kind == "enum":
        return "must be one of " + ", ".join(json.dumps(v) for v in expected)
    if kind == "minLength":
        return "must not be empty"
    if kind == "pattern":
        described = error.schema.get("description") if isinstance(error.schema, dict) else None
        return "has an invalid value" + (f" (expected: {described})" if described else "")
    if kind == "minimum":
        return f"must be at least {expected}"
    if kind == "dependentRequired":
        return error.message
    if kind == "oneOf":
        described = error.schema.get("description") if isinstance(error.schema, dict) else None
        return "does not have any of the accepted shapes" + (f" (expected: {described})" if described else "")
    return error.message[:200]
