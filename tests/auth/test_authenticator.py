"""Whether authentication is on, and the header and audience the HTTP layer hands to the verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.api.errors import WWW_AUTHENTICATE
from cds_service.auth import (
    DEMO_ISSUERS_FILE,
    AuthenticationFailed,
    AuthPolicy,
    FailureReason,
)
from cds_service.auth.verify import audience_url, bearer_token
from cds_service.settings import Settings, SettingsError
from tests.support.auth import ISS_A, Keys
from tests.support.tokens import write_jwks


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
