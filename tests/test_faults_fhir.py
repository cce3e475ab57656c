"""Faults of the EHR's FHIR server, against the real server (gunicorn, two workers) over HTTP.

Every request here leaves its prefetch out, so the service must fetch all 13 prefetch queries from
``fhirServer`` within its budget (``NALTREXONE_CDS_FHIR_BUDGET_MS``, 300 ms). The bad FHIR server
(tests/support/fault_fhir.py) runs in a child process, so that its work does not slow this process's
clock-keeping client. For each fault an integrator checks: the answer is a 200 within the budget plus a
small margin, it carries the data-gap cards (``opioid-history-unverified``, ``patient-data-unverified``)
saying why, and the next request to a healthy FHIR server is answered quickly with all its data.

The margin: on this 2-core machine the answer to a fault that uses the whole budget comes 5-25 ms after
it (the budget is measured from the start of fetching; the HTTP layer, the rules and the audit write come
on top), and a healthy fetch answers in 15-40 ms. ``MARGIN`` allows ten times the overshoot seen, for a
loaded CI machine; an abandoned download holding the interpreter (a 40 MB page parsed after the deadline)
overshot by seconds before ``FetchPolicy.max_page_bytes`` and the streamed read existed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fhir_fixtures import as_of_today
from tests.support.fault_fhir import fault_server_process
from tests.support.live import LiveServer, closed_port

pytestmark = pytest.mark.live

BUDGET_MS = 300
MARGIN_MS = 250
LIMIT_S = (BUDGET_MS + MARGIN_MS) / 1000
SELECT = "/cds-services/naltrexone-order-select"
DATA_GAPS = {"opioid-history-unverified", "patient-data-unverified"}
ROUNDS = 5  # requests per fault (two workers: each sees the fault more than once)

# fault -> what the data-gap card must give as the reason
FAULTS = {
    "down": ("could not connect",),
    "slow": (f"no answer within the {BUDGET_MS} ms budget",),
    "reset": ("could not connect",),
    "hangup": ("could not connect",),
    "garbage": ("the response is not JSON",),
    "huge": ("a page larger than 8 MiB",),
    # no Content-Length: read until the limit, unless the budget runs out first on a slow machine
    "huge-unsized": ("a page larger than 8 MiB", f"no answer within the {BUDGET_MS} ms budget"),
    "trickle": (f"no answer within the {BUDGET_MS} ms budget",),
    # compressed answers are undone only up to the limit: a bomb never expands in memory
    "gzip-bomb": ("a page larger than 8 MiB",),
    "gzip-twice": ("a page in a content coding this service does not read",),
    "gzip-huge": ("a page larger than 8 MiB", f"no answer within the {BUDGET_MS} ms budget"),
}


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    cards: dict[str, dict[str, Any]]


class Service:
    """The live server and the FHIR servers its requests name."""

    def __init__(self, server: LiveServer, base: Callable[[str], str], closed: int) -> None:
        self.server = server
        self.base = base
        self.closed = closed

    def fhir(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.closed}/fhir" if mode == "down" else self.base(mode)

    def call(self, mode: str) -> Answer:
        body = as_of_today("test-dose")
        del body["prefetch"]
        body["fhirServer"] = self.fhir(mode)
        with httpx.Client(base_url=self.server.url, timeout=30) as http:
            started = time.monotonic()
            response = http.post(SELECT, json=body)
            seconds = time.monotonic() - started
        cards = response.json().get("cards", []) if response.status_code == 200 else []
        return Answer(response.status_code, seconds, {c["source"]["topic"]["code"]: c for c in cards})


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("faults-fhir")
    with fault_server_process() as base, closed_port() as closed:
        server = LiveServer(
            workdir / "server.log",
            env={
                "NALTREXONE_CDS_FHIR_BUDGET_MS": str(BUDGET_MS),
                "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{workdir}/audit.sqlite3",
            },
            workers=2,
        )
        try:
            live = Service(server, base, closed)
            for _ in range(6):  # each worker's first fetch builds its client and thread pool
                assert live.call("ok").status == 200
            yield live
        finally:
            server.stop()


def assert_healthy_fetch(service: Service, after: str) -> list[float]:
    """A request to a healthy FHIR server (empty searchsets) gets all its data, quickly, on both workers."""
    answers = [service.call("ok") for _ in range(4)]
    for answer in answers:
        assert answer.status == 200
        assert not DATA_GAPS & set(answer.cards), (
            f"after {after}: a healthy fetch lost data ({answer.seconds:.3f} s): {sorted(answer.cards)}"
        )
        assert answer.seconds < BUDGET_MS / 1000, (
            f"after {after}: a healthy fetch took {answer.seconds:.3f} s"
        )
    return [a.seconds for a in answers]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fhir_fault_is_answered_within_the_budget_with_the_data_gap_cards(
    service: Service, fault: str
) -> None:
    answers = [service.call(fault) for _ in range(ROUNDS)]
    seconds = sorted(a.seconds for a in answers)
    healthy = assert_healthy_fetch(service, fault)
    print(
        f"\n{fault}: answers in {seconds[0] * 1000:.0f}-{seconds[-1] * 1000:.0f} ms "
        f"(budget {BUDGET_MS}); healthy fetch after it: {max(healthy) * 1000:.0f} ms at most"
    )
    for answer in answers:
        assert answer.status == 200
        assert answer.seconds < LIMIT_S, f"{fault}: answered in {answer.seconds:.3f} s"
        assert set(answer.cards) >= DATA_GAPS, f"{fault}: {sorted(answer.cards)}"
        for rule in DATA_GAPS:
            assert answer.cards[rule]["indicator"] == "warning"
        reason = answer.cards["opioid-history-unverified"]["detail"]
        assert any(expected in reason for expected in FAULTS[fault]), reason


def test_thirty_abandoned_fetches_leave_the_next_requests_unharmed(service: Service) -> None:
    """Downloads the service gave up on (a trickling page, an enormous one, a server that never answers)
    must not keep the fetch threads busy: before the streamed read, 13 threads per request stayed on a
    trickling page for its 20 s, and every request after the second lost all its data to the budget."""
    modes = ["trickle", "huge-unsized", "slow"] * 10
    answers = [service.call(mode) for mode in modes]
    assert all(a.status == 200 and set(a.cards) >= DATA_GAPS for a in answers)
    worst = max(a.seconds for a in answers)
    assert worst < LIMIT_S, f"a fault answered in {worst:.3f} s"
    healthy = assert_healthy_fetch(service, "30 abandoned fetches")
    print(
        f"\n30 faults: slowest answer {worst * 1000:.0f} ms; then healthy fetches in "
        f"{min(healthy) * 1000:.0f}-{max(healthy) * 1000:.0f} ms"
    )
    log = service.server.logs()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log


def test_the_fault_server_really_misbehaves(service: Service) -> None:
    """The faults are what they say (a test of the test peer): the huge page is 40 MB of valid FHIR, the
    trickle does not end within the budget, the reset is a reset."""
    huge = httpx.get(service.base("huge") + "/Observation", timeout=30)
    assert len(huge.content) >= 40 * 1024 * 1024 - 1024 and huge.json()["resourceType"] == "Bundle"
    with httpx.stream("GET", service.base("trickle") + "/Observation", timeout=5) as trickle:
        started = time.monotonic()
        for _ in trickle.iter_bytes():
            if time.monotonic() - started > 1.0:
                break
        else:
            pytest.fail("the trickling page ended within a second")
    with pytest.raises(httpx.ReadError):
        httpx.get(service.base("reset") + "/Observation", timeout=5)
    assert (
        len(httpx.get(service.base("gzip-huge") + "/Observation", timeout=30).content)
        >= 40 * 1024 * 1024 - 1024
    )


def test_a_gzipped_page_within_the_limit_is_read(service: Service) -> None:
    answer = service.call("gzip-ok")
    assert answer.status == 200 and not DATA_GAPS & set(answer.cards), sorted(answer.cards)
