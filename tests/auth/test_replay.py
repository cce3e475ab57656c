"""A token is accepted once: replay guards in memory and in the database, across processes."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from cds_service.auth import (
    AuthenticationFailed,
    FailureReason,
    InMemoryReplayGuard,
    ReplayGuard,
    TrustedIssuer,
    Verifier,
)
from cds_service.store import Store, sqlite_url
from tests.support.auth import FEEDBACK_URL, ISS_B, NOW, SERVICE_URL, Keys, claims_for, refused
from tests.support.tokens import sign

SECRET = "test-secret-for-hashing-ids"


def _verify_in_child(
    issuer: TrustedIssuer, database: Path, tokens: list[str], start: Any, results: Any
) -> None:  # pragma: no cover - runs in the child processes
    verifier = Verifier([issuer], Store(sqlite_url(database), secret=SECRET))
    start.wait(timeout=30)
    accepted, replayed = [], 0
    for token in tokens:
        try:
            accepted.append(verifier.verify(token, SERVICE_URL).jti)
        except AuthenticationFailed as error:
            assert error.reason is FailureReason.JTI_REPLAYED, error.reason
            replayed += 1
    results.put((accepted, replayed))


def test_a_replayed_jti_is_refused(keys: Keys, verifier: Verifier) -> None:
    token = sign(keys.a, claims_for())
    verifier.verify(token, SERVICE_URL)
    assert refused(verifier, token).reason is FailureReason.JTI_REPLAYED


def test_the_same_jti_from_another_issuer_is_not_a_replay(keys: Keys, verifier: Verifier) -> None:
    jti = str(uuid.uuid4())
    verifier.verify(sign(keys.a, claims_for(jti=jti)), SERVICE_URL)
    verifier.verify(sign(keys.b, claims_for(iss=ISS_B, jti=jti), kid="b-ec"), SERVICE_URL)


def test_a_refused_token_does_not_consume_its_jti(keys: Keys, verifier: Verifier) -> None:
    claims = claims_for()
    refused(verifier, sign(keys.a, claims), FEEDBACK_URL)  # wrong endpoint: refused before the jti
    verifier.verify(sign(keys.a, claims), SERVICE_URL)


def test_a_jti_is_accepted_once_across_two_worker_processes(
    keys: Keys, issuers: tuple[TrustedIssuer, ...], tmp_path: Path
) -> None:
    tokens = [sign(keys.a, claims_for(at=datetime.now(UTC))) for _ in range(25)]
    context = multiprocessing.get_context("spawn")  # like gunicorn's workers: separate interpreters
    start, results = context.Barrier(2), context.Queue()
    database = tmp_path / "jti.sqlite3"
    Store(sqlite_url(database), secret=SECRET).migrate()  # the audit database: the service's replay guard
    workers = [
        context.Process(target=_verify_in_child, args=(issuers[0], database, tokens, start, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    (first, first_replayed), (second, second_replayed) = outcomes
    assert sorted(first + second) == sorted(
        jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens
    )
    assert not set(first) & set(second)
    assert first_replayed + second_replayed == len(tokens)


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_replay_guards_forget_a_jti_once_it_has_expired(kind: str, tmp_path: Path) -> None:
    now = [NOW]
    guard: ReplayGuard
    if kind == "memory":
        guard = InMemoryReplayGuard(clock=lambda: now[0])
    else:
        store = Store(sqlite_url(tmp_path / "jti.sqlite3"), secret=SECRET, clock=lambda: now[0])
        store.migrate()
        guard = store
    until = NOW + timedelta(seconds=360)
    assert guard.first_use("iss", "jti-1", until)
    assert not guard.first_use("iss", "jti-1", until)
    assert guard.first_use("other-iss", "jti-1", until)
    now[0] = until + timedelta(seconds=1)
    assert guard.first_use("iss", "jti-1", until + timedelta(seconds=360))
