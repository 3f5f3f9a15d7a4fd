"""A router that always comes back: killed again and again under load, or failed per policy.

Thespian does not always report a child's end: on the multiproc bases, handling one child's
exit reaps every other child that died meanwhile without a message for it, so a router
SIGKILLed together with an account could stay "up" in its supervisor forever while the
facade could not reach it (measured with ``scripts/run --kill-router``). The supervisor now
also watches its children's pids (``actors.supervisor.watch``), and the facade tells it
when the router does not answer. These tests kill real processes by pid under a steady
load and check the contract: the router restarted each time within the restart policy
(or failed per the policy with a clear outcome for every message), every accepted
message ended exactly once, and none later than its deadline plus the facade's grace.

The first tests drive the watch and the facade's router link without Thespian.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from typing import Any

from actors.config import EngineConfig
from actors.cores.restart import RestartPolicy
from actors.engine.ledger import Ledger
from actors.engine.router_link import ATTEMPTS, RouterLink
from actors.runtime.system import SystemHandle
from actors.runtime.wiring import (
    AccountGone,
    AccountUp,
    Configure,
    LocateRouter,
    PoolUp,
    RouterWhereabouts,
)
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.spawner import Spawner
from actors.supervisor.teardown import Teardown
from actors.supervisor.watch import UNRESPONSIVE_KILL_S, ChildWatch, child_pids
from protocols import Accepted, CollectOutcomes, OutcomeBatch, Rejected, SubmitBatch, SubmitResults
from tests.conftest import EngineFactory
from tests.engine_helpers import actor, collect, inbound, wait_for
from tests.load_helpers import Load

TCP = "multiprocTCPBase"
WAIT_S = 30.0  # the longest a step may take on a busy machine; a condition ends it sooner
T0 = 1_700_000_000.0

# --- the watch, without Thespian ---------------------------------------------------------


class Rig:
    """A ChildWatch over a real SupervisorCore, with fake processes and recorded effects."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("restart_jitter", 0.0)
        self.core = SupervisorCore(EngineConfig(**config), seed=1)
        self.addresses: dict[tuple[str, str], Any] = {}
        self.dead: set[int] = set()
        self.sent: list[tuple[Any, Any]] = []
        self.timers: list[tuple[float, Any]] = []
        self.killed: list[int] = []
        self.forgotten: list[Any] = []
        teardown = Teardown(
            self.core,
            send=lambda to, msg: self.sent.append((to, msg)),
            wake_at=lambda at, payload: self.timers.append((at, payload)),
            stop_child=lambda child: None,
            live_router=lambda: None,
        )
        self.watch = ChildWatch(
            self.core,
            addresses=self.addresses,
            send=lambda to, msg: self.sent.append((to, msg)),
            wake_at=lambda at, payload: self.timers.append((at, payload)),
            live_router=lambda: (
                self.addresses[("router", "router")] if self.core.is_up("router") else None
            ),
            event=lambda account_id, kind, detail: None,
            reply_adding=lambda account_id, **kw: None,
            teardown=teardown,
            forget=self.forgotten.append,
            is_running=lambda pid: pid not in self.dead,
            kill=self.killed.append,
        )

    def up(self, role: str, name: str, pid: int) -> Child:
        child = self.core.children.get((role, name)) or self.core.add_child(role, name)
        self.core.child_spawned(child, pid)
        self.addresses[(role, name)] = f"{role}-{name}@{child.generation}"
        self.core.child_up(child, pid, T0)
        return child

    def restarts(self) -> list[Any]:
        return [payload for _, payload in self.timers if payload[0] == "restart"]


def test_a_child_whose_exit_thespian_lost_is_restarted_when_its_pid_is_gone() -> None:
    rig = Rig()
    router = rig.up("router", "router", pid=101)
    rig.up("account", "acct-1", pid=102)
    rig.watch.sweep(T0 + 1)
    assert rig.restarts() == []  # both alive: nothing to do

    rig.dead.add(101)  # SIGKILLed; Thespian reaped it silently
    rig.watch.sweep(T0 + 2)

    assert router.state == "down"
    assert rig.restarts() == [("restart", "router", "router", 1)]
    assert rig.forgotten == ["router-router@1"]  # Thespian is told, for its shutdown


