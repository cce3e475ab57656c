"""Stage 4: evaluate the rules with durable-rules, used the way that is safe in a web service.

durable-rules 2.0.28 has defects that crash or silently skip rules when used naively (measured in
the project's design notes). This module is the only place that touches it, and it:

* builds one ruleset, once, at start-up (a name cannot be registered twice; rebuilt rulesets leak);
* never starts the library's background timer threads (they walk freed state and crash);
* gives every evaluation its own session id and deletes that state in ``finally`` (at most 1,024
  live sessions per ruleset); deleting a session on which no action ever ran frees uninitialised
  pointers, so when no rule matched, an "init" fact matched by a no-op rule is asserted first (when a
  rule did match, its action already ran: the init fact's own action round trip is saved); should
  even that fail, the session is left and counted in ``abandoned_sessions`` (the server then replaces
  the worker process);
* asserts facts one at a time and ignores "not handled" per fact (a batch hides matches);
* keeps every condition on a single fact whose absences were computed in Python (negation in the
  engine depends on assertion order).

Actions run synchronously in the calling thread, so each evaluation's matches are collected in a
per-session list; the C calls hold the GIL, so threads are safe, and gunicorn workers fork after the
ruleset is built.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from durable import engine as durable

if TYPE_CHECKING:  # the rule book is built by knowledge, which builds the engine from it
    from cds_service.knowledge.rulebook import RuleBook

RULESET = "naltrexone_cds"
_INIT = "engine-init"
_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class Match:
    rule_id: str
    variant: int
    fact_id: str


class _SynchronousHost(durable.Host):  # type: ignore[misc]
    """A Host without the timer threads: actions run in the thread that asserts the fact."""

    def _run(self) -> None:
        return None


class RuleEngineError(RuntimeError):
    """The engine could not evaluate a request (the request gets a 500; the process keeps serving)."""


class RuleEngine:
    def __init__(self, rulebook: RuleBook) -> None:
        self._sessions: dict[str, list[Match]] = {}
        self.abandoned_sessions = 0
        """Sessions that could not be closed (a fault inside durable-rules): they stay in this process."""
        definition: dict[str, Any] = {
            _INIT: {"all": [{"m": {"t": _INIT}}], "pri": -1_000_000, "run": _ignore},
        }
        for rule in rulebook.rules:
            for index, variant in enumerate(rule.variants):
                name = f"{rule.id}{_SEPARATOR}{index}"
                definition[name] = {
                    "all": [{"m": {"$and": [{"t": "order"}, dict(variant.condition)]}}],
                    "pri": rule.position,
                    "run": self._recorder(rule.id, index),
                }
        self._host = _SynchronousHost()
        self._host.register_rulesets({RULESET: definition})

    def _recorder(self, rule_id: str, variant: int) -> Callable[[Any], None]:
        def record(closure: Any) -> None:
            fact = closure.m
            matches = self._sessions.get(fact.sid)
            if matches is not None:
                matches.append(Match(rule_id, variant, fact.id))

        return record

    def evaluate(self, facts: Sequence[Mapping[str, Any]]) -> list[Match]:
        """Matches of every rule variant against each fact (one fact per reviewed order)."""
        sid = uuid.uuid4().hex
        matches: list[Match] = []
        self._sessions[sid] = matches
        try:
            for fact in facts:
                self._assert({**fact, "sid": sid, "t": "order"})
            return list(matches)
        except durable.MessageObservedException as exc:
            raise RuleEngineError("two facts of one request share an id") from exc
        finally:
            self._sessions.pop(sid, None)
            self._close(sid, action_ran=bool(matches))

    def _close(self, sid: str, *, action_ran: bool) -> None:
        if not action_ran:  # no action has run on this session: make one run before deleting it
            try:
                self._assert({"id": _INIT, "sid": sid, "t": _INIT})
            except BaseException:
                # Deleting it now could free uninitialised pointers (a crash). Left behind, it keeps about
                # 0.6 MB, and the 1,024th left in one process crashes it: counted here, so that the
                # server replaces the worker after this request (server.py).
                self.abandoned_sessions += 1
                raise
        try:
            self._host.delete_state(RULESET, sid)
        except BaseException:
            self.abandoned_sessions += 1  # whatever it left behind stays: the worker is retired likewise
            raise

    def _assert(self, fact: Mapping[str, Any]) -> None:
        with contextlib.suppress(durable.MessageNotHandledException):  # no rule matched this fact
            self._host.assert_fact(RULESET, dict(fact))


def _ignore(closure: Any) -> None:
    return None
