"""The WhatsApp account (number) actor's pure side: its sending core and its transports.

``AccountCore`` enforces the per-recipient rate limit, idempotent sends and the pending
bound; a ``Transport`` (``loopback`` embedded, others registered in ``TRANSPORTS``) moves
the replies. Neither imports Thespian: the actor drives them with ``now`` and timers.
"""

from actors.account.core import AccountCore
from actors.account.transports import (
    TRANSPORTS,
    LoopbackTransport,
    SendResult,
    SentRecord,
    Transport,
    TransportCrash,
    TransportFactory,
    make_transport,
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
