"""Workarounds for two Thespian 4.0.1 bugs (pinned version): stalled timers, a leaked request.

Stalled timers

``TCPTransport._runWithExpiry`` computes the select timeout from
``filter(None, [run_time.remaining(), ...])``. When the next wakeup is less than half a
microsecond away, ``remaining()`` is ``timedelta(0)``, which is falsy, so ``filter`` drops
it; with no other delay the select then waits with no timeout at all, and the actor's
timers (provider latencies, deadlines, sweeps) stall until some message happens to
arrive — seen here as a whole batch stuck for a minute under load. The fix keeps zero
``timedelta`` values in that module's ``filter(None, ...)`` calls; every other use of it
there filters sockets and file numbers, which are unaffected.

A create request kept for ever by the leader's admin
    An actor's ``createActor`` goes to its admin as a ``PendingActor``; the admin books it
    under a fresh local child address (``_pendingChildren``) and tries to start the child
    itself. When the child's class refuses this system (an account pinned to a member,
    :func:`actors.runtime.convention.pinned_check`), the convention admin forwards the
    request to a member (``_not_compatible``), whose admin answers the requester directly;
    the leader's booking is never removed. So the leader's admin grew by one request per
    account created on a member (every restart and re-placement), and at its shutdown it
    answered each of them "shutting down" (error 0xe01), which the requesters logged as
    ``Pending Actor create for ... failed (3585)`` ERRORs: one per account ever placed on a
    member. :func:`_forget_forwarded` drops the booking when the request is forwarded (or
    refused: no system takes it), before Thespian's own ``_not_compatible`` runs; the
    child address it was booked under was never started.

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
    """Install the fixes (idempotent); refuse to patch a Thespian they were not written for."""
    require_pinned_thespian(
        "actors.runtime.thespian_fixes",
        "TCPTransport._runWithExpiry and ConventioneerAdmin._not_compatible",
    )
    tcp_module.__dict__["filter"] = keep_zero_delays  # shadows the builtin in that module only
    admin = importlib.import_module("thespian.system.admin.convention").ConventioneerAdmin
    if not getattr(admin._not_compatible, "_wae_forgets", False):
        admin._not_compatible = _forget_forwarded(admin._not_compatible)


def _forget_forwarded(not_compatible: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``_not_compatible`` that first drops the admin's booking of the request it forwards."""

    def forwarding(self: Any, envelope: Any) -> Any:
        pending = self._pendingChildren
        if isinstance(pending, dict):  # a list once the admin is shutting down
            for instance in [k for k, booked in pending.items() if envelope in booked]:
                booked = pending[instance]
                booked.remove(envelope)
                if not booked:
                    del pending[instance]
        return not_compatible(self, envelope)

    forwarding._wae_forgets = True  # type: ignore[attr-defined]
    return forwarding


def _installed_version() -> str | None:
    from importlib.metadata import version

    return version("thespian")
