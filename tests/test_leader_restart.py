"""The leader SIGKILLed with members attached, then started again on the same store and port.

The leader is an engine in a child process (``tests/leader_engine.py``, driven over its
stdin) so that it can be killed for real: its process group and its Thespian admin's own
session, every pid it reported. Two members (``python -m apps.member``, the fixtures of
``tests/test_conventions.py``: their teardown kills what is left of each and checks that no
process and no port on the members' addresses remains) host its four accounts, whose
loopback sends take ``LATENCY_S``: at the kill, the replies of the last batch are in flight
on the members. What README "Running on several hosts" promises, checked here: the
members live on, their accounts lose their lease and exit by themselves; a leader started
again on the same intake store and admin port is re-joined by the members, and once the
application has added its accounts again, every message accepted before the kill ends in
exactly one outcome across the two lifetimes. The leader is started again either once the
old accounts have exited or at once (as a service manager would). The figures (how long
each step took, how many messages were recovered and re-sent) are printed; only generous
deadlines are asserted.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.runtime import procs
from actors.runtime.system import free_port
from tests.engine_helpers import wait_for
from tests.test_conventions import (  # noqa: F401 - fixtures
    HOSTS,
    REPO,
    SECRET,
    SECRET_ENV,
    Member,
    _clean_env,
    _listening,
    members,
)
from tests.test_durable_intake import CrashChild, rows

LEADER_ENGINE = REPO / "tests" / "leader_engine.py"
LATENCY_S = 1.5
"""How long each loopback send takes: the replies of the batch submitted just before the
kill are still at the members' accounts, unconfirmed, when the leader dies."""
NAMES = tuple(f"acct-{i}" for i in range(4))
STALE_DEADLINE_S = 30.0  # generous: the lease says 2 s + 4 s; the figure is printed
REJOIN_DEADLINE_S = 30.0  # generous: members re-register every second
COMMAND_DEADLINE_S = 60.0
_FENCED_OUT = re.compile(r"no lease for .* exiting without sending the (\d+) replies")
"""An account's last words when its lease ran out (``AccountActor._fenced_out``)."""


@dataclass(frozen=True)
class _At:
    """What the ``members`` fixture needs of a leader: the address its members join."""

    address: str


class LeaderChild(CrashChild):
    """``leader_engine.py`` in its own session: commands on stdin, lines read by a thread."""

    def __init__(self, store: Path, admin_port: int, tmp_path: Path, life: int) -> None:
        env = {**_clean_env(), SECRET_ENV: SECRET}
        env["THESPLOG_FILE"] = str(tmp_path / f"thespian-leader-{life}.log")
        self.stderr_path = tmp_path / f"leader-{life}.err"
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(LEADER_ENGINE), str(store), str(admin_port), SECRET_ENV],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group: one killpg reaches it
            )
        self.address = f"127.0.0.1:{admin_port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait("the leader ready", lambda: self.words("pids") or self.proc.poll() is not None)
        assert self.words("pids"), f"the leader did not start: {self.stderr_path.read_text()}"

    def command(self, line: str, until: str) -> list[list[str]]:
        """Send one command; return the lines it printed, up to the first ``until`` line."""
        self.take()
        mark = len(self.seen)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

        def answered() -> bool:
            self.take()
            return any(s.split()[:1] == [until] for s in self.seen[mark:])

        wait_for(answered, deadline_s=COMMAND_DEADLINE_S, what=f"the leader's answer to {line!r}")
        return [s.split() for s in self.seen[mark:]]

    def outcomes(self) -> list[str]:
        self.take()
        return [w[0] for w in self.words("outcome")]

    def counters(self) -> dict[str, int]:
        self.take()
        found: dict[str, int] = json.loads(self.seen_line("counters")[len("counters ") :])
        return found

    def seen_line(self, kind: str) -> str:
        return next(s for s in reversed(self.seen) if s.split()[:1] == [kind])

    def close(self) -> None:
        super().close()
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()


@pytest.fixture
def leaders(tmp_path: Path) -> Iterator[Callable[[Path, int], LeaderChild]]:
    """Start leader children; at teardown kill what is left of each and check it is gone."""
    started: list[LeaderChild] = []

    def start(store: Path, admin_port: int) -> LeaderChild:
        child = LeaderChild(store, admin_port, tmp_path, len(started) + 1)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()
        pids = {int(p) for words in child.words("pids") for p in words}
        assert not procs.wait_gone(pids, timeout_s=10), "a leader's process outlived teardown"


def _accounts(lines: list[list[str]]) -> dict[str, tuple[str, int | None, int, str, int]]:
    """``account NAME HOST PID GENERATION STATE DEPTH`` lines: name -> the rest."""
    return {
        w[1]: (w[2], None if w[3] == "None" else int(w[3]), int(w[4]), w[5], int(w[6]))
        for w in lines
        if w[:1] == ["account"]
    }


def _line(lines: list[list[str]], kind: str) -> list[str]:
    """The first of ``lines`` of ``kind``."""
    return next(w for w in lines if w[:1] == [kind])


def _gone_after(pids: set[int], began: float, deadline_s: float) -> float | None:
    """Seconds from ``began`` until every pid has exited, or None if one outlives the deadline."""
    if procs.wait_gone(pids, timeout_s=deadline_s):
        return None
    return time.monotonic() - began