def test_a_child_seen_dead_by_pid_and_by_thespian_is_restarted_once() -> None:
    rig = Rig()
    rig.up("router", "router", pid=101)
    rig.dead.add(101)
    rig.watch.sweep(T0 + 1)
    rig.watch.exited("router-router@1", T0 + 1.1)  # Thespian's notice comes after all
    rig.watch.sweep(T0 + 1.5)

    assert rig.restarts() == [("restart", "router", "router", 1)]
    assert rig.core.counters()["restarts.router"] == 1


def test_a_late_exit_notice_of_an_earlier_generation_restarts_nothing() -> None:
    rig = Rig()
    rig.up("router", "router", pid=101)
    rig.watch.exited("router-router@1", T0 + 1)
    child = rig.core.children[("router", "router")]
    rig.core.respawn(child)
    rig.up("router", "router", pid=201)  # generation 2 at a new address

    rig.watch.exited("router-router@1", T0 + 2)  # the first generation's, again
    rig.watch.sweep(T0 + 2)

    assert child.state == "up"
    assert len(rig.restarts()) == 1


def test_the_router_the_facade_cannot_reach_is_checked_and_restarted_at_once() -> None:
    rig = Rig()
    rig.up("router", "router", pid=101)
    rig.dead.add(101)

    where = rig.watch.locate_router(LocateRouter(generation=1, unanswered_s=0.01), T0 + 1)

    assert (where.generation, where.state) == (1, "down")
    assert rig.restarts() == [("restart", "router", "router", 1)]


def test_a_live_router_silent_past_the_limit_is_killed_and_a_briefly_silent_one_is_not() -> None:
    rig = Rig()
    rig.up("router", "router", pid=101)

    rig.watch.locate_router(LocateRouter(generation=1, unanswered_s=UNRESPONSIVE_KILL_S / 2), T0)
    assert rig.killed == []
    where = rig.watch.locate_router(
        LocateRouter(generation=1, unanswered_s=UNRESPONSIVE_KILL_S), T0
    )
    assert rig.killed == [101]
    assert where.state == "up"  # until its end is seen; then it is restarted as any crash
    rig.dead.add(101)
    rig.watch.sweep(T0 + 1)
    assert rig.restarts() == [("restart", "router", "router", 1)]


def test_a_question_about_an_older_generation_checks_nothing() -> None:
    rig = Rig()
    rig.up("router", "router", pid=101)
    rig.dead.add(101)  # gone, but the facade asks about generation 0: not this router
    where = rig.watch.locate_router(LocateRouter(generation=0, unanswered_s=60.0), T0)
    assert (where.generation, where.state) == (1, "up")
    assert rig.killed == []


def test_past_its_restart_policy_the_router_is_reported_failed_with_the_reason() -> None:
    rig = Rig(restart_max_restarts=1)
    router = rig.up("router", "router", pid=101)
    rig.dead.add(101)
    rig.watch.sweep(T0 + 1)
    rig.core.respawn(router)
    rig.up("router", "router", pid=102)
    rig.dead.add(102)
    rig.watch.sweep(T0 + 2)

    where = rig.watch.locate_router(LocateRouter(generation=2, unanswered_s=1.0), T0 + 3)

    assert where.state == "failed"
    assert "restart intensity exceeded" in where.detail
    assert len(rig.restarts()) == 1


def test_the_pid_of_a_forked_child_is_seen_at_once() -> None:
    before = child_pids()
    pid = os.fork()
    if pid == 0:  # the child: wait to be killed
        signal.pause()
        os._exit(0)
    try:
        assert child_pids() - before == {pid}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert pid not in child_pids()


# --- what a new router is told, without Thespian -------------------------------------------


