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

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import httpx
import jwt

from cds_service.auth.issuers import ACCEPTABLE_ALGORITHMS, TrustedIssuer
from cds_service.auth.keys import (
    IssuerKeys,
    JwksCachePolicy,
    KeySource,
    KeysUnavailable,
    PinnedKeys,
    RemoteKeys,
)
from cds_service.auth.replay import ReplayGuard

logger = logging.getLogger(__name__)
MAX_TOKEN_LENGTH = 16 * 1024


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


def _loggable(value: object) -> str:
    """An attacker-supplied value, quoted and truncated so it is safe in a log line."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _utc_now() -> datetime:
    return datetime.now(UTC)


def audience_url(public_base_url: str, path: str) -> str:
    """The URL a client called, as it sees it: the public base URL (behind a proxy) plus the path."""
    return public_base_url.rstrip("/") + "/" + path.lstrip("/")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme is case-insensitive)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(FailureReason.NO_BEARER_TOKEN)
    return token.strip()


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
    algorithms=sorted(ACCEPTABLE_ALGORITHMS), options={"enforce_minimum_key_length": True}
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
    if not isinstance(algorithm, str) or algorithm not in ACCEPTABLE_ALGORITHMS:
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

    def _keys_of(self, issuer: TrustedIssuer) -> IssuerKeys:
        def remote(url: str) -> KeySource:
            return RemoteKeys(
                url, issuer.algorithms, policy=self._jwks_policy, client=self._http, monotonic=self._monotonic
            )

        own: KeySource | None = None
        if issuer.jwks_file is not None:
            own = PinnedKeys(issuer.jwks_file, issuer.algorithms)
        elif issuer.jwks_url is not None:
            own = remote(issuer.jwks_url)
        return IssuerKeys(issuer, own, {url: remote(url) for url in issuer.jku_allowlist})

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

    def _trusted_issuer(self, claims: Mapping[str, Any], algorithm: str) -> IssuerKeys:
        iss = claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthenticationFailed(FailureReason.ISSUER_UNTRUSTED, f"iss {_loggable(iss)}")
        if algorithm not in issuer.issuer.algorithms:
            raise AuthenticationFailed(FailureReason.ALGORITHM_REFUSED, f"alg {algorithm} for iss {iss!r}")
        return issuer

    def _key_source(self, issuer: IssuerKeys, jku: object) -> KeySource:
        if jku is not None and (not isinstance(jku, str) or jku not in issuer.jku_sources):
            raise AuthenticationFailed(FailureReason.JKU_NOT_ALLOWED, f"jku {_loggable(jku)}")
        if issuer.own_source is not None and (jku is None or issuer.issuer.jwks_file is not None):
            return issuer.own_source  # a pinned file wins over any jku; a jku wins over jwks_url
        if isinstance(jku, str):
            return issuer.jku_sources[jku]
        raise AuthenticationFailed(FailureReason.KEYS_UNAVAILABLE, "no jku and no jwks_url or jwks_file")

    def _signing_key(self, issuer: IssuerKeys, jku: object, kid: str, algorithm: str) -> jwt.PyJWK:
        source = self._key_source(issuer, jku)
        try:
            keys = source.keys_for(kid)
        except KeysUnavailable:
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
