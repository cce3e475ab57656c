"""Who may call the service: bearer-JWT authentication of CDS clients, decided in one place.

``AuthPolicy.from_settings`` decides whether authentication is on (always, unless
``NALTREXONE_CDS_ALLOW_UNAUTHENTICATED`` says otherwise) and whom it trusts: the issuers of
``NALTREXONE_CDS_TRUSTED_ISSUERS_FILE``, or the bundled *demo* issuers (the CDS Hooks sandbox and
``naltrexone-cds demo-token``, whose private keys are public), which ``server.py`` allows only on a loopback
address. ``Authenticator`` checks one call's ``Authorization`` header (the checks, in order, are in
``verify.py``); ``jti`` replay is refused across processes and instances through the audit database
(``replay.py``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cds_service import metrics
from cds_service.auth.issuers import DEMO_ISSUERS_FILE, IssuerConfigError, TrustedIssuer, load_trusted_issuers
from cds_service.auth.replay import DatabaseReplayGuard, InMemoryReplayGuard, ReplayGuard
from cds_service.auth.verify import (
    AuthenticationFailed,
    FailureReason,
    VerifiedClaims,
    Verifier,
    audience_url,
    bearer_token,
)
from cds_service.errors import Unauthorized
from cds_service.logs import log_fields
from cds_service.settings import Settings

__all__ = [
    "DEMO_ISSUERS_FILE",
    "AuthPolicy",
    "AuthenticationFailed",
    "Authenticator",
    "DatabaseReplayGuard",
    "FailureReason",
    "InMemoryReplayGuard",
    "IssuerConfigError",
    "ReplayGuard",
    "TrustedIssuer",
    "VerifiedClaims",
    "Verifier",
]

log = logging.getLogger("naltrexone_cds.auth")


@dataclass(frozen=True)
class AuthPolicy:
    issuers: tuple[TrustedIssuer, ...]
    required: bool
    """Whether calls must carry a valid bearer JWT: the one answer to "is authentication on?"."""
    public_base_url: str
    issuers_file: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthPolicy:
        issuers_file = settings.trusted_issuers_file or DEMO_ISSUERS_FILE
        return cls(
            issuers=load_trusted_issuers(issuers_file),
            required=not settings.allow_unauthenticated,
            public_base_url=settings.public_base_url.rstrip("/"),
            issuers_file=issuers_file,
        )

    @property
    def demo_issuers(self) -> tuple[str, ...]:
        return tuple(issuer.iss for issuer in self.issuers if issuer.demo_only)


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
            metrics.count_auth_refusal(failure.reason.name.lower())
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
