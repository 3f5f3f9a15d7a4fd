"""Conventions on multiprocTCPBase: members join the engine's actor system, and leave it.

The leader is an engine started in this test process (its admin leads a convention, having
no leader to join) on 127.0.0.1 with a shared secret; members are ``python -m apps.member``
processes bound to 127.0.0.2 and 127.0.0.3. A watcher actor on the leader asks for
``notifyOnSystemRegistrationChanges`` and records each ``ActorSystemConventionUpdate`` with
the time it arrived. A member's processes are its command (its own process group) and its
actor system (the admin detaches into a session of its own); teardown SIGKILLs both groups
and every pid the member reported, then checks that none is left and that nothing listens
on the members' addresses any more. The timer checks run in fresh interpreters, since this
one imported Thespian long ago.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from thespian.actors import ActorSystemConventionUpdate
from thespian.system.messages.admin import PendingActor, PendingActorResponse

from actors.engine import Engine
from actors.runtime import convention, procs, sealing
from actors.runtime.base_actor import EngineActor
from actors.runtime.wiring import Address
from tests.conftest import EngineFactory
from tests.engine_helpers import wait_for
from tests.test_frameauth_engine import FakeActor, _read_frame

REPO = Path(__file__).resolve().parent.parent
SECRET_ENV = "TEST_CONVENTION_SECRET"
SECRET = "convention-" + "s" * 40
HOSTS = ("127.0.0.2", "127.0.0.3")
THESPIAN_CONVENTION_SHA256 = "7791a9fcbea84bdd79b9d902493fdf82398302e2e3ba80fc426b56e54fda22c4"
DETECTION_DEADLINE_S = 15.0  # generous: the timers aim at <= 5 s; the test prints the figure


class ConventionWatcher(EngineActor):
    """Records the leader's convention updates: ``"watch"`` subscribes, ``"events"`` reads."""

    role = "watcher"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[float, str, str, int, bool]] = []

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        return {str: self._ask, ActorSystemConventionUpdate: self._update}

    def _ask(self, msg: str, sender: Address) -> None:
        if msg == "watch":
            self.notifyOnSystemRegistrationChanges(True)
        self.send(sender, list(self.events))

    def _update(self, msg: Any, sender: Address) -> None:
        e = convention.member_event(msg)
        self.events.append((time.time(), e.admin, e.member_id, e.max_accounts, e.added))


class Leader:
    """The engine and its watcher."""

    def __init__(self, engine: Engine, log: Path) -> None:
        self.engine, self.log = engine, log
        assert engine._sys is not None
        self.system = engine._sys.system
        self.watcher = self.system.createActor(ConventionWatcher)
        assert self.system.ask(self.watcher, "watch", 10) == []
        self.address = f"127.0.0.1:{engine.admin_port}"

    def events(self) -> list[tuple[float, str, str, int, bool]]:
        got = self.system.ask(self.watcher, "events", 10)
        assert isinstance(got, list)
        return [(e[0], e[1], e[2], e[3], e[4]) for e in got]

    def seen(self, admin: str, *, added: bool) -> tuple[float, str, str, int, bool] | None:
        """The first update for the admin at ``admin`` saying it was added (or not)."""
        return next((e for e in self.events() if e[1] == admin and e[4] is added), None)

    def saw(self, *admins: str, added: bool = True) -> bool:
        return all(self.seen(a, added=added) is not None for a in admins)

    def wait_gone(
        self, admin: str, *, what: str, deadline_s: float = DETECTION_DEADLINE_S
    ) -> float:
        """Wait until the leader has seen ``admin`` leave; return when it did (epoch s)."""
        wait_for(lambda: self.saw(admin, added=False), deadline_s=deadline_s, what=what)
        gone = self.seen(admin, added=False)
        assert gone is not None
        return gone[0]


