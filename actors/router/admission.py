"""Why the router refuses a message: the checks before the gate, and the gate's refusals.

Pure functions of the router's state as ``RouterCore`` passes it in; each answers with
the ``(reason, detail)`` of a :class:`~protocols.Rejected`, or None when the message may
go on. The order of the checks is the order of precedence of the reasons.
"""

from __future__ import annotations

from actors.config import EngineConfig
from actors.router.account_state import AccountState
from protocols import InboundMessage, Reason

__all__ = ["gate_refusal", "refusal"]


def refusal(
    msg: InboundMessage,
    state: AccountState,
    config: EngineConfig,
    *,
    draining: bool,
    readmit: bool,
    seen: bool,
    uncollected: int,
    silent_s: float = 0.0,
) -> tuple[str, str] | None:
    """The reason to refuse ``msg`` before it is offered to the gate, if there is one.

    Args:
        msg: the message submitted.
        state: its account's state as the router knows it.
        config: the engine's bounds.
        draining: the engine is shutting down.
        readmit: the engine accepted it before: no duplicate check, no
            ``max_uncollected_outcomes`` refusal.
        seen: its id is in the router's dedupe set.
        uncollected: outcomes waiting to be collected.
        silent_s: how long the account has left a batch unacknowledged (its actor is not
            reading: a frozen member, a hung process); from ``account_silence_s`` on, a
            new message for it is refused, so that it cannot fill the engine's capacity
            while it is found out and replaced.

    Returns:
        ``(reason, detail)``, or None when nothing refuses it here.
    """
    if draining:
        return Reason.SHUTTING_DOWN, "the engine is shutting down"
    if state is AccountState.UNKNOWN:
        return Reason.UNKNOWN_ACCOUNT, f"no account {msg.account_id!r}"
    if state is AccountState.FAILED:
        return Reason.ACCOUNT_FAILED, f"account {msg.account_id!r} has failed"
    if not readmit and seen:
        return Reason.DUPLICATE, "message id seen before"
    if not readmit and config.account_silence_s and silent_s >= config.account_silence_s:
        return (
            Reason.ACCOUNT_UNRESPONSIVE,
            f"account {msg.account_id!r} has not read for {silent_s:.1f} s "
            f"(account_silence_s={config.account_silence_s:g})",
        )
    if not readmit and uncollected >= config.max_uncollected_outcomes:
        return (
            Reason.CAPACITY,
            f"{uncollected} outcomes wait to be collected "
            f"(max_uncollected_outcomes={config.max_uncollected_outcomes})",
        )
    return None


def gate_refusal(reason: str | None, config: EngineConfig) -> tuple[str, str]:
    """The ``(reason, detail)`` of a refusal by the gate (its ``Offer.reason``)."""
    reason = reason or Reason.CAPACITY
    detail = {
        "capacity": f"{config.max_concurrent_processing} customers already "
        "in processing (max_concurrent_processing)",
        "customer_backlog": f"{config.max_pending_per_customer} messages "
        "already wait for this customer (max_pending_per_customer)",
        "duplicate": "message id already in processing",
    }.get(reason, "")
    return reason, detail
