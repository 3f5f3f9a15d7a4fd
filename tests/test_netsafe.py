"""Thespian's TCP base is closed to the network: loopback ports, allowlisted unpickling (pinned).

The engine tests speak Thespian's wire format over raw sockets: a frame is the decimal
length of a payload, ``>``, then the payload: Thespian's own is the pickle of ``(sender
ActorAddress, message)``; the engine's is that pickle sealed by
``actors.runtime.frameauth`` (a MAC over it, checked before unpickling). The receiver
answers with an (authenticated) frame holding the string ``ACK``, or ``ACK+DATAERR`` for a
frame it could not load (and then closes the connection). To reach the unpickler a
crafted pickle must carry a valid MAC (an attacker with the key); without one it is
refused before (tests/test_frameauth.py tests that layer).
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import logging
import os
import pickle
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from thespian.actors import ActorAddress, ActorExitRequest

import actors.account.actor  # noqa: F401 (declares LoopbackSent, LoopbackSentReply, SentRecord)
from actors.config import EngineConfig, settings
from actors.engine import Engine
from actors.engine.journal import DeadLetterJournal
from actors.errors import ConfigError
from actors.runtime import frameauth, sealing
from actors.runtime import netsafe as _netsafe
from actors.runtime import wiring as _wiring
from actors.runtime.netsafe import RefusedClassError, admitted, restricted_loads
from actors.runtime.system import SystemHandle, install_patches
from actors.runtime.thespian_fixes import require_pinned_thespian, tcp_module
from protocols import Accepted, registry
from tests.conftest import EngineFactory
from tests.engine_helpers import collect, inbound, wait_for

stream_buffer = importlib.import_module("thespian.system.transport.streamBuffer")
ipbase = importlib.import_module("thespian.system.transport.IPBase")

# Every global the transport unpickled while the whole suite ran with a recording
# find_class (the derivation of the allowlist; see actors/runtime/netsafe.py).
SEEN_CROSSING = [
    "actors.runtime.wiring.AccountGone",
    "actors.runtime.wiring.AccountUp",
    "actors.runtime.wiring.ActorReport",
    "actors.runtime.wiring.AskChild",
    "actors.runtime.wiring.Configure",
    "actors.runtime.wiring.Configured",
    "actors.runtime.wiring.Drain",
    "actors.runtime.wiring.DrainDone",
    "actors.runtime.wiring.EngineStarted",
    "actors.runtime.wiring.Forward",
    "actors.runtime.wiring.PoolUp",
    "actors.runtime.wiring.StartEngine",
    "actors.runtime.wiring.StatsQuery",
    "actors.runtime.wiring.SupervisorStats",
    "actors.runtime.wiring.WiringAck",
    "actors.account.actor.LoopbackSent",
    "actors.account.actor.LoopbackSentReply",
    "actors.account.transports.SentRecord",
    "actors.config.engine_config.EngineConfig",
    "actors.runtime.wiring.ShutdownDone",
    "protocols.ai.AIFailure",
    "protocols.ai.AIReply",
    "protocols.ai.AIRequest",
    "protocols.chat.Accepted",
    "protocols.chat.DeliveryReport",
    "protocols.chat.InboundMessage",
    "protocols.chat.OutboundReply",
    "protocols.chat.Outcome",
    "protocols.chat.Rejected",
    "protocols.control.ShutdownReport",
    "protocols.control.ShutdownRequest",
    "protocols.control.StageReport",
    "protocols.management.AccountEvent",
    "protocols.management.AccountSpec",
    "protocols.management.AddAccount",
    "protocols.management.AddProvider",
    "protocols.management.CommandResult",
    "protocols.management.ProviderSpec",
    "protocols.management.RemoveAccount",
    "protocols.pipeline.AIBatch",
    "protocols.pipeline.AIResults",
    "protocols.pipeline.CancelBatch",
    "protocols.pipeline.CollectOutcomes",
    "protocols.pipeline.DeliveryBatch",
    "protocols.pipeline.OutcomeBatch",
    "protocols.pipeline.SendBatch",
    "protocols.pipeline.SubmitBatch",
    "protocols.pipeline.SubmitResults",
    "socket.AddressFamily",
    "socket.SocketKind",
    "thespian.actors.ActorAddress",
    "thespian.actors.ActorExitRequest",
    "thespian.actors.ChildActorExited",
    "thespian.actors.DeadEnvelope",
    "thespian.system.logdirector.LoggerExitRequest",
    "thespian.system.messages.admin.PendingActor",
    "thespian.system.messages.admin.PendingActorResponse",
    "thespian.system.messages.admin.QueryAck",
    "thespian.system.messages.admin.QueryExists",
    "thespian.system.messages.admin.SystemShutdown",
    "thespian.system.messages.admin.SystemShutdownCompleted",
    "thespian.system.messages.multiproc.EndpointConnected",
    "thespian.system.messages.multiproc.LoggerConnected",
    "thespian.system.transport.IPBase.TCPv4ActorAddress",
]


class _Reduces:
    """Pickles as ``func(*args)``: what an attacker's frame would run on loading."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _sender(port: int = 1900) -> Any:
    return ActorAddress(ipbase.TCPv4ActorAddress("127.0.0.1", port, external=True))


