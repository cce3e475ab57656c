"""Signed JWTs for the tests, made with keys generated here (PyJWT and cryptography, as a real client)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def write_jwks(path: Path, *keys: tuple[Any, str]) -> Path:
    path.write_text(json.dumps({"keys": [public_jwk(key, kid) for key, kid in keys]}))
    return path


def claims(iss: str, aud: Any, at: datetime, **extra: Any) -> dict[str, Any]:
    """A CDS Hooks token's claims issued at ``at`` for five minutes; an ``extra`` of None drops a claim."""
    issued = int(at.timestamp())
    body = {"iss": iss, "aud": aud, "iat": issued, "exp": issued + 300, "jti": str(uuid.uuid4())}
    body.update(extra)
    return {name: value for name, value in body.items() if value is not None}


def sign(
    key: Any, claims: dict[str, Any], *, alg: str = "ES384", kid: str | None = "a-ec", **header: Any
) -> str:
    headers = {"kid": kid, **header} if kid is not None else header
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: Callable[[bytes], bytes]) -> str:
    """A token built by hand, for the algorithms PyJWT rightly refuses to produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signature(signing_input.encode()))}"
