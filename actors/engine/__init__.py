"""The facade a gateway embeds: ``Engine`` and what it keeps on the caller's side.

``facade`` holds ``Engine`` (every call a blocking ask to the actor system), with
``commands`` (account and provider management) and ``collect`` (the outcome long poll);
``router_link`` finds and re-finds the router and retries asks with the same request id;
``ledger`` holds every accepted message until its one outcome; the ``intake*`` modules are
the durable intake store (every accepted message committed before ``submit`` returns, and
recovered at the next start); ``listeners`` holds the status-event subscriptions;
``journal`` writes what is abandoned at shutdown without a durable store; ``stats`` merges
the actors' reports into ``Engine.stats()``; ``shutdown`` and ``state`` settle the end and
hold the engine's lifecycle. Only ``facade`` (and what it imports) loads Thespian.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.config import BASES
from actors.engine.listeners import Subscription

if TYPE_CHECKING:
    from actors.engine.facade import Engine

__all__ = ["BASES", "Engine", "Subscription"]


def __getattr__(name: str) -> Any:
    # PEP 562: the facade imports Thespian; the ledger, listeners and journal do not, and
    # importing them (which runs this file first) should not load it either.
    if name == "Engine":
        from actors.engine.facade import Engine

        globals()["Engine"] = Engine
        return Engine
    raise AttributeError(f"module 'actors.engine' has no attribute {name!r}")
