"""Thespian's transmit limits, set by the engine: a hung peer must not stall its senders.

What Thespian does with a peer that stops reading
    A send to a process that is frozen (SIGSTOP), or on a host cut off by the network,
    neither fails nor ends: the frame is written, its acknowledgement never comes, and
    the transmit stays *pending* until Thespian's transmit timeout
    (``THESPIAN_TRANSMIT_TIMEOUT_PERIOD``, 5 minutes by default) drops it without a dead
    letter. Each actor process lets ``THESPIAN_MAX_PENDING_TRANSMITS`` (20 by default)
    transmits be pending at once, **to all peers together**; past that every send, to
    anyone, waits in a queue, and past ``THESPIAN_MAX_QUEUED_TRANSMITS`` (950) the process
    stops reading until it drains. So twenty sends to one frozen member stalled the
    supervisor for everything: measured with ``scripts/run --members 2 --member-freeze 6``,
    ``Engine.stats()`` timed out and the frozen member's accounts were re-created only
    after it resumed, 12 s later, instead of ~3 s after the freeze.

What the engine sets (:data:`TRANSMITS`)
    ``THESPIAN_MAX_PENDING_TRANSMITS`` 4096: Thespian's count is no longer the bound;
    the engine's own are, and they are per peer: the router has at most ``batch_window``
    batches unacknowledged per account (:mod:`actors.cores.window`), the supervisor at
    most one stats question per child (:mod:`actors.supervisor.stats`), and grants a
    lease only in answer to an ask. So a frozen member holds a few pending transmits per
    account of its own, and the others' go out as before.

What it leaves alone
    ``THESPIAN_TRANSMIT_TIMEOUT_PERIOD`` stays Thespian's 5 minutes. Thespian drops a
    transmit at that timeout without a dead letter, and the batch windows assume that
    what they sent arrives (they never send again): a shorter timeout would turn a
    peer stalled that long (a process stopped in a debugger, a host swapping) into a
    window that never opens again. The transmits to a lost member wait in their
    senders until then, a few per account, then go.
"""

from __future__ import annotations

from actors.runtime import thespian_env
from actors.runtime.thespian_env import ThespianSetting

__all__ = ["TRANSMITS", "apply", "effective"]

TRANSMITS = (
    ThespianSetting(
        "THESPIAN_MAX_PENDING_TRANSMITS",
        "4096",
        "thespian.system.transport.asyncTransportBase",
        "MAX_PENDING_TRANSMITS",
    ),
)
"""The variables the engine sets, where Thespian keeps each (module, global)."""


def apply() -> None:
    """Make Thespian use :data:`TRANSMITS` here and in every process it forks (idempotent)."""
    thespian_env.apply(TRANSMITS, by="actors.runtime.transmits")


def effective() -> dict[str, str]:
    """What Thespian holds now (importing its modules), by variable."""
    return thespian_env.effective(TRANSMITS)