class Member:
    """One ``python -m apps.member`` process; its JSON events are read by a thread."""

    def __init__(self, tmp: Path, host: str, member_id: str, leader: str, **kw: Any) -> None:
        secret = kw.pop("secret", SECRET)
        max_accounts = kw.pop("max_accounts", 5)
        self.stderr_path = tmp / f"member-{member_id}.err"
        self.events: list[dict[str, Any]] = []
        argv = [
            *("--leader", leader, "--bind", host, "--member-id", member_id),
            *("--max-accounts", str(max_accounts), "--secret-env", SECRET_ENV),
        ]
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apps.member", *argv],
                cwd=REPO,
                env={**_clean_env(), SECRET_ENV: secret},
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group, as a service manager would
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.said("up") or self.proc.poll() is not None, what="the member up")
        up = self.event("up")
        assert up is not None, f"member {member_id} did not start: {self.stderr()}"
        self.up = up
        self.admin: str = up["admin"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in list(self.events) if e["event"] == name), None)

    def said(self, name: str) -> bool:
        return self.event(name) is not None

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def pids(self) -> set[int]:
        return {self.proc.pid, *self.up["pids"], *procs.descendants(self.up["admin_pid"])}

    def kill(self) -> set[int]:
        """SIGKILL the command's process group and the actor system's; return their pids."""
        pids = self.pids()
        groups = {self.proc.pid}
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(self.up["admin_pid"]))
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for pid in pids:  # any process that changed groups
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids


def two_members(
    leader: Leader, members: Callable[..., Member], max_accounts: int = 2
) -> tuple[Member, Member]:
    """Members ``member-a`` (127.0.0.2) and ``member-b`` (127.0.0.3), counted up by the
    leader's supervisor (so that accounts added next are placed on them)."""
    a = members(HOSTS[0], "member-a", leader, max_accounts=max_accounts)
    b = members(HOSTS[1], "member-b", leader, max_accounts=max_accounts)
    wait_for(
        lambda: leader.engine.stats().counters.get("supervisor.members_up") == 2,
        what="the supervisor knowing both members",
    )
    return a, b


def start_leader(
    make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **config: Any
) -> Leader:
    """A leader engine with the members' secret and ``config``; its ERRORs go to a file."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    log = tmp_path / "leader.log"
    sink = logger.add(log, level="ERROR", format="{message}")  # before the engine: inherited
    try:
        engine = make_engine(transport_secret_env=SECRET_ENV, **config)
    finally:
        logger.remove(sink)  # the engine's processes have their copy
    return Leader(engine, log)


@pytest.fixture
def leader(make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Leader:
    return start_leader(make_engine, tmp_path, monkeypatch)


@pytest.fixture
def members(tmp_path: Path) -> Iterator[Callable[..., Member]]:
    """Start members; at teardown kill what is left of each and check nothing remains."""
    started: list[Member] = []
    # Listeners on the members' addresses that were there before this test (another
    # suite's members on a shared machine) are not this test's to answer for.
    before = set(_listening(HOSTS))

    def start(host: str, member_id: str, leader: Leader, **kw: Any) -> Member:
        member = Member(tmp_path, host, member_id, leader.address, **kw)
        started.append(member)
        return member

    yield start
    pids: set[int] = set()
    for member in started:
        pids |= member.kill()
        member.proc.wait(10)
        member._reader.join(10)
        assert member.proc.stdout is not None
        member.proc.stdout.close()
    assert not procs.wait_gone(pids, timeout_s=10), "a member's process outlived teardown"
    left = [port for port in _listening(HOSTS) if port not in before]
    assert not left, f"a port is still open on a member's address: {left}"


def _clean_env() -> dict[str, str]:
    """This environment without ``WAE_*`` config or Thespian's convention timers."""
    drop = ("WAE_", *convention.TIMERS)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _listening(hosts: tuple[str, ...]) -> list[str]:
    """``host:port`` of every TCP socket listening on one of ``hosts``."""
    wanted = {socket.inet_aton(h)[::-1].hex().upper(): h for h in hosts}
    found = []
    with open("/proc/net/tcp") as fh:
        for line in fh.read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, port = local.split(":")
            if state == "0A" and host in wanted:
                found.append(f"{wanted[host]}:{int(port, 16)}")
    return found


# --- the timers -------------------------------------------------------------------------

_FRESH = """
import json, os, sys
{before}
import actors.runtime.system as system
early = "thespian.system.admin.convention" in sys.modules
system.install_patches()
import thespian.system.multiprocTCPBase  # what ActorSystem("multiprocTCPBase") imports
from actors.runtime import convention
print(json.dumps({{"early": early, "effective": convention.effective(),
                  "environ": {{k: os.environ.get(k) for k in convention.TIMERS}}}}))
"""


def _fresh(before: str = "") -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _FRESH.format(before=before)],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_engine_sets_the_convention_timers_before_thespian_reads_them() -> None:
    result = _fresh()
    assert result["early"] is False  # importing the engine does not import Thespian's module
    assert result["effective"] == dict(convention.TIMERS)  # so it read the engine's values
    assert result["environ"] == dict(convention.TIMERS)  # and processes started later do too
    assert convention.detection_bound_s() <= 5.0


