"""Progress on stderr: a tqdm bar when tqdm is importable, else a periodic plain line."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]

_PLAIN_EVERY_S = 2.0


class Progress:
    """A progress display that does nothing when disabled.

    Args:
        total: the amount of work (messages or seconds).
        unit: ``"msg"`` or ``"s"``.
        enabled: False for no output at all (not a terminal, or ``--quiet``).
    """

    def __init__(self, total: float, unit: str, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self._bar: Any = None
        self._last_plain = 0.0
        self._done = 0.0
        if not enabled:
            return
        try:
            from tqdm import tqdm  # optional (the load extra)
        except ImportError:
            return
        # No monitor thread: the engine's actor processes are forked from this process.
        tqdm.monitor_interval = 0
        self._bar = tqdm(
            total=total,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}] {postfix}",
        )

    def update(self, done: float, status: str) -> None:
        """Set the progress to ``done`` and show ``status`` next to it."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.n = min(done, self.total)
            self._bar.set_postfix_str(status, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_plain >= _PLAIN_EVERY_S:
            self._last_plain = now
            print(f"[loadrun] {done:,.0f}/{self.total:,.0f} {self.unit}  {status}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
