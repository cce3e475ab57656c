"""Authentication in the load: two CDS clients of the benchmark's own, and single-use tokens minted ahead.

Real deployments verify a bearer JWT on every call, so the load figures must include it. The harness makes
a trusted-issuers file with two clients — one signing ES384 as the CDS Hooks sandbox does, one RS384 as Epic
does (2048-bit RSA) — and mints, before each measurement, a file of tokens per service path, alternating
the two clients. Every token has its own ``jti``: the service refuses a replay, so each is sent once
(``rotate.lua`` gives each wrk thread its own share).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

TOKEN_LIFETIME_S = 900
PUBLIC_BASE_URL = "http://127.0.0.1:{port}"
"""What the JWT server is told it is called at (the harness fills in the port it listens on)."""


@dataclass(frozen=True)
class Client:
    iss: str
    alg: str
    kid: str
    key: Any


class BenchIssuers:
    """The two clients, their keys, and the trusted-issuers file the JWT server is started with."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.clients = (
            Client(
                "https://sandbox.bench.invalid",
                "ES384",
                "bench-es384",
                ec.generate_private_key(ec.SECP384R1()),
            ),
            Client(
                "https://epic.bench.invalid/api/FHIR/R4",
                "RS384",
                "bench-rs384",
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ),
        )
        entries = []
        for client in self.clients:
            jwks = directory / f"{client.kid}.jwks.json"
            jwks.write_text(json.dumps({"keys": [_public_jwk(client)]}), encoding="utf-8")
            entries.append({"iss": client.iss, "jwks_file": jwks.name, "algorithms": [client.alg]})
        self.issuers_file = directory / "bench-issuers.json"
        self.issuers_file.write_text(json.dumps({"issuers": entries}, indent=2), encoding="utf-8")

    def environment(self) -> tuple[tuple[str, str], ...]:
        """What the JWT server runs with (``{port}`` is filled in when it is launched)."""
        return (
            ("NALTREXONE_CDS_TRUSTED_ISSUERS_FILE", str(self.issuers_file.resolve())),
            ("NALTREXONE_CDS_PUBLIC_BASE_URL", PUBLIC_BASE_URL),
        )

    def mint(self, url: str, count: int) -> list[str]:
        """``count`` single-use tokens for ``url``, the two clients in turn."""
        issued = int(time.time())
        return [
            jwt.encode(
                {
                    "iss": client.iss,
                    "aud": url,
                    "iat": issued,
                    "exp": issued + TOKEN_LIFETIME_S,
                    "jti": str(uuid.uuid4()),
                },
                client.key,
                algorithm=client.alg,
                headers={"kid": client.kid, "typ": "JWT"},
            )
            for client in (self.clients[i % len(self.clients)] for i in range(count))
        ]


def _public_jwk(client: Client) -> dict[str, Any]:
    algorithm: Any = (
        jwt.algorithms.RSAAlgorithm if client.alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    )
    jwk: dict[str, Any] = algorithm.to_jwk(client.key.public_key(), as_dict=True)
    return {**jwk, "kid": client.kid, "use": "sig", "alg": client.alg}
