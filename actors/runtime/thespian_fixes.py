"""A workaround for a Thespian 4.0.1 bug that stalls an actor's timers (pinned version).

``TCPTransport._runWithExpiry`` computes the select timeout from
``filter(None, [run_time.remaining(), ...])``. When the next wakeup is less than half a
microsecond away, ``remaining()`` is ``timedelta(0)``, which is falsy, so ``filter`` drops
it; with no other delay the select then waits with no timeout at all, and the actor's
timers (provider latencies, deadlines, sweeps) stall until some message happens to
arrive — seen here as a whole batch stuck for a minute under load. The fix keeps zero
``timedelta`` values in that module's ``filter(None, ...)`` calls; every other use of it
there filters sockets and file numbers, which are unaffected.

Importing this module patches nothing: ``actors.runtime.system`` calls :func:`apply`
before it starts an actor system, and the processes it forks inherit the patch.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import thespian

__all__ = ["PATCHED_VERSION", "apply", "keep_zero_delays", "require_pinned_thespian"]

PATCHED_VERSION = "4.0.1"

# The module is named in CamelCase by Thespian; import it by its dotted name.
tcp_module = importlib.import_module("thespian.system.transport.TCPTransport")


def keep_zero_delays(predicate: Callable[[Any], Any] | None, items: Iterable[Any]) -> Iterator[Any]:
    """``filter`` that, with no predicate, treats a zero ``timedelta`` as a value to keep."""
    if predicate is None:
        return builtins.filter(lambda x: isinstance(x, timedelta) or x, items)
    return builtins.filter(predicate, items)


def require_pinned_thespian(patcher: str, recheck: str) -> None:
    """Refuse to patch a Thespian other than the pinned one.

    Raises:
        RuntimeError: naming ``patcher``, both versions and what to ``recheck`` first.
    """
    version = getattr(thespian, "__version__", None) or _installed_version()
    if version != PATCHED_VERSION:
        raise RuntimeError(
            f"{patcher} targets thespian {PATCHED_VERSION}, found {version}: "
            f"re-check {recheck} before changing the pin"
        )


def apply() -> None:
    """Install the fix (idempotent); refuse to patch a Thespian it was not written for."""
    require_pinned_thespian("actors.runtime.thespian_fixes", "TCPTransport._runWithExpiry")
    tcp_module.__dict__["filter"] = keep_zero_delays  # shadows the builtin in that module only


def _installed_version() -> str | None:
    from importlib.metadata import version

    return version("thespian")
