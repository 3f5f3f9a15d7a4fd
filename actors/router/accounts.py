"""The router's table of accounts: each one's state, moved by the supervisor's news.

The moves themselves are the ``ACCOUNT`` table of ``actors.router.account_state``; this
module keeps one state per known account and applies that table to each piece of news.
"""

from __future__ import annotations

from actors.router.account_state import ACCOUNT, AccountState

__all__ = ["AccountTable"]


class AccountTable:
    """Each known account's :class:`AccountState`; no entry means ``UNKNOWN``."""

    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[str, AccountState] = {}  # no entry: AccountState.UNKNOWN

    def state(self, account_id: str) -> AccountState:
        """The state of ``account_id``; ``UNKNOWN`` when the table has no entry for it."""
        return self._states.get(account_id, AccountState.UNKNOWN)

    def news(self, account_id: str, event: str) -> None:
        """Move one account through the ``ACCOUNT`` table (LifecycleError if it can't).

        ``down`` for an account not in the table is ignored, not an error.
        """
        if event == "down" and account_id not in self._states:
            # Unknown here (it was starting when this router was configured, and never up
            # since): nothing of it is held here, so the news is ignored, not an error.
            return
        state = ACCOUNT.next(self.state(account_id), event)
        if state is AccountState.UNKNOWN:
            self._states.pop(account_id, None)
        else:
            self._states[account_id] = state
