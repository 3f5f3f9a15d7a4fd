"""The WhatsApp account (number) actor's pure side: its sending core and its transports.

``AccountCore`` enforces the per-recipient rate limit, idempotent sends and the pending
bound; a ``Transport`` (``loopback`` embedded, every kind in ``TRANSPORTS``) moves
the replies. Neither imports Thespian: the actor drives them with ``now`` and timers.
"""

from actors.account.core import AccountCore
from actors.account.kinds import TRANSPORTS, make_transport
from actors.account.transports import (
    LoopbackTransport,
    SendResult,
    SentRecord,
    Transport,
    TransportCrash,
    TransportFactory,
)

__all__ = [
    "TRANSPORTS",
    "AccountCore",
    "LoopbackTransport",
    "SendResult",
    "SentRecord",
    "Transport",
    "TransportCrash",
    "TransportFactory",
    "make_transport",
]
