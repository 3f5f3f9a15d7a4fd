"""A member's loss on multiprocTCPBase: its accounts are re-placed, nothing accepted is lost.

A leader engine and two members (two accounts each), with the fixtures of
``tests/test_conventions.py`` (their teardown kills what is left of each member and checks
that no process and no port on the members' addresses remains; the engine's fixture checks
its own processes). The loopback transport finishes each send ``LATENCY_S`` after it
starts, so the replies of the messages submitted just before a member is killed are still
at its accounts, unconfirmed, when it dies. The tests print how long the leader took to see
the member gone and to have its accounts up again elsewhere; only a generous deadline is
asserted. The first tests drive ``actors.supervisor.relocation`` without Thespian,
the lease fencing included (``actors.cores.lease``); the frozen-member test checks the
fencing on multiprocTCPBase: a resumed old generation sends nothing its replacement sends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from actors.account.actor import LoopbackSent
from actors.config import EngineConfig
from actors.cores.lease import LEASE_VALID_FOR_S
from actors.runtime import procs
from actors.runtime.convention import MEMBER_CAPABILITY, MemberEvent
from actors.runtime.wiring import AccountGone, Configure, LeaseAsk, LeaseGrant
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.lifecycle import ChildState
from actors.supervisor.placement import LEADER, MAX_LOST_MEMBERS
from actors.supervisor.relocation import Relocation
from actors.supervisor.spawner import Spawner
from actors.supervisor.teardown import Teardown
from actors.supervisor.watch import ChildWatch
from protocols import Accepted, ActorStats, Outcome, ProviderSpec, Rejected, StatsReply
from tests.conftest import EngineFactory
from tests.engine_helpers import collect, inbound, wait_for
from tests.test_conventions import (  # noqa: F401 - fixtures
    DETECTION_DEADLINE_S,
    HOSTS,
    Leader,
    Member,
    leader,
    members,
    start_leader,
    two_members,
)

LATENCY_S = 1.5
"""How long each loopback send takes: long enough that a kill right after a submission
finds the replies in flight at the accounts, even on a loaded machine."""

REPLACED_DEADLINE_S = 30.0  # generous: the figure is printed, not asserted
NAMES = tuple(f"acct-{i}" for i in range(4))


# --- the relocation, without Thespian ------------------------------------------------------


class _Rig:
    """A Relocation over a real core, spawner and watch; creations and sends recorded."""

    def __init__(self) -> None:
        self.core = SupervisorCore(EngineConfig(max_instances=4, restart_jitter=0.0), seed=1)
        self.addresses: dict[tuple[str, str], Any] = {}
        self.sent: list[tuple[Any, Any]] = []
        self.timers: list[tuple[float, Any]] = []
        self.made: list[dict[str, Any] | None] = []
        send = self.sent.append
        self.spawner = Spawner(
            self.core,
            addresses=self.addresses,
            create=lambda role: self._made(None),
            create_pinned=lambda role, requirements: self._made(requirements),
            send=lambda to, msg: send((to, msg)),
            base="simpleSystemBase",
            seed=1,
            fork_pids=False,
        )
        teardown = Teardown(
            self.core,
            send=lambda to, msg: send((to, msg)),
            wake_at=lambda at, payload: None,
            stop_child=lambda child: None,
            live_router=lambda: None,
        )
        router = self.core.add_child("router", "router")
        self.addresses[("router", "router")] = "router@1"
        self.core.child_up(router, None, 0.0)
        watch = ChildWatch(
            self.core,
            addresses=self.addresses,
            send=lambda to, msg: send((to, msg)),
            wake_at=lambda at, payload: self.timers.append((at, payload)),
            live_router=lambda: "router@1",
            event=lambda account_id, kind, detail: None,
            reply_adding=lambda account_id, **kw: None,
            teardown=teardown,
            forget=lambda address: None,
        )
        self.clock = 500.0  # the leases' (monotonic) clock
        self.relocation = Relocation(
            self.spawner,
            watch,
            send=lambda to, msg: send((to, msg)),
            stop=lambda: "EXIT",
            clock=lambda: self.clock,
        )

    def _made(self, requirements: dict[str, Any] | None) -> str:
        self.made.append(requirements)
        return f"account#{len(self.made)}"

    def member(self, member_id: str, admin: str, *, added: bool) -> tuple[str, ...] | None:
        event = MemberEvent(admin=admin, member_id=member_id, max_accounts=1, added=added)
        return self.relocation.member_changed(event, now=10.0)

    def up(self, name: str) -> Child:
        child = self.core.add_child("account", name)
        self.spawner.spawn(child)
        self.core.child_up(child, None, 0.0)
        return child

    def restart(self, child: Child) -> None:
        """What the supervisor does when the restart timer armed by the watch fires."""
        assert self.timers[-1][1] == ("restart", "account", child.name, child.generation)
        self.core.respawn(child)
        self.spawner.spawn(child)


def _exits(rig: _Rig) -> list[Any]:
    return [to for to, msg in rig.sent if msg == "EXIT"]


def test_a_lost_members_account_is_down_for_the_router_then_re_created_elsewhere() -> None:
    rig = _Rig()
    rig.member("m-a", "127.0.0.2:1", added=True)
    child = rig.up("a0")
    assert rig.made == [{MEMBER_CAPABILITY: "m-a"}]
    rig.sent.clear()
    assert rig.member("m-a", "127.0.0.2:1", added=False) == ("a0",)
    assert child.state is ChildState.DOWN
    assert ("router@1", AccountGone(account_id="a0", state="down")) in rig.sent
    assert rig.relocation.stale == {"m-a": ("127.0.0.2:1", ["account#1"])}
    rig.restart(child)
    assert rig.made[-1] is None  # the leader: the only member is lost
    assert (child.generation, rig.spawner.placement.where("a0")) == (2, LEADER)
    assert rig.member("m-a", "127.0.0.2:1", added=False) is None  # said once: nothing more
    assert child.generation == 2


def test_a_member_back_from_the_same_admin_has_its_stale_accounts_told_to_exit() -> None:
    rig = _Rig()
    rig.member("m-a", "127.0.0.2:1", added=True)
    rig.up("a0")
    rig.member("m-a", "127.0.0.2:1", added=False)
    rig.member("m-a", "127.0.0.2:1", added=True)  # frozen, then back: same admin
    assert _exits(rig) == ["account#1"]
    assert rig.relocation.stale == {}
    rig.member("m-a", "127.0.0.2:1", added=True)  # a repeated notice: nothing again
    assert _exits(rig) == ["account#1"]


def test_a_member_back_from_another_admin_is_a_new_incarnation_and_nothing_is_sent() -> None:
    rig = _Rig()
    rig.member("m-a", "127.0.0.2:1", added=True)
    rig.up("a0")
    rig.member("m-a", "127.0.0.2:1", added=False)
    rig.member("m-a", "127.0.0.2:2", added=True)  # restarted: its old actors died with it
    assert _exits(rig) == []
    assert rig.relocation.stale == {}


def test_only_the_current_generation_is_granted_a_lease_and_its_replacement_waits_for_it() -> None:
    rig = _Rig()
    rig.member("m-a", "127.0.0.2:1", added=True)
    child = rig.up("a0")
    configure = next(msg for to, msg in rig.sent if isinstance(msg, Configure))
    assert configure.lease_s == LEASE_VALID_FOR_S  # on a member: fenced
    rig.sent.clear()
    rig.relocation.lease_asked(LeaseAsk(account_id="a0", generation=1, ask=7), "account#1")
    assert rig.sent == [("account#1", LeaseGrant(ask=7))]
    rig.clock = 501.0
    rig.relocation.lease_asked(LeaseAsk(account_id="a0", generation=1, ask=8), "account#1")
    rig.clock = 502.5  # the member is seen lost 1.5 s after the last grant
    rig.member("m-a", "127.0.0.2:1", added=False)
    # The restart must wait until 503.0: 2 s after the last grant, whatever the member's clock.
    assert rig.relocation.fence_wait("account", "a0", 1) == pytest.approx(0.5)
    assert rig.relocation.fence_wait("router", "a0", 1) == 0.0
    rig.clock = 503.0
    assert rig.relocation.fence_wait("account", "a0", 1) == 0.0
    rig.restart(child)
    leader_configure = [msg for to, msg in rig.sent if isinstance(msg, Configure)][-1]
    assert leader_configure.lease_s == 0.0  # on the leader: no lease
    rig.sent.clear()
    # The old generation resumes and asks: it is told to exit, and granted nothing.
    rig.relocation.lease_asked(LeaseAsk(account_id="a0", generation=1, ask=9), "account#1")
    assert rig.sent == [("account#1", "EXIT")]
    counters = rig.relocation.counters()
    assert (counters["leases_granted"], counters["leases_refused"]) == (2, 1)
    assert counters["fence_waits"] == 1
    rig.relocation.forget("a0")
    assert rig.relocation.counters()["leases_held"] == 0


def test_an_account_made_by_an_earlier_leader_is_granted_nothing_and_told_to_exit() -> None:
    """A restarted leader numbers generations from 1 again: its supervisor's lifetime
    (``incarnation``), given in ``Configure`` and echoed in each ask, tells them apart."""
    rig = _Rig()
    rig.spawner.incarnation = 42
    rig.member("m-a", "127.0.0.2:1", added=True)
    rig.up("a0")
    configure = next(msg for to, msg in rig.sent if isinstance(msg, Configure))
    assert configure.incarnation == 42
    rig.sent.clear()
    rig.relocation.lease_asked(
        LeaseAsk(account_id="a0", generation=1, ask=3, incarnation=42), "account#1"
    )
    assert rig.sent == [("account#1", LeaseGrant(ask=3))]
    rig.sent.clear()
    # Same name, same generation number, made by the leader that died: no lease.
    rig.relocation.lease_asked(
        LeaseAsk(account_id="a0", generation=1, ask=9, incarnation=7), "old-account"
    )
    assert rig.sent == [("old-account", "EXIT")]
    assert rig.relocation.counters()["leases_refused"] == 1


def test_the_stale_actors_of_lost_members_are_remembered_only_while_the_member_is() -> None:
    rig = _Rig()
    for k in range(MAX_LOST_MEMBERS + 2):
        rig.member(f"m{k}", f"127.0.0.2:{k + 1}", added=True)
        rig.member(f"m{k}", f"127.0.0.2:{k + 1}", added=False)
    assert len(rig.relocation.stale) == MAX_LOST_MEMBERS
    assert set(rig.relocation.stale) <= set(rig.spawner.placement.members)


def test_a_lost_account_that_never_held_a_lease_is_replaced_without_waiting() -> None:
    rig = _Rig()
    rig.member("m-a", "127.0.0.2:1", added=True)
    rig.up("a0")
    rig.member("m-a", "127.0.0.2:1", added=False)
    assert rig.relocation.fence_wait("account", "a0", 1) == 0.0


# --- on multiprocTCPBase ------------------------------------------------------------------


def _accounts(stats: StatsReply) -> dict[str, ActorStats]:
    return {entry.name: entry for entry in stats.of_role("account")}


def _spread(engine_leader: Leader, members: Callable[..., Member]) -> tuple[Member, Member]:  # noqa: F811
    """Two members of two accounts each, all four accounts placed on them, an echo provider.

    Each account on a member holds a lease (``actors.cores.lease``)."""
    engine = engine_leader.engine
    a, b = two_members(engine_leader, members)
    engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=10, options={}))
    for name in NAMES:
        engine.add_account(name, options={"latency_s": LATENCY_S})
    hosts = sorted(e.host for e in _accounts(engine.stats()).values())
    assert hosts == ["member-a", "member-a", "member-b", "member-b"], hosts
    return a, b


def _submit(leader: Leader, first: int, count: int) -> list[str]:  # noqa: F811
    batch = [inbound(i, account=NAMES[i % len(NAMES)]) for i in range(first, first + count)]
    results = leader.engine.submit_many(batch)
    assert all(isinstance(r, Accepted) for r in results), results
    return [m.message_id for m in batch]


def _moved(leader: Leader, lost: dict[str, ActorStats], away_from: str = "") -> bool:  # noqa: F811
    """True when every account in ``lost`` is up in a later generation, not on ``away_from``."""
    now = _accounts(leader.engine.stats())
    return all(
        now[name].state == "up"
        and now[name].host not in ("", away_from)
        and now[name].generation > old.generation
        for name, old in lost.items()
    )


@pytest.mark.parametrize("kill", ["whole", "admin"])
def test_a_killed_members_accounts_are_re_placed_and_every_accepted_message_ends_once(
    members: Callable[..., Member],  # noqa: F811 - first: the engine stops before the members
    leader: Leader,  # noqa: F811
    kill: str,
) -> None:
    engine = leader.engine
    _, b = _spread(leader, members)
    before = _accounts(engine.stats())
    lost = {n: e for n, e in before.items() if e.host == "member-b"}
    kept = {n: e for n, e in before.items() if e.host == "member-a"}

    # Confirmed before the kill: these must never be sent again by a later generation.
    first = _submit(leader, 0, 20)
    outcomes: dict[str, Outcome] = collect(engine, first)
    # In flight at the kill: the lost generation holds their replies, unconfirmed.
    second = _submit(leader, 20, 20)
    killed_at = time.time()
    if kill == "whole":  # the member's whole process groups: its command and actor system
        pids = b.kill()
    else:  # its admin alone: the member command then ends what is left of the member
        pids = b.pids()
        os.kill(b.up["admin_pid"], signal.SIGKILL)
    assert not procs.wait_gone(pids, timeout_s=10)

    gone = leader.wait_gone(b.admin, what="the leader seeing the killed member gone")
    wait_for(
        lambda: _moved(leader, lost, "member-b"),
        deadline_s=REPLACED_DEADLINE_S,
        what="the lost member's accounts up again elsewhere",
    )
    replaced_at = time.time()

    later = collect(engine, second, deadline_s=60)  # fails on a second outcome for an id
    assert not outcomes.keys() & later.keys()
    outcomes.update(later)
    assert len(outcomes) == len(first) + len(second)
    assert {o.status for o in outcomes.values()} == {"replied"}, outcomes

    stats = engine.stats()
    now = _accounts(stats)
    for name in lost:  # member-a is full: the leader hosts them
        assert now[name].host == LEADER, (name, now[name].host)
    for name, old in kept.items():  # the survivor's accounts were not touched
        assert (now[name].host, now[name].generation) == ("member-a", old.generation)
    router = stats.actor("router")
    assert router is not None
    resent = router.counters.get("resent_after_restart", 0)
    assert resent >= 1  # the lost generation's unconfirmed replies went to the new one
    # A later generation sends only what the lost one did not confirm.
    new_sends: set[str] = set()
    for name in lost:
        records = engine.ask_child("account", name, LoopbackSent()).records
        new_sends |= {r.message_id for r in records}
    assert new_sends <= set(second), sorted(new_sends - set(second))[:5]
    assert not new_sends & set(first)
    # The supervisor's exit does not wait for the lost generations (Thespian never hears of
    # their end): the engine shuts down in order, nothing to kill after it.
    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(str(m)), level="ERROR", format="{message}")
    try:
        engine.shutdown()
    finally:
        logger.remove(sink)
    assert not [e for e in errors if "outlived shutdown" in e], errors
    print(
        f"\nmember SIGKILL ({kill}) -> seen gone after {gone - killed_at:.2f} s, its "
        f"{len(lost)} accounts up on the leader after {replaced_at - killed_at:.2f} s "
        f"(re-creation {replaced_at - gone:.2f} s); {len(outcomes)} accepted, "
        f"{len(outcomes)} replied once; {resent} replies re-sent, {len(new_sends)} sent "
        f"by the new generations"
    )


def test_a_member_that_returns_after_being_dropped_has_its_stale_accounts_stopped(
    members: Callable[..., Member],  # noqa: F811 - first: the engine stops before the members
    leader: Leader,  # noqa: F811
) -> None:
    engine = leader.engine
    _, b = _spread(leader, members)
    lost = {n: e for n, e in _accounts(engine.stats()).items() if e.host == "member-b"}
    stale_pids = {e.pid for e in lost.values() if e.pid is not None}
    assert len(stale_pids) == 2
    groups = _groups(b)
    with _frozen(groups):
        # No message goes to the frozen member meanwhile (a hung member stalls its senders).
        leader.wait_gone(b.admin, what="the leader dropping the frozen member")
    wait_for(
        lambda: sum(1 for e in leader.events() if e[1] == b.admin and e[4]) >= 2,
        deadline_s=DETECTION_DEADLINE_S,
        what="the member registering again from the same admin",
    )
    # Back within the restart's back-off, the member may host their new generation itself.
    wait_for(
        lambda: _moved(leader, lost),
        deadline_s=REPLACED_DEADLINE_S,
        what="the dropped member's accounts up again in a new generation",
    )
    # Its old account actors were told to exit: one actor per number again.
    assert not procs.wait_gone(stale_pids, timeout_s=10), "a stale account actor still runs"
    assert b.proc.poll() is None  # the member itself lives on
    wait_for(
        lambda: engine.stats().counters.get("supervisor.members_up") == 2,
        what="both members up again",
    )
    ids = _submit(leader, 0, 8)
    assert {o.status for o in collect(engine, ids).values()} == {"replied"}


def test_a_frozen_members_stale_accounts_send_nothing_once_their_replacement_exists(
    members: Callable[..., Member],  # noqa: F811 - first: the engine stops before the members
    leader: Leader,  # noqa: F811
) -> None:
    """Fencing: the replies a frozen member's accounts hold are sent once, by the new
    generation; the old one, resumed after its replacement is up, sends none of them."""
    engine = leader.engine
    _, b = _spread(leader, members)
    lost = {n: e for n, e in _accounts(engine.stats()).items() if e.host == "member-b"}
    stale_pids = {e.pid for e in lost.values() if e.pid is not None}
    assert len(stale_pids) == 2
    ids = _submit(leader, 0, 20)
    held = [i for n, i in enumerate(ids) if NAMES[n % len(NAMES)] in lost]
    # Every reply of the lost accounts is at them, its send started and unfinished.
    wait_for(
        lambda: sum(_accounts(engine.stats())[n].depth for n in lost) == len(held),
        what="the replies in flight at the member's accounts",
    )
    frozen_at = time.time()
    with _frozen(_groups(b)):
        leader.wait_gone(b.admin, what="the leader dropping the frozen member")
        wait_for(
            lambda: _moved(leader, lost, "member-b"),
            deadline_s=REPLACED_DEADLINE_S,
            what="the frozen member's accounts up again elsewhere",
        )
        replaced_at = time.time()
    # Resumed: the old generation finds its lease long gone (or is told it lost it).
    assert not procs.wait_gone(stale_pids, timeout_s=15), "a stale account actor still runs"
    stale_gone_at = time.time()

    outcomes = collect(engine, ids, deadline_s=60)  # fails on a second outcome for an id
    assert len(outcomes) == len(ids)
    assert {o.status for o in outcomes.values()} == {"replied"}, outcomes
    stats = engine.stats()
    router = stats.actor("router")
    supervisor = stats.actor("supervisor")
    assert router is not None
    assert supervisor is not None
    # A report from the old generation would come for a reply the new one sent too (or
    # sends now): the router would count it late. None came.
    assert router.counters.get("late_deliveries", 0) == 0, router.counters
    new_sends: set[str] = set()
    for name in lost:
        new_sends |= {
            r.message_id for r in engine.ask_child("account", name, LoopbackSent()).records
        }
    # The new generations sent every held reply: the old one had sent none before the
    # freeze, and (no late report) sends none after it.
    assert new_sends == set(held), (sorted(set(held) - new_sends), sorted(new_sends - set(held)))
    gone = leader.wait_gone(b.admin, what="the leader dropping the frozen member")
    counters = supervisor.counters
    print(
        f"\nmember SIGSTOP -> seen gone after {gone - frozen_at:.2f} s, its "
        f"{len(lost)} accounts up elsewhere after {replaced_at - frozen_at:.2f} s "
        f"({counters.get('fence_waits', 0)} restarts waited for a lease); resumed, its stale "
        f"actors gone {stale_gone_at - replaced_at:.2f} s later; {len(held)} held replies "
        f"sent once, by the new generation; {counters.get('leases_granted', 0)} leases "
        f"granted, {counters.get('leases_refused', 0)} refused"
    )


SILENCE_S = 0.2
"""``account_silence_s`` of the watchful leader: well inside the member's detection (>= 1 s)."""


