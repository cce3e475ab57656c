"""The bundled demo client's tokens verify against the bundled demo issuer, and only for the URL named."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

import cds_service
from cds_service.demo_client import ISSUER, demo_token

URL = "http://127.0.0.1:8080/cds-services/naltrexone-order-select"
JWKS = Path(cds_service.__file__).parent / "auth_data" / "local-demo-jwks.json"


def public_key() -> jwt.PyJWK:
    return jwt.PyJWKSet.from_dict(json.loads(JWKS.read_text())).keys[0]


def test_a_demo_token_is_an_es384_jwt_for_that_url_from_the_demo_issuer() -> None:
    token = demo_token(URL)
    header = jwt.get_unverified_header(token)
    key = public_key()
    assert header["alg"] == "ES384" and header["kid"] == key.key_id and header["typ"] == "JWT"
    claims = jwt.decode(token, key.key, algorithms=["ES384"], audience=URL, issuer=ISSUER)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"] != jwt.decode(demo_token(URL), key.key, algorithms=["ES384"], audience=URL)["jti"]


def test_a_demo_token_is_refused_for_another_url() -> None:
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(demo_token(URL), public_key().key, algorithms=["ES384"], audience=URL + "x")
