"""Pure policy cores: every bound and policy of the engine, with no Thespian import.

Each core takes the time as an argument (``now``), keeps each bound as a constructor
argument, and costs O(1) amortized per call in the number of keys it holds.
"""

from actors.cores.dedupe import DedupeSet
from actors.cores.gate import ConversationGate, Item, Offer, Step
from actors.cores.ratelog import RateDecision, RecipientRateLog, sweep_budget_for
from actors.cores.restart import GiveUp, Restart, RestartDecision, RestartPolicy
from actors.cores.selector import (
    Chosen,
    LoadResult,
    ProviderLike,
    ProviderSelector,
    ProviderState,
    Unavailable,
)

__all__ = [
    "Chosen",
    "ConversationGate",
    "DedupeSet",
    "GiveUp",
    "Item",
    "LoadResult",
    "Offer",
    "ProviderLike",
    "ProviderSelector",
    "ProviderState",
    "RateDecision",
    "RecipientRateLog",
    "Restart",
    "RestartDecision",
    "RestartPolicy",
    "Step",
    "Unavailable",
    "sweep_budget_for",
]
