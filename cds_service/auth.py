"""Bearer-JWT authentication of CDS clients (CDS Hooks 2.0.1 §Security and its best-practices page).

Every discovery, service and feedback call carries ``Authorization: Bearer <JWT>``, signed by the
CDS client with an asymmetric key it publishes as a JWKS. ``Verifier.verify(token, audience_url)``
returns the ``VerifiedClaims`` or raises ``AuthenticationFailed(reason)``; the HTTP layer answers
401 with no detail and ``WWW-Authenticate: Bearer ...`` (``WWW_AUTHENTICATE``). The reason is for
logs only; it never contains the token (logging ``iss``, ``kid``, ``tenant`` and ``jti`` is fine).

Checks, in order (the first that fails decides the reason):

 1. size and shape: at most 16 KiB, three base64url segments, JSON objects (cheap, before anything);
 2. header ``alg``: asymmetric and accepted. ``none`` and HMAC (``HS*``) are refused whatever the
    configuration says, because the spec forbids them and HMAC "verified" with a public key is the
    classic forgery;
 3. header ``typ`` is ``JWT`` when present (the spec requires it, but a missing one proves nothing);
 4. header ``kid`` is present: it names the key, and the spec requires it;
 5. ``iss`` is a trusted issuer, and ``alg`` is one of that issuer's algorithms. ``iss`` is read
    before the signature is checked only to choose whose keys to try; the signature then binds it;
 6. header ``jku``, when present, is on that issuer's ``jku_allowlist`` (never any other issuer's);
 7. the key: looked up by ``kid`` in that issuer's keys only (a pinned JWKS file, else the JWKS at
    the allowlisted ``jku``, else the issuer's ``jwks_url``). A URL is cached; an unknown ``kid``
    triggers one re-fetch (key rotation), at most once per ``min_refetch_interval`` so that tokens
    with made-up kids cannot make us hammer the URL;
 8. the signature (PyJWT, with the key bound to the header's ``alg`` and RSA keys of 2048 bits or
    more). Everything after this reads claims that are now authenticated;
 9. ``aud`` (a string or a list) contains the exact URL that was called, feedback URL included, so a
    token minted for one endpoint cannot be replayed at another;
10. ``exp`` is required and not passed (with ``leeway``);
11. ``iat`` is required and not in the future beyond ``leeway``; ``exp - iat`` is at most
    ``max_token_lifetime`` (1 h, the best-practices ceiling), which bounds how long a ``jti`` must
    be remembered;
12. ``nbf`` (Epic sends it) is honoured when present; other claims (Epic's ``sub``) are tolerated;
13. ``tenant`` is on the issuer's ``tenants`` allowlist, when the issuer has one;
14. ``jti`` is required and used for the first time (``ReplayGuard``). It comes last so that only a
    token that passed every other check consumes its ``jti``; it is remembered until ``exp + leeway``.

The best-practices page lists iss, aud, exp, tenant, signature, jti; the order above differs only in
checking the signature before trusting any claim, and the outcome of a refusal is the same 401.

Trusted-issuer file (YAML, or JSON with the same structure; ``load_trusted_issuers``)::

    issuers:
      - iss: https://fhir.example-hospital.org/api/FHIR/R4   # exact string of the token's iss
        jwks_url: https://.../PublicKeys/530013/530013        # keys, fetched and cached, or
        jwks_file: keys/hospital-jwks.json                    # keys pinned in a file (relative to this file)
        jku_allowlist: [https://.../jwks.json]                # jku values this issuer may send
        tenants: [hospital-a]                                 # optional allowlist of ``tenant``
        algorithms: [RS384]                                   # optional; default [ES384, RS384]
        demo_only: false                                      # true: the key is public (sandbox)
        fhir_servers: [https://fhir.example-hospital.org/api/FHIR/R4]  # where its fhirServer may point

An issuer needs at least one key source: ``jwks_file``, ``jwks_url`` (not both), or a non-empty
``jku_allowlist`` (then its tokens must carry an allowlisted ``jku``). URLs must be ``https``
(``http`` is allowed on loopback hosts only, for tests). ``cds_service/auth_data/`` holds the demo
sandbox issuer and a commented example.

Decisions: ES384 and RS384 by default (the spec's recommendation; the sandbox signs ES384, Epic
RS384). An issuer may opt in to other asymmetric algorithms (ES256/ES512, RS256/RS512, PS*), which
are not weaker, but nothing is accepted that a known client does not need. Leeway 60 s. A ``jti``
is remembered per issuer until ``exp + leeway`` (a token is accepted until then), so never more than
``max_token_lifetime + 2 * leeway`` (62 min) after it was seen.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import jwt
import yaml

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEMO_ISSUERS_FILE",
    "WWW_AUTHENTICATE",
    "AuthenticationFailed",
    "FailureReason",
    "InMemoryReplayGuard",
    "IssuerConfigError",
    "JwksCachePolicy",
    "ReplayGuard",
    "TrustedIssuer",
    "VerifiedClaims",
    "Verifier",
    "audience_url",
    "authentication_enabled",
    "bearer_token",
    "load_trusted_issuers",
]

logger = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Bearer realm="cds-services"'
"""The challenge sent with every 401: no ``error`` or description, as the best practices ask."""

DEFAULT_ALGORITHMS = ("ES384", "RS384")
_ACCEPTABLE_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
MAX_TOKEN_LENGTH = 16 * 1024

DEMO_ISSUERS_FILE = Path(__file__).resolve().parent / "auth_data" / "demo-issuers.yaml"
"""The CDS Hooks sandbox and naltrexone-cds's demo client: demos only, their private keys are public."""