@pytest.fixture
def watchful_leader(
    make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Leader:
    return start_leader(make_engine, tmp_path, monkeypatch, account_silence_s=SILENCE_S)


def test_a_frozen_member_delays_only_its_own_accounts_and_never_stalls_the_leader(
    members: Callable[..., Member],  # noqa: F811 - first: the engine stops before the members
    watchful_leader: Leader,
) -> None:
    """While a member is frozen: its accounts stop taking new messages
    (``account_unresponsive``, retryable) once a batch to them goes unread; the other
    member's accounts take and answer theirs; ``stats()`` keeps answering (the supervisor
    asks a silent child nothing more, and no transmit limit of Thespian's stalls it)."""
    engine = watchful_leader.engine
    _, b = _spread(watchful_leader, members)
    on_b = {n for n, e in _accounts(engine.stats()).items() if e.host == "member-b"}
    accepted: dict[str, str] = {}  # message id -> its account
    refused: list[tuple[str, Rejected]] = []
    stats_s: list[float] = []
    rounds = [0]

    def one_round() -> bool:
        """Offer one message to every account, read the stats; True once b's refuse."""
        n = rounds[0] = rounds[0] + 1
        batch = [inbound(1000 + 10 * n + k, account=name) for k, name in enumerate(NAMES)]
        for msg, result in zip(batch, engine.submit_many(batch), strict=True):
            if isinstance(result, Accepted):
                accepted[msg.message_id] = msg.account_id
            else:
                refused.append((msg.account_id, result))
        began = time.monotonic()
        engine.stats()  # raises if the supervisor does not answer within ask_timeout_s
        stats_s.append(time.monotonic() - began)
        return any(account in on_b for account, _ in refused)

    with _frozen(_groups(b)):
        frozen_at = time.monotonic()
        wait_for(one_round, what="the frozen member's accounts refusing new messages")
        refused_at = time.monotonic()
        # The other member's accounts answered everything they took, the member still frozen.
        theirs = [i for i, account in accepted.items() if account not in on_b]
        done = collect(engine, theirs)
        answered_at = time.monotonic()
        assert b.proc.poll() is None
    assert {o.status for o in done.values()} == {"replied"}, done
    assert refused, "nothing was refused"
    for account, rejected in refused:
        assert account in on_b, (account, rejected)  # only the frozen member's accounts
        assert rejected.reason == "account_unresponsive", rejected
    # Everything accepted ends once: the frozen accounts' messages once they read again
    # (or by their next generation, had the member been dropped meanwhile).
    rest = collect(engine, [i for i in accepted if i not in done], deadline_s=60)
    outcomes = {**done, **rest}  # collect fails on a second outcome for an id
    assert len(outcomes) == len(accepted) == len(done) + len(rest)
    assert {o.status for o in outcomes.values()} == {"replied"}, outcomes
    print(
        f"\nmember SIGSTOP -> its accounts refused new messages after "
        f"{refused_at - frozen_at:.2f} s ({len(refused)} refused in {rounds[0]} rounds); "
        f"the other member's {len(theirs)} replies all in "
        f"{answered_at - frozen_at:.2f} s while it was frozen; stats() took at most "
        f"{max(stats_s):.3f} s ({len(stats_s)} calls); {len(outcomes)} accepted = "
        "replied once"
    )


def _groups(member: Member) -> set[int]:
    """The process groups of a member: its command's and its actor system's."""
    return {member.proc.pid, os.getpgid(member.up["admin_pid"])}


@contextlib.contextmanager
def _frozen(groups: set[int]) -> Iterator[None]:
    """SIGSTOP the process groups; SIGCONT them when the block ends, whatever happened."""
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        for group in groups:
            os.killpg(group, signal.SIGCONT)
