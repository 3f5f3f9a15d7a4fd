"""A capacity-bounded map that evicts its least recently used key and counts evictions.

Shared by the cores that must remember "the last N keys" (``RecipientRateLog``,
``DedupeSet``), so the recency bookkeeping and the eviction counter live in one place.
Recency is explicit: only :meth:`LruMap.put` and :meth:`LruMap.touch` make a key the most
recently used one; reads never reorder, so a pure query cannot save a key from eviction.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from actors.cores._args import require_int

__all__ = ["LruMap"]

K = TypeVar("K")
V = TypeVar("V")


class LruMap(Generic[K, V]):
    """An ordered map holding at most ``capacity`` keys, least recently used first.

    Every operation is O(1): ``OrderedDict`` keeps the recency order in a linked list.

    Args:
        capacity: the most keys held at once; an int >= 1.
        arg: the caller's name for ``capacity``, used in the ``ValueError`` message so the
            error points at the argument the user actually passed.

    Raises:
        ValueError: if ``capacity`` is not an int >= 1 (bool is rejected).
    """

    __slots__ = ("_capacity", "_data", "_evictions", "_peak")

    def __init__(self, capacity: int, *, arg: str = "capacity") -> None:
        self._capacity = require_int(arg, capacity, minimum=1)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._evictions = 0
        self._peak = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    @property
    def capacity(self) -> int:
        """The most keys held at once."""
        return self._capacity

    @property
    def evictions(self) -> int:
        """How many keys :meth:`put` has pushed out to make room, since construction."""
        return self._evictions

    @property
    def peak(self) -> int:
        """The most keys ever held at once (never above ``capacity``)."""
        return self._peak

    def get(self, key: K) -> V | None:
        """Return the value for ``key`` (None if absent) without changing recency."""
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` and make it the most recently used key.

        A new key arriving when the map is full first evicts the least recently used key
        (counted in :attr:`evictions`); replacing the value of a present key evicts nothing.
        """
        data = self._data
        if key in data:
            data[key] = value
            data.move_to_end(key)
            return
        if len(data) >= self._capacity:
            data.popitem(last=False)
            self._evictions += 1
        data[key] = value
        if len(data) > self._peak:
            self._peak = len(data)

    def touch(self, key: K) -> None:
        """Make the present ``key`` the most recently used one.

        Raises:
            KeyError: if ``key`` is absent.
        """
        self._data.move_to_end(key)

    def discard(self, key: K) -> bool:
        """Remove ``key`` if present; return whether it was. Not counted as an eviction."""
        return self._data.pop(key, _MISSING) is not _MISSING

    def oldest(self) -> tuple[K, V] | None:
        """Return the least recently used ``(key, value)`` pair, or None when empty."""
        if not self._data:
            return None
        key = next(iter(self._data))
        return key, self._data[key]


# A private sentinel so discard() works even when stored values are None (DedupeSet).
_MISSING: object = object()
