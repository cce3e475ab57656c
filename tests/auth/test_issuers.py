"""The trusted-issuer file: the shipped sandbox and example files, bad files refused, JSON accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.auth import (
    DEMO_ISSUERS_FILE,
    FailureReason,
    InMemoryReplayGuard,
    IssuerConfigError,
    TrustedIssuer,
    Verifier,
)
from cds_service.auth.issuers import load_trusted_issuers
from tests.support.auth import (
    A_JKU,
    EPIC_ISS,
    ISS_A,
    REPOSITORY,
    SANDBOX_ISS,
    SANDBOX_JKU,
    SANDBOX_KID,
    SERVICE_URL,
    Keys,
    refused,
    sandbox_shaped_token,
)
from tests.support.tokens import write_jwks


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
