"""Where the bearer JWTs come from: one fresh token per call, its ``aud`` the exact URL called (the service
refuses a replayed ``jti``). Signed here with the integrator's private key, printed by a command of theirs,
or from the bundled demo client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.check.target import TokenSource, UsageProblem

AUD_VARIABLE = "NALTREXONE_CDS_CHECK_AUD"
"""The environment variable that tells a ``--token-command`` which URL (the token's ``aud``) it signs for."""
TOKEN_LIFETIME_SECONDS = 300


class TokenError(Exception):
    """No token could be had for a call (the token command failed): the run stops (exit status 2)."""


class NoTokens:
    def token(self, url: str) -> str | None:
        return None


class DemoTokens:
    """The bundled demo client: trusted only by an instance on loopback with the demo issuers."""

    def token(self, url: str) -> str | None:
        from cds_service.demo_client import demo_token

        return demo_token(url)


@dataclass(frozen=True)
class SigningKey:
    """Signs each token here with the integrator's private key, as their CDS client would."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    issuer: str
    kid: str
    algorithm: str
    tenant: str | None = None

    def token(self, url: str) -> str | None:
        issued = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": url,
            "iat": issued,
            "exp": issued + TOKEN_LIFETIME_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        if self.tenant:
            claims["tenant"] = self.tenant
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})


@dataclass(frozen=True)
class TokenCommand:
    """Runs a command (through the shell) per call; it prints one token, for the URL in ``AUD_VARIABLE``."""

    command: str
    timeout: float

    def token(self, url: str) -> str | None:
        try:
            done = subprocess.run(
                self.command,
                shell=True,
                env={**os.environ, AUD_VARIABLE: url},
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TokenError(f"the token command did not finish in {self.timeout:g} s") from None
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["(nothing on standard error)"])[-1]
            raise TokenError(f"the token command exited with status {done.returncode}: {said[:200]}")
        token = done.stdout.strip()
        if not token or len(token.split()) != 1:
            raise TokenError("the token command must print exactly one token")
        return token


def token_source(
    *,
    demo: bool = False,
    private_key: Path | None = None,
    issuer: str | None = None,
    kid: str | None = None,
    algorithm: str | None = None,
    tenant: str | None = None,
    token_command: str | None = None,
    allow_unauthenticated: bool = False,
    timeout: float = 10.0,
) -> TokenSource:
    """The token source the options name; ``UsageProblem`` when they name none, several, or a bad one."""
    chosen = [
        name
        for name, given in (
            ("--demo", demo),
            ("--private-key", private_key),
            ("--token-command", token_command),
        )
        if given
    ]
    if len(chosen) > 1:
        raise UsageProblem(f"give one way to get tokens, not {' and '.join(chosen)}")
    if (issuer or kid or algorithm or tenant) and private_key is None:
        raise UsageProblem("--issuer, --kid, --alg and --tenant go with --private-key")
    if demo:
        return DemoTokens()
    if token_command:
        return TokenCommand(token_command, timeout)
    if private_key is not None:
        return _signing_key(private_key, issuer, kid, algorithm, tenant)
    if allow_unauthenticated:
        return NoTokens()
    raise UsageProblem(
        "give a token source: --private-key PEM --issuer ISS, --token-command CMD, or --demo "
        "(or --allow-unauthenticated for an instance that runs without authentication)"
    )


def _signing_key(
    path: Path, issuer: str | None, kid: str | None, algorithm: str | None, tenant: str | None
) -> SigningKey:
    if not issuer:
        raise UsageProblem("--private-key needs --issuer (the iss the instance trusts)")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise UsageProblem(f"{path} is not an unencrypted PEM private key: {error}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        fits, default = algorithm in (None, "ES384") and key.curve.name == "secp384r1", "ES384"
    elif isinstance(key, rsa.RSAPrivateKey):
        fits, default = algorithm in (None, "RS384"), "RS384"
    else:
        raise UsageProblem(f"{path} holds neither an EC nor an RSA key")
    if not fits:
        raise UsageProblem(f"{path} holds a key that cannot sign {algorithm or 'ES384 (P-384 needed)'}")
    return SigningKey(key, issuer, kid or jwk_thumbprint(key.public_key()), algorithm or default, tenant)


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The RFC 7638 thumbprint of a public key: the ``kid`` used when ``--kid`` is not given."""
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
        members = {name: jwk[name] for name in ("e", "kty", "n")}
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)
        members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def with_wrong_signature(token: str) -> str:
    """``token`` with its signature bytes changed: same header and claims, a signature nobody made."""
    head, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) if head else b""
    if not raw:
        return token[:-1] + ("A" if token[-1:] != "A" else "B")
    forged = bytes(byte ^ 0x5A for byte in raw)
    return head + "." + base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
