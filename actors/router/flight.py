"""One message in processing at the router (a flight): its stage, and the moves between.

::

    ai --ai_reply--> send --delivery--> ended
    ai --ai_failure--> ended

A flight waits at the pool (``ai``) until the AI answers, then at its account (``send``)
until the account reports the delivery, sent or not. Every other ending (its deadline, its
account gone, the pool failed, the drain deadline, too many send attempts) removes the
flight whatever its stage, so it needs no move. A result that the stage does not expect
(an AI reply for a flight already at its account, ...) is late: ``RouterCore`` asks
:meth:`Flight.expects` first and counts it instead of applying it.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from actors.cores.lifecycle import Lifecycle
from protocols import AIRequest, InboundMessage, OutboundReply

__all__ = ["FLIGHT", "Flight", "Flights", "Stage"]


class Stage(enum.StrEnum):
    """Where one message in processing is in the pipeline."""

    AI = "ai"  # its AI request is at the pool
    SEND = "send"  # its reply is at its account, or waits for the account to be up
    ENDED = "ended"  # its outcome is recorded (the router forgets it in the same call)


FLIGHT: Lifecycle[Stage] = Lifecycle(
    "flight",
    Stage,
    {
        (Stage.AI, "ai_reply"): Stage.SEND,
        (Stage.AI, "ai_failure"): Stage.ENDED,
        (Stage.SEND, "delivery"): Stage.ENDED,
    },
)


@dataclass(slots=True)
class Flight:
    """One message in processing: where it is in the pipeline."""

    msg: InboundMessage
    deadline: float
    stage: Stage = Stage.AI
    reply: str | None = None
    attempts: int = 0

    def expects(self, event: str) -> bool:
        """Whether ``event`` is legal in the current stage (otherwise it is late)."""
        return FLIGHT.allows(self.stage, event)

    def move(self, event: str) -> None:
        """Apply ``event`` to the stage.

        Raises:
            LifecycleError: the stage has no move for ``event``.
        """
        self.stage = FLIGHT.next(self.stage, event)

    def ai_request(self) -> AIRequest:
        """The request that asks the pool for this message's reply."""
        msg = self.msg
        return AIRequest.trusted(
            message_id=msg.message_id,
            account_id=msg.account_id,
            customer_id=msg.customer_id,
            text=msg.text,
            deadline=self.deadline,
            context_id=msg.context_id,
        )

    def outbound_reply(self) -> OutboundReply:
        """The reply that asks the account to send this message's answer."""
        msg = self.msg
        assert self.reply is not None, "a flight is sent only after its AI reply"
        return OutboundReply.trusted(
            account_id=msg.account_id,
            customer_id=msg.customer_id,
            message_id=msg.message_id,
            text=self.reply,
            deadline=self.deadline,
        )


class Flights(dict[str, Flight]):
    """The router's flights by message id, with the views its core asks for."""

    def at_pool(self) -> list[Flight]:
        """The flights whose AI request is at the pool (a list: callers end some)."""
        return [f for f in self.values() if f.stage is Stage.AI]

    def at_account(self, account_id: str) -> list[Flight]:
        """The flights whose reply is at (or waits for) ``account_id``."""
        return [
            f for f in self.values() if f.msg.account_id == account_id and f.stage is Stage.SEND
        ]

    def outstanding(self) -> tuple[int, dict[str, int]]:
        """Items held by the pool, and by each account (for depth/capacity in stats)."""
        pool = 0
        accounts: Counter[str] = Counter()
        for flight in self.values():
            if flight.stage is Stage.AI:
                pool += 1
            else:
                accounts[flight.msg.account_id] += 1
        return pool, dict(accounts)
