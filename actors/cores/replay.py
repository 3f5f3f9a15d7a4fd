"""Anti-replay memory of the actor transport: each (sender, sequence number) accepted once.

Every authenticated frame carries its sending process's random id and a sequence number
that the process increments for each frame it seals (``actors.runtime.frameauth``). A
receiver keeps, per sender, the highest number seen and a bitmap of the ``window``
numbers below it, as IPsec and DTLS do: a number above the highest is new, one inside the
window is new unless its bit is set, one below the window is refused. The window, not a
strict "higher than the last", because one sender's frames to one receiver may arrive out
of order (a retried send overtaken by the next one on a fresh connection).

Memory is bounded: at most ``senders`` senders are remembered, the least recently heard
from is forgotten first (counted). A forgotten sender's old frames would look new again,
which is why frames also carry a timestamp that the receiver checks against a window of
its own: a replay must be both recent and of a sender pushed out by ``senders`` others.
"""

from __future__ import annotations

from actors.cores._args import require_int
from actors.cores._lru import LruMap

__all__ = ["ReplayWindow"]


class ReplayWindow:
    """Per-sender sliding windows of accepted sequence numbers.

    Args:
        senders: the most senders remembered at once (LRU); an int >= 1.
        window: how far below a sender's highest number a late frame is still accepted.

    Raises:
        ValueError: if ``senders`` or ``window`` is not an int >= 1.
    """

    __slots__ = ("_mask", "_seen", "_window")

    def __init__(self, senders: int = 4096, window: int = 4096) -> None:
        self._seen: LruMap[bytes, tuple[int, int]] = LruMap(senders, arg="senders")
        self._window = require_int("window", window, minimum=1)
        self._mask = (1 << self._window) - 1

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def evictions(self) -> int:
        """Senders forgotten to make room for new ones, since construction."""
        return self._seen.evictions

    def fresh(self, sender: bytes, seq: int) -> bool:
        """Whether ``seq`` from ``sender`` would be accepted now; a pure query."""
        state = self._seen.get(sender)
        if state is None:
            return True
        highest, bits = state
        if seq > highest:
            return True
        behind = highest - seq
        return behind < self._window and not bits >> behind & 1

    def accept(self, sender: bytes, seq: int) -> bool:
        """Record ``seq`` from ``sender`` and return True, or return False if it is a replay."""
        state = self._seen.get(sender)
        if state is None:
            self._seen.put(sender, (seq, 1))
            return True
        highest, bits = state
        if seq > highest:
            shift = seq - highest
            bits = 1 if shift >= self._window else (bits << shift | 1) & self._mask
            self._seen.put(sender, (seq, bits))
            return True
        behind = highest - seq
        if behind >= self._window or bits >> behind & 1:
            return False
        self._seen.put(sender, (highest, bits | 1 << behind))
        return True
