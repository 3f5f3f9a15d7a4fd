"""Sampled logging for the gateway: a flood of one failure logs a few lines, not one each."""

from __future__ import annotations

from collections import Counter

__all__ = ["SampledLog"]

_LOG_FIRST = 10  # failures of one kind logged in full before sampling
_LOG_EVERY = 1000  # then one line per this many, with the running count


class SampledLog:
    """Logs the first few events of each key, then one in ``_LOG_EVERY`` (floods stay small)."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()

    def should_log(self, key: str) -> int:
        """The count so far for ``key`` if this one should be logged, else 0."""
        self._seen[key] += 1
        n = self._seen[key]
        return n if n <= _LOG_FIRST or n % _LOG_EVERY == 0 else 0
