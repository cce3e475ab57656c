"""The protocol checks: what an EHR relies on besides the cards, in the order they run (the
authentication checks learn whether authentication is off before the rest run)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from cds_service import contract
from cds_service.check.scenarios import probe_request
from cds_service.check.target import (
    Check,
    Outcome,
    Target,
    failed,
    is_json,
    joined,
    json_body,
    passed,
    refused_token,
    schema_problem,
    short,
    shown_type,
    skipped,
)
from cds_service.check.tokens import with_wrong_signature


def check_health(target: Target) -> Outcome:
    response = target.call("GET", "/health", token=None)
    body = json_body(response)
    if response.status_code != 200 or not isinstance(body, dict):
        return failed(
            f"GET /health answered HTTP {response.status_code} {shown_type(response)}, not 200 JSON"
        )
    if body.get("status") != "ok":
        return failed(f"GET /health says status {body.get('status')!r}, not 'ok'")
    details = [
        f"{name} {body[name]}" for name in ("version", "rules", "database", "authentication") if name in body
    ]
    return passed("up: " + ", ".join(details) if details else "up")


def check_health_ready(target: Target) -> Outcome:
    response = target.call("GET", "/health/ready", token=None)
    if response.status_code == 404:
        return skipped("GET /health/ready: not provided by this version")
    body = json_body(response)
    if response.status_code not in (200, 503) or not is_json(response) or not isinstance(body, dict):
        return failed(
            f"GET /health/ready answered HTTP {response.status_code} {shown_type(response)}, "
            "not 200 or 503 JSON"
        )
    said = short(", ".join(f"{k} {v}" for k, v in body.items() if isinstance(v, str | int | bool)), 150)
    if response.status_code == 503:
        return failed(f"not ready (HTTP 503): {said or 'no detail'}")
    return passed(f"ready (HTTP 200): {said}" if said else "ready (HTTP 200)")


def check_discovery(target: Target) -> Outcome:
    response = target.call("GET", "/cds-services")
    refused = refused_token(response)
    if refused:
        return refused
    body = json_body(response)
    if response.status_code != 200 or not is_json(response) or not isinstance(body, dict):
        return failed(
            f"GET /cds-services answered HTTP {response.status_code} {shown_type(response)}, not 200 JSON"
        )
    problems = [
        schema_problem(e, "services", lambda i: _service_name(body, i))
        for e in contract.errors("DiscoveryResponse", body)
    ]
    offered = (
        {s.get("id"): s.get("hook") for s in body.get("services", []) if isinstance(s, dict)}
        if isinstance(body.get("services"), list)
        else {}
    )
    for service_id, hook in target.services.items():
        if service_id not in offered:
            problems.append(f"service {service_id} ({hook}) is missing")
        elif offered[service_id] != hook:
            problems.append(f"service {service_id} has hook {offered[service_id]!r}, not {hook!r}")
    if problems:
        return failed(joined(problems))
    return passed(
        f"{len(offered)} services: " + ", ".join(f"{sid} ({hook})" for sid, hook in offered.items())
    )


def _service_name(body: Any, index: int) -> str:
    try:
        return f"service {index + 1} ({body['services'][index]['id']})"
    except (KeyError, IndexError, TypeError):
        return f"service {index + 1}"


def check_cors_preflight(target: Target) -> Outcome:
    path = "/cds-services/" + target.service_for("order-select")
    response = target.call(
        "OPTIONS",
        path,
        token=None,
        headers={
            "Origin": target.origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    if response.status_code >= 300:
        return failed(f"OPTIONS {path} from {target.origin} answered HTTP {response.status_code}")
    allowed_origin = response.headers.get("Access-Control-Allow-Origin")
    if allowed_origin not in (target.origin, "*"):
        return failed(
            f"origin {target.origin} is not allowed (Access-Control-Allow-Origin: "
            f"{allowed_origin or 'absent'}): see NALTREXONE_CDS_CORS_ORIGINS, or give the EHR's origin "
            "with --origin"
        )
    headers = {h.strip().lower() for h in response.headers.get("Access-Control-Allow-Headers", "").split(",")}
    if "authorization" not in headers:
        return failed("the Authorization header is not allowed (Access-Control-Allow-Headers lacks it)")
    methods = response.headers.get("Access-Control-Allow-Methods")
    if methods is not None and "POST" not in {m.strip().upper() for m in methods.split(",")}:
        return failed(f"POST is not allowed (Access-Control-Allow-Methods: {methods})")
    return passed(f"origin {target.origin} may POST with Authorization (allowed: {allowed_origin})")


def check_no_token(target: Target) -> Outcome:
    service = target.service_for("order-select")
    response = target.call("POST", f"/cds-services/{service}", token=None, json=probe_request(target))
    if response.status_code == 200:
        target.authentication_off = True
        if target.allow_unauthenticated:
            return passed(
                "authentication is off, as --allow-unauthenticated accepts (never for real patients)"
            )
        return failed("authentication is off: the service answered a call without a token (HTTP 200)")
    if response.status_code != 401:
        return failed(f"a call without a token answered HTTP {response.status_code}, not 401")
    challenge = response.headers.get("WWW-Authenticate", "")
    if not challenge.lower().startswith("bearer"):
        return failed(f"401 without a WWW-Authenticate: Bearer challenge (got {challenge or 'none'!r})")
    return passed(f"401, WWW-Authenticate: {challenge}")


def check_bad_signature(target: Target) -> Outcome:
    if target.authentication_off:
        return skipped("authentication is off")
    path = "/cds-services/" + target.service_for("order-select")
    genuine = target.tokens.token(target.url(path))
    if genuine is None:
        return skipped("no token source given")
    response = target.call("POST", path, token=with_wrong_signature(genuine), json=probe_request(target))
    if response.status_code == 401:
        return passed("a token with a wrong signature is refused (401)")
    return failed(f"a token with a wrong signature answered HTTP {response.status_code}, not 401")


def check_replay(target: Target) -> Outcome:
    if target.authentication_off:
        return skipped("authentication is off")
    token = target.tokens.token(target.url("/cds-services"))
    if token is None:
        return skipped("no token source given")
    first = target.call("GET", "/cds-services", token=token)
    refused = refused_token(first)
    if refused or first.status_code != 200:
        return refused or failed(
            f"GET /cds-services answered HTTP {first.status_code} on the token's first use"
        )
    second = target.call("GET", "/cds-services", token=token)
    if second.status_code == 401:
        return passed("a token used a second time (same jti) is refused (401)")
    return failed(f"a replayed token (same jti) answered HTTP {second.status_code}, not 401")


def _error_shape(response: httpx.Response, wanted: str, statuses: Sequence[int]) -> Outcome:
    refused = refused_token(response)
    if refused:
        return refused
    status = response.status_code
    if status >= 500 or status < 400:
        return failed(f"{wanted}: HTTP {status}, not a 4xx")
    if not is_json(response):
        return failed(f"{wanted}: HTTP {status} with {shown_type(response)}, not a JSON OperationOutcome")
    body = json_body(response)
    problem = contract.first_error("OperationOutcome", body)
    if problem is not None:
        return failed(
            f"{wanted}: HTTP {status}, the body is not an OperationOutcome ({short(problem.message)})"
        )
    if status not in statuses:
        return failed(f"{wanted}: HTTP {status}, expected {' or '.join(map(str, statuses))}")
    return passed(f"HTTP {status} OperationOutcome: {short(body['issue'][0]['diagnostics'], 90)}")


def check_malformed_json(target: Target) -> Outcome:
    path = "/cds-services/" + target.service_for("order-select")
    response = target.call(
        "POST", path, content=b'{"hook": "order-select", ', headers={"Content-Type": "application/json"}
    )
    return _error_shape(response, "malformed JSON", (400,))


def check_wrong_content_type(target: Target) -> Outcome:
    path = "/cds-services/" + target.service_for("order-select")
    body = json.dumps(probe_request(target)).encode()
    response = target.call("POST", path, content=body, headers={"Content-Type": "text/plain"})
    return _error_shape(response, "Content-Type text/plain", (415, 400))


def check_unknown_service(target: Target) -> Outcome:
    path = f"/cds-services/no-such-service-{uuid.uuid4().hex[:8]}"
    response = target.call("POST", path, json=probe_request(target))
    return _error_shape(response, "an unknown service", (404,))


def check_feedback_endpoint(target: Target) -> Outcome:
    # An empty feedback list is refused by validation: the endpoint is there, and nothing is recorded.
    path = f"/cds-services/{target.service_for('order-select')}/feedback"
    response = target.call("POST", path, json={"feedback": []})
    outcome = _error_shape(response, f"POST {path} (empty feedback)", (400,))
    if outcome.verdict == "pass":
        return passed(f"{path} validates feedback ({outcome.reason})")
    if response.status_code in (404, 405):
        return failed(f"no feedback endpoint: POST {path} answered HTTP {response.status_code}")
    return outcome


PROTOCOL_CHECKS: tuple[Check, ...] = (
    Check("health", "protocol", check_health),
    Check("health-ready", "protocol", check_health_ready),
    Check("discovery", "protocol", check_discovery),
    Check("cors-preflight", "protocol", check_cors_preflight),
    Check("auth-no-token", "protocol", check_no_token),
    Check("auth-bad-signature", "protocol", check_bad_signature),
    Check("auth-replayed-token", "protocol", check_replay),
    Check("error-malformed-json", "protocol", check_malformed_json),
    Check("error-wrong-content-type", "protocol", check_wrong_content_type),
    Check("error-unknown-service", "protocol", check_unknown_service),
    Check("feedback-endpoint", "protocol", check_feedback_endpoint),
)
"""In order: the authentication checks learn whether authentication is off before the rest run."""
