"""Frame authentication on a running engine (multiprocTCPBase), over real sockets on 127.0.0.1.

This test process is the engine's embedding process, so it holds the engine's key: it
seals frames with it (what a peer with the key, or an attacker who stole it, could send)
or sends Thespian's own frames, which carry no MAC (what anyone on the host can send).
A frame is ``b"%d>" % len(payload) + payload``; the receiver answers with an
authenticated ``ACK``, or ``ACK+DATAERR`` for a frame it refused (and closes).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import select
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from thespian.actors import ActorAddress
from thespian.system.messages.admin import PendingActor, PendingActorResponse

from actors.engine import Engine
from actors.runtime import frameauth, procs, sealing
from actors.runtime.thespian_fixes import tcp_module
from actors.runtime.wiring import ActorReport, StatsQuery
from protocols import Accepted
from tests.conftest import EngineFactory
from tests.engine_helpers import collect, inbound, wait_for

ipbase = importlib.import_module("thespian.system.transport.IPBase")
REPO = Path(__file__).resolve().parent.parent

PROBE_MODULE = """\
import os, pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text(str(os.getpid()))
from thespian.actors import Actor

class Probe(Actor):
    def __init__(self):
        super().__init__()
        pathlib.Path(__file__).with_suffix(".created").write_text(str(os.getpid()))
"""


def _at(port: int) -> Any:
    return ActorAddress(ipbase.TCPv4ActorAddress("127.0.0.1", port, external=True))


def _plain(obj: Any) -> bytes:
    """Thespian's own frame: no MAC."""
    payload = pickle.dumps(obj)
    return b"%d>" % len(payload) + payload


def _read_frame(conn: socket.socket) -> bytes | None:
    """One frame's payload (exactly), or None if the peer closed first."""
    data = b""
    while b">" not in data:
        chunk = conn.recv(1)
        if not chunk:
            return None
        data += chunk
    size, payload = int(data[:-1]), b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            return None
        payload += chunk
    return payload


def _send(port: int, frame: bytes, *, keep: list[socket.socket] | None = None) -> Any:
    """Send ``frame`` on a fresh connection; return the (opened) answer, None if closed.

    With ``keep``, the connection stays open (appended to it): Thespian may send its own
    messages back on it.
    """
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(frame)  # may be refused before all of it was read
        payload = _read_frame(conn)
    finally:
        if keep is None:
            conn.close()
        else:
            keep.append(conn)
    return None if payload is None else frameauth.open_payload(payload, ports=())


class FakeActor:
    """A socket posing as an actor at 127.0.0.1: reads what the engine sends it, ACKs it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = _at(self.port)
        self.open: list[socket.socket] = []  # connections this actor made (Thespian reuses them)

    def receive(self, timeout_s: float = 10.0) -> Any:
        """The next frame sent to this actor: on a connection it made, or a new one."""
        ready, _, _ = select.select([self.sock, *self.open], [], [], timeout_s)
        assert ready, f"nothing sent to this actor within {timeout_s} s"
        if ready[0] is self.sock:
            conn, _ = self.sock.accept()
            conn.settimeout(timeout_s)
            self.open.append(conn)
        else:
            conn = ready[0]
        payload = _read_frame(conn)
        assert payload is not None, "the engine closed before a whole frame"
        conn.sendall(tcp_module.ackMsg)
        return frameauth.open_payload(payload, ports={self.port})

    def __enter__(self) -> FakeActor:
        return self

    def __exit__(self, *_: object) -> None:
        for conn in self.open:
            conn.close()
        self.sock.close()


@pytest.fixture
def engine_log(tmp_path: Path) -> Iterator[Path]:
    """A loguru file sink that the engine's processes inherit (add it before the engine)."""
    path = tmp_path / "engine.log"
    sink = logger.add(path, level="ERROR", format="{message}")
    yield path
    logger.remove(sink)


def _admin_pid(engine: Engine) -> int:
    pid = engine.stats().admin_pid
    assert pid is not None
    return pid


def _router_port(engine: Engine) -> int:
    assert engine._link is not None
    port: int = engine._link.address.addressDetails.sockname[1]
    return port


