"""Network safety of Thespian's TCP base (pinned version): loopback ports, allowlisted unpickling.

Thespian 4.0.1 has two holes that matter to anyone who can reach a port of the system:

- every port (the admin's and each actor's) is bound to ``('', port)``, all interfaces,
  whatever ``THESPIAN_BASE_IPADDR`` says: ``IPActorAddress`` sets ``bindname = ('', port)``
  for every "external" address, and ``TCPTransport`` binds that;
- every frame received is handed to ``pickle.loads``, so a crafted frame runs code in the
  receiving process.

:func:`apply` closes both. Addresses this system makes for itself advertise and bind the
host given to :func:`bind_to` (``127.0.0.1`` unless the engine's ``bind_address`` says
otherwise; ``0.0.0.0`` restores Thespian's all-interfaces behaviour). The transport's
``serializer.loads`` becomes :func:`restricted_loads`, which resolves only the classes the
system sends itself (see :func:`admitted`); a frame naming anything else is refused —
logged with the class and the peer, counted in :data:`REFUSED` — and Thespian's own error
path drops it and closes that connection while the process carries on. Both patches live
in module state: ``actors.runtime.system`` calls :func:`apply` before it starts the actor
system, so the admin, the logger and every actor process, all forked after that, inherit
them. Importing this module patches nothing.

Two more layers sit on top: :mod:`actors.runtime.frameauth` authenticates every frame
before it reaches :func:`restricted_loads` (it plugs in through :func:`use_framing`), and
:mod:`actors.runtime.actorguard` lets the admin create only the engine's actor classes.
Every refusal, whatever the layer, goes through :func:`refuse`: counted per reason in
:data:`REFUSALS` (a process's actors report them, see :func:`counters`) and logged,
sampled so that a flood of bad frames does not flood the log.
"""

from __future__ import annotations

import importlib
import io
import ipaddress
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from loguru import logger

import protocols
from actors.config import EngineConfig
from actors.runtime import wiring
from actors.runtime.thespian_fixes import require_pinned_thespian, tcp_module

__all__ = [
    "ALLOWED_GLOBALS",
    "ANY_ADDRESS",
    "REASONS",
    "REFUSALS",
    "REFUSED",
    "RefusedClassError",
    "RestrictedUnpickler",
    "admitted",
    "apply",
    "bind_to",
    "bound_host",
    "counters",
    "refuse",
    "restricted_loads",
    "use_framing",
]

ANY_ADDRESS = "0.0.0.0"

ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        # Addresses: every frame starts with the sender's ActorAddress.
        "thespian.actors.ActorAddress",
        "thespian.system.transport.IPBase.TCPv4ActorAddress",
        "socket.AddressFamily",
        "socket.SocketKind",
        # Thespian's system messages on the multiproc TCP base.
        "thespian.actors.ActorExitRequest",
        "thespian.actors.ChildActorExited",
        "thespian.actors.DeadEnvelope",
        "thespian.actors.PoisonMessage",
        "thespian.system.messages.admin.PendingActor",
        "thespian.system.messages.admin.PendingActorResponse",
        "thespian.system.messages.admin.QueryAck",
        "thespian.system.messages.admin.QueryExists",
        "thespian.system.messages.admin.SystemShutdown",
        "thespian.system.messages.admin.SystemShutdownCompleted",
        "thespian.system.messages.multiproc.EndpointConnected",
        "thespian.system.messages.multiproc.LoggerConnected",
        "thespian.system.logdirector.LoggerExitRequest",
        # Stdlib log records that actors forward to Thespian's logger process.
        "logging.LogRecord",
        # Conventions (several actor systems, see actors.runtime.convention), each one
        # checked by leaving it out: a member's admin registers with the leader's and is
        # answered in kind (ConventionRegister: no join without it) and leaves with
        # ConventionDeRegister (else the leader sees a graceful leave only when the
        # registration expires); an actor asks its admin for membership news
        # (NotifyOnSystemRegistration) and gets them (ActorSystemConventionUpdate); a
        # member's admin points its logger at the leader's (LogAggregator), and an actor
        # that asked for news says NotifyOnSourceAvailability when it exits (Thespian sets
        # that flag in notifyOnSystemRegistrationChanges): refused, both were logged as
        # refused frames. ConventionInvite is left out: only pre-registration sends it.
        "thespian.actors.ActorSystemConventionUpdate",
        "thespian.system.messages.convention.ConventionRegister",
        "thespian.system.messages.convention.ConventionDeRegister",
        "thespian.system.messages.convention.NotifyOnSystemRegistration",
        "thespian.system.messages.admin.NotifyOnSourceAvailability",
        "thespian.system.logdirector.LogAggregator",
    }
)
"""Thespian's classes, admitted by name. Builtin containers and scalars travel as pickle
opcodes and need no entry; :func:`admitted` adds the engine's own classes from the classes
themselves: every protocol message, ``EngineConfig``, and every class declared with
``actors.runtime.wiring.crosses_processes``.
"""

