"""Bounded memory of seen message ids, so webhook redeliveries are processed once.

WhatsApp delivers webhooks at least once and retries anything but HTTP 200, so the same
message id (``wamid...``) can arrive several times; the router rejects repeats as
``duplicate``. Memory is bounded by ``capacity`` (engine default 100,000): when full, the
least recently seen id is forgotten, so only a redelivery older than that many distinct
ids can slip through again.
"""

from __future__ import annotations

from actors.cores._lru import LruMap

__all__ = ["DedupeSet"]


class DedupeSet:
    """A capacity-bounded set of message ids that forgets the least recently seen first.

    Args:
        capacity: the most ids remembered at once; an int >= 1.

    Raises:
        ValueError: if ``capacity`` is not an int >= 1 (bool is rejected).
    """

    __slots__ = ("_ids",)

    def __init__(self, capacity: int) -> None:
        self._ids: LruMap[str, None] = LruMap(capacity, arg="capacity")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, message_id: object) -> bool:
        """Return whether ``message_id`` is remembered; a pure query that refreshes nothing."""
        return message_id in self._ids

    @property
    def capacity(self) -> int:
        """The most ids remembered at once."""
        return self._ids.capacity

    @property
    def evictions(self) -> int:
        """Ids forgotten to make room for new ones, since construction."""
        return self._ids.evictions

    def seen_before(self, message_id: str) -> bool:
        """Return True if ``message_id`` was seen before, else remember it and return False.

        A hit makes the id the most recently seen again: a message still being redelivered
        is the one most worth remembering. A miss at capacity first forgets the least
        recently seen id (counted in :attr:`evictions`).
        """
        ids = self._ids
        if message_id in ids:
            ids.touch(message_id)
            return True
        ids.put(message_id, None)
        return False

    def forget(self, message_id: str) -> bool:
        """Forget ``message_id`` so a redelivery is accepted again; return whether it was known.

        For an accepted message that was never processed (e.g. dropped on overload), whose
        redelivery must not be rejected as a duplicate. Not counted as an eviction.
        """
        return self._ids.discard(message_id)