@pytest.mark.timeout(180)
@pytest.mark.parametrize("restart", ["after-the-old-accounts-exit", "at-once"])
def test_a_leader_killed_with_members_attached_is_rejoined_and_loses_nothing_accepted(
    members: Callable[..., Member],  # noqa: F811 - first: the leaders stop before the members
    leaders: Callable[[Path, int], LeaderChild],
    tmp_path: Path,
    restart: str,
) -> None:
    """``at-once`` is a service manager restarting the leader as soon as it died: the old
    accounts still run on the members (with a lease up to 2 s, then paused up to 4 s)."""
    store = tmp_path / "store" / "intake.db"
    store.parent.mkdir()
    port = free_port()
    first = leaders(store, port)
    a = members(HOSTS[0], "member-a", _At(first.address), max_accounts=2)
    b = members(HOSTS[1], "member-b", _At(first.address), max_accounts=2)
    joined = _line(first.command("members 2", "members"), "members")
    assert joined[2] != "timeout", f"the members never joined: {joined}"
    placed = _accounts(first.command(f"accounts {LATENCY_S} {' '.join(NAMES)}", "pids"))
    hosts = sorted(entry[0] for entry in placed.values())
    assert hosts == ["member-a", "member-a", "member-b", "member-b"], placed
    stale = {entry[1] for entry in placed.values() if entry[1] is not None}
    assert len(stale) == 4
    member_pids = a.pids() | b.pids()
    assert stale <= member_pids

    # Confirmed before the kill, then a batch whose replies are in flight on the members.
    first.command("submit 0 20", "submitted")
    first.wait("the first 20 outcomes", lambda: len(first.outcomes()) >= 20)
    first.command("submit 20 20", "submitted")
    first.wait(
        "the last 20 replies at the members' accounts, unconfirmed",
        lambda: sum(e[4] for e in _accounts(first.command("stats", "pids")).values()) == 20,
    )
    leader_pids = {int(p) for words in first.words("pids") for p in words}
    assert not leader_pids & member_pids
    killed_at = time.monotonic()
    first.kill_everything()
    accepted = [w[0] for w in first.words("accepted")]
    assert len(accepted) == 40, first.words("rejected")
    before = Counter(first.outcomes())
    owed = set(accepted) - set(before)

    # Fencing: the members live on, their old accounts lose the lease and exit by themselves.
    stale_s = None
    if restart != "at-once":
        stale_s = _gone_after(stale, killed_at, STALE_DEADLINE_S)
        assert stale_s is not None, (
            f"an old account still runs: {procs.wait_gone(stale, timeout_s=0)}"
        )
    for member in (a, b):
        assert member.proc.poll() is None, "a member died with its leader"
        assert procs.alive(member.up["admin_pid"])

    # The leader again, on the same store and admin port; the members find it there.
    restarted_at = time.monotonic()
    second = leaders(store, port)
    ready_s = time.monotonic() - restarted_at
    recovered = second.counters()
    joined = _line(second.command("members 2", "members"), "members")
    assert joined[2] != "timeout", f"the members never re-joined the restarted leader: {joined}"
    rejoin_s = time.monotonic() - restarted_at
    now = _accounts(second.command(f"accounts {LATENCY_S} {' '.join(NAMES)}", "pids"))
    assert {name: entry[3] for name, entry in now.items()} == dict.fromkeys(NAMES, "up")
    assert not {entry[1] for entry in now.values()} & stale  # new actors, not the old ones
    second.wait("an outcome for every message owed", lambda: owed <= set(second.outcomes()))
    if stale_s is None:
        stale_s = _gone_after(stale, killed_at, STALE_DEADLINE_S)
        assert stale_s is not None, (
            f"an old account still runs: {procs.wait_gone(stale, timeout_s=0)}"
        )
    resent = {mid for w in second.command("sent", "sent-done") if w[0] == "sent" for mid in w[2:]}
    second.command("stats", "pids")
    counters = second.counters()
    second.command("stop", "stopped")
    assert second.proc.wait(timeout=30) == 0
    second_pids = {int(p) for words in second.words("pids") for p in words}
    assert not procs.wait_gone(second_pids, timeout_s=10), "a process of the leader is left"
    assert f"127.0.0.1:{port}" not in _listening(("127.0.0.1",))

    # Every accepted message: one outcome across the two lifetimes, none twice.
    after = Counter(second.outcomes())
    both = before + after
    assert set(accepted) <= set(both), sorted(set(accepted) - set(both))[:5]
    assert [mid for mid, n in both.items() if n > 1] == []
    assert {w[1] for w in first.words("outcome") + second.words("outcome")} == {"replied"}
    assert {mid: status for mid, (status, _) in rows(store).items()} == dict.fromkeys(
        accepted, "replied"
    )
    # The new generations sent each reply owed once (none of those confirmed before).
    assert resent == owed, (sorted(resent - owed)[:5], sorted(owed - resent)[:5])
    # What the old generations still held when they gave up (not sent by them): the rest
    # of the owed replies they had sent, unreported, so those went out twice (README).
    held = sum(int(n) for m in (a, b) for n in re.findall(_FENCED_OUT, m.stderr()))
    print(
        f"\nleader SIGKILL ({restart}) with {len(owed)} of 40 replies in flight on the "
        f"members: its {len(leader_pids)} processes killed; the members lived on, their 4 "
        f"old account actors exited {stale_s:.2f} s after the kill (lease lost); leader "
        f"started again {restarted_at - killed_at:.2f} s after the kill, ready in "
        f"{ready_s:.2f} s, both members re-joined {rejoin_s:.2f} s after the restart; "
        f"accounts placed on {sorted(entry[0] for entry in now.values())}; recovered "
        f"{recovered.get('intake.recovered', 0)} unfinished "
        f"({recovered.get('intake.recovered_replied', 0)} marked sent), "
        f"{counters.get('intake.readmitted', 0)} re-admitted, {len(resent)} replies sent "
        f"by the new generations (the old ones held {held} of them at their exit: "
        f"{len(owed) - held} sent twice); {len(before)} outcomes before the kill + {len(after)} "
        f"after = {len(both)} for {len(accepted)} accepted, 0 twice"
    )