def _listening_on(port: int) -> set[int]:
    """Inodes of the sockets listening on ``port`` on this host, any address."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(int(fields[9]))
    return found


# --- no actor created from outside -------------------------------------------------------


@pytest.mark.parametrize("mac", ["no MAC", "valid MAC"])
@pytest.mark.parametrize("probe", ["http.server.test", "a module in the working directory"])
def test_an_actor_class_named_from_outside_is_neither_imported_nor_created(
    make_engine: EngineFactory,
    engine_log: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    probe: str,
    mac: str,
) -> None:
    module = f"wae_probe_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{module}.py").write_text(PROBE_MODULE)
    # First on the admin's import path, as the working directory is under `python -m`.
    monkeypatch.syspath_prepend(str(tmp_path))
    engine = make_engine(accounts=("acct-1",), echo={"latency_s": 0.0})
    admin, port = _admin_pid(engine), engine.admin_port
    assert port is not None
    processes, web = procs.descendants(admin), _listening_on(8000)
    name = "http.server.test" if probe == "http.server.test" else f"{module}.Probe"

    with FakeActor() as me:
        request = (me.address, PendingActor(name, None, 1, None, None))
        if mac == "valid MAC":
            sealed = sealing.frame(request, dest_port=port)
            assert _send(port, sealed, keep=me.open) == "ACK"  # delivered
            _, answer = me.receive()  # the admin's answer: it has decided
            assert isinstance(answer, PendingActorResponse)
            assert answer.errorCode == PendingActorResponse.ERROR_Invalid_ActorClass
            assert answer.actualAddress is None
            reason = "actor"
            detail = f"it asks the admin for an actor of class {name!r}, not one of this engine's"
        else:
            assert _send(port, _plain(request)) == "ACK+DATAERR"  # refused at the MAC
            reason, detail = "mac", "it carries no MAC (not an authenticated frame)"

    counted = f"{detail} (pid {admin}, frames refused here: 1, {reason}: 1)"
    wait_for(lambda: counted in engine_log.read_text(), what="the refusal counted in the log")
    assert procs.descendants(admin) == processes  # nothing forked
    assert _listening_on(8000) == web  # http.server.test serves nothing
    assert sorted(p.name for p in tmp_path.glob(f"{module}.*")) == [f"{module}.py"]  # not imported
    # The engine still creates its own actors, and serves.
    engine.add_account("acct-2")
    assert isinstance(engine.submit(inbound(1, account="acct-2")), Accepted)
    assert collect(engine, ["wamid.1"])["wamid.1"].status == "replied"


# --- frames refused on an actor's port ---------------------------------------------------


def test_a_captured_frame_is_heard_once_and_refused_when_replayed(
    make_engine: EngineFactory, engine_log: Path
) -> None:
    engine = make_engine(accounts=("acct-1",))
    router = _router_port(engine)
    with FakeActor() as me:
        frame = sealing.frame((me.address, StatsQuery(token=41)), dest_port=router)
        assert _send(router, frame, keep=me.open) == "ACK"
        _, report = me.receive()
        assert isinstance(report, ActorReport)
        assert report.token == 41  # heard and answered
        assert _send(router, frame) == "ACK+DATAERR"  # the same bytes again
        assert _send(engine.admin_port or 0, frame) == "ACK+DATAERR"  # or to another port
    stats = engine.stats()
    assert stats.counters["router.refused_frames.replay"] == 1
    assert stats.counters["refused_frames"] == 1
    wait_for(
        lambda: (
            f"it was sealed for port {router}, not one of this process's" in engine_log.read_text()
        ),
        what="the admin's refusal logged",
    )


def _flip(frame: bytes, offset: int) -> bytes:
    data = bytearray(frame)
    data[offset] ^= 0x10
    return bytes(data)


def _truncated(frame: bytes, cut: int) -> bytes:
    payload = frame.split(b">", 1)[1][:-cut]
    return b"%d>" % len(payload) + payload


def test_damaged_unauthenticated_and_oversized_frames_are_refused_and_counted(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(
        accounts=("acct-1",), echo={"latency_s": 0.0}, transport_max_frame_bytes=65_536
    )
    router = _router_port(engine)
    sender = _at(1900)

    def sealed(message: Any = None, **kw: Any) -> bytes:
        message = message or Accepted(message_id="wamid.x")  # the router ignores it
        return sealing.frame((sender, message), dest_port=router, **kw)

    start = sealed().index(b">") + 1  # where the payload begins (every case the same size)
    cases = [
        ("a bit flipped in the body", _flip(sealed(), -3), "mac"),
        ("a bit flipped in the body MAC", _flip(sealed(), start + 70), "mac"),
        ("a bit flipped in the head MAC", _flip(sealed(), start + 40), "mac"),
        ("a bit flipped in the sequence number", _flip(sealed(), start + 19), "mac"),
        ("truncated, its length prefix adjusted", _truncated(sealed(), 5), "mac"),
        ("no MAC: Thespian's own frame", _plain((sender, Accepted(message_id="wamid.y"))), "mac"),
        ("sealed with another key", sealed(key=os.urandom(32)), "mac"),
        ("not a frame at all", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "mac"),
        ("a length prefix over the cap", b"65537>" + b"x" * 100, "oversize"),
        ("a valid MAC, over the cap", sealed("y" * 70_000), "oversize"),
    ]
    pid = [a.pid for a in engine.stats().actors if a.role == "router"]
    for what, frame, reason in cases:
        before = engine.stats().counters[f"router.refused_frames.{reason}"]
        assert _send(router, frame) == "ACK+DATAERR", what
        after = engine.stats().counters
        assert after[f"router.refused_frames.{reason}"] == before + 1, what
    assert after["router.refused_frames"] == len(cases)
    assert after["restarts"] == 0
    assert [a.pid for a in engine.stats().actors if a.role == "router"] == pid  # carried on
    assert isinstance(engine.submit(inbound(1, text="still here")), Accepted)
    assert collect(engine, ["wamid.1"])["wamid.1"].reply == "echo: still here"


# --- engines with different keys ---------------------------------------------------------

SECOND_ENGINE = """\
import importlib, json, sys
from thespian.actors import ActorAddress
from thespian.system.messages.admin import QueryExists
from actors.config import EngineConfig
from actors.engine import Engine
from actors.runtime.wiring import StatsQuery