class SpawnRig:
    """A Spawner over a real SupervisorCore; creates name addresses, records what it sends."""

    def __init__(self) -> None:
        self.core = SupervisorCore(EngineConfig(restart_jitter=0.0), seed=1)
        self.addresses: dict[tuple[str, str], Any] = {}
        self.sent: list[tuple[Any, Any]] = []
        self.created = 0
        self.spawner = Spawner(
            self.core,
            addresses=self.addresses,
            create=self._create,
            send=lambda to, msg: self.sent.append((to, msg)),
            base="simpleSystemBase",
            seed=1,
            fork_pids=False,
        )

    def _create(self, role: str) -> str:
        self.created += 1
        return f"{role}#{self.created}"

    def start(self, role: str, name: str) -> Child:
        child = self.core.children.get((role, name)) or self.core.add_child(role, name)
        self.spawner.spawn(child)
        self.core.child_up(child, None, T0)
        return child

    def crash(self, child: Child, *, respawn: bool = True) -> None:
        self.core.child_crashed(child, T0)
        if respawn:
            self.core.respawn(child)
            self.spawner.spawn(child)

    def news_for(self, router: str) -> list[Any]:
        self.sent.clear()
        self.spawner.router_up(router)
        return [msg for to, msg in self.sent if to == router]


def test_a_router_that_started_while_an_account_restarted_is_told_its_new_generation() -> None:
    rig = SpawnRig()
    rig.start("ai_pool", "ai_pool")
    router = rig.start("router", "router")
    account = rig.start("account", "acct-1")
    rig.crash(router)  # the router restarts; acct-1 is listed up at generation 1
    rig.crash(account)  # and acct-1 too, before the new router answered
    rig.core.child_up(account, None, T0)

    [news] = rig.news_for(rig.addresses[("router", "router")])

    assert isinstance(news, AccountUp)
    assert (news.account_id, news.generation, news.restarted) == ("acct-1", 2, True)
    assert news.address == rig.addresses[("account", "acct-1")]


def test_an_account_restarting_when_the_router_starts_is_listed_then_reported_down() -> None:
    rig = SpawnRig()
    rig.start("ai_pool", "ai_pool")
    router = rig.start("router", "router")
    account = rig.start("account", "acct-1")
    rig.crash(account, respawn=False)  # down: its restart is pending
    rig.crash(router)

    configure = rig.sent[-1][1]
    assert isinstance(configure, Configure)
    assert [name for name, _, _ in configure.accounts] == ["acct-1"]  # known, not refused
    [news] = rig.news_for(rig.addresses[("router", "router")])
    assert news == AccountGone(account_id="acct-1", state="down")  # hold its replies


def test_a_router_is_told_of_a_pool_restart_a_failure_and_a_removal_it_missed() -> None:
    rig = SpawnRig()
    pool = rig.start("ai_pool", "ai_pool")
    router = rig.start("router", "router")
    gone = rig.start("account", "acct-gone")
    failing = rig.start("account", "acct-failing")
    failing.policy = RestartPolicy(max_restarts=0)  # its next crash fails it
    rig.crash(router)
    rig.crash(pool)
    rig.core.child_up(pool, None, T0)
    rig.core.remove_child(gone)
    rig.core.child_crashed(failing, T0)  # past its policy: failed
    assert failing.state == "failed"

    news = rig.news_for(rig.addresses[("router", "router")])

    assert AccountGone(account_id="acct-failing", state="failed") in news
    assert AccountGone(account_id="acct-gone", state="removed") in news
    [pool_up] = [m for m in news if isinstance(m, PoolUp)]
    assert (pool_up.generation, pool_up.restarted) == (2, True)
    assert len(news) == 3


def test_a_router_started_after_the_pool_failed_is_told_so() -> None:
    rig = SpawnRig()
    pool = rig.start("ai_pool", "ai_pool")
    router = rig.start("router", "router")
    pool.policy = RestartPolicy(max_restarts=0)
    rig.core.child_crashed(pool, T0)
    rig.crash(router)

    [news] = rig.news_for(rig.addresses[("router", "router")])

    assert isinstance(news, PoolUp)
    assert news.failed


def test_a_router_that_missed_nothing_is_told_nothing() -> None:
    rig = SpawnRig()
    rig.start("ai_pool", "ai_pool")
    rig.start("account", "acct-1")
    router = rig.start("router", "router")
    rig.crash(router)
    assert rig.news_for(rig.addresses[("router", "router")]) == []


# --- the facade's link to a failed router, without Thespian --------------------------------