def _frame(message: Any) -> bytes:
    """Thespian's own frame: no MAC."""
    payload = pickle.dumps((_sender(), message))
    return str(len(payload)).encode() + b">" + payload


def _sealed(message: Any, port: int) -> bytes:
    """The engine's frame for the transport at ``port``, with this process's key."""
    return sealing.frame((_sender(), message), dest_port=port)


def _refused_by(payload: bytes) -> str:
    with pytest.raises(RefusedClassError) as info:
        restricted_loads(payload)
    return info.value.name


# --- the unpickler -----------------------------------------------------------------------


def test_a_thespian_envelope_with_a_protocol_message_loads() -> None:
    sender = _sender(4321)
    message = inbound(1, text="hello")
    loaded = restricted_loads(pickle.dumps((sender, message)))
    assert loaded == (sender, message)
    _, exit_request = restricted_loads(pickle.dumps((sender, ActorExitRequest())))
    assert isinstance(exit_request, ActorExitRequest)


def test_every_class_seen_crossing_the_transport_is_admitted() -> None:
    names = {f"{module}.{name}" for module, name in admitted()}
    assert set(SEEN_CROSSING) <= names


def test_every_protocol_message_and_wiring_message_is_admitted() -> None:
    names = admitted()
    for cls in registry().values():
        assert (cls.__module__, cls.__qualname__) in names
    wiring = [getattr(_wiring, n) for n in _wiring.__all__ if n != "Address"]
    wiring = [cls for cls in wiring if isinstance(cls, type)]
    assert wiring
    for cls in wiring:
        assert (cls.__module__, cls.__qualname__) in names


def test_a_class_declared_to_cross_processes_is_admitted_wherever_it_lives() -> None:
    # The allowlist follows the classes: declaring one (in any module) admits it, and the
    # unpickler resolves it; nothing names it by a path that a move could break.
    @_wiring.crosses_processes
    @dataclasses.dataclass(frozen=True)
    class Moved:
        n: int

    Moved.__module__ = __name__
    Moved.__qualname__ = "_MovedForTheTest"
    globals()["_MovedForTheTest"] = Moved
    try:
        assert (__name__, "_MovedForTheTest") in admitted()
        assert restricted_loads(pickle.dumps((_sender(), Moved(3))))[1] == Moved(3)
    finally:
        del globals()["_MovedForTheTest"]
        _wiring._CROSSING.pop(f"{__name__}._MovedForTheTest", None)


