"""The facade a gateway embeds: ``Engine`` and what it keeps on the caller's side.

``facade`` holds ``Engine`` (every call a blocking ask to the actor system);
``router_link`` finds and re-finds the router and retries asks with the same request id;
``ledger`` holds every accepted message until its one outcome; ``listeners`` holds the
status-event subscriptions; ``journal`` writes what is abandoned at shutdown; ``stats``
merges the actors' reports into ``Engine.stats()``.
"""

from __future__ import annotations

from actors.config import BASES
from actors.engine.facade import Engine
from actors.engine.listeners import Subscription

__all__ = ["BASES", "Engine", "Subscription"]
