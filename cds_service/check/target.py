"""What every check shares: the instance under check (``Target``), a check's outcome, and how answers
are read."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
from jsonschema.exceptions import ValidationError

from cds_service import contract

JSON_TYPES = ("application/json", "application/fhir+json")
DEFAULT_ORIGIN = "https://sandbox.cds-hooks.org"
"""The browser origin of the CORS preflight unless ``--origin`` names the EHR's."""

Group = Literal["protocol", "scenarios"]
Verdict = Literal["pass", "fail", "skip"]


class UsageProblem(ValueError):
    """The command line cannot work (exit status 2): a bad key, a missing issuer, a bad URL."""


class TokenSource(Protocol):
    def token(self, url: str) -> str | None:
        """A fresh bearer JWT for one call to ``url`` (its ``aud``), or ``None`` to send none."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str


def passed(reason: str) -> Outcome:
    return Outcome("pass", reason)


def failed(reason: str) -> Outcome:
    return Outcome("fail", reason)


def skipped(reason: str) -> Outcome:
    return Outcome("skip", reason)


@dataclass
class Target:
    """The instance under check, and what the checks learn about it on the way."""

    base_url: str
    http: httpx.Client
    tokens: TokenSource
    origin: str = DEFAULT_ORIGIN
    allow_unauthenticated: bool = False
    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    services: dict[str, str] = field(default_factory=dict)
    """Service id -> hook, as the bundled ``rules/services.yaml`` declares them (the contract)."""
    authentication_off: bool = False

    def url(self, path: str) -> str:
        return self.base_url + path

    def service_for(self, hook: str) -> str:
        return next((sid for sid, h in self.services.items() if h == hook), f"naltrexone-{hook}")

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | Literal["fresh"] | None = "fresh",
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request; ``token="fresh"`` signs a new token for the exact URL, ``None`` sends none."""
        url = self.url(path)
        bearer = self.tokens.token(url) if token == "fresh" else token
        sent = dict(headers or {})
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        return self.http.request(method, url, headers=sent, **kwargs)


def base_url_of(url: str) -> str:
    """The service's base URL: ``url`` without a trailing ``/`` or ``/cds-services``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageProblem(f"{url!r} is not an http(s) URL of the service, e.g. https://cds.hospital.org")
    if parts.query or parts.fragment:
        raise UsageProblem(f"{url!r}: give the service's base URL, without a query or fragment")
    base = url.rstrip("/")
    return base.removesuffix("/cds-services").rstrip("/")


CheckFunction = Callable[[Target], Outcome]


@dataclass(frozen=True)
class Check:
    name: str
    group: Group
    run: CheckFunction


def is_json(response: httpx.Response) -> bool:
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return kind in JSON_TYPES or kind.endswith("+json")


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def shown_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "no Content-Type").split(";")[0] or "no Content-Type"


def refused_token(response: httpx.Response) -> Outcome | None:
    """A failure saying the check never got past authentication, when that is what happened."""
    if response.status_code not in (401, 403):
        return None
    if "Authorization" not in response.request.headers:
        return failed(
            f"HTTP {response.status_code}: authentication is on and no token was sent "
            "(give --private-key and --issuer, --token-command or --demo)"
        )
    return failed(
        f"HTTP {response.status_code} with a fresh token: the instance does not trust this issuer/key, "
        "or it expects another aud (its NALTREXONE_CDS_PUBLIC_BASE_URL must be the URL checked)"
    )


def diagnostics(body: Any) -> str:
    try:
        return short(str(body["issue"][0]["diagnostics"]), 100)
    except (KeyError, IndexError, TypeError):
        return ""


def short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def joined(problems: Sequence[str], shown: int = 3) -> str:
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f" (and {more} more)" if more > 0 else "")


def schema_problem(error: ValidationError, items: str, item_name: Callable[[int], str]) -> str:
    """One schema error as an integrator reads it: ``card 2 (uds-positive) summary is 152 characters...``
    (``items``: the array whose elements ``item_name`` names)."""
    path = list(error.absolute_path)
    where = "the response"
    if len(path) >= 2 and path[0] == items and isinstance(path[1], int):
        where = " ".join([item_name(path[1]), *([path_text(path[2:])] if path[2:] else [])])
    elif path:
        where = contract.json_path(error)
    value = error.instance
    if error.validator == "maxLength" and isinstance(value, str):
        return f"{where} is {len(value)} characters, more than {error.validator_value}"
    if error.validator == "minLength":
        return f"{where} is empty"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{where} is {short(repr(value), 40)}, not one of {allowed}"
    if error.validator == "pattern":
        return f"{where} is {short(repr(value), 50)}, not of the required form"
    return f"{where}: {short(error.message)}"


def path_text(parts: Sequence[Any]) -> str:
    """``source.label``, ``suggestions[0].actions[1]``: a JSON path as the card contract names it."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
