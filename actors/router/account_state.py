"""An account's lifecycle as the router sees it: the supervisor's news, as one table.

::

    unknown, up, down --up------> up        (an AccountUp, or listed up in Configure)
    up, down ----------down-----> down      (crashed; its replies wait for the restart)
    any ---------------failed---> failed    (past its restart policy; final)
    any ---------------removed--> unknown   (forgotten)

The loops (``up`` in ``up``, ``down`` in ``down``, ``failed`` in ``failed``) are news
the router can get twice: an account that crashed while the router itself was restarting
comes back with an AccountUp the router never saw go down, and a respawned account can
crash again before it is up; repeated news changes nothing. What the table refuses is
news that contradicts it: a failed account is never restarted (re-adding it removes it
first), so ``up`` or ``down`` for a ``failed`` account is a bug. ``down`` for an
``unknown`` account is not in the table: the core ignores it before asking (nothing of
it is held there).

``unknown`` is an account not in the router's table: the router keeps no entry for it,
so removed accounts cost no memory. The supervisor sends the event names as plain
strings (``AccountGone.state``): frames crossing processes carry no enum.
"""

from __future__ import annotations

import enum

from actors.cores.lifecycle import Lifecycle

__all__ = ["ACCOUNT", "AccountState"]


class AccountState(enum.StrEnum):
    """Where one account is, for the router."""

    UNKNOWN = "unknown"  # never heard of, or removed
    UP = "up"
    DOWN = "down"  # crashed, a restart is pending: hold its replies
    FAILED = "failed"  # given up: its messages are refused


_A = AccountState

ACCOUNT: Lifecycle[AccountState] = Lifecycle(
    "account",
    AccountState,
    {
        (_A.UNKNOWN, "up"): _A.UP,
        (_A.UP, "up"): _A.UP,
        (_A.DOWN, "up"): _A.UP,
        (_A.UP, "down"): _A.DOWN,
        (_A.DOWN, "down"): _A.DOWN,
        (_A.UNKNOWN, "failed"): _A.FAILED,
        (_A.UP, "failed"): _A.FAILED,
        (_A.DOWN, "failed"): _A.FAILED,
        (_A.FAILED, "failed"): _A.FAILED,
        (_A.UNKNOWN, "removed"): _A.UNKNOWN,
        (_A.UP, "removed"): _A.UNKNOWN,
        (_A.DOWN, "removed"): _A.UNKNOWN,
        (_A.FAILED, "removed"): _A.UNKNOWN,
    },
)
