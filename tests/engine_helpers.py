"""Helpers for engine tests: message builders and condition waits with deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from actors.engine import Engine
from protocols import ActorStats, InboundMessage, Outcome


def inbound(
    i: int | str, *, account: str = "acct-1", customer: str | None = None, text: str = "hi"
) -> InboundMessage:
    customer = customer or f"+1555{int(i) if str(i).isdigit() else 0:07d}"
    return InboundMessage(
        account_id=account, customer_id=customer, message_id=f"wamid.{i}", text=text
    )


def collect(engine: Engine, ids: Iterable[str], *, deadline_s: float = 30.0) -> dict[str, Outcome]:
    """Collect outcomes until every id in ``ids`` has one (or fail at the deadline)."""
    wanted = set(ids)
    got: dict[str, Outcome] = {}
    until = time.monotonic() + deadline_s
    while wanted - set(got) and time.monotonic() < until:
        for outcome in engine.outcomes(timeout=0.5):
            assert outcome.message_id not in got, f"second outcome for {outcome.message_id}"
            got[outcome.message_id] = outcome
    missing = wanted - set(got)
    assert not missing, f"no outcome within {deadline_s} s for {sorted(missing)[:5]}"
    return got


def wait_for(
    condition: Callable[[], bool], *, deadline_s: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` at the deadline."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        if condition():
            return
        threading.Event().wait(0.02)  # the poll interval of a condition wait
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")


def actor(engine: Engine, role: str, name: str | None = None) -> ActorStats:
    """The stats entry of one actor (the first of ``role`` when no ``name``)."""
    entry = engine.stats().actor(role, name)
    if entry is None:
        raise AssertionError(f"no {role} {name} in stats")
    return entry
