"""Who may call the service: bearer-JWT verification per request (the checks are in ``auth.py``).

Authentication is on whenever trusted issuers are configured, and they always are: without
``NALTREXONE_CDS_TRUSTED_ISSUERS_FILE`` the bundled *demo* issuers are trusted (the CDS Hooks sandbox and
``naltrexone-cds demo-token``, whose private keys are public), which ``server.py`` allows only on a
loopback address. Turning authentication off takes the explicit ``NALTREXONE_CDS_ALLOW_UNAUTHENTICATED``,
announced loudly at start-up.

``jti`` replay is refused across worker processes and instances through the audit database; if the
database cannot be reached the check falls back to this process's memory (logged and counted), so
that a database outage does not stop clinical advice.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cds_service.auth import (
    DEMO_ISSUERS_FILE,
    AuthenticationFailed,
    InMemoryReplayGuard,
    ReplayGuard,
    TrustedIssuer,
    VerifiedClaims,
    Verifier,
    audience_url,
    bearer_token,
    load_trusted_issuers,
)
from cds_service.errors import Unauthorized
from cds_service.logs import log_fields
from cds_service.store import StoreUnavailable

log = logging.getLogger("naltrexone_cds.security")


class DatabaseReplayGuard:
    """``jti`` seen-before checks in the shared database, degrading to process memory when it is down."""

    def __init__(self, database: ReplayGuard) -> None:
        self._database = database
        self._fallback = InMemoryReplayGuard()
        self.degraded_checks = 0

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        try:
            return self._database.first_use(issuer, jti, expires_at)
        except StoreUnavailable:
            self.degraded_checks += 1
            log.error(
                "jti replay check fell back to process memory: the database is unavailable",
                extra=log_fields(degraded_checks=self.degraded_checks),
            )
            return self._fallback.first_use(issuer, jti, expires_at)


@dataclass(frozen=True)
class AuthPolicy:
    issuers: tuple[TrustedIssuer, ...]
    required: bool
    public_base_url: str
    issuers_file: Path

    @property
    def demo_issuers(self) -> tuple[str, ...]:
        return tuple(issuer.iss for issuer in self.issuers if issuer.demo_only)


def auth_policy(
    trusted_issuers_file: Path | None, *, allow_unauthenticated: bool, public_base_url: str
) -> AuthPolicy:
    issuers_file = trusted_issuers_file or DEMO_ISSUERS_FILE
    return AuthPolicy(
        issuers=load_trusted_issuers(issuers_file),
        required=not allow_unauthenticated,
        public_base_url=public_base_url.rstrip("/"),
        issuers_file=issuers_file,
    )


class Authenticator:
    """Checks the Authorization header of one call; builds its ``Verifier`` lazily in each process
    (its JWKS cache and HTTP client must not be shared across gunicorn's fork)."""

    def __init__(self, policy: AuthPolicy, replay_guard: ReplayGuard) -> None:
        self.policy = policy
        self._replay_guard = replay_guard
        self._lock = threading.Lock()
        self._verifier: Verifier | None = None
        self._pid = 0

    def authenticate(self, authorization: str | None, host_url: str, path: str) -> VerifiedClaims | None:
        """The verified claims, or ``None`` when authentication is off; ``Unauthorized`` otherwise."""
        if not self.policy.required:
            return None
        url = audience_url(self.policy.public_base_url or host_url.rstrip("/"), path)
        try:
            claims = self._verifier_for_this_process().verify(bearer_token(authorization), url)
        except AuthenticationFailed as failure:
            log.warning(
                "authentication refused",
                extra=log_fields(reason=str(failure.reason), detail=failure.detail or None, path=path),
            )
            raise Unauthorized("authentication is required") from None
        return claims

    def _verifier_for_this_process(self) -> Verifier:
        with self._lock:
            if self._verifier is None or self._pid != os.getpid():
                self._verifier = Verifier(self.policy.issuers, self._replay_guard)
                self._pid = os.getpid()
            return self._verifier
