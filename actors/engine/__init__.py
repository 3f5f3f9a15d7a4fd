"""The facade a gateway embeds: ``Engine`` and what it keeps on the caller's side.

``facade`` holds ``Engine`` (every call a blocking ask to the actor system);
``router_link`` finds and re-finds the router and retries asks with the same request id;
``ledger`` holds every accepted message until its one outcome; ``listeners`` holds the
status-event subscriptions; ``journal`` writes what is abandoned at shutdown; ``stats``
merges the actors' reports into ``Engine.stats()``. Only ``facade`` (and what it imports)
loads Thespian.
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
