"""The wait for outcomes behind ``Engine.outcomes``: ask the router, resolve, time out.

The engine holds its lock around this loop; the loop holds the order that makes outcomes
right: the router is heard before anything is timed out (an outcome collected late is
the real one), and an answer that settles nothing new does not end the wait early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.engine.intake_book import MessageBook
from actors.engine.listeners import Listeners
from protocols import CollectOutcomes, Outcome, OutcomeBatch

__all__ = ["collect"]


def collect(
    out: list[Outcome],
    timeout: float,
    max_items: int,
    *,
    book: MessageBook,
    listeners: Listeners,
    ask_router: Callable[[CollectOutcomes, float], Any],
    generation: Callable[[], int],
    ask_timeout_s: float,
) -> list[Outcome]:
    """``out``, plus what the router has (waiting up to ``timeout`` if there is none).

    Args:
        out: the outcomes already ready (extended in place and returned).
        timeout: how long to wait for a first outcome when there is none.
        max_items: the most outcomes to return.
        book: the engine's message book (ledger and intake store).
        listeners: the status-event subscriptions the router's events go to.
        ask_router: the engine's router ask (message, timeout).
        generation: the router generation the engine knows now.
        ask_timeout_s: how long one ask waits beyond the router's own wait.

    Returns:
        ``out`` with the router's new outcomes and the expired messages' timeouts.
    """
    until = time.time() + max(0.0, timeout)
    while True:
        # Hear from the router before timing anything out: an outcome it holds for a
        # message past its deadline (collected late) is the real one, not a timeout.
        due = book.ledger.next_wakeup()
        overdue = due is not None and due <= time.time()
        wait_s = 0.0 if out or overdue else max(0.0, until - time.time())
        reply = ask_router(
            CollectOutcomes(
                max_items=max(1, max_items - len(out)),
                wait_s=wait_s,
                generation=generation(),
            ),
            wait_s + ask_timeout_s,
        )
        if isinstance(reply, OutcomeBatch):
            out += book.resolve(reply.outcomes)
            for event in reply.events:
                listeners.dispatch(event)
        # What is still unresolved past its deadline (+ grace) has no actor answering.
        out += book.expire(time.time())
        # An answer may carry only events, or only outcomes this ledger had already
        # settled: keep waiting for a real one until the timeout.
        if out or wait_s <= 0 or not isinstance(reply, OutcomeBatch):
            return out
