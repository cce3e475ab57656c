"""Public keys of trusted issuers: pinned JWKS files, and JWKS URLs fetched and cached with rotation."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

from cds_service.auth.issuers import IssuerConfigError, TrustedIssuer

logger = logging.getLogger("naltrexone_cds.auth")

_EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})

# --- keys ----------------------------------------------------------------------------------------

KeyRing = Mapping[str, Mapping[str, jwt.PyJWK]]
"""kid -> algorithm -> key bound to that algorithm."""


def _algorithms_for_jwk(jwk: Mapping[str, Any]) -> frozenset[str]:
    if "alg" in jwk:
        return frozenset({str(jwk["alg"])})
    if jwk.get("kty") == "EC" and jwk.get("crv") in _EC_ALGORITHM_BY_CURVE:
        return frozenset({_EC_ALGORITHM_BY_CURVE[jwk["crv"]]})
    if jwk.get("kty") == "RSA":
        return _RSA_ALGORITHMS
    return frozenset()


def _is_public_signing_jwk(jwk: object) -> bool:
    return (
        isinstance(jwk, dict)
        and isinstance(jwk.get("kid"), str)
        and jwk.get("use", "sig") == "sig"
        and "d" not in jwk  # a private key has no business in a published JWKS: ignore it
    )


def key_ring_from_jwks(jwks: object, algorithms: Iterable[str]) -> dict[str, dict[str, jwt.PyJWK]]:
    """The usable signing keys of a JWKS document, each bound to every accepted algorithm it fits."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    accepted = frozenset(algorithms)
    ring: dict[str, dict[str, jwt.PyJWK]] = {}
    for jwk in filter(_is_public_signing_jwk, jwks["keys"]):
        for algorithm in _algorithms_for_jwk(jwk) & accepted:
            try:
                ring.setdefault(jwk["kid"], {})[algorithm] = jwt.PyJWK(jwk, algorithm)
            except jwt.PyJWTError:
                continue
    return ring


class KeysUnavailable(Exception):
    pass


class KeySource(Protocol):
    def keys_for(self, kid: str) -> Mapping[str, jwt.PyJWK] | None: ...


class PinnedKeys:
    """Keys read once from a JWKS file at start-up (an unreadable file stops the start)."""

    def __init__(self, path: Path, algorithms: Iterable[str]) -> None:
        try:
            self._ring = key_ring_from_jwks(json.loads(path.read_text(encoding="utf-8")), algorithms)
        except (OSError, ValueError) as error:
            raise IssuerConfigError(f"cannot read the JWKS file {path}: {error}") from error
        if not self._ring:
            raise IssuerConfigError(f"the JWKS file {path} holds no usable signing key with a kid")

    def keys_for(self, kid: str) -> Mapping[str, jwt.PyJWK] | None:
        return self._ring.get(kid)


@dataclass(frozen=True, kw_only=True)
class JwksCachePolicy:
    """How JWKS URLs are fetched: ``ttl`` bounds how long a revoked key keeps working;
    ``min_refetch_interval`` bounds how often unknown kids can make us fetch (per URL and process)."""

    ttl: timedelta = timedelta(minutes=10)
    min_refetch_interval: timedelta = timedelta(seconds=30)
    timeout: timedelta = timedelta(seconds=5)
    max_bytes: int = 256 * 1024


class RemoteKeys:
    """Keys fetched from a JWKS URL, cached for ``ttl``, re-fetched (rate-limited) on an unknown kid.

    A failed fetch keeps the keys already held. The lock is held during a fetch, which is bounded by
    ``timeout`` and happens at most once per ``min_refetch_interval``."""

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        *,
        policy: JwksCachePolicy,
        client: httpx.Client,
        monotonic: Callable[[], float],
    ) -> None:
        self._url, self._algorithms, self._policy = url, tuple(algorithms), policy
        self._client, self._monotonic = client, monotonic
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf

    def keys_for(self, kid: str) -> Mapping[str, jwt.PyJWK] | None:
        with self._lock:
            now = self._monotonic()
            if self._should_fetch(kid, now):
                self._attempted_at = now
                self._fetch(now)
            if self._ring is None:
                raise KeysUnavailable(self._url)
            return self._ring.get(kid)

    def _should_fetch(self, kid: str, now: float) -> bool:
        stale = self._ring is None or now - self._fetched_at >= self._policy.ttl.total_seconds()
        unknown_kid = self._ring is not None and kid not in self._ring
        allowed = now - self._attempted_at >= self._policy.min_refetch_interval.total_seconds()
        return (stale or unknown_kid) and allowed

    def _fetch(self, now: float) -> None:
        try:
            self._ring = key_ring_from_jwks(self._download(), self._algorithms)
            self._fetched_at = now
        except (httpx.HTTPError, ValueError, RecursionError) as error:
            logger.warning(
                "JWKS fetch failed; keeping the keys already held",
                extra={"fields": {"jwks_url": self._url, "error": f"{type(error).__name__}: {error}"}},
            )

    def _download(self) -> object:
        timeout = self._policy.timeout.total_seconds()
        with self._client.stream(
            "GET", self._url, headers={"Accept": "application/json"}, timeout=timeout
        ) as reply:
            if reply.status_code != 200:
                raise ValueError(f"HTTP {reply.status_code}")
            body = bytearray()
            for chunk in reply.iter_bytes():
                body += chunk
                if len(body) > self._policy.max_bytes:
                    raise ValueError(f"JWKS larger than {self._policy.max_bytes} bytes")
        return json.loads(body)


@dataclass(frozen=True)
class IssuerKeys:
    issuer: TrustedIssuer
    own_source: KeySource | None  # jwks_file or jwks_url
    jku_sources: Mapping[str, KeySource]
