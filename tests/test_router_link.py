"""Asks that survive late answers: correlation by request id, retries with the same id."""

from __future__ import annotations

from collections import deque
from typing import Any

from actors.engine.ledger import Ledger
from actors.engine.router_link import ATTEMPTS, RouterLink
from actors.runtime.system import SystemHandle
from protocols import (
    Accepted,
    CollectOutcomes,
    Outcome,
    OutcomeBatch,
    SubmitBatch,
    SubmitResults,
)
from tests.engine_helpers import inbound


class ScriptedSystem:
    """Stands in for Thespian's ActorSystem: ask/listen return scripted messages in order."""

    def __init__(self, *answers: Any) -> None:
        self.answers: deque[Any] = deque(answers)
        self.sent: list[Any] = []

    def ask(self, target: Any, msg: Any, timeout: float) -> Any:
        self.sent.append(msg)
        return self.answers.popleft() if self.answers else None

    def listen(self, timeout: float) -> Any:
        return self.answers.popleft() if self.answers else None


def handle(system: ScriptedSystem) -> SystemHandle:
    h = SystemHandle("simpleSystemBase", None)
    h._system = system
    return h


def test_a_late_answer_to_an_earlier_ask_is_set_aside_not_taken_for_this_one() -> None:
    late = OutcomeBatch(
        outcomes=(Outcome(message_id="m0", status="replied", reply="r"),),
        generation=1,
        request_id=1,
    )
    right = OutcomeBatch(generation=1, request_id=2)
    system = ScriptedSystem(late, right)
    link = RouterLink(handle(system), "router", 1, ask_timeout_s=1.0, restart_wait_s=0.0)
    link._request = 1  # request 1 was given up earlier; this ask is request 2
    reply = link.ask(CollectOutcomes(max_items=10), 1.0, Ledger(capacity=10))
    assert reply is right
    assert [o.message_id for o in link.take_set_aside()] == ["m0"]  # its outcome is kept


def test_an_unanswered_request_is_asked_again_with_the_same_id() -> None:
    answer = SubmitResults(results=(Accepted(message_id="wamid.1"),), generation=1, request_id=1)
    system = ScriptedSystem(None, answer)  # the first try gets nothing back
    h = handle(system)
    h.supervisor = "supervisor"
    link = RouterLink(h, "router", 1, ask_timeout_s=0.01, restart_wait_s=0.0)
    link._relocate = lambda ledger: False  # type: ignore[method-assign]  # alive, same generation
    reply = link.ask(SubmitBatch(messages=(inbound(1),)), 0.01, Ledger(capacity=10))
    assert reply is answer
    ids = [m.request_id for m in system.sent]
    assert ids == [1, 1]


def test_after_every_try_failed_the_link_gives_up() -> None:
    system = ScriptedSystem()
    link = RouterLink(handle(system), "router", 1, ask_timeout_s=0.01, restart_wait_s=0.0)
    link._relocate = lambda ledger: False  # type: ignore[method-assign]
    assert link.ask(SubmitBatch(messages=(inbound(1),)), 0.01, Ledger(capacity=10)) is None
    assert len(system.sent) == ATTEMPTS