def test_a_log_record_forwarded_to_thespians_logger_loads() -> None:
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "slow", None, None)
    record.__dict__["actorAddress"] = str(_sender())  # what ThespianLogForwardHandler adds
    loaded = restricted_loads(pickle.dumps((_sender(), record)))[1]
    assert (loaded.name, loaded.getMessage()) == ("httpx", "slow")


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (_Reduces(os.system, "true"), "posix.system"),
        (_Reduces(eval, "1 + 1"), "builtins.eval"),
        (_Reduces(exec, "x = 1"), "builtins.exec"),
        (_Reduces(getattr, "", "join"), "builtins.getattr"),
        (_Reduces(subprocess.Popen, ["true"]), "subprocess.Popen"),
        (_Reduces(pickle.loads, b"."), "_pickle.loads"),
        (_Reduces(importlib.import_module, "os"), "importlib.import_module"),
        # In the project, but not a message: constructing one opens a file.
        (_Reduces(DeadLetterJournal, "/tmp/x"), "actors.engine.journal.DeadLetterJournal"),
        (_Reduces(tcp_module.TCPTransport, None), tcp_module.__name__ + ".TCPTransport"),
    ],
)
def test_the_unpickler_refuses_what_is_not_a_message(payload: Any, name: str) -> None:
    before = _netsafe.REFUSED[name]
    assert _refused_by(pickle.dumps((_sender(), payload))) == name
    assert _netsafe.REFUSED[name] == before + 1


def test_a_refused_class_is_never_called(tmp_path: Path) -> None:
    target = tmp_path / "owned"
    assert _refused_by(pickle.dumps(_Reduces(open, str(target), "w"))) == "io.open"
    assert not target.exists()


def test_the_transport_loads_received_frames_with_the_restricted_unpickler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_patches()  # what every actor system start does (importing patches nothing)
    assert tcp_module.serializer.loads is frameauth.open_payload
    monkeypatch.setattr(sealing, "_ports", {1901})  # as if a transport listened on 1901
    before = _netsafe.REFUSED["io.open"]
    frame = _sealed(_Reduces(open, str(tmp_path / "owned"), "w"), 1901)
    incoming = tcp_module.TCPIncoming(ActorAddress(None), None)
    incoming.addData(frame)
    assert incoming.receivedAllData()
    assert incoming.data is None  # refused: Thespian answers ACK+DATAERR and closes
    assert _netsafe.REFUSED["io.open"] == before + 1
    assert not (tmp_path / "owned").exists()


def test_with_authentication_off_the_transport_still_unpickles_through_the_allowlist(
    tmp_path: Path,
) -> None:
    install_patches()
    settings = frameauth.current()
    frameauth._install(dataclasses.replace(settings, auth=False))
    try:
        assert tcp_module.serializer.loads(pickle.dumps((_sender(), inbound(1))))[1] == inbound(1)
        with pytest.raises(RefusedClassError, match=r"io\.open"):
            tcp_module.serializer.loads(pickle.dumps(_Reduces(open, str(tmp_path / "x"), "w")))
    finally:
        frameauth._install(settings)
    assert not (tmp_path / "x").exists()


def test_the_hand_made_frame_is_the_transports_own_framing() -> None:
    message = inbound(1)
    assert _frame(message) == stream_buffer.toSendBuffer((_sender(), message), pickle.dumps)


def test_the_patches_refuse_a_thespian_they_were_not_written_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixes = importlib.import_module("actors.runtime.thespian_fixes")
    monkeypatch.setattr(fixes.thespian, "__version__", "4.0.2", raising=False)
    pinned = r"actors\.runtime\.netsafe targets thespian 4\.0\.1, found 4\.0\.2"
    with pytest.raises(RuntimeError, match=pinned):
        require_pinned_thespian("actors.runtime.netsafe", "the bind")
    with pytest.raises(RuntimeError, match=r"targets thespian 4\.0\.1"):
        _netsafe.apply()


# --- binding ---------------------------------------------------------------------------


@pytest.fixture
def restore_bind_host() -> Iterator[None]:
    yield
    _netsafe.bind_to("127.0.0.1")


