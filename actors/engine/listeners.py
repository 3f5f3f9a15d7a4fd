"""Subscriptions to account status events, bounded per account, ended on removal.

The seed set ``setMaxListeners(50)`` on each account's emitter and called
``removeAllListeners()`` at shutdown. Here :class:`Listeners` refuses the subscription
past the limit with :class:`ListenerLimitError` (Node only printed a leak warning), and
:meth:`Listeners.close_account` / :meth:`Listeners.close_all` end every subscription so
a caller can see (``Subscription.active``) that no more events will come.

Memory is bounded by ``max_per_account`` times the number of accounts the facade lets
callers subscribe to (it subscribes only to accounts it knows and closes an account's
subscriptions when the account is removed); an account whose last subscription ends is
forgotten.

Not thread-safe: the facade calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from actors.cores._args import require_int
from actors.errors import ListenerLimitError
from protocols.management import AccountEvent

__all__ = ["Callback", "ListenerLimitError", "Listeners", "Subscription"]

Callback = Callable[[AccountEvent], object]
"""A status-event callback; its return value is ignored."""


class Subscription:
    """One callback subscribed to one account's status events.

    ``active`` is True until :meth:`cancel`, or until the account's subscriptions are
    closed (account removed, shutdown); after that the callback is never called again.
    """

    __slots__ = ("_active", "_owner", "_token", "account_id", "callback")

    def __init__(self, owner: Listeners, token: int, account_id: str, callback: Callback) -> None:
        self._owner = owner
        self._token = token
        self._active = True
        self.account_id = account_id
        self.callback = callback

    def __repr__(self) -> str:
        state = "active" if self._active else "ended"
        return f"<Subscription account={self.account_id!r} {state}>"

    @property
    def active(self) -> bool:
        """True while events of the account may still be delivered to this callback."""
        return self._active

    def cancel(self) -> bool:
        """End this subscription and free its slot; return whether it was active.

        Safe to call more than once and from inside a callback (even its own).
        """
        if not self._active:
            return False
        self._owner._remove(self)
        return True


class Listeners:
    """Per-account lists of status-event callbacks, at most ``max_per_account`` each.

    Args:
        max_per_account: subscriptions allowed per account (config ``max_listeners``,
            seed 50); the next one raises :class:`ListenerLimitError`.

    Raises:
        ValueError: ``max_per_account`` is not an int >= 1.
    """

    __slots__ = (
        "_by_account",
        "_callback_errors",
        "_dispatched",
        "_max",
        "_next_token",
        "_refused",
        "_total",
    )

    def __init__(self, *, max_per_account: int) -> None:
        self._max = require_int("max_per_account", max_per_account, minimum=1)
        # account -> token -> subscription; dicts keep subscription order and remove in O(1).
        self._by_account: dict[str, dict[int, Subscription]] = {}
        self._next_token = 0
        self._total = 0
        self._callback_errors = 0
        self._dispatched = 0
        self._refused = 0

    # -- operations -----------------------------------------------------------------------

    def subscribe(self, account_id: str, callback: Callback) -> Subscription:
        """Subscribe ``callback`` to ``account_id``'s status events.

        Raises:
            ListenerLimitError: the account already has ``max_per_account`` subscriptions,
                e.g. "cannot subscribe to account 'a-1': listener limit (50) reached".
            TypeError: ``callback`` is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        subs = self._by_account.get(account_id)
        if subs is not None and len(subs) >= self._max:
            self._refused += 1
            raise ListenerLimitError(
                f"cannot subscribe to account {account_id!r}: listener limit ({self._max}) reached"
            )
        if subs is None:
            subs = self._by_account[account_id] = {}
        self._next_token += 1
        sub = Subscription(self, self._next_token, account_id, callback)
        subs[sub._token] = sub
        self._total += 1
        return sub

    def dispatch(self, event: AccountEvent) -> int:
        """Call the event's account's callbacks in subscription order; return how many ran.

        A callback that raises is logged and counted in ``callback_errors``; the others
        still run and nothing propagates. The callbacks are those subscribed when the
        call starts: one subscribed by a callback waits for the next event, and one
        cancelled by an earlier callback is skipped.
        """
        subs = self._by_account.get(event.account_id)
        if not subs:
            return 0
        called = 0
        for sub in list(subs.values()):
            if not sub._active:
                continue
            called += 1
            try:
                sub.callback(event)
            except Exception:
                self._callback_errors += 1
                log = logger.bind(account=event.account_id, event=event.kind)
                log.opt(exception=True).error(
                    "account event listener raised; the other listeners still run"
                )
        self._dispatched += called
        return called

    def close_account(self, account_id: str) -> int:
        """End every subscription of ``account_id`` (it was removed); return how many."""
        subs = self._by_account.pop(account_id, None)
        if subs is None:
            return 0
        for sub in subs.values():
            sub._active = False
        self._total -= len(subs)
        return len(subs)

    def close_all(self) -> int:
        """End every subscription of every account (shutdown); return how many."""
        return sum(self.close_account(account_id) for account_id in list(self._by_account))

    # -- queries --------------------------------------------------------------------------

    def count(self, account_id: str) -> int:
        """Active subscriptions of ``account_id``."""
        subs = self._by_account.get(account_id)
        return 0 if subs is None else len(subs)

    @property
    def total(self) -> int:
        """Active subscriptions over all accounts."""
        return self._total

    @property
    def max_per_account(self) -> int:
        """Subscriptions allowed per account."""
        return self._max

    @property
    def callback_errors(self) -> int:
        """Callbacks that raised, since construction."""
        return self._callback_errors

    def stats(self) -> dict[str, int | float]:
        """Counters and sizes, for ``Engine.stats()``."""
        return {
            "subscriptions": self._total,
            "accounts": len(self._by_account),
            "max_per_account": self._max,
            "dispatched": self._dispatched,
            "callback_errors": self._callback_errors,
            "refused": self._refused,
        }

    # -- internals ------------------------------------------------------------------------

    def _remove(self, sub: Subscription) -> None:
        sub._active = False
        subs = self._by_account[sub.account_id]
        del subs[sub._token]
        self._total -= 1
        if not subs:
            del self._by_account[sub.account_id]
