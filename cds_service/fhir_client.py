"""Fetching what prefetch lacks from the EHR's FHIR server (CDS Hooks: prefetch *or* fhirServer).

One ``FetchSession`` per request carries the request's ``fhirServer``, its bearer token and one overall
time budget. Independent queries run concurrently on a per-process thread pool over a pooled httpx
client; every query is bounded by what is left of the budget, searches follow ``Bundle.link[next]`` up
to a page limit, and every failure becomes a ``FetchResult`` with a reason (timeout, HTTP status,
invalid response) — never an exception, so the rest of the advice is still given.

The access token is sent only to the ``fhirServer`` of the same request (a ``next`` link to any other
origin is not followed), is never logged, and is dropped with the session. URLs are not logged either:
they carry the patient id.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from cds_service import metrics
from cds_service.gather import FetchResult
from cds_service.knowledge.services import PrefetchTemplate
from cds_service.logs import log_fields
from cds_service.urls import within_any
from cds_service.validate import HookRequest

log = logging.getLogger("naltrexone_cds.fhir")

_ACCEPT = "application/fhir+json, application/json;q=0.9"


class _Failed(Exception):
    """A query did not produce usable data; the message says why (no URL, no token), ``outcome`` names
    the kind of failure for the metrics."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class FetchPolicy:
    budget_seconds: float = 0.3
    max_pages: int = 10
    max_medication_reads: int = 50
    max_page_bytes: int = 8 * 1024 * 1024
    """Largest response read (decoded); a larger one is unreadable. Parsing JSON holds the GIL (about
    25 ms per MiB here), so this also bounds how long one page can hold up the answer."""
    allowed_servers: tuple[str, ...] = ()
    """Base URLs a request's fhirServer must lie within; empty = any (see also the per-issuer
    ``fhir_servers`` of the trusted-issuers file)."""

    def allows(self, server: str) -> bool:
        return not self.allowed_servers or within_any(server, self.allowed_servers)


