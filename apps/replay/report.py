"""The replay's report, the target it submits to, and the error a target raises."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.errors import EngineError
from protocols import Accepted, InboundMessage, Rejected

__all__ = ["RETRY_REASONS", "ReplayReport", "ReplayTarget", "ReplayTargetError"]

RETRY_REASONS = frozenset({"capacity", "customer_backlog"})
"""Refusals that pass once the target has room: retried within ``timeout_s``."""

_LIST_IDS = 5  # ids shown per reason in summary()


class ReplayTarget(Protocol):
    """What a replay submits to: ``Engine.submit_many``'s signature.

    A target may also have a ``retry_after_s: float | None`` attribute, read after each
    call: the least delay it asks for before its refusals are retried (HTTP Retry-After).
    """

    def submit_many(self, messages: Iterable[InboundMessage]) -> Sequence[Accepted | Rejected]:
        """One ``Accepted`` or ``Rejected`` per message, in order."""
        ...


class ReplayTargetError(EngineError):
    """Raised by a replay target that cannot answer (unreachable, an unexpected answer).

    :func:`replay_journal` catches it: the replay stops and keeps what is not settled.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    """What a replay (or a scan) found and did; ``summary()`` renders it.

    Attributes:
        files: the files read, in order (a store: its database file).
        source: ``"journal"`` or ``"store"`` (the intake store's unfinished rows).
        read: valid records read (a store: its unfinished rows not marked sent).
        accepted, duplicate: records the target took now, or already had (settled).
        refused: reason -> ids still refused for lack of room (``capacity``,
            ``customer_backlog``) or because the target is ``shutting_down``.
        rejected: reason -> ids refused for another reason (``unknown_account``, ...).
        unsubmitted: ids read after the replay stopped.
        corrupt: complete records skipped because they do not decode.
        torn_bytes: bytes at a file's end that could not be framed.
        sent_skipped: unfinished store rows whose reply was confirmed sent: not replayed.
        problems: one line per corrupt record or torn tail, naming file and offset.
        by_account: records read per account id.
        retries: resubmissions of refused messages; waited_s: seconds spent waiting.
        stopped: why the replay stopped early, or "".
        kept: unsettled records written back to the journal (consume).
        removed, quarantined: claimed files deleted, or kept for their corrupt records.
        seconds: the replay's duration; dry_run: a scan, nothing was submitted.
    """

    files: tuple[str, ...] = ()
    source: str = "journal"
    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    refused: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rejected: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unsubmitted: tuple[str, ...] = ()
    corrupt: int = 0
    torn_bytes: int = 0
    sent_skipped: int = 0
    problems: tuple[str, ...] = ()
    by_account: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    waited_s: float = 0.0
    stopped: str = ""
    kept: int = 0
    removed: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def settled(self) -> int:
        """Records the target now has: accepted plus duplicates."""
        return self.accepted + self.duplicate

    @property
    def unsettled_ids(self) -> tuple[str, ...]:
        """Every id read but not settled (refused, rejected, unsubmitted), in that order."""
        ids = [i for group in (self.refused, self.rejected) for v in group.values() for i in v]
        return (*ids, *self.unsubmitted)

    @property
    def complete(self) -> bool:
        """True when every record was read and settled (a scan: read without corruption)."""
        if self.dry_run:
            return self.corrupt == 0
        return self.corrupt == 0 and self.settled == self.read

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (ids included)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data.update(settled=self.settled, complete=self.complete)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def summary(self) -> str:
        """A few lines for a person: counts, the first ids per reason, what was consumed."""
        verb = "scanned" if self.dry_run else "replayed"
        if self.source == "store":
            lines = [
                f"{verb} {self.read} unfinished records from the intake store {self.files[0]}",
                f"  already replied (marked sent), skipped {self.sent_skipped}",
            ]
        else:
            files = ", ".join(self.files) or "no journal files"
            lines = [f"{verb} {self.read} records from {len(self.files)} file(s): {files}"]
        if self.dry_run:
            accounts = ", ".join(f"{a} {n}" for a, n in sorted(self.by_account.items()))
            lines.append(f"  by account: {accounts or '-'}")
        else:
            lines.append(f"  accepted {self.accepted}, duplicate {self.duplicate}")
            for title, group in (
                ("refused (kept, not lost)", self.refused),
                ("rejected (kept)", self.rejected),
            ):
                for reason, ids in sorted(group.items()):
                    lines.append(f"  {title}: {reason} {len(ids)} {_show_ids(ids)}")
            if self.unsubmitted:
                lines.append(f"  unsubmitted {len(self.unsubmitted)} {_show_ids(self.unsubmitted)}")
            lines.append(
                f"  retries {self.retries}, waited {self.waited_s:.2f} s, "
                f"{self.seconds:.2f} s in all"
            )
        lines.append(f"  corrupt records skipped {self.corrupt}, torn bytes {self.torn_bytes}")
        lines += [f"    {p}" for p in self.problems[:20]]
        if self.stopped:
            lines.append(f"  stopped early: {self.stopped}")
        if self.removed or self.kept or self.quarantined:
            lines.append(
                f"  consumed: {len(self.removed)} files removed, {self.kept} unsettled records "
                f"written back, {len(self.quarantined)} quarantined"
                + "".join(f" {q}" for q in self.quarantined)
            )
        return "\n".join(lines)


def _show_ids(ids: Sequence[str]) -> str:
    more = f", ... {len(ids) - _LIST_IDS} more" if len(ids) > _LIST_IDS else ""
    return "[" + ", ".join(ids[:_LIST_IDS]) + more + "]"
