"""The router's links to its peers: one batch window to the pool and one per account.

``RouterCore`` fills an outbox during a turn; at the end of the turn :meth:`Links.sends`
turns it into messages. Each peer has a :class:`~actors.cores.window.BatchWindow`: its
items leave at once when fewer than ``batch_window`` batches to it are unacknowledged,
and otherwise wait for the peer's acknowledgement (``ack`` on its ``AIResults`` or
``DeliveryBatch``), so batches grow by themselves under load and nothing waits at low load.

An item that waited is checked again when it leaves: a message that ended meanwhile (its
deadline, its account gone) is not sent. When a peer is replaced, what waited for the old
one is dropped: the core sends again every message that peer held (``account_up``,
``pool_restarted``), so nothing is lost and nothing goes twice.

Also kept here: the count of batches and items on every hop of the router
(``hop.<hop>.batches`` / ``hop.<hop>.items`` in its stats), which is how the load runner
reports batch sizes. Pure: no Thespian.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TypeVar

from actors.cores.window import BatchWindow
from actors.router.effects import Send
from actors.runtime.wiring import Address
from protocols import AIBatch, AIRequest, CancelBatch, OutboundReply, SendBatch

__all__ = ["HOPS", "Links"]

HOPS = ("submit", "outcomes", "to_pool", "from_pool", "to_accounts", "from_accounts")
"""The router's hops, as named in its ``hop.*`` counters."""

Item = TypeVar("Item", AIRequest, OutboundReply)

Live = Callable[[str], bool]
"""Whether the message with this id still expects what the item asks (AI or send)."""


class Links:
    """Batch windows toward the pool and each account; see the module docstring.

    Args:
        window: unacknowledged batches allowed per peer (``batch_window``).
    """

    __slots__ = ("_accounts", "_counts", "_due", "_pool", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._pool: BatchWindow[AIRequest] = BatchWindow(window)
        self._accounts: dict[str, BatchWindow[OutboundReply]] = {}
        self._due: dict[str, None] = {}  # accounts with items waiting (ordered: a set is not)
        self._counts: Counter[str] = Counter()

    def sends(
        self,
        to_pool: list[AIRequest],
        to_accounts: Mapping[str, list[OutboundReply]],
        cancel_pool: list[str],
        *,
        pool: Address,
        accounts: Mapping[str, Address],
        generation: int,
        waits_for_ai: Live,
        waits_for_send: Live,
        now: float,
    ) -> list[Send]:
        """Queue this turn's items and return the batches that may leave now.

        Args:
            to_pool, to_accounts, cancel_pool: what ``RouterCore.take_outbox`` handed over.
            pool: the pool's address; None (not known yet): its items wait.
            accounts: the address of each account the router knows; items for an account
                not known wait (it is down: the core sends them again when it is up).
            generation: the router's generation, which tags every batch.
            waits_for_ai, waits_for_send: whether a message still expects its AI reply /
                its send, checked for every item as it leaves.
            now: the time, kept with each batch that leaves (:meth:`silent_for`).

        Returns:
            The sends: the pool's requests first, then each account's replies, then the
            cancellations (never windowed: they only free the pool).
        """
        out: list[Send] = []
        if to_pool:
            self._pool.offer(to_pool)
        if pool is not None:
            taken = self._pool.take(now)
            if taken is not None:
                seq, requests = self._leaving(taken, waits_for_ai, "to_pool")
                ai = AIBatch.trusted(requests=requests, generation=generation, seq=seq)
                out.append(Send(to=pool, msg=ai))
        for account_id, replies in to_accounts.items():
            self._window(account_id).offer(replies)
            self._due[account_id] = None
        # Only the accounts that have items waiting are looked at: a turn costs what it
        # carries, not the number of accounts.
        for account_id in list(self._due):
            window = self._accounts[account_id]
            address = accounts.get(account_id)
            if address is None:
                continue  # not known (yet): its items wait
            batch = window.take(now)
            del self._due[account_id]  # sent; or the window is full: its ack makes it due
            if batch is None:
                continue
            seq, leaving = self._leaving(batch, waits_for_send, "to_accounts")
            sends = SendBatch.trusted(replies=leaving, generation=generation, seq=seq)
            out.append(Send(to=address, msg=sends))
        if cancel_pool and pool is not None:
            out.append(
                Send(
                    to=pool,
                    msg=CancelBatch(message_ids=tuple(cancel_pool), generation=generation),
                )
            )
        return out

    def _leaving(
        self, taken: tuple[int, list[Item]], live: Live, hop: str
    ) -> tuple[int, tuple[Item, ...]]:
        """A batch's sequence number and the items still live in it, counted on ``hop``."""
        seq, items = taken
        leaving = tuple(item for item in items if live(item.message_id))
        self._count(hop, len(leaving))
        return seq, leaving

    def _window(self, account_id: str) -> BatchWindow[OutboundReply]:
        window = self._accounts.get(account_id)
        if window is None:
            window = self._accounts[account_id] = BatchWindow(self.window)
        return window

    def silent_for(self, account_id: str, now: float) -> float:
        """How long account ``account_id`` has left a batch unacknowledged (0.0: none).

        Counted to ``now``: a router that was not reading for that long (descheduled, a
        long turn) counts its own lag too, and may refuse (retryably) an account whose
        acknowledgement waits in its mailbox. Counting only to the router's last read
        acknowledgement was tried: with no other traffic for a second (a ``stats()``
        holding the facade) it proved nothing, the frozen accounts went on accepting, and
        the others were refused ``capacity`` instead (README, "A member that hangs").
        """
        window = self._accounts.get(account_id)
        since = window.unacked_since if window is not None else None
        return 0.0 if since is None else max(0.0, now - since)

    # --- acknowledgements and replaced peers ------------------------------------------------

    def pool_acked(self, seq: int) -> None:
        """The pool received every batch up to ``seq``."""
        if seq:
            self._pool.ack(seq)

    def account_acked(self, account_id: str, seq: int) -> None:
        """Account ``account_id`` received every batch up to ``seq``."""
        window = self._accounts.get(account_id)
        if window is not None and seq and window.ack(seq) and window.waiting:
            self._due[account_id] = None

    def pool_replaced(self) -> int:
        """A new pool: forget the old one's window; returns the items dropped from it."""
        return len(self._pool.reset())

    def account_replaced(self, account_id: str, *, gone: bool = False) -> int:
        """Account down or up again (``gone``: removed or failed): forget what was in flight.

        The window itself is kept while the account may come back, so its numbering goes
        on and a late acknowledgement from the old generation frees nothing for the new.

        Returns:
            The items that waited for it, dropped.
        """
        window = self._accounts.pop(account_id, None) if gone else self._accounts.get(account_id)
        self._due.pop(account_id, None)
        return len(window.reset()) if window is not None else 0

    # --- counts -----------------------------------------------------------------------------

    def received(self, hop: str, items: int) -> None:
        """Count one batch of ``items`` that came in on ``hop`` (or left on an answer hop)."""
        self._count(hop, items)

    def _count(self, hop: str, items: int) -> None:
        self._counts[f"hop.{hop}.batches"] += 1
        self._counts[f"hop.{hop}.items"] += items

    def counters(self) -> dict[str, int]:
        """``hop.<hop>.batches`` and ``.items`` for every hop, and the items waiting now."""
        out = {f"hop.{hop}.{kind}": 0 for hop in HOPS for kind in ("batches", "items")}
        out.update(self._counts)
        out["hop.waiting"] = self._pool.waiting + sum(w.waiting for w in self._accounts.values())
        return out
