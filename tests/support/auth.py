"""Issuers, keys and tokens the authentication tests share: the hospital's CDS clients, a JWKS server
on loopback, a clock that the tests move."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.auth import (
    AuthenticationFailed,
    InMemoryReplayGuard,
    TrustedIssuer,
    Verifier,
)
from cds_service.auth.keys import JwksCachePolicy
from tests.support.tokens import claims, public_jwk, sign

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


REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Keys:
    a: ec.EllipticCurvePrivateKey  # ISS_A, kid "a-ec"; also ISS_TENANTED, kid "t-ec"
    b: ec.EllipticCurvePrivateKey  # ISS_B, kid "b-ec"
    epic: rsa.RSAPrivateKey  # EPIC_ISS, kid "epic-rsa"
    attacker: ec.EllipticCurvePrivateKey  # nobody's


def claims_for(iss: str = ISS_A, aud: Any = SERVICE_URL, at: datetime = NOW, **extra: Any) -> dict[str, Any]:
    return claims(iss, aud, at, **extra)


def refused(verifier: Verifier, token: str, url: str = SERVICE_URL) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier.verify(token, url)
    error = caught.value
    for secret in filter(None, (token, token.rsplit(".", 1)[-1])):  # neither the token nor its signature
        assert secret not in str(error)
    assert error.__cause__ is None
    return error


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


ISS_URL = "https://ehr-url.example.org"


POLICY = JwksCachePolicy(ttl=timedelta(minutes=10), min_refetch_interval=timedelta(seconds=30))


def url_verifier(issuer: TrustedIssuer, client: httpx.Client, monotonic: FakeMonotonic) -> Verifier:
    return Verifier(
        [issuer], InMemoryReplayGuard(), jwks_policy=POLICY, http_client=client, monotonic=monotonic
    )


def url_token(key: Any, kid: str, **header: Any) -> str:
    return sign(key, claims_for(iss=ISS_URL, at=datetime.now(UTC)), kid=kid, **header)


def sandbox_shaped_token(key: ec.EllipticCurvePrivateKey, url: str) -> str:
    issued = int(time.time())
    claims = {"iss": SANDBOX_ISS, "aud": url, "exp": issued + 300, "iat": issued, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": SANDBOX_KID, "jku": SANDBOX_JKU})
