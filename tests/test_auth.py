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
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.api.errors import WWW_AUTHENTICATE
from cds_service.auth import (
    DEMO_ISSUERS_FILE,
    AuthenticationFailed,
    AuthPolicy,
    FailureReason,
    InMemoryReplayGuard,
    IssuerConfigError,
    ReplayGuard,
    TrustedIssuer,
    VerifiedClaims,
    Verifier,
)
from cds_service.auth.issuers import load_trusted_issuers
from cds_service.auth.keys import JwksCachePolicy
from cds_service.auth.verify import audience_url, bearer_token
from cds_service.settings import Settings, SettingsError
from cds_service.store import Store, sqlite_url
from fhir_fixtures.requests import sandbox_requests
from tests.support.tokens import b64url, claims, forge, public_jwk, sign, write_jwks

NOW = datetime.now(UTC).replace(microsecond=0)
SERVICE_URL = "https://cds.example.org/cds-services/naltrexone-order-select"
FEEDBACK_URL = SERVICE_URL + "/feedback"

ISS_A = "https://ehr-a.example.org"
ISS_B = "https://ehr-b.example.org"
ISS_TENANTED = "https://ehr-t.example.org"
EPIC_ISS = "https://fhir.example-hospital.org/api/FHIR/R4"
A_JKU = "https://ehr-a.example.org/.well-known/jwks.json"
B_JKU = "https://ehr-b.example.org/.well-known/jwks.json"
EPIC_JKU = "https://fhir.example-hospital.org/api/epic/2019/Security/Open/PublicKeys/530013/530013"

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
REPOSITORY = Path(__file__).resolve().parent.parent


# --- keys, tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    a: ec.EllipticCurvePrivateKey  # ISS_A, kid "a-ec"; also ISS_TENANTED, kid "t-ec"
    b: ec.EllipticCurvePrivateKey  # ISS_B, kid "b-ec"
    epic: rsa.RSAPrivateKey  # EPIC_ISS, kid "epic-rsa"
    attacker: ec.EllipticCurvePrivateKey  # nobody's


def claims_for(iss: str = ISS_A, aud: Any = SERVICE_URL, at: datetime = NOW, **extra: Any) -> dict[str, Any]:
    return claims(iss, aud, at, **extra)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        a=ec.generate_private_key(ec.SECP384R1()),
        b=ec.generate_private_key(ec.SECP384R1()),
        epic=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        attacker=ec.generate_private_key(ec.SECP384R1()),
    )


@pytest.fixture(scope="module")
def issuers(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrustedIssuer, ...]:
    folder = tmp_path_factory.mktemp("jwks")
    return (
        TrustedIssuer(
            iss=ISS_A, jwks_file=write_jwks(folder / "a.json", (keys.a, "a-ec")), jku_allowlist=(A_JKU,)
        ),
        TrustedIssuer(
            iss=ISS_B, jwks_file=write_jwks(folder / "b.json", (keys.b, "b-ec")), jku_allowlist=(B_JKU,)
        ),
        TrustedIssuer(
            iss=ISS_TENANTED,
            jwks_file=write_jwks(folder / "t.json", (keys.a, "t-ec")),
            tenants=("hospital-a",),
        ),
        TrustedIssuer(
            iss=EPIC_ISS,
            jwks_file=write_jwks(folder / "epic.json", (keys.epic, "epic-rsa")),
            jku_allowlist=(EPIC_JKU,),
        ),
    )


@pytest.fixture
def verifier(issuers: tuple[TrustedIssuer, ...]) -> Iterator[Verifier]:
    verifier = Verifier(issuers, InMemoryReplayGuard(clock=lambda: NOW), clock=lambda: NOW)
    yield verifier
    verifier.close()


def refused(verifier: Verifier, token: str, url: str = SERVICE_URL) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier.verify(token, url)
    error = caught.value
    for secret in filter(None, (token, token.rsplit(".", 1)[-1])):  # neither the token nor its signature
        assert secret not in str(error)
    assert error.__cause__ is None
    return error


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


def test_a_replayed_jti_is_refused(keys: Keys, verifier: Verifier) -> None:
    token = sign(keys.a, claims_for())
    verifier.verify(token, SERVICE_URL)
    assert refused(verifier, token).reason is FailureReason.JTI_REPLAYED


def test_the_same_jti_from_another_issuer_is_not_a_replay(keys: Keys, verifier: Verifier) -> None:
    jti = str(uuid.uuid4())
    verifier.verify(sign(keys.a, claims_for(jti=jti)), SERVICE_URL)
    verifier.verify(sign(keys.b, claims_for(iss=ISS_B, jti=jti), kid="b-ec"), SERVICE_URL)


