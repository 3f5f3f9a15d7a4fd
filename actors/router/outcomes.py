"""The router's reports: outcomes waiting to be collected, counters, live messages by account.

``RouterCore`` decides; an :class:`OutcomeBook` keeps what it reports. Every accepted
message ends as exactly one :class:`~protocols.Outcome` recorded here, and the book also
remembers which messages each account still holds live, so that an account that fails or
is removed can end all of its messages at once.
"""

from __future__ import annotations

from collections import Counter, deque

from protocols import Accepted, Outcome, Reason, Rejected, Status

__all__ = ["OutcomeBook"]


class OutcomeBook:
    """Outcomes in the order they ended, the router's counters, and live ids by account."""

    __slots__ = ("_live_by_account", "_outcomes", "counters")

    def __init__(self) -> None:
        self._outcomes: deque[Outcome] = deque()
        self._live_by_account: dict[str, set[str]] = {}
        self.counters: Counter[str] = Counter()

    def hold(self, account_id: str, message_id: str) -> None:
        """Remember ``message_id`` as live at ``account_id`` until its outcome is recorded."""
        self._live_by_account.setdefault(account_id, set()).add(message_id)

    def release_account(self, account_id: str) -> set[str]:
        """Forget ``account_id`` and return the ids of the messages it still held live."""
        return self._live_by_account.pop(account_id, set())

    def reject(self, message_id: str, reason: str, detail: str) -> Rejected:
        """Count a refusal by its reason and return it."""
        self.counters[f"reject.{reason}"] += 1
        return Rejected(message_id=message_id, reason=reason, detail=detail)

    def late_readmission(self, message_id: str, deadline: float) -> Accepted:
        """A re-admitted message whose deadline passed meanwhile: accepted, timed out now."""
        self.counters.update(("accepted", "readmitted", "readmitted_late"))
        self.record(
            message_id,
            None,
            Status.TIMEOUT,
            Reason.TIMEOUT,
            None,
            "its deadline passed before it was re-admitted; nothing was sent",
        )
        return Accepted.trusted(message_id=message_id, deadline=deadline)

    def record(
        self,
        message_id: str,
        account_id: str | None,
        status: str,
        reason: str,
        reply: str | None,
        detail: str,
        *,
        wamid: str = "",
    ) -> None:
        """Append one message's outcome, count it, and forget the message as live."""
        if account_id is not None:
            live = self._live_by_account.get(account_id)
            if live is not None:
                live.discard(message_id)
        self._outcomes.append(
            Outcome.trusted(  # built from checked values; enums become plain str here
                message_id=message_id,
                status=str.__str__(status),
                reason=str.__str__(reason),
                reply=reply,
                detail=detail,
                wamid=wamid,
            )
        )
        self.counters[f"outcome.{status}" + (f".{reason}" if reason else "")] += 1

    def collect(self, max_items: int) -> list[Outcome]:
        """Hand over up to ``max_items`` outcomes, oldest first."""
        n = min(max_items, len(self._outcomes))
        return [self._outcomes.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._outcomes)