REFUSED: Counter[str] = Counter()
"""Frames this process refused at the unpickler, by the class that got them refused."""

REASONS = ("mac", "replay", "stale", "oversize", "class", "actor")
"""Why a frame is refused: no valid MAC (including a frame not in the authenticated
format), a sequence number seen before or meant for another port, a timestamp outside
the clock window, a length prefix over the transport's cap (or not a length at all), a
class outside the allowlist, an actor class the admin does not create."""

REFUSALS: Counter[str] = Counter()
"""Frames this process refused, by reason (one of :data:`REASONS`)."""

LOG_EVERY_S = 10.0
"""Past the first refusals of a reason, at most one log line per this many seconds."""

_logged_at: dict[str, float] = {}


def _fresh_counts() -> None:
    REFUSED.clear()
    REFUSALS.clear()
    _logged_at.clear()


os.register_at_fork(after_in_child=_fresh_counts)  # a forked process counts its own

_log = logger.bind(actor="netsafe")
_ipbase = importlib.import_module("thespian.system.transport.IPBase")
_original_address_init = _ipbase.IPActorAddress.__init__
_original_incoming_data = tcp_module.TCPIncoming_Common.data
_original_add_data = tcp_module.TCPIncoming_Common.addData
_bind_host = "127.0.0.1"
_admitted: frozenset[tuple[str, str]] = frozenset()
_admitted_from = -1  # how many crossing classes were declared when _admitted was built
_resolved: dict[tuple[str, str], Any] = {}
_receiving_from: ContextVar[Any] = ContextVar("_receiving_from", default=None)


class RefusedClassError(pickle.UnpicklingError):
    """A frame names a class or function outside the allowlist; raised by the unpickler."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not admitted on the actor system's network")
        self.name = name


def admitted() -> frozenset[tuple[str, str]]:
    """Every ``(module, name)`` a frame may name: Thespian's, protocols, the engine's own."""
    global _admitted, _admitted_from
    crossing = wiring.crossing_classes()
    if _admitted_from != len(crossing):  # a module declaring more was imported since
        classes = (*protocols.registry().values(), EngineConfig, *crossing)
        names = {_split(n) for n in ALLOWED_GLOBALS}
        names |= {(c.__module__, c.__qualname__) for c in classes}
        _admitted, _admitted_from = frozenset(names), len(crossing)
    return _admitted


def _split(dotted: str) -> tuple[str, str]:
    module, _, name = dotted.rpartition(".")
    return module, name


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`admitted` globals."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        found = _resolved.get(key)
        if found is None:
            if key not in admitted():
                raise RefusedClassError(f"{module}.{name}")
            found = _resolved[key] = super().find_class(module, name)
        return found


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` for frames from the network: refuse, log and count unknown classes.

    Raises:
        RefusedClassError: the frame names a class outside the allowlist.
        pickle.UnpicklingError: (and the other errors of ``pickle.loads``) a corrupt frame.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except RefusedClassError as exc:
        REFUSED[exc.name] += 1
        refuse("class", f"it names {exc.name}")
        raise


def refuse(reason: str, detail: str, peer: str | None = None) -> None:
    """Count a refused frame under ``reason`` and log it, sampled.

    The first refusal of a reason is logged, then the 2nd, 4th, 8th, ... and, in between,
    at most one per :data:`LOG_EVERY_S`; each line gives the running counts, so the lines
    held back are still counted. ``peer`` describes the sender (default: the connection
    being read, when known).
    """
    REFUSALS[reason] += 1
    n = REFUSALS[reason]
    now = time.monotonic()
    if n & (n - 1) and now - _logged_at.get(reason, -LOG_EVERY_S) < LOG_EVERY_S:
        return
    _logged_at[reason] = now
    _log.error(
        "refused a frame from {}: {} (pid {}, frames refused here: {}, {}: {})",
        peer if peer is not None else _describe_peer(_receiving_from.get()),
        detail,
        os.getpid(),
        REFUSALS.total(),
        reason,
        n,
    )


def counters() -> dict[str, int]:
    """This process's refusals: ``refused_frames`` in all and ``refused_frames.<reason>``."""
    out = {"refused_frames": REFUSALS.total()}
    out.update({f"refused_frames.{r}": REFUSALS[r] for r in REASONS})
    return out