def test_a_refused_token_does_not_consume_its_jti(keys: Keys, verifier: Verifier) -> None:
    claims = claims_for()
    refused(verifier, sign(keys.a, claims), FEEDBACK_URL)  # wrong endpoint: refused before the jti
    verifier.verify(sign(keys.a, claims), SERVICE_URL)


def _verify_in_child(
    issuer: TrustedIssuer, database: Path, tokens: list[str], start: Any, results: Any
) -> None:  # pragma: no cover - runs in the child processes
    verifier = Verifier([issuer], Store(sqlite_url(database), secret=SECRET))
    start.wait(timeout=30)
    accepted, replayed = [], 0
    for token in tokens:
        try:
            accepted.append(verifier.verify(token, SERVICE_URL).jti)
        except AuthenticationFailed as error:
            assert error.reason is FailureReason.JTI_REPLAYED, error.reason
            replayed += 1
    results.put((accepted, replayed))


def test_a_jti_is_accepted_once_across_two_worker_processes(
    keys: Keys, issuers: tuple[TrustedIssuer, ...], tmp_path: Path
) -> None:
    tokens = [sign(keys.a, claims_for(at=datetime.now(UTC))) for _ in range(25)]
    context = multiprocessing.get_context("spawn")  # like gunicorn's workers: separate interpreters
    start, results = context.Barrier(2), context.Queue()
    database = tmp_path / "jti.sqlite3"
    Store(sqlite_url(database), secret=SECRET).migrate()  # the audit database: the service's replay guard
    workers = [
        context.Process(target=_verify_in_child, args=(issuers[0], database, tokens, start, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    (first, first_replayed), (second, second_replayed) = outcomes
    assert sorted(first + second) == sorted(
        jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens
    )
    assert not set(first) & set(second)
    assert first_replayed + second_replayed == len(tokens)


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


def sandbox_shaped_token(key: ec.EllipticCurvePrivateKey, url: str) -> str:
    issued = int(time.time())
    claims = {"iss": SANDBOX_ISS, "aud": url, "exp": issued + 300, "iat": issued, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": SANDBOX_KID, "jku": SANDBOX_JKU})


def test_sandbox_shaped_tokens_verify_with_the_shipped_issuer_settings(keys: Keys, tmp_path: Path) -> None:
    shipped = next(i for i in load_trusted_issuers(DEMO_ISSUERS_FILE) if i.iss == SANDBOX_ISS)
    local = dataclasses.replace(shipped, jwks_file=write_jwks(tmp_path / "jwks.json", (keys.a, SANDBOX_KID)))
    verifier = Verifier([local], InMemoryReplayGuard())
    base = "http://127.0.0.1:3001/cds-services"
    for url in (base, f"{base}/stub-select", f"{base}/stub-select/feedback"):
        verified = verifier.verify(sandbox_shaped_token(keys.a, url), url)
        assert verified.demo_issuer and verified.audience == url
    verifier.close()


def test_the_shipped_sandbox_issuer_pins_the_sandbox_key(keys: Keys) -> None:
    shipped = next(i for i in load_trusted_issuers(DEMO_ISSUERS_FILE) if i.iss == SANDBOX_ISS)
    assert (shipped.iss, shipped.jku_allowlist, shipped.algorithms) == (
        SANDBOX_ISS,
        (SANDBOX_JKU,),
        ("ES384",),
    )
    assert shipped.demo_only and shipped.jwks_file is not None
    assert json.loads(shipped.jwks_file.read_text())["keys"][0]["kid"] == SANDBOX_KID
    verifier = Verifier([shipped], InMemoryReplayGuard())
    token = sandbox_shaped_token(keys.a, SERVICE_URL)  # right kid, wrong key: not the sandbox's
    assert refused(verifier, token).reason is FailureReason.SIGNATURE_INVALID
    verifier.close()


def test_the_example_issuer_file_loads_without_touching_the_network() -> None:
    example = load_trusted_issuers(REPOSITORY / "cds_service" / "auth_data" / "trusted-issuers.example.yaml")
    assert [issuer.iss for issuer in example] == [
        EPIC_ISS,
        "https://cds-hooks.cerner.com",
        "https://ehr.example.org",
    ]
    Verifier(example, InMemoryReplayGuard()).close()


# --- JWKS from a URL: caching, rotation, rate limit ----------------------------------------------


class JwksServer:
    """Serves a JWKS on a loopback port and counts the requests it gets."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = json.dumps(server.jwks).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/jwks.json"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def serve(self, *keys: tuple[Any, str]) -> None:
        self.jwks = {"keys": [public_jwk(key, kid) for key, kid in keys]}

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:  # loopback: never through a proxy from the environment
        yield client


ISS_URL = "https://ehr-url.example.org"
POLICY = JwksCachePolicy(ttl=timedelta(minutes=10), min_refetch_interval=timedelta(seconds=30))


def url_verifier(issuer: TrustedIssuer, client: httpx.Client, monotonic: FakeMonotonic) -> Verifier:
    return Verifier(
        [issuer], InMemoryReplayGuard(), jwks_policy=POLICY, http_client=client, monotonic=monotonic
    )


def url_token(key: Any, kid: str, **header: Any) -> str:
    return sign(key, claims_for(iss=ISS_URL, at=datetime.now(UTC)), kid=kid, **header)


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


SECRET = "test-secret-for-hashing-ids"


# --- replay guards -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_replay_guards_forget_a_jti_once_it_has_expired(kind: str, tmp_path: Path) -> None:
    now = [NOW]
    guard: ReplayGuard
    if kind == "memory":
        guard = InMemoryReplayGuard(clock=lambda: now[0])
    else:
        store = Store(sqlite_url(tmp_path / "jti.sqlite3"), secret=SECRET, clock=lambda: now[0])
        store.migrate()
        guard = store
    until = NOW + timedelta(seconds=360)
    assert guard.first_use("iss", "jti-1", until)
    assert not guard.first_use("iss", "jti-1", until)
    assert guard.first_use("other-iss", "jti-1", until)
    now[0] = until + timedelta(seconds=1)
    assert guard.first_use("iss", "jti-1", until + timedelta(seconds=360))


# --- configuration and helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"iss": ISS_A}, "needs a key source"),
        ({"iss": ISS_A, "jwks_url": "http://keys.example.org/jwks.json"}, "must be https"),
        ({"iss": ISS_A, "jwks_url": A_JKU, "jwks_file": "a.json"}, "not both"),
        ({"iss": ISS_A, "jwks_url": A_JKU, "algorithms": ["HS256"]}, "algorithms must be among"),
        ({"iss": ISS_A, "jwks_url": A_JKU, "algorithms": ["none"]}, "algorithms must be among"),
        ({"iss": ISS_A, "jwks_url": A_JKU, "tenants": []}, "at least one tenant"),
        ({"iss": ISS_A, "jwks_url": A_JKU, "jku": A_JKU}, "unknown fields"),
    ],
)
def test_a_bad_issuer_file_is_refused_at_start_up(
    fields: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [fields]}))
    with pytest.raises(IssuerConfigError, match=complaint):
        load_trusted_issuers(path)


def test_an_issuer_file_may_be_json(keys: Keys, tmp_path: Path) -> None:
    write_jwks(tmp_path / "a.json", (keys.a, "a-ec"))
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": ISS_A, "jwks_file": "a.json", "tenants": ["t"]}]}))
    assert load_trusted_issuers(path) == (
        TrustedIssuer(iss=ISS_A, jwks_file=tmp_path / "a.json", tenants=("t",)),
    )


def test_authentication_is_decided_once_from_the_settings(keys: Keys, tmp_path: Path) -> None:
    """On by default (the demo issuers), off only when said, and never both off and configured."""
    default = AuthPolicy.from_settings(Settings())
    assert default.required and default.issuers_file == DEMO_ISSUERS_FILE and default.demo_issuers
    assert not AuthPolicy.from_settings(Settings(allow_unauthenticated=True)).required
    write_jwks(tmp_path / "a.json", (keys.a, "a-ec"))
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISS_A, "jwks_file": "a.json"}]}))
    hospital = AuthPolicy.from_settings(
        Settings(trusted_issuers_file=issuers, public_base_url="https://cds.h.org")
    )
    assert hospital.required and [i.iss for i in hospital.issuers] == [ISS_A] and not hospital.demo_issuers
    with pytest.raises(SettingsError, match="choose one"):
        Settings(trusted_issuers_file=issuers, public_base_url="https://h.org", allow_unauthenticated=True)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "eyJhbGciOi.x.y"])
def test_a_missing_or_non_bearer_authorization_header_is_refused(header: str | None) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        bearer_token(header)
    assert caught.value.reason is FailureReason.NO_BEARER_TOKEN


def test_helpers_for_the_http_layer() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"
    assert audience_url("https://cds.example.org/naltrexone/", "/cds-services/x") == (
        "https://cds.example.org/naltrexone/cds-services/x"
    )
    assert WWW_AUTHENTICATE.startswith("Bearer ")