def test_an_address_of_this_system_binds_where_it_advertises(restore_bind_host: None) -> None:
    assert _netsafe.bound_host() == "127.0.0.1"
    own = ipbase.TCPv4ActorAddress(None, 0, external=True)
    assert (own.sockname[0], own.bindArgs) == ("127.0.0.1", (("127.0.0.1", 0),))
    _netsafe.bind_to("127.0.0.2")
    own = ipbase.TCPv4ActorAddress(None, 1900, external=("", 1900))
    assert (own.sockname, own.bindArgs) == (("127.0.0.2", 1900), (("127.0.0.2", 1900),))
    _netsafe.bind_to("0.0.0.0")  # Thespian's own behaviour, an explicit opt-in
    assert ipbase.TCPv4ActorAddress(None, 0, external=True).bindArgs == (("", 0),)


def test_an_engine_bound_beyond_loopback_warns_when_it_starts(restore_bind_host: None) -> None:
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        handle = SystemHandle("multiprocTCPBase", None)
        handle._bind("127.0.0.3")
        handle._bind("10.1.2.3")
        handle._bind("0.0.0.0")
    finally:
        logger.remove(sink)
    assert _netsafe.bound_host() == "0.0.0.0"
    assert [w.split(" (bind_address)")[0] for w in warnings] == [
        "the actor system listens on 10.1.2.3",
        "the actor system listens on every interface",
    ]


def test_bind_address_is_an_ipv4_literal_defaulting_to_loopback() -> None:
    assert EngineConfig().bind_address == "127.0.0.1"
    assert EngineConfig(bind_address="0.0.0.0").bind_address == "0.0.0.0"
    for bad in ("localhost", "::1", "127.0.0.1 ", "10.0.0"):
        with pytest.raises(
            ConfigError,
            match=rf"^bind_address = '{bad}': must be a string holding an IPv4 address literal$",
        ):
            EngineConfig(bind_address=bad)
    assert [s.rule for s in settings() if s.name == "bind_address"] == [
        "a string holding an IPv4 address literal"
    ]


# --- an engine on the network ------------------------------------------------------------


def _hex_ip(text: str) -> str:
    """An address of /proc/net/tcp{,6}: hex of the in-memory (host-order words) bytes."""
    words = [int(text[i : i + 8], 16) for i in range(0, len(text), 8)]
    raw = b"".join(struct.pack("<I", w) for w in words)
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[len("socket:[") : -1]))
    return inodes


def _listening(inodes: dict[int, set[int]]) -> list[tuple[int, str, int]]:
    """(pid, host, port) of every LISTEN socket among ``inodes`` (inode -> pids holding it)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.read().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], int(fields[9])
                if state == "0A" and inode in inodes:
                    host, port = local.rsplit(":", 1)
                    found += [(pid, _hex_ip(host), int(port, 16)) for pid in inodes[inode]]
    return found


def _engine_listeners(engine: Engine) -> list[tuple[int, str, int]]:
    # A forked child may hold its parent's listening socket too (the logger the admin's).
    inodes: dict[int, set[int]] = {}
    for pid in engine.pids:
        for inode in _socket_inodes(pid):
            inodes.setdefault(inode, set()).add(pid)
    assert engine._sys is not None
    own = engine._sys._system._systemBase.transport.socket  # the embedding process's port
    inodes.setdefault(os.fstat(own.fileno()).st_ino, set()).add(os.getpid())
    return _listening(inodes)


def test_no_engine_port_listens_beyond_loopback(make_engine: EngineFactory) -> None:
    engine = make_engine(echo={"latency_s": 0.0}, accounts=("acct-1", "acct-2"))
    engine.stats()  # records the pids of every actor
    listeners = _engine_listeners(engine)
    # Admin, logger, supervisor, router, pool, two accounts, and this process: each listens.
    assert {pid for pid, _, _ in listeners} == set(engine.pids) | {os.getpid()}
    assert len(engine.pids) >= 7
    assert [(pid, host) for pid, host, _ in listeners if host != "127.0.0.1"] == []
    assert (_admin_pid(engine), "127.0.0.1", engine.admin_port) in listeners


def test_bind_address_moves_every_port_to_the_address_given(
    make_engine: EngineFactory, restore_bind_host: None
) -> None:
    engine = make_engine(accounts=("acct-1",), bind_address="127.0.0.2")
    engine.stats()
    listeners = _engine_listeners(engine)
    assert {host for _, host, _ in listeners} == {"127.0.0.2"}
    assert isinstance(engine.submit(inbound(1)), Accepted)


@pytest.fixture
def engine_log(tmp_path: Path) -> Iterator[Path]:
    """A loguru file sink that the engine's processes inherit (add it before the engine)."""
    path = tmp_path / "engine.log"
    sink = logger.add(path, level="ERROR", format="{message}")
    yield path
    logger.remove(sink)