def bind_to(host: str) -> None:
    """Advertise and bind ``host`` for every Thespian address this process makes from now.

    Processes forked afterwards (the admin, the logger, actors) inherit it. ``0.0.0.0``
    restores Thespian's own choice: bind all interfaces, advertise a guessed address.

    Raises:
        ValueError: ``host`` is not an IPv4 address literal (the TCP base is IPv4 only).
    """
    global _bind_host
    _bind_host = str(ipaddress.IPv4Address(host))


def bound_host() -> str:
    """The host given to :func:`bind_to` (``127.0.0.1`` by default)."""
    return _bind_host


def _address_init(
    self: Any, af: Any, socktype: Any, proto: Any, baseaddr: Any, port: Any, external: Any = False
) -> None:
    # An "external" address with no host is one this system makes for itself (its admin,
    # an actor, the embedding process): give it the configured host instead of the
    # guessed public one, and bind where it advertises instead of on every interface.
    if not external or _bind_host == ANY_ADDRESS:
        _original_address_init(self, af, socktype, proto, baseaddr, port, external)
        return
    if baseaddr in (None, "", ANY_ADDRESS):
        baseaddr = _bind_host
    _original_address_init(self, af, socktype, proto, baseaddr, port, external)
    if self.bindname[0] == "":
        self.bindname = (self.sockname[0], *self.bindname[1:])


def _incoming_data(incoming: Any) -> Any:
    # TCPIncoming.data unpickles the received frame; remember whose it is for the log.
    token = _receiving_from.set(incoming)
    try:
        return _original_incoming_data.fget(incoming)
    finally:
        _receiving_from.reset(token)


def _incoming_add_data(incoming: Any, data: Any) -> None:
    # addData parses the length prefix (and frameauth checks the header): same reason.
    token = _receiving_from.set(incoming)
    try:
        _original_add_data(incoming, data)
    finally:
        _receiving_from.reset(token)


def _describe_peer(incoming: Any) -> str:
    if incoming is None:  # an answer on a connection this process opened, or a direct call
        return "an unknown peer"
    parts = []
    try:
        host, port = incoming.socket.getpeername()[:2]
        parts.append(f"{host}:{port}")
    except (AttributeError, OSError, TypeError, ValueError):
        pass
    sender = getattr(incoming, "fromAddress", None)
    if sender is not None and getattr(sender, "addressDetails", None) is not None:
        parts.append(f"actor {sender}")
    return ", ".join(parts) or "an unknown peer"


class _Serializer:
    """What ``TCPTransport`` calls ``serializer``: pickle out, allowlisted unpickle in.

    :mod:`actors.runtime.frameauth` replaces both through :func:`use_framing` with
    functions that seal and open authenticated frames around these two.
    """

    dumps: Callable[[Any], bytes] = staticmethod(pickle.dumps)
    loads: Callable[[bytes], Any] = staticmethod(restricted_loads)


def use_framing(dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> None:
    """Make the transport serialize with ``dumps`` and load with ``loads`` from now on."""
    _Serializer.dumps = staticmethod(dumps)
    _Serializer.loads = staticmethod(loads)


def apply() -> None:
    """Install the patches (idempotent); refuse to patch a Thespian they were not written for."""
    require_pinned_thespian(
        "actors.runtime.netsafe",
        "IPBase.IPActorAddress.__init__ (bindname), TCPTransport.__init__ (bind), "
        "TCPTransport's uses of serializer.loads, TCPIncoming_Common.data and .addData",
    )
    _ipbase.IPActorAddress.__init__ = _address_init
    tcp_module.__dict__["serializer"] = _Serializer
    tcp_module.TCPIncoming_Common.data = property(_incoming_data)
    tcp_module.TCPIncoming_Common.addData = _incoming_add_data
