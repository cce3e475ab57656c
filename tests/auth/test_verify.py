"""Bearer-JWT verification (cds_service.auth): the attack matrix, the accepted shapes, the JWKS cache.

Keys are generated here (EC P-384, RSA 2048) and tokens signed with PyJWT, so nothing depends on the
network: JWKS URLs are served by a tiny HTTP server on a loopback port whose hits are counted.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.auth import (
    DEMO_ISSUERS_FILE,
    FailureReason,
    InMemoryReplayGuard,
    VerifiedClaims,
    Verifier,
)
from cds_service.auth.issuers import load_trusted_issuers
from fhir_fixtures.requests import sandbox_requests
from tests.support.auth import (
    A_JKU,
    B_JKU,
    EPIC_ISS,
    EPIC_JKU,
    FEEDBACK_URL,
    ISS_A,
    ISS_B,
    ISS_TENANTED,
    NOW,
    SANDBOX_ISS,
    SANDBOX_KID,
    SERVICE_URL,
    Keys,
    claims_for,
    refused,
    sandbox_shaped_token,
)
from tests.support.tokens import b64url, forge, public_jwk, sign, write_jwks

# --- keys, tokens --------------------------------------------------------------------------------


# --- the attack matrix ---------------------------------------------------------------------------

Attack = Callable[[Keys], tuple[str, str]]  # -> (token, URL it is presented at)


def _hs256_with_public_key(keys: Keys) -> tuple[str, str]:
    public_pem = keys.a.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "a-ec"}
    return forge(
        header, claims_for(), lambda data: hmac.new(public_pem, data, hashlib.sha256).digest()
    ), SERVICE_URL


def _tampered_audience(keys: Keys) -> tuple[str, str]:
    head, _, signature = sign(keys.a, claims_for()).split(".")
    payload = b64url(json.dumps(claims_for(aud=FEEDBACK_URL)).encode())
    return f"{head}.{payload}.{signature}", FEEDBACK_URL


ATTACKS: dict[str, tuple[Attack, FailureReason]] = {
    "alg none": (
        lambda k: (
            forge({"alg": "none", "typ": "JWT", "kid": "a-ec"}, claims_for(), lambda _: b""),
            SERVICE_URL,
        ),
        FailureReason.ALGORITHM_REFUSED,
    ),
    "HS256 signed with the public key as HMAC secret": (
        _hs256_with_public_key,
        FailureReason.ALGORITHM_REFUSED,
    ),
    "ES256, not accepted for this issuer": (
        lambda k: (sign(ec.generate_private_key(ec.SECP256R1()), claims_for(), alg="ES256"), SERVICE_URL),
        FailureReason.ALGORITHM_REFUSED,
    ),
    "expired beyond the leeway": (
        lambda k: (sign(k.a, claims_for(at=NOW - timedelta(seconds=300 + 61))), SERVICE_URL),
        FailureReason.EXPIRED,
    ),
    "iat in the future": (
        lambda k: (sign(k.a, claims_for(at=NOW + timedelta(seconds=120))), SERVICE_URL),
        FailureReason.IAT_IN_FUTURE,
    ),
    "nbf in the future": (
        lambda k: (sign(k.a, claims_for(nbf=int(NOW.timestamp()) + 120)), SERVICE_URL),
        FailureReason.NBF_IN_FUTURE,
    ),
    "wrong aud": (
        lambda k: (sign(k.a, claims_for(aud="https://cds.example.org/cds-services/other")), SERVICE_URL),
        FailureReason.AUDIENCE_MISMATCH,
    ),
    "service URL presented at the feedback URL": (
        lambda k: (sign(k.a, claims_for(aud=SERVICE_URL)), FEEDBACK_URL),
        FailureReason.AUDIENCE_MISMATCH,
    ),
    "aud is only a prefix of the URL called": (
        lambda k: (sign(k.a, claims_for(aud="https://cds.example.org/cds-services")), SERVICE_URL),
        FailureReason.AUDIENCE_MISMATCH,
    ),
    "wrong iss": (
        lambda k: (sign(k.a, claims_for(iss="https://evil.example.org")), SERVICE_URL),
        FailureReason.ISSUER_UNTRUSTED,
    ),
    "unknown kid": (
        lambda k: (sign(k.a, claims_for(), kid="rotated-away"), SERVICE_URL),
        FailureReason.KID_UNKNOWN,
    ),
    "missing kid": (lambda k: (sign(k.a, claims_for(), kid=None), SERVICE_URL), FailureReason.KID_MISSING),
    "jku not on the allowlist": (
        lambda k: (sign(k.a, claims_for(), jku="https://evil.example.org/jwks.json"), SERVICE_URL),
        FailureReason.JKU_NOT_ALLOWED,
    ),
    "jku on the allowlist of a different issuer": (
        lambda k: (sign(k.a, claims_for(), jku=B_JKU), SERVICE_URL),
        FailureReason.JKU_NOT_ALLOWED,
    ),
    "missing jti": (lambda k: (sign(k.a, claims_for(jti=None)), SERVICE_URL), FailureReason.JTI_MISSING),
    "missing exp": (lambda k: (sign(k.a, claims_for(exp=None)), SERVICE_URL), FailureReason.EXP_MISSING),
    "missing iat": (lambda k: (sign(k.a, claims_for(iat=None)), SERVICE_URL), FailureReason.IAT_MISSING),
    "exp as a string": (
        lambda k: (sign(k.a, claims_for(exp=str(int(NOW.timestamp()) + 300))), SERVICE_URL),
        FailureReason.EXP_MISSING,
    ),
    "lifetime over an hour": (
        lambda k: (sign(k.a, claims_for(exp=int(NOW.timestamp()) + 2 * 3600)), SERVICE_URL),
        FailureReason.LIFETIME_TOO_LONG,
    ),
    "tampered payload (aud re-targeted)": (_tampered_audience, FailureReason.SIGNATURE_INVALID),
    "wrong tenant": (
        lambda k: (sign(k.a, claims_for(iss=ISS_TENANTED, tenant="hospital-b"), kid="t-ec"), SERVICE_URL),
        FailureReason.TENANT_NOT_ALLOWED,
    ),
    "no tenant for an issuer with a tenant allowlist": (
        lambda k: (sign(k.a, claims_for(iss=ISS_TENANTED), kid="t-ec"), SERVICE_URL),
        FailureReason.TENANT_NOT_ALLOWED,
    ),
    "key of issuer A, token claims issuer B, A's kid": (
        lambda k: (sign(k.a, claims_for(iss=ISS_B), kid="a-ec"), SERVICE_URL),
        FailureReason.KID_UNKNOWN,
    ),
    "key of issuer A, token claims issuer B, B's kid": (
        lambda k: (sign(k.a, claims_for(iss=ISS_B), kid="b-ec"), SERVICE_URL),
        FailureReason.SIGNATURE_INVALID,
    ),
    "attacker key embedded as a jwk header": (
        lambda k: (sign(k.attacker, claims_for(), jwk=public_jwk(k.attacker, "a-ec")), SERVICE_URL),
        FailureReason.SIGNATURE_INVALID,
    ),
    "RS384 header on an EC key's kid": (
        lambda k: (sign(k.epic, claims_for(), alg="RS384", kid="a-ec"), SERVICE_URL),
        FailureReason.KEY_UNUSABLE,
    ),
    "typ is not JWT": (
        lambda k: (sign(k.a, claims_for(), typ="at+jwt"), SERVICE_URL),
        FailureReason.TYP_NOT_JWT,
    ),
    "not a JWT at all": (lambda k: ("not.a-jwt", SERVICE_URL), FailureReason.MALFORMED),
    "oversized token": (
        lambda k: (sign(k.a, claims_for(padding="x" * 20_000)), SERVICE_URL),
        FailureReason.MALFORMED,
    ),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_is_refused_with_its_reason(name: str, keys: Keys, verifier: Verifier) -> None:
    attack, reason = ATTACKS[name]
    token, url = attack(keys)
    assert refused(verifier, token, url).reason is reason


# --- accepted ------------------------------------------------------------------------------------


def test_a_valid_es384_token_with_keys_from_a_file_is_accepted(keys: Keys, verifier: Verifier) -> None:
    claims = claims_for()
    verified = verifier.verify(sign(keys.a, claims, jku=A_JKU), SERVICE_URL)
    assert verified == VerifiedClaims(
        issuer=ISS_A,
        audience=SERVICE_URL,
        jti=claims["jti"],
        issued_at=NOW,
        expires_at=NOW + timedelta(seconds=300),
        key_id="a-ec",
        algorithm="ES384",
        fhir_servers=(ISS_A,),  # no fhir_servers configured: the issuer's own base URL, as Epic's iss is
        claims=claims,
    )


def test_an_epic_style_rs384_token_is_accepted(keys: Keys, verifier: Verifier) -> None:
    issued = int(NOW.timestamp())
    claims = claims_for(iss=EPIC_ISS, sub="epic-cds-client-id", nbf=issued - 300)
    verified = verifier.verify(
        sign(keys.epic, claims, alg="RS384", kid="epic-rsa", jku=EPIC_JKU), SERVICE_URL
    )
    assert (verified.issuer, verified.algorithm, verified.subject) == (
        EPIC_ISS,
        "RS384",
        "epic-cds-client-id",
    )


def test_aud_may_be_a_list_containing_the_url(keys: Keys, verifier: Verifier) -> None:
    token = sign(keys.a, claims_for(aud=["https://elsewhere.example.org", FEEDBACK_URL]))
    assert verifier.verify(token, FEEDBACK_URL).audience == FEEDBACK_URL


def test_leeway_tolerates_a_minute_of_clock_skew(keys: Keys, verifier: Verifier) -> None:
    verifier.verify(sign(keys.a, claims_for(at=NOW - timedelta(seconds=300 + 59))), SERVICE_URL)
    verifier.verify(sign(keys.a, claims_for(at=NOW + timedelta(seconds=59))), SERVICE_URL)


def test_a_token_without_typ_and_with_a_tenant_is_accepted(keys: Keys, verifier: Verifier) -> None:
    token = sign(keys.a, claims_for(iss=ISS_TENANTED, tenant="hospital-a"), kid="t-ec", typ=None)
    assert verifier.verify(token, SERVICE_URL).tenant == "hospital-a"


# --- the CDS Hooks sandbox -----------------------------------------------------------------------


def test_captured_sandbox_calls_carry_an_es384_bearer_token_on_every_call() -> None:
    calls = [call for call in sandbox_requests() if call["method"] != "OPTIONS"]
    assert {call["path"].rsplit("/", 1)[-1] for call in calls} >= {"cds-services", "feedback"}
    for call in calls:
        header_start = call["auth"].removeprefix("Bearer ")[:16]  # the capture keeps only a prefix
        assert base64.urlsafe_b64decode(header_start).startswith(b'{"alg":"ES38')


def test_sandbox_shaped_tokens_verify_with_the_shipped_issuer_settings(keys: Keys, tmp_path: Path) -> None:
    shipped = next(i for i in load_trusted_issuers(DEMO_ISSUERS_FILE) if i.iss == SANDBOX_ISS)
    local = dataclasses.replace(shipped, jwks_file=write_jwks(tmp_path / "jwks.json", (keys.a, SANDBOX_KID)))
    verifier = Verifier([local], InMemoryReplayGuard())
    base = "http://127.0.0.1:3001/cds-services"
    for url in (base, f"{base}/stub-select", f"{base}/stub-select/feedback"):
        verified = verifier.verify(sandbox_shaped_token(keys.a, url), url)
        assert verified.demo_issuer and verified.audience == url
    verifier.close()


# --- JWKS from a URL: caching, rotation, rate limit ----------------------------------------------


# --- replay guards -------------------------------------------------------------------------------


# --- configuration and helpers -------------------------------------------------------------------
