"""Issuer keys from a JWKS URL: cached, rotated on an unknown kid, rate-limited, kept when a refresh fails."""

from __future__ import annotations

import httpx

from cds_service.auth import (
    FailureReason,
    TrustedIssuer,
)
from tests.support.auth import (
    ISS_URL,
    SERVICE_URL,
    FakeMonotonic,
    JwksServer,
    Keys,
    claims_for,
    refused,
    url_token,
    url_verifier,
)
from tests.support.tokens import sign


def test_jwks_url_is_fetched_once_and_cached(
    keys: Keys, jwks_server: JwksServer, http_client: httpx.Client
) -> None:
    jwks_server.serve((keys.a, "u1"))
    clock = FakeMonotonic()
    verifier = url_verifier(TrustedIssuer(iss=ISS_URL, jwks_url=jwks_server.url), http_client, clock)
    assert jwks_server.hits == 0  # nothing is fetched before the first token
    for _ in range(10):
        verifier.verify(url_token(keys.a, "u1"), SERVICE_URL)
        clock.advance(5)
    assert jwks_server.hits == 1
    clock.advance(600)  # past the TTL: fetched again
    verifier.verify(url_token(keys.a, "u1"), SERVICE_URL)
    assert jwks_server.hits == 2


def test_unknown_kids_cannot_make_us_hammer_the_jwks_url(
    keys: Keys, jwks_server: JwksServer, http_client: httpx.Client
) -> None:
    jwks_server.serve((keys.a, "u1"))
    clock = FakeMonotonic()
    verifier = url_verifier(TrustedIssuer(iss=ISS_URL, jwks_url=jwks_server.url), http_client, clock)
    verifier.verify(url_token(keys.a, "u1"), SERVICE_URL)
    for attempt in range(20):
        assert refused(verifier, url_token(keys.a, f"made-up-{attempt}")).reason is FailureReason.KID_UNKNOWN
    assert jwks_server.hits == 1  # the keys were fetched less than 30 s ago
    clock.advance(31)
    for attempt in range(20):
        assert refused(verifier, url_token(keys.a, f"again-{attempt}")).reason is FailureReason.KID_UNKNOWN
    assert jwks_server.hits == 2  # one re-fetch per interval, however many unknown kids


def test_key_rotation_is_picked_up_on_an_unknown_kid(
    keys: Keys, jwks_server: JwksServer, http_client: httpx.Client
) -> None:
    jwks_server.serve((keys.a, "2026-01"))
    clock = FakeMonotonic()
    verifier = url_verifier(TrustedIssuer(iss=ISS_URL, jwks_url=jwks_server.url), http_client, clock)
    verifier.verify(url_token(keys.a, "2026-01"), SERVICE_URL)
    jwks_server.serve((keys.b, "2026-02"))  # the client rotates: new key, old one withdrawn
    clock.advance(31)
    assert verifier.verify(url_token(keys.b, "2026-02"), SERVICE_URL).key_id == "2026-02"
    assert refused(verifier, url_token(keys.a, "2026-01")).reason is FailureReason.KID_UNKNOWN
    assert jwks_server.hits == 2


def test_an_allowlisted_jku_is_fetched(
    keys: Keys, jwks_server: JwksServer, http_client: httpx.Client
) -> None:
    jwks_server.serve((keys.epic, "j-rsa"))
    verifier = url_verifier(
        TrustedIssuer(iss=ISS_URL, jku_allowlist=(jwks_server.url,)), http_client, FakeMonotonic()
    )
    token = sign(keys.epic, claims_for(iss=ISS_URL), alg="RS384", kid="j-rsa", jku=jwks_server.url)
    assert verifier.verify(token, SERVICE_URL).algorithm == "RS384"
    without_jku = sign(keys.epic, claims_for(iss=ISS_URL), alg="RS384", kid="j-rsa")
    assert refused(verifier, without_jku).reason is FailureReason.KEYS_UNAVAILABLE


def test_an_unreachable_jwks_refuses_and_a_failed_refresh_keeps_the_keys(
    keys: Keys, jwks_server: JwksServer, http_client: httpx.Client
) -> None:
    jwks_server.serve((keys.a, "u1"))
    jwks_server.status = 503
    clock = FakeMonotonic()
    verifier = url_verifier(TrustedIssuer(iss=ISS_URL, jwks_url=jwks_server.url), http_client, clock)
    assert refused(verifier, url_token(keys.a, "u1")).reason is FailureReason.KEYS_UNAVAILABLE
    jwks_server.status = 200
    clock.advance(31)
    verifier.verify(url_token(keys.a, "u1"), SERVICE_URL)
    jwks_server.status = 503
    clock.advance(601)
    verifier.verify(url_token(keys.a, "u1"), SERVICE_URL)  # stale keys beat no keys during an outage
    assert jwks_server.hits == 3