def test_timers_read_before_the_engine_set_them_are_corrected_when_it_starts() -> None:
    # Someone imported Thespian's convention module first: it read Thespian's defaults.
    result = _fresh(before="import thespian.system.admin.convention")
    assert result["early"] is True
    assert result["effective"] == dict(convention.TIMERS)


def test_thespian_reads_the_timers_where_the_engine_expects_them() -> None:
    # convention.apply() relies on this module's globals (read at import, used at each call).
    module = importlib.import_module(convention.THESPIAN_MODULE)
    path = inspect.getsourcefile(module)
    assert path is not None
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == THESPIAN_CONVENTION_SHA256, (
        f"{convention.THESPIAN_MODULE} is not Thespian 4.0.1's: re-check actors/runtime/"
        "convention.py (where and when the CONVENTION_* timers are read) before the pin changes"
    )


def test_a_members_capabilities_and_its_leader_are_checked() -> None:
    caps = convention.member_capabilities(
        leader=("10.8.0.1", 1900), member_id="m-2", max_accounts=9
    )
    assert caps == {
        "Convention Address.IPv4": "10.8.0.1:1900",
        "wae.member": "m-2",
        "wae.max_accounts": 9,
    }
    for bad_id in ("", "-m", "m 2", "m/2", "m" * 65):
        with pytest.raises(ValueError, match="member id"):
            convention.member_capabilities(leader=("10.8.0.1", 1), member_id=bad_id, max_accounts=1)
    with pytest.raises(ValueError, match="max accounts"):
        convention.member_capabilities(leader=("10.8.0.1", 1), member_id="m", max_accounts=-1)
    assert convention.parse_leader("10.8.0.1:1900") == ("10.8.0.1", 1900)
    for bad in ("10.8.0.1", "host:1900", "10.8.0.1:0", "10.8.0.1:70000", ":1900"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            convention.parse_leader(bad)


# --- joining ----------------------------------------------------------------------------


def test_two_members_join_the_leader_and_its_actors_learn_their_capabilities(
    leader: Leader, members: Callable[..., Member]
) -> None:
    a = members(HOSTS[0], "member-a", leader, max_accounts=5)
    b = members(HOSTS[1], "member-b", leader, max_accounts=7)
    assert a.admin.startswith("127.0.0.2:")
    assert b.admin.startswith("127.0.0.3:")
    wait_for(lambda: leader.saw(a.admin, b.admin), what="both members in the leader's convention")
    assert {e[1:] for e in leader.events()} == {
        (a.admin, "member-a", 5, True),
        (b.admin, "member-b", 7, True),
    }
    wait_for(lambda: a.said("joined") and b.said("joined"), what="both members joined")
    assert "refused a frame" not in leader.log.read_text()
    assert a.up["timers"] == dict(convention.TIMERS)


def test_a_member_with_another_secret_is_refused_and_never_joins(
    leader: Leader, members: Callable[..., Member]
) -> None:
    admin_pid = leader.engine.stats().admin_pid
    wrong = members(HOSTS[1], "member-wrong", leader, secret="another-" + "x" * 40)
    right = members(HOSTS[0], "member-right", leader)
    wait_for(lambda: leader.saw(right.admin), what="the right member joined")
    # The wrong one registers every second; the leader's admin refuses each frame.
    refused = re.compile(
        rf"its MAC is wrong .*\(pid {admin_pid}, frames refused here: \d+, mac: 4\)"
    )
    wait_for(
        lambda: refused.search(leader.log.read_text()) is not None,
        what="four refused registrations",
    )
    wait_for(
        lambda: "not in the convention of the leader" in wrong.stderr(),
        what="the member saying it has not joined",
    )
    assert [e[2] for e in leader.events()] == ["member-right"]
    assert wrong.event("joined") is None


def test_a_member_admin_creates_only_the_classes_a_member_hosts(
    leader: Leader, members: Callable[..., Member]
) -> None:
    member = members(HOSTS[0], "member-a", leader)
    host, port = member.admin.split(":")
    # An engine actor class loaded in the member (the account actor's base), not hosted.
    name = "actors.runtime.servant.RouterServant"
    before = procs.descendants(member.up["admin_pid"])
    with FakeActor() as me:  # this process holds the shared key: the frame has a valid MAC
        request = (me.address, PendingActor(name, None, 1, None, None))
        conn = socket.create_connection((host, int(port)), timeout=10)
        me.open.append(conn)  # Thespian may answer on this connection
        conn.sendall(sealing.frame(request, dest_port=int(port)))
        assert _read_frame(conn) is not None  # its ACK
        _, answer = me.receive()
    assert isinstance(answer, PendingActorResponse)
    assert answer.errorCode == PendingActorResponse.ERROR_Invalid_ActorClass
    wait_for(lambda: f"an actor of class {name!r}" in member.stderr(), what="the refusal logged")
    assert procs.descendants(member.up["admin_pid"]) == before  # nothing forked


# --- leaving ----------------------------------------------------------------------------


def test_a_killed_member_is_seen_gone_by_the_leader_and_the_detection_time_is_printed(
    leader: Leader, members: Callable[..., Member]
) -> None:
    a = members(HOSTS[0], "member-a", leader)
    b = members(HOSTS[1], "member-b", leader)
    wait_for(lambda: leader.saw(a.admin, b.admin), what="both members in the leader's convention")
    killed_at = time.time()
    pids = b.kill()  # the whole member: its command and its actor system
    assert not procs.wait_gone(pids, timeout_s=10)
    gone = leader.wait_gone(b.admin, what="the leader seeing the killed member gone")
    print(
        f"\nmember SIGKILL -> leader saw remoteAdded=False after {gone - killed_at:.2f} s "
        f"(timers {dict(convention.TIMERS)})"
    )
    # A survivor dropped too is said, not failed: under load a registration can be late.
    if leader.saw(a.admin, added=False):
        print("note: the surviving member was dropped too (a missed re-registration)")


def test_a_member_stopped_by_sigterm_leaves_at_once_and_leaves_no_process(
    leader: Leader, members: Callable[..., Member]
) -> None:
    member = members(HOSTS[0], "member-a", leader)
    wait_for(lambda: leader.saw(member.admin), what="the member joined")
    pids = member.pids()
    stopped_at = time.time()
    member.proc.send_signal(signal.SIGTERM)
    assert member.proc.wait(30) == 0
    gone = leader.wait_gone(member.admin, what="the leave", deadline_s=20.0)
    print(f"\nmember SIGTERM -> leader saw remoteAdded=False after {gone - stopped_at:.2f} s")
    wait_for(lambda: member.said("down"), what="the member's down event")
    assert not procs.wait_gone(pids, timeout_s=10)
    assert not _listening((HOSTS[0],))


def test_a_member_whose_admin_died_kills_its_other_processes_and_exits_1(
    leader: Leader, members: Callable[..., Member]
) -> None:
    member = members(HOSTS[0], "member-a", leader)
    wait_for(lambda: leader.saw(member.admin), what="the member joined")
    admin = member.up["admin_pid"]
    others = member.pids() - {admin, member.proc.pid}
    assert others  # its logger and its agent, which would otherwise outlive the admin
    killed_at = time.monotonic()
    os.kill(admin, signal.SIGKILL)
    assert member.proc.wait(30) == 1
    assert not procs.wait_gone(others, timeout_s=10)
    print(
        f"\nmember admin SIGKILL -> member's processes gone after "
        f"{time.monotonic() - killed_at:.2f} s"
    )
    assert member.said("admin-lost")
    leader.wait_gone(member.admin, what="the leader seeing the member gone")


# --- refusing to start ------------------------------------------------------------------

_NO_SECRET_CASES = {
    "no secret": ([], {}, "no shared secret"),
    "a short secret": (["--secret-env", "S"], {"S": "short"}, "at least 32 are needed"),
    "a bad leader": (["--secret-env", "S", "--leader", "h:1"], {"S": SECRET}, "HOST:PORT"),
}


@pytest.mark.parametrize("case", list(_NO_SECRET_CASES))
def test_a_member_without_a_usable_secret_or_leader_does_not_start(
    case: str, tmp_path: Path
) -> None:
    extra, env, says = _NO_SECRET_CASES[case]
    argv = ["--leader", "127.0.0.1:9", "--bind", HOSTS[0], "--member-id", "m", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "apps.member", *argv],
        cwd=REPO,
        env={**_clean_env(), **env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert done.stdout == ""  # no "up": nothing was started
    assert "Traceback" not in done.stderr