class Scripted:
    """Stands in for Thespian's ActorSystem: the router never answers, the supervisor does.

    The supervisor's answers are given in order; the last one is repeated.
    """

    def __init__(self, *whereabouts: RouterWhereabouts) -> None:
        self.whereabouts: deque[RouterWhereabouts] = deque(whereabouts)
        self.asked: list[Any] = []

    def ask(self, target: Any, msg: Any, timeout: float) -> Any:
        self.asked.append(msg)
        if target != "supervisor":
            return None
        if len(self.whereabouts) > 1:
            return self.whereabouts.popleft()
        return self.whereabouts[0]

    def listen(self, timeout: float) -> Any:
        return None


def failed_link(
    *whereabouts: RouterWhereabouts, restart_wait_s: float = 0.5
) -> tuple[RouterLink, Scripted]:
    system = Scripted(*whereabouts)
    handle = SystemHandle("simpleSystemBase", None)
    handle._system = system
    handle.supervisor = "supervisor"
    link = RouterLink(handle, "router", 1, ask_timeout_s=0.01, restart_wait_s=restart_wait_s)
    return link, system


def test_a_failed_router_fails_what_it_held_and_rejects_new_messages_at_once() -> None:
    failed = RouterWhereabouts(address=None, generation=1, state="failed", detail="too many")
    link, system = failed_link(failed)
    ledger = Ledger(capacity=10)
    ledger.accept(inbound(1), T0 + 100, T0)

    reply = link.ask(SubmitBatch(messages=(inbound(2),)), 0.01, ledger)

    assert isinstance(reply, SubmitResults)
    [result] = reply.results
    assert isinstance(result, Rejected)
    assert (result.reason, result.detail) == (
        "router_failed",
        "the router failed for good: too many",
    )
    [located] = [m for m in system.asked if isinstance(m, LocateRouter)]
    assert located.unanswered_s > 0  # the silence was reported
    batch = link.ask(CollectOutcomes(max_items=10, wait_s=0.0), 0.01, ledger)
    assert isinstance(batch, OutcomeBatch)
    assert [(o.message_id, o.status, o.reason) for o in batch.outcomes] == [
        ("wamid.1", "failed", "router_failed")
    ]
    asked = len(system.asked)
    link.ask(SubmitBatch(messages=(inbound(3),)), 0.01, ledger)
    assert len(system.asked) == asked  # nobody is asked again: the answer is known


def test_the_link_waits_for_a_restarting_router_and_moves_to_its_new_generation() -> None:
    down = RouterWhereabouts(address=None, generation=1, state="down")
    starting = RouterWhereabouts(address="router-2", generation=2, state="starting")
    up = RouterWhereabouts(address="router-2", generation=2, state="up")
    link, _ = failed_link(down, starting, up)
    link.ask(CollectOutcomes(max_items=10), 0.01, Ledger(capacity=10))
    assert (link.address, link.generation, link.relocations) == ("router-2", 2, 1)
    assert link.failed is None


def test_a_restart_is_not_waited_for_past_the_moment_a_held_message_is_due() -> None:
    down = RouterWhereabouts(address=None, generation=1, state="down")
    link, system = failed_link(down, restart_wait_s=600.0)  # a long backoff, say
    ledger = Ledger(capacity=10)
    now = time.time()
    ledger.accept(inbound(1), now - 5.0, now - 10.0)  # overdue: its timeout is owed now

    assert link.ask(CollectOutcomes(max_items=10), 0.01, ledger) is None

    # One question per try, no polling: the caller gets back to time the message out.
    assert len([m for m in system.asked if isinstance(m, LocateRouter)]) == ATTEMPTS


# --- real SIGKILLs under a steady load ------------------------------------------------------


def _kill(engine: Any, role: str, name: str | None = None) -> int:
    pid = actor(engine, role, name).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def _back_up(engine: Any, role: str, name: str | None, killed: int, what: str) -> None:
    def up() -> bool:
        entry = actor(engine, role, name)
        return entry.state == "up" and entry.pid is not None and entry.pid != killed

    wait_for(up, deadline_s=WAIT_S, what=what)