class FailureReason(StrEnum):
    NO_BEARER_TOKEN = "no bearer token"
    MALFORMED = "malformed token"
    ALGORITHM_REFUSED = "algorithm refused"
    TYP_NOT_JWT = "typ is not JWT"
    KID_MISSING = "kid missing"
    ISSUER_UNTRUSTED = "issuer not trusted"
    JKU_NOT_ALLOWED = "jku not on the issuer's allowlist"
    KEYS_UNAVAILABLE = "issuer keys unavailable"
    KID_UNKNOWN = "kid unknown for this issuer"
    KEY_UNUSABLE = "key unusable for this algorithm"
    SIGNATURE_INVALID = "signature invalid"
    AUDIENCE_MISMATCH = "aud is not the URL called"
    EXP_MISSING = "exp missing or not a number"
    EXPIRED = "expired"
    IAT_MISSING = "iat missing or not a number"
    IAT_IN_FUTURE = "iat in the future"
    NBF_INVALID = "nbf not a number"
    NBF_IN_FUTURE = "not yet valid (nbf)"
    LIFETIME_TOO_LONG = "exp - iat exceeds the maximum token lifetime"
    TENANT_NOT_ALLOWED = "tenant not allowed"
    JTI_MISSING = "jti missing"
    JTI_REPLAYED = "jti replayed"


