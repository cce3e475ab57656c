"""The bundled demo CDS client: signs bearer JWTs so the service can be tried with curl.

Its private key (``auth_data/local-demo-private-key.pem``) is part of the package and therefore
public: a token it signs proves nothing about who sends it. The service trusts this client only through
the bundled demo issuer file, which it accepts only on a loopback address (see ``server.py``).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt

_DATA = Path(__file__).resolve().parent / "auth_data"
ISSUER = "https://naltrexone-cds.local/demo-client"


def demo_token(url: str, *, lifetime_seconds: int = 300) -> str:
    key = (_DATA / "local-demo-private-key.pem").read_bytes()
    kid = json.loads((_DATA / "local-demo-jwks.json").read_text())["keys"][0]["kid"]
    issued = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": url,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})