ipbase = importlib.import_module("thespian.system.transport.IPBase")
router, admin, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = EngineConfig(
    transport_secret_env="TEST_TRANSPORT_SECRET",
    dead_letter_path=work + "/dead-letters.bin",
    intake_path=work + "/intake/intake.db",
)
def at(port):
    return ActorAddress(ipbase.TCPv4ActorAddress("127.0.0.1", port, external=True))
with Engine(config, base="multiprocTCPBase", seed=2) as engine:
    system = engine._sys._system
    answers = {
        "router": system.ask(at(router), StatsQuery(token=99), 3),
        "admin": system.ask(at(admin), QueryExists(), 3),
    }
print(json.dumps({k: type(v).__name__ for k, v in answers.items()}))  # a QueryAck stays inside ask
"""


@pytest.mark.parametrize("secret", ["the same secret", "another secret"])
def test_a_second_engine_talks_to_the_first_only_with_the_same_secret(
    make_engine: EngineFactory,
    engine_log: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    mine = "first-" + "a" * 40
    monkeypatch.setenv("TEST_TRANSPORT_SECRET", mine)
    engine = make_engine(accounts=("acct-1",), transport_secret_env="TEST_TRANSPORT_SECRET")
    assert frameauth.current().origin == "env TEST_TRANSPORT_SECRET"
    theirs = mine if secret == "the same secret" else "other-" + "b" * 40
    work = tmp_path / "second"
    work.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SECOND_ENGINE,
            str(_router_port(engine)),
            str(engine.admin_port),
            str(work),
        ],
        env={**os.environ, "TEST_TRANSPORT_SECRET": theirs},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    refused = engine.stats().counters["router.refused_frames.mac"]
    admin_refused = f"its MAC is wrong (another key, or altered) (pid {_admin_pid(engine)}, "
    if secret == "the same secret":  # what multi-host operation relies on
        assert answers["router"] == "ActorReport"
        assert refused == 0
        assert "refused a frame" not in engine_log.read_text()
    else:
        assert answers["router"] == "NoneType"
        assert refused >= 1  # Thespian retries a send that was not acknowledged
        wait_for(lambda: admin_refused in engine_log.read_text(), what="the admin's refusal")
    assert isinstance(engine.submit(inbound(1)), Accepted)


def test_the_raw_baseline_is_measured_with_and_without_authentication() -> None:
    from apps.loadrun.baseline import measure

    report = measure("multiprocTCPBase", 50)
    assert report["transport_auth"] == "on"  # the top-level figures: as the engine runs
    assert set(report["without_auth"]) == {"tell_per_s", "batch_items_per_s", "rtt_median_ms"}
    assert set(report["auth_cost"]) == {"tell", "batch", "rtt"}
    assert report["leftover_processes"] == []
    assert frameauth.current().auth is True  # off lasted while the system measured ran
    assert measure("simpleSystemBase", 50)["transport_auth"] == "n/a"
