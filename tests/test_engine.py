"""durable-rules under load: many evaluations across threads and processes, no crash, no wrong answer,
no growth in memory."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from cds_service.engine import Match, RuleEngine
from cds_service.facts import vocabulary
from cds_service.knowledge import Knowledge
from cds_service.pipeline import default_knowledge

KNOWLEDGE: Knowledge = default_knowledge()

BASE: dict[str, Any] = {name: False for name in vocabulary().facts} | {
    "kind": "naltrexone-oral",
    "regimen": "50-mg-daily",
    "naltrexone_start": True,
    "standard_or_injectable": True,
    "dose_known": True,
    "dose_mg": 50,
    "bedtime": True,
    "ldn_on_plan": True,
    "uds_recent": True,
    "challenge_recent": True,
    "lft_recent": True,
    "naloxone_rescue_recent": True,
}
BASE.pop("lft_max_uln_multiple")
BASE.pop("bilirubin_uln_multiple")

PROTOTYPES: list[dict[str, Any]] = [
    BASE,  # a fully worked-up start: matches nothing
    BASE | {"kind": "other", "naltrexone_start": False},  # matches nothing
    BASE | {"opioid_active": True, "opioid_use_disorder": True},
    BASE | {"kind": "naltrexone-low-dose", "dose_mg": 6, "regimen": "unrecognized", "bedtime": False},
    BASE | {"lft_max_uln_multiple": 5.5, "opioid_within_washout": True},
    BASE | {"kind": "opioid", "naltrexone_start": False, "naltrexone_blockade": True},
]


def signature(matches: list[Match]) -> Counter[tuple[str, int]]:
    return Counter((m.rule_id, m.variant) for m in matches)


def expected_results(engine: RuleEngine) -> list[Counter[tuple[str, int]]]:
    return [signature(engine.evaluate([dict(p, id="order-0")])) for p in PROTOTYPES]


def test_expected_results_are_what_the_rules_say() -> None:
    expected = expected_results(KNOWLEDGE.engine)
    assert expected[0] == Counter() and expected[1] == Counter()
    assert ("opioid-active", 0) in expected[2]
    assert {("ldn-max-dose", 0), ("ldn-bedtime", 0)} <= set(expected[3])
    assert ("lft-elevated", 0) in expected[4]  # critical variant
    assert set(expected[5]) == {("opioid-blockade", 0)}


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _evaluate_from_threads(
    seed: int, count: int, expected: list[Counter[tuple[str, int]]], errors: list[str]
) -> None:
    engine = KNOWLEDGE.engine
    rng = random.Random(seed)
    for _ in range(count):
        chosen = rng.sample(range(len(PROTOTYPES)), k=rng.choice([1, 1, 2]))
        facts = [dict(PROTOTYPES[i], id=f"order-{n}") for n, i in enumerate(chosen)]
        got = engine.evaluate(facts)
        for n, i in enumerate(chosen):
            mine = signature([m for m in got if m.fact_id == f"order-{n}"])
            if mine != expected[i]:
                errors.append(f"prototype {i}: {mine} != {expected[i]}")


def _load_in_a_fresh_process(queue: Any) -> None:
    """Runs in a process of its own, so that no other test's threads or allocations move its RSS."""
    expected = expected_results(KNOWLEDGE.engine)
    errors: list[str] = []

    def run(threads: int, per_thread: int) -> None:
        pool = [
            threading.Thread(target=_evaluate_from_threads, args=(seed, per_thread, expected, errors))
            for seed in range(threads)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    run(8, 250)  # warm-up with as many threads: allocator arenas and pools reach their working size
    before = _rss_kib()
    run(8, 1000)  # 8,000 evaluations, about a third matching nothing
    queue.put((errors[:5], len(errors), _rss_kib() - before))


def test_thousands_of_evaluations_across_threads() -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_load_in_a_fresh_process, args=(queue,))
    child.start()
    first_errors, error_count, growth = queue.get(timeout=300)
    child.join(timeout=30)
    assert error_count == 0, first_errors
    assert growth < 8 * 1024, f"resident memory grew by {growth} KiB"


def _evaluate_in_child(queue: Any) -> None:
    engine = KNOWLEDGE.engine
    results = [sorted(signature(engine.evaluate([dict(p, id="order-0")])).items()) for p in PROTOTYPES]
    queue.put(results)


def test_the_engine_built_before_fork_works_in_worker_processes() -> None:
    """gunicorn preloads the app: the ruleset is built in the master and used by forked workers."""
    expected = [sorted(counter.items()) for counter in expected_results(KNOWLEDGE.engine)]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_evaluate_in_child, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert results == [expected, expected]
