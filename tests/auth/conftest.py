"""Keys and verifiers for the authentication tests (made once per module: RSA keys are slow to make)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.auth import (
    InMemoryReplayGuard,
    TrustedIssuer,
    Verifier,
)
from tests.support.auth import (
    A_JKU,
    B_JKU,
    EPIC_ISS,
    EPIC_JKU,
    ISS_A,
    ISS_B,
    ISS_TENANTED,
    NOW,
    JwksServer,
    Keys,
)
from tests.support.tokens import write_jwks


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


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:  # loopback: never through a proxy from the environment
        yield client