class HttpFetcher:
    """The service's ``Fetcher``: opens a ``FetchSession`` per request."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._owner_pid = -1
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    def allows(self, request: HookRequest) -> bool:
        return request.fhir_server is not None and self.policy.allows(request.fhir_server)

    def open(self, request: HookRequest) -> FetchSession:
        client, pool = self._resources()
        return FetchSession(request, client, pool, self.policy)

    def _resources(self) -> tuple[httpx.Client, ThreadPoolExecutor]:
        # Created lazily in each worker process: a client or pool made before gunicorn forks is not
        # safe to use in the children.
        with self._lock:
            if self._owner_pid != os.getpid() or self._client is None or self._pool is None:
                self._client = httpx.Client(
                    follow_redirects=False,
                    limits=httpx.Limits(
                        max_connections=32, max_keepalive_connections=16, keepalive_expiry=30
                    ),
                    # only codings _body can undo within its limit (not br, zstd or stacked ones)
                    headers={"Accept": _ACCEPT, "Accept-Encoding": "gzip, identity"},
                )
                self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir-fetch")
                self._owner_pid = os.getpid()
                atexit.register(self._client.close)
            return self._client, self._pool


@functools.cache
def shared_fetcher(policy: FetchPolicy) -> HttpFetcher:
    """One fetcher (connection pool, threads) per process and policy, however many apps are built."""
    return HttpFetcher(policy)


class FetchSession:
    def __init__(
        self, request: HookRequest, client: httpx.Client, pool: ThreadPoolExecutor, policy: FetchPolicy
    ) -> None:
        assert request.fhir_server is not None
        self._base = request.fhir_server.rstrip("/") + "/"
        self._origin = _origin(self._base)
        self._client = client
        self._pool = pool
        self._policy = policy
        self._deadline = time.monotonic() + policy.budget_seconds
        self._headers: dict[str, str] = {}
        if request.fhir_authorization is not None:
            self._headers["Authorization"] = f"Bearer {request.fhir_authorization.access_token}"
        self._context = {
            "patientId": request.patient_id,
            "userId": request.user_id or "",
            "encounterId": request.encounter_id or "",
        }

    def search(self, templates: Sequence[PrefetchTemplate]) -> dict[str, FetchResult]:
        """Runs the templates' queries concurrently; a result (data or failure) for every key."""
        jobs = {template.key: template.render(self._context) for template in templates}
        return self._run({key: (self._query, query) for key, query in jobs.items()})

    def read_medications(self, ids: Iterable[str]) -> dict[str, Mapping[str, Any]]:
        """Reads Medication resources by id (those that could not be resolved from the request)."""
        wanted = sorted(set(ids))[: self._policy.max_medication_reads]
        results = self._run({mid: (self._read, f"Medication/{mid}") for mid in wanted})
        return {mid: r.resource for mid, r in results.items() if r.resource is not None}

    def _run(self, jobs: Mapping[str, tuple[Any, str]]) -> dict[str, FetchResult]:
        if not jobs:
            return {}
        started = time.monotonic()
        futures: dict[str, Future[Mapping[str, Any]]] = {
            key: self._pool.submit(function, path) for key, (function, path) in jobs.items()
        }
        wait(futures.values(), timeout=max(0.0, self._deadline - time.monotonic()))
        results: dict[str, FetchResult] = {}
        for key, future in futures.items():
            if not future.done():
                future.cancel()
                results[key] = FetchResult(failure=f"no answer within the {self._budget_ms()} ms budget")
                metrics.count_fhir_query("timeout")
                continue
            error = future.exception()
            if error is None:
                results[key] = FetchResult(resource=future.result())
                metrics.count_fhir_query("ok")
            else:
                results[key] = FetchResult(
                    failure=str(error) if isinstance(error, _Failed) else "request failed"
                )
                metrics.count_fhir_query(error.outcome if isinstance(error, _Failed) else "error")
        failures = {key: result.failure for key, result in results.items() if result.failure}
        log.info(
            "fhir fetch",
            extra=log_fields(
                queries=len(jobs),
                failed=len(failures),
                ms=round((time.monotonic() - started) * 1000, 1),
                failures=failures or None,
            ),
        )
        return results

    def _budget_ms(self) -> int:
        return round(self._policy.budget_seconds * 1000)

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _Failed(f"no answer within the {self._budget_ms()} ms budget", "timeout")
        return remaining

    def _get(self, url: str) -> Mapping[str, Any]:
        if _origin(url) != self._origin:
            raise _Failed(
                "a page link points outside fhirServer; not followed with the access token", "foreign_link"
            )
        try:
            with self._client.stream(
                "GET", url, headers=self._headers, timeout=self._remaining()
            ) as response:
                if response.status_code in (401, 403):
                    raise _Failed(f"access denied (HTTP {response.status_code})", "denied")
                if response.status_code != 200:
                    raise _Failed(f"HTTP {response.status_code}", "http_error")
                body = self._body(response)
        except httpx.TimeoutException:
            raise _Failed(f"no answer within the {self._budget_ms()} ms budget", "timeout") from None
        except httpx.HTTPError:
            raise _Failed("could not connect", "unreachable") from None
        self._remaining()  # a page complete only after the deadline is not parsed: parsing holds the GIL
        try:
            resource = json.loads(body)
        except ValueError:
            raise _Failed("the response is not JSON", "unreadable") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise _Failed("the response is not a FHIR resource", "unreadable")
        if resource["resourceType"] == "OperationOutcome":
            raise _Failed("the server answered with an OperationOutcome", "operation_outcome")
        result: Mapping[str, Any] = resource
        return result

    def _body(self, response: httpx.Response) -> bytes:
        """The body, read only while the budget lasts and up to ``max_page_bytes`` once decompressed: a
        page that trickles in or never ends must not keep this pool thread (and its connection) after the
        answer is sent, and a small compressed answer must not expand into gigabytes."""
        limit = self._policy.max_page_bytes
        too_large = f"a page larger than {limit // 2**20} MiB"
        coding = response.headers.get("Content-Encoding", "").strip().lower()
        if coding in ("", "identity"):
            decoder = None
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _Failed(too_large, "unreadable")
        elif coding in ("gzip", "x-gzip", "deflate"):
            decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # a gzip or zlib header, either
        else:
            raise _Failed("a page in a content coding this service does not read", "unreadable")
        chunks: list[bytes] = []
        size = 0
        try:
            for raw in response.iter_raw():
                pending = raw
                while pending:
                    if decoder is None:
                        data, pending = pending, b""
                    else:  # never more output than the limit allows, however small the input
                        data = decoder.decompress(pending, limit - size + 1)
                        pending = decoder.unconsumed_tail
                    size += len(data)
                    if size > limit:
                        raise _Failed(too_large, "unreadable")
                    chunks.append(data)
                    self._remaining()
            if decoder is not None:
                rest = decoder.flush()
                if size + len(rest) > limit:
                    raise _Failed(too_large, "unreadable")
                chunks.append(rest)
        except zlib.error:
            raise _Failed("a compressed page that does not decompress", "unreadable") from None
        return b"".join(chunks)

    def _read(self, path: str) -> Mapping[str, Any]:
        return self._get(urljoin(self._base, path))

    def _query(self, path: str) -> Mapping[str, Any]:
        """A search, with its pages merged into one searchset Bundle."""
        page = self._get(urljoin(self._base, path))
        if page.get("resourceType") != "Bundle":
            return page  # an instance read (e.g. Patient/{{context.patientId}})
        entries = list(_entries(page))
        for _ in range(self._policy.max_pages - 1):
            following = _next_link(page)
            if following is None:
                break
            page = self._get(following)
            entries.extend(_entries(page))
        else:
            if _next_link(page) is not None:
                raise _Failed(f"more than {self._policy.max_pages} pages", "too_many_pages")
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def _entries(bundle: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    if bundle.get("resourceType") != "Bundle":
        raise _Failed("a page is not a Bundle", "unreadable")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise _Failed("a page's entries are not a list", "unreadable")
    return entries


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link", []) if isinstance(bundle.get("link"), list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