def _send_raw(port: int, frame: bytes) -> tuple[Any, int]:
    """Send one frame over a fresh connection; return the opened answer and our port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(frame)
        answer = b""
        while b">" not in answer or len(answer.split(b">", 1)[1]) < int(answer.split(b">")[0]):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
        # The answer is an authenticated ACK frame (sequence 0, for no port in particular).
        return frameauth.open_payload(answer.split(b">", 1)[1], ports=()), conn.getsockname()[1]


@pytest.mark.parametrize("target", ["admin", "router"])
@pytest.mark.parametrize("mac", ["valid MAC", "no MAC"])
def test_a_crafted_pickle_runs_nothing_and_the_engine_keeps_serving(
    make_engine: EngineFactory, engine_log: Path, tmp_path: Path, target: str, mac: str
) -> None:
    engine = make_engine(echo={"latency_s": 0.0}, accounts=("acct-1",))
    assert engine._link is not None
    assert engine.admin_port is not None
    router = engine._link.address.addressDetails.sockname[1]
    port = engine.admin_port if target == "admin" else router
    pid = _admin_pid(engine) if target == "admin" else _router_pid(engine)
    opened, touched = tmp_path / "opened", tmp_path / "touched"

    def frame(payload: Any) -> bytes:
        return _sealed(payload, port) if mac == "valid MAC" else _frame(payload)

    answer, peer_port = _send_raw(port, frame(_Reduces(open, str(opened), "w")))
    assert answer == "ACK+DATAERR"  # Thespian's answer to a frame it could not load
    answer, _ = _send_raw(port, frame(_Reduces(os.system, f"touch {touched}")))
    assert answer == "ACK+DATAERR"

    assert not opened.exists()
    assert not touched.exists()
    # With the key, the frame reaches the unpickler, which refuses the class; without it,
    # the frame is refused at the MAC and its pickle is never looked at.
    if mac == "valid MAC":
        first, second, reason = "it names io.open", "it names posix.system", "class"
    else:
        first = second = "it carries no MAC (not an authenticated frame)"
        reason = "mac"
    wait_for(lambda: f"{reason}: 2)" in engine_log.read_text(), what="the refusals logged")
    text = engine_log.read_text()
    assert f"refused a frame from 127.0.0.1:{peer_port}: {first} (pid {pid}, " in text
    assert f"{second} (pid {pid}, frames refused here: 2, {reason}: 2)" in text

    # The receiving process is the same one, and the engine serves.
    assert (_router_pid(engine) if target == "router" else _admin_pid(engine)) == pid
    assert isinstance(engine.submit(inbound(1, text="still here")), Accepted)
    out = collect(engine, ["wamid.1"])["wamid.1"]
    assert (out.status, out.reply) == ("replied", "echo: still here")
    stats = engine.stats()
    assert stats.counters["restarts"] == 0
    if target == "router":  # the admin is Thespian's, not ours: its refusals are logged only
        assert stats.counters["refused_frames"] == 2
        assert stats.counters[f"router.refused_frames.{reason}"] == 2


def _admin_pid(engine: Engine) -> int:
    pid = engine.stats().admin_pid
    assert pid is not None, "no admin pid on multiprocTCPBase"
    return pid


def _router_pid(engine: Engine) -> int:
    (pid,) = [a.pid for a in engine.stats().actors if a.role == "router"]
    return int(pid)