def test_the_router_killed_five_times_under_load_comes_back_every_time(
    make_engine: EngineFactory,
) -> None:
    timeout_s = 20.0  # far beyond five backoffs: every message must be replied
    accounts = ("acct-1", "acct-2")
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.1},
        accounts=accounts,
        processing_timeout_s=timeout_s,
        restart_max_restarts=5,  # five restarts allowed within the period: no more
    )
    load = Load(engine, prefix="rk", rate_per_s=300, batch=20, accounts=accounts).start()
    account_kills = 0
    try:
        for kill in range(1, 6):
            wait_for(
                lambda kill=kill: len(load.accepted) >= 120 * kill,  # type: ignore[misc]
                deadline_s=WAIT_S,
                what="load in flight",
            )
            # Twice with an account at the same moment: the case Thespian could lose.
            with_account = kill in (2, 4)
            account_pid = _kill(engine, "account", "acct-1") if with_account else 0
            router_pid = _kill(engine, "router")
            _back_up(engine, "router", None, router_pid, f"router restart {kill}")
            if with_account:
                account_kills += 1
                _back_up(engine, "account", "acct-1", account_pid, f"account restart {kill}")
            if kill == 3:  # and the pool, alone
                _back_up(engine, "ai_pool", None, _kill(engine, "ai_pool"), "pool restart")
        wait_for(lambda: len(load.accepted) >= 720, deadline_s=WAIT_S, what="load after kills")
    finally:
        load.finish(deadline_s=timeout_s + WAIT_S)
    print(f"\n[router kills] {load.summary()}")
    router = actor(engine, "router")
    assert (router.generation, router.restarts) == (6, 5)
    assert actor(engine, "ai_pool").restarts == 1
    assert actor(engine, "account", "acct-1").restarts == account_kills
    assert actor(engine, "account", "acct-2").restarts == 0
    assert load.late() == []  # no message past its deadline
    assert set(load.statuses()) == {"replied"}, load.summary()
    msg = inbound("after", customer="+15559999999")
    assert isinstance(engine.submit(msg), Accepted)
    assert collect(engine, [msg.message_id], deadline_s=WAIT_S)[msg.message_id].status == "replied"


def test_a_router_killed_past_its_restart_policy_fails_every_message_clearly(
    make_engine: EngineFactory,
) -> None:
    timeout_s = 20.0
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.5},
        accounts=("acct-1",),
        processing_timeout_s=timeout_s,
        restart_max_restarts=1,
    )
    load = Load(engine, prefix="rf", rate_per_s=200, batch=20).start()
    try:
        wait_for(lambda: len(load.accepted) >= 100, deadline_s=WAIT_S, what="load in flight")
        _back_up(engine, "router", None, _kill(engine, "router"), "the one restart")
        wait_for(lambda: len(load.accepted) >= 200, deadline_s=WAIT_S, what="load again")
        _kill(engine, "router")  # one more than the policy allows
        wait_for(
            lambda: load.rejected["router_failed"] > 0, deadline_s=WAIT_S, what="the rejections"
        )
    finally:
        load.finish(deadline_s=timeout_s + WAIT_S)
    print(f"\n[router failed] {load.summary()}")
    assert actor(engine, "router").state == "failed"
    statuses = load.statuses()
    assert statuses["failed/router_failed"] > 0, load.summary()  # what the router held
    assert set(statuses) <= {"replied", "failed/router_failed"}, load.summary()
    assert load.late() == []
    [result] = engine.submit_many([inbound("after")])
    assert isinstance(result, Rejected)
    assert result.reason == "router_failed"
    assert "restart intensity exceeded" in result.detail
    assert engine.outcomes(timeout=0.0) == []  # nothing held, nothing owed


def test_stats_submissions_and_shutdown_still_answer_after_the_router_failed(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(TCP, echo={}, accounts=("acct-1",), restart_max_restarts=0)
    _kill(engine, "router")  # no restart allowed: failed at once
    wait_for(lambda: actor(engine, "router").state == "failed", deadline_s=WAIT_S, what="failed")

    # Before: each call waited for a restart that would not come (~2 min), then "capacity".
    [result] = engine.submit_many([inbound(1)])

    assert isinstance(result, Rejected)
    assert result.reason == "router_failed"
    assert engine.outcomes(timeout=0.0) == []
    report = engine.shutdown()
    assert "router" in [s.name for s in report.stages]
    assert report.abandoned == ()