class AuthenticationFailed(Exception):
    """The call is not authenticated. ``reason`` and ``detail`` are for logs, never for the client."""

    def __init__(self, reason: FailureReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


class IssuerConfigError(ValueError):
    """The trusted-issuer configuration cannot be used."""


def _loggable(value: object) -> str:
    """An attacker-supplied value, quoted and truncated so it is safe in a log line."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- configuration -------------------------------------------------------------------------------


def _is_acceptable_key_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class TrustedIssuer:
    """One CDS client we accept tokens from, and where its public keys come from."""

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jku_allowlist: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    demo_only: bool = False
    fhir_servers: tuple[str, ...] = ()
    """FHIR base URLs this client's requests may name as ``fhirServer`` (none given: its ``iss``, as
    Epic's ``iss`` is its FHIR base URL). A caller cannot make the service query any other host."""

    @property
    def allowed_fhir_servers(self) -> tuple[str, ...]:
        return self.fhir_servers or (self.iss,)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise IssuerConfigError(f"trusted issuer {self.iss!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not self.iss:
            problems.append("iss must not be empty")
        if self.jwks_url is not None and self.jwks_file is not None:
            problems.append("give jwks_url or jwks_file, not both")
        if self.jwks_url is None and self.jwks_file is None and not self.jku_allowlist:
            problems.append("needs a key source: jwks_url, jwks_file or a jku_allowlist")
        urls = [*self.jku_allowlist, *([self.jwks_url] if self.jwks_url else []), *self.fhir_servers]
        problems += [
            f"{url!r} must be https (http only on loopback)"
            for url in urls
            if not _is_acceptable_key_url(url)
        ]
        refused = sorted(set(self.algorithms) - _ACCEPTABLE_ALGORITHMS)
        if refused or not self.algorithms:
            problems.append(
                f"algorithms must be among {sorted(_ACCEPTABLE_ALGORITHMS)}, not {refused or '[]'}"
            )
        if self.tenants is not None and not self.tenants:
            problems.append("tenants, when given, must list at least one tenant")
        return problems


_ISSUER_FIELDS = {
    "iss",
    "jwks_url",
    "jwks_file",
    "jku_allowlist",
    "tenants",
    "algorithms",
    "demo_only",
    "fhir_servers",
}


def _string_list(entry: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise IssuerConfigError(f"{name} of issuer {entry.get('iss')!r} must be a list of strings")
    return tuple(value)


def _issuer_from_entry(entry: object, base_dir: Path) -> TrustedIssuer:
    if not isinstance(entry, dict):
        raise IssuerConfigError(f"each issuer must be a mapping, not {entry!r}")
    unknown = sorted(set(entry) - _ISSUER_FIELDS)
    if unknown:
        raise IssuerConfigError(f"issuer {entry.get('iss')!r} has unknown fields {unknown}")
    iss, jwks_url, jwks_file = entry.get("iss"), entry.get("jwks_url"), entry.get("jwks_file")
    if (
        not isinstance(iss, str)
        or not isinstance(jwks_url, str | None)
        or not isinstance(jwks_file, str | None)
    ):
        raise IssuerConfigError(f"iss, jwks_url and jwks_file of {entry!r} must be strings")
    if not isinstance(entry.get("demo_only", False), bool):
        raise IssuerConfigError(f"demo_only of issuer {iss!r} must be true or false")
    return TrustedIssuer(
        iss=iss,
        jwks_url=jwks_url,
        jwks_file=None if jwks_file is None else base_dir / jwks_file,
        jku_allowlist=_string_list(entry, "jku_allowlist") or (),
        tenants=_string_list(entry, "tenants"),
        algorithms=_string_list(entry, "algorithms") or DEFAULT_ALGORITHMS,
        demo_only=entry.get("demo_only", False),
        fhir_servers=_string_list(entry, "fhir_servers") or (),
    )


def load_trusted_issuers(path: Path) -> tuple[TrustedIssuer, ...]:
    """Read a trusted-issuer file (format in the module docstring); ``.json`` is JSON, else YAML."""
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise IssuerConfigError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {error}"
        ) from error
    if (
        not isinstance(document, dict)
        or set(document) != {"issuers"}
        or not isinstance(document["issuers"], list)
    ):
        raise IssuerConfigError(f"{path} must hold exactly one key, 'issuers', listing the issuers")
    issuers = tuple(_issuer_from_entry(entry, path.parent) for entry in document["issuers"])
    names = [issuer.iss for issuer in issuers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise IssuerConfigError(f"{path} lists issuers more than once: {duplicates}")
    if not issuers:
        raise IssuerConfigError(f"{path} lists no issuers")
    return issuers


def authentication_enabled(trusted_issuers_file: Path | None, *, allow_unauthenticated: bool) -> bool:
    """Authentication is on whenever issuers are configured; off only when that is said explicitly."""
    if trusted_issuers_file is not None and allow_unauthenticated:
        raise IssuerConfigError(
            "trusted issuers are configured and unauthenticated calls allowed: choose one"
        )
    if trusted_issuers_file is None and not allow_unauthenticated:
        raise IssuerConfigError(
            "no trusted issuers configured: give a trusted-issuer file,"
            " or allow unauthenticated calls explicitly"
        )
    return trusted_issuers_file is not None


def audience_url(public_base_url: str, path: str) -> str:
    """The URL a client called, as it sees it: the public base URL (behind a proxy) plus the path."""
    return public_base_url.rstrip("/") + "/" + path.lstrip("/")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme is case-insensitive)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(FailureReason.NO_BEARER_TOKEN)
    return token.strip()


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


class _KeysUnavailable(Exception):
    pass


class _KeySource(Protocol):
    def keys_for(self, kid: str) -> Mapping[str, jwt.PyJWK] | None: ...


class _PinnedKeys:
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


class _RemoteKeys:
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
                raise _KeysUnavailable(self._url)
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
class _IssuerKeys:
    issuer: TrustedIssuer
    own_source: _KeySource | None  # jwks_file or jwks_url
    jku_sources: Mapping[str, _KeySource]


# --- replay --------------------------------------------------------------------------------------


class ReplayGuard(Protocol):
    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record (issuer, jti) until ``expires_at``; False when it is already recorded and unexpired.
        Must be atomic across every process that serves the same clients."""
        ...


class InMemoryReplayGuard:
    """For tests only: one process's memory, lost on restart and not shared between workers."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        now = self._clock()
        with self._lock:
            self._seen = {key: until for key, until in self._seen.items() if until > now}
            if (issuer, jti) in self._seen:
                return False
            self._seen[issuer, jti] = expires_at
            return True


_CLAIM_JTI = """
INSERT INTO used_jti (issuer, jti, expires_at) VALUES (?, ?, ?)
ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE used_jti.expires_at <= ?
"""


@dataclass(frozen=True, kw_only=True)
class VerifiedClaims:
    issuer: str
    audience: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    algorithm: str
    tenant: str | None = None
    subject: str | None = None
    demo_issuer: bool = False
    fhir_servers: tuple[str, ...] | None = None
    """FHIR base URLs this client may name as ``fhirServer``; ``None``: not bound (a demo issuer)."""
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


_PARSER = jwt.PyJWS()
_SIGNATURE_CHECKER = jwt.PyJWS(
    algorithms=sorted(_ACCEPTABLE_ALGORITHMS), options={"enforce_minimum_key_length": True}
)


def _parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationFailed(FailureReason.MALFORMED, f"longer than {MAX_TOKEN_LENGTH} characters")
    try:
        parts = _PARSER.decode_complete(token, options={"verify_signature": False})
        claims = json.loads(parts["payload"])
    except (jwt.PyJWTError, ValueError, RecursionError) as error:
        raise AuthenticationFailed(FailureReason.MALFORMED, type(error).__name__) from None
    if not isinstance(claims, dict):
        raise AuthenticationFailed(FailureReason.MALFORMED, "payload is not a JSON object")
    header: dict[str, Any] = parts["header"]
    return header, claims


def _acceptable_algorithm(header: Mapping[str, Any]) -> str:
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in _ACCEPTABLE_ALGORITHMS:
        raise AuthenticationFailed(FailureReason.ALGORITHM_REFUSED, f"alg {_loggable(algorithm)}")
    return algorithm


def _check_typ(header: Mapping[str, Any]) -> None:
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise AuthenticationFailed(FailureReason.TYP_NOT_JWT, f"typ {_loggable(typ)}")


def _required_kid(header: Mapping[str, Any]) -> str:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthenticationFailed(FailureReason.KID_MISSING)
    return kid


def _check_signature(token: str, key: jwt.PyJWK, algorithm: str, kid: str) -> None:
    try:
        _SIGNATURE_CHECKER.decode_complete(token, key=key, algorithms=[algorithm])
    except jwt.InvalidSignatureError:
        raise AuthenticationFailed(FailureReason.SIGNATURE_INVALID, f"kid {_loggable(kid)}") from None
    except jwt.PyJWTError as error:
        raise AuthenticationFailed(
            FailureReason.KEY_UNUSABLE, f"{type(error).__name__}, kid {_loggable(kid)}"
        ) from None


def _check_audience(claims: Mapping[str, Any], url: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if url not in audiences:  # exact string comparison, as the spec requires
        raise AuthenticationFailed(FailureReason.AUDIENCE_MISMATCH, f"aud {_loggable(aud)}, called {url!r}")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _check_tenant(claims: Mapping[str, Any], issuer: TrustedIssuer) -> str | None:
    tenant = claims.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise AuthenticationFailed(FailureReason.TENANT_NOT_ALLOWED, f"tenant {_loggable(tenant)}")
    if issuer.tenants is not None and tenant not in issuer.tenants:
        raise AuthenticationFailed(FailureReason.TENANT_NOT_ALLOWED, f"tenant {_loggable(tenant)}")
    return tenant


def _required_jti(claims: Mapping[str, Any]) -> str:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise AuthenticationFailed(FailureReason.JTI_MISSING)
    return jti


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Verifier:
    """Verifies CDS Hooks bearer JWTs against the trusted issuers (checks listed in the module doc)."""

    def __init__(
        self,
        issuers: Iterable[TrustedIssuer],
        replay_guard: ReplayGuard,
        *,
        leeway: timedelta = timedelta(seconds=60),
        max_token_lifetime: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = _utc_now,
        jwks_policy: JwksCachePolicy | None = None,
        http_client: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._replay_guard, self._clock = replay_guard, clock
        self._leeway, self._max_lifetime = leeway.total_seconds(), max_token_lifetime.total_seconds()
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(follow_redirects=False)
        self._jwks_policy, self._monotonic = jwks_policy or JwksCachePolicy(), monotonic
        self._issuers = {issuer.iss: self._keys_of(issuer) for issuer in issuers}
        for issuer in self._issuers.values():
            if issuer.issuer.demo_only:
                logger.warning(
                    "demo issuer trusted: its private key is public, so its tokens prove nothing",
                    extra={"fields": {"iss": issuer.issuer.iss}},
                )

    def close(self) -> None:
        """Release the HTTP client, when the verifier created it."""
        if self._owns_http:
            self._http.close()

    def _keys_of(self, issuer: TrustedIssuer) -> _IssuerKeys:
        def remote(url: str) -> _KeySource:
            return _RemoteKeys(
                url, issuer.algorithms, policy=self._jwks_policy, client=self._http, monotonic=self._monotonic
            )

        own: _KeySource | None = None
        if issuer.jwks_file is not None:
            own = _PinnedKeys(issuer.jwks_file, issuer.algorithms)
        elif issuer.jwks_url is not None:
            own = remote(issuer.jwks_url)
        return _IssuerKeys(issuer, own, {url: remote(url) for url in issuer.jku_allowlist})

    def verify(self, token: str, audience_url: str) -> VerifiedClaims:
        header, claims = _parse_unverified(token)
        algorithm = _acceptable_algorithm(header)
        _check_typ(header)
        kid = _required_kid(header)
        issuer = self._trusted_issuer(claims, algorithm)
        key = self._signing_key(issuer, header.get("jku"), kid, algorithm)
        _check_signature(token, key, algorithm, kid)
        _check_audience(claims, audience_url)
        issued_at, expires_at = self._check_times(claims)
        tenant = _check_tenant(claims, issuer.issuer)
        jti = _required_jti(claims)
        remember_until = _timestamp(expires_at + self._leeway)
        if not self._replay_guard.first_use(issuer.issuer.iss, jti, remember_until):
            raise AuthenticationFailed(
                FailureReason.JTI_REPLAYED, f"iss {issuer.issuer.iss!r}, jti {_loggable(jti)}"
            )
        subject = claims.get("sub")
        return VerifiedClaims(
            issuer=issuer.issuer.iss,
            audience=audience_url,
            jti=jti,
            issued_at=_timestamp(issued_at),
            expires_at=_timestamp(expires_at),
            key_id=kid,
            algorithm=algorithm,
            tenant=tenant,
            subject=subject if isinstance(subject, str) else None,
            demo_issuer=issuer.issuer.demo_only,
            fhir_servers=None if issuer.issuer.demo_only else issuer.issuer.allowed_fhir_servers,
            claims=MappingProxyType(claims),
        )

    def _trusted_issuer(self, claims: Mapping[str, Any], algorithm: str) -> _IssuerKeys:
        iss = claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthenticationFailed(FailureReason.ISSUER_UNTRUSTED, f"iss {_loggable(iss)}")
        if algorithm not in issuer.issuer.algorithms:
            raise AuthenticationFailed(FailureReason.ALGORITHM_REFUSED, f"alg {algorithm} for iss {iss!r}")
        return issuer

    def _key_source(self, issuer: _IssuerKeys, jku: object) -> _KeySource:
        if jku is not None and (not isinstance(jku, str) or jku not in issuer.jku_sources):
            raise AuthenticationFailed(FailureReason.JKU_NOT_ALLOWED, f"jku {_loggable(jku)}")
        if issuer.own_source is not None and (jku is None or issuer.issuer.jwks_file is not None):
            return issuer.own_source  # a pinned file wins over any jku; a jku wins over jwks_url
        if isinstance(jku, str):
            return issuer.jku_sources[jku]
        raise AuthenticationFailed(FailureReason.KEYS_UNAVAILABLE, "no jku and no jwks_url or jwks_file")

    def _signing_key(self, issuer: _IssuerKeys, jku: object, kid: str, algorithm: str) -> jwt.PyJWK:
        source = self._key_source(issuer, jku)
        try:
            keys = source.keys_for(kid)
        except _KeysUnavailable:
            raise AuthenticationFailed(FailureReason.KEYS_UNAVAILABLE, f"iss {issuer.issuer.iss!r}") from None
        if keys is None:
            raise AuthenticationFailed(
                FailureReason.KID_UNKNOWN, f"kid {_loggable(kid)}, iss {issuer.issuer.iss!r}"
            )
        if algorithm not in keys:
            raise AuthenticationFailed(
                FailureReason.KEY_UNUSABLE, f"kid {_loggable(kid)} does not fit {algorithm}"
            )
        return keys[algorithm]

    def _check_times(self, claims: Mapping[str, Any]) -> tuple[float, float]:
        """(iat, exp) once exp, iat, nbf and the lifetime pass, with ``leeway`` for clock skew."""
        now = self._clock().timestamp()
        expires_at, issued_at = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
        if expires_at is None:
            raise AuthenticationFailed(FailureReason.EXP_MISSING)
        if expires_at <= now - self._leeway:
            raise AuthenticationFailed(FailureReason.EXPIRED, f"{now - expires_at:.0f} s ago")
        if issued_at is None:
            raise AuthenticationFailed(FailureReason.IAT_MISSING)
        if issued_at > now + self._leeway:
            raise AuthenticationFailed(FailureReason.IAT_IN_FUTURE, f"{issued_at - now:.0f} s ahead")
        if expires_at - issued_at > self._max_lifetime:
            raise AuthenticationFailed(FailureReason.LIFETIME_TOO_LONG, f"{expires_at - issued_at:.0f} s")
        if "nbf" in claims:
            not_before = _numeric_date(claims, "nbf")
            if not_before is None:
                raise AuthenticationFailed(FailureReason.NBF_INVALID)
            if not_before > now + self._leeway:
                raise AuthenticationFailed(FailureReason.NBF_IN_FUTURE, f"{not_before - now:.0f} s ahead")
        return issued_at, expires_at
