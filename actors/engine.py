"""``Engine``: the facade a gateway process embeds.

It starts a Thespian actor system, creates the supervisor, and turns each call into a
blocking ask. It is also the final arbiter of the contract "every accepted message ends
in exactly one outcome": its ``Ledger`` holds every accepted message until its outcome
arrives, drops second outcomes, times out what no actor answered for (an actor died), and
re-admits everything to a restarted router. Calls are serialised by a lock: Thespian's
external API is not thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from loguru import logger
from thespian.actors import ActorSystem

from actors import _procs
from actors._wiring import (
    ActorReport,
    AskChild,
    EngineStarted,
    RouterLocation,
    StartEngine,
    StatsQuery,
    SupervisorStats,
    WhereIsRouter,
)
from actors.config import EngineConfig
from actors.errors import EngineError, InstanceLimitError
from actors.journal import DeadLetterJournal
from actors.ledger import Ledger
from actors.listeners import Listeners, Subscription
from actors.logging import thespian_log_defs
from actors.supervisor.actor import ShutdownDone, SupervisorActor
from protocols import (
    Accepted,
    AccountEvent,
    AccountSpec,
    AddAccount,
    AddProvider,
    CollectOutcomes,
    CommandResult,
    InboundMessage,
    Outcome,
    OutcomeBatch,
    ProviderSpec,
    Rejected,
    RemoveAccount,
    RemoveProvider,
    Scalar,
    ShutdownReport,
    ShutdownRequest,
    StageReport,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["BASES", "Engine"]

BASES = ("multiprocTCPBase", "simpleSystemBase")
_MARGIN_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Engine:
    """The embedded engine; see README "Embedding the engine".

    Args:
        config: the limits (default ``EngineConfig()``, the seed's values).
        base: ``"multiprocTCPBase"`` (one process per actor; production) or
            ``"simpleSystemBase"`` (everything in the caller's thread; tests, tools).
        admin_port: the Thespian admin port (multiprocTCPBase); default: a free port.
        ask_timeout_s: how long one call waits for an actor before treating it as gone.
        seed: seeds the simulated providers' and transports' randomness.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        base: str = "multiprocTCPBase",
        admin_port: int | None = None,
        ask_timeout_s: float = 10.0,
        seed: int | None = None,
    ) -> None:
        if base not in BASES:
            raise EngineError(f"unknown base {base!r} (choose one of {', '.join(BASES)})")
        self.config = config or EngineConfig()
        self.base = base
        self.admin_port = admin_port
        self.ask_timeout_s = ask_timeout_s
        self.seed = random.randrange(2**31) if seed is None else seed
        c = self.config
        self._ledger = Ledger(
            capacity=c.max_concurrent_processing * (1 + c.max_pending_per_customer)
            + c.max_uncollected_outcomes,
            grace_s=1.0,
        )
        self._listeners = Listeners(max_per_account=c.max_listeners)
        self._lock = threading.RLock()
        self._system: Any = None
        self._supervisor: Any = None
        self._router: Any = None
        self._router_generation = 0
        self._ready: deque[Outcome] = deque()
        self._counters: Counter[str] = Counter()
        self._pids: set[int] = set()
        self._admin_pid: int | None = None
        self._state = "new"  # new -> running -> stopping -> stopped
        self._report: ShutdownReport | None = None
        self.log = logger.bind(actor="engine")

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Engine:
        """Start the actor system, the supervisor, the router and the AI pool."""
        with self._lock:
            if self._state != "new":
                raise EngineError(f"can't start an engine that is {self._state}")
            if self.base == "multiprocTCPBase":
                self.admin_port = self.admin_port or _free_port()
                capabilities = {"Admin Port": self.admin_port}
            else:
                capabilities = {}
            # The admin and every actor process are forked from here and inherit the
            # warning filters of this moment: give them Python's defaults, whatever the
            # embedding process (a test run with warnings as errors, say) has set.
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                self._system = ActorSystem(
                    self.base, capabilities, logDefs=thespian_log_defs(), transientUnique=True
                )
            try:
                self._supervisor = self._system.createActor(SupervisorActor)
                started = self._system.ask(
                    self._supervisor,
                    StartEngine(self.config, self.base, self.seed),
                    self.ask_timeout_s * 3,
                )
                if not isinstance(started, EngineStarted):
                    raise EngineError(f"the supervisor did not start the engine (got {started!r})")
            except BaseException:
                self._system.shutdown()
                raise
            self._router = started.router
            self._router_generation = started.router_generation
            if self.base == "multiprocTCPBase":
                self._admin_pid = started.admin_pid
                self._pids.add(started.supervisor_pid)
                self._remember_pids()
            self._state = "running"
            self.log.info("engine started on {} (admin port {})", self.base, self.admin_port)
            return self

    def __enter__(self) -> Engine:
        return self.start() if self._state == "new" else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "running":
            self.shutdown()

    def _require_running(self) -> None:
        if self._state != "running":
            raise EngineError(f"the engine is {self._state}, not running")

    def _ask(self, target: Any, msg: Any, timeout: float | None = None) -> Any:
        return self._system.ask(target, msg, self.ask_timeout_s if timeout is None else timeout)

    # --- management -----------------------------------------------------------------------

    def add_provider(self, spec: ProviderSpec) -> CommandResult:
        """Load an AI provider into the pool (replacing one of the same name)."""
        return self._command(AddProvider(spec=spec))

    def remove_provider(self, name: str) -> CommandResult:
        return self._command(RemoveProvider(name=name))

    def add_account(
        self,
        account_id: str,
        *,
        transport: str = "loopback",
        options: Mapping[str, Scalar] | None = None,
    ) -> None:
        """Start an account actor.

        Raises:
            InstanceLimitError: ``max_instances`` accounts already run.
            EngineError: the id is taken, or the transport or its options are invalid.
        """
        spec = AccountSpec(account_id=account_id, transport=transport, options=dict(options or {}))
        result = self._command(AddAccount(spec=spec))
        if not result.ok:
            if result.error == "instance_limit":
                raise InstanceLimitError(result.detail)
            raise EngineError(result.detail or result.error)

    def remove_account(self, account_id: str) -> CommandResult:
        """Stop an account and free its slot; its pending messages end with an outcome."""
        result = self._command(RemoveAccount(account_id=account_id))
        if result.ok:
            self._listeners.close_account(account_id)
        return result

    def _command(self, msg: Any) -> CommandResult:
        with self._lock:
            self._require_running()
            reply = self._ask(self._supervisor, msg)
            if not isinstance(reply, CommandResult):
                raise EngineError(f"no answer to {type(msg).__name__} (got {reply!r})")
            self._remember_pids()
            return reply

    def subscribe(self, account_id: str, callback: Callable[[AccountEvent], None]) -> Subscription:
        """Call ``callback`` with the account's status events (delivered during ``outcomes``).

        Raises:
            ListenerLimitError: the account already has ``max_listeners`` subscriptions.
        """
        with self._lock:
            return self._listeners.subscribe(account_id, callback)

    # --- messages -------------------------------------------------------------------------

    def submit(self, message: InboundMessage) -> Accepted | Rejected:
        """Submit one inbound message; see ``submit_many``."""
        return self.submit_many([message])[0]

    def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
        """Submit messages in one round trip; one ``Accepted``/``Rejected`` each, in order.

        Every ``Accepted`` message later ends in exactly one ``Outcome``.
        """
        batch = tuple(messages)
        for msg in batch:
            if not isinstance(msg, InboundMessage):
                raise TypeError(f"submit takes InboundMessage, not {type(msg).__name__}")
        with self._lock:
            if self._state != "running":
                return [
                    self._refuse(m, "shutting_down", "the engine is not running") for m in batch
                ]
            if not batch:
                return []
            reply = self._ask_router(
                SubmitBatch(messages=batch, generation=self._router_generation)
            )
            if not isinstance(reply, SubmitResults):
                return [self._refuse(m, "capacity", "the router is unavailable") for m in batch]
            now = time.time()
            by_id = {m.message_id: m for m in batch}
            for result in reply.results:
                if isinstance(result, Accepted):
                    deadline = result.deadline or now + self.config.processing_timeout_s
                    self._ledger.accept(by_id[result.message_id], deadline, now)
                else:
                    self._counters[f"reject.{result.reason}"] += 1
            return list(reply.results)

    def _refuse(self, msg: InboundMessage, reason: str, detail: str) -> Rejected:
        self._counters[f"reject.{reason}"] += 1
        return Rejected(message_id=msg.message_id, reason=reason, detail=detail)

    def outcomes(self, timeout: float = 1.0, *, max_items: int = 10_000) -> list[Outcome]:
        """Outcomes ready now; if none, wait up to ``timeout`` seconds for the first."""
        with self._lock:
            out = self._take_ready(max_items)
            out += self._ledger.expire(time.time())
            if self._state != "running":
                return out
            until = time.time() + max(0.0, timeout)
            while True:
                wait_s = 0.0 if out else max(0.0, until - time.time())
                reply = self._ask_router(
                    CollectOutcomes(
                        max_items=max(1, max_items - len(out)),
                        wait_s=wait_s,
                        generation=self._router_generation,
                    ),
                    timeout=wait_s + self.ask_timeout_s,
                )
                if isinstance(reply, OutcomeBatch):
                    out += self._accept_outcomes(reply.outcomes)
                    for event in reply.events:
                        self._listeners.dispatch(event)
                # An answer may carry only events, or only outcomes this ledger had already
                # settled: keep waiting for a real one until the timeout.
                if out or wait_s <= 0 or not isinstance(reply, OutcomeBatch):
                    return out

    def _take_ready(self, max_items: int) -> list[Outcome]:
        n = min(max_items, len(self._ready))
        return [self._ready.popleft() for _ in range(n)]

    def _accept_outcomes(self, outcomes: Iterable[Outcome]) -> list[Outcome]:
        return [o for o in outcomes if self._ledger.resolve(o)]

    def _ask_router(self, msg: Any, timeout: float | None = None) -> Any:
        """Ask the router; if it is gone (crashed, restarted), find the new one and retry."""
        reply = self._ask(self._router, msg, timeout)
        if self._router_answer_ok(reply):
            return reply
        if not self._relocate_router():
            return None
        if isinstance(msg, SubmitBatch | CollectOutcomes):
            msg = type(msg)(**{**_fields(msg), "generation": self._router_generation})
        reply = self._ask(self._router, msg, timeout)
        return reply if self._router_answer_ok(reply) else None

    def _router_answer_ok(self, reply: Any) -> bool:
        return (
            isinstance(reply, SubmitResults | OutcomeBatch)
            and reply.generation == self._router_generation
        )

    def _relocate_router(self) -> bool:
        """Find the router's current generation; re-admit what the old one held."""
        deadline = time.time() + self.ask_timeout_s + self.config.restart_max_backoff_s
        while time.time() < deadline:
            where = self._ask(self._supervisor, WhereIsRouter(), self.ask_timeout_s)
            if not isinstance(where, RouterLocation):
                return False
            if where.up and where.generation != self._router_generation:
                self._router, self._router_generation = where.address, where.generation
                self._counters["router_relocations"] += 1
                self.log.warning("router is now generation {}", where.generation)
                self._readmit()
                return True
            if where.up:
                return False  # same generation: it is alive but did not answer
            threading.Event().wait(0.05)  # the router is restarting: poll the supervisor
        return False

    def _readmit(self) -> None:
        pending = self._ledger.unresolved()
        if not pending:
            return
        reply = self._ask(
            self._router,
            SubmitBatch(messages=tuple(pending), generation=self._router_generation, readmit=True),
        )
        if not isinstance(reply, SubmitResults):
            return  # the ledger's deadlines still end each of them
        self._counters["readmitted"] += len(pending)
        for result in reply.results:
            if isinstance(result, Rejected):
                self._ready.extend(
                    self._accept_outcomes(
                        [
                            Outcome(
                                message_id=result.message_id,
                                status="rejected",
                                reason=result.reason,
                                detail=f"refused on re-admission after a router restart: "
                                f"{result.detail}",
                            )
                        ]
                    )
                )

    # --- stats ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Messages in flight, counters, and one entry per actor (see README)."""
        with self._lock:
            self._require_running()
            reply = self._ask(self._supervisor, StatsQuery(0))
            if not isinstance(reply, SupervisorStats):
                raise EngineError(f"no stats from the supervisor (got {reply!r})")
            return self._build_stats(reply)

    def _build_stats(self, reply: SupervisorStats) -> dict[str, Any]:
        counters: Counter[str] = Counter(self._counters)
        counters.update(self._ledger.counters())
        counters["late_outcomes"] = self._ledger.late_outcomes
        counters.update({f"supervisor.{k}": v for k, v in reply.counters.items()})
        restarts = {(role, name): r for role, name, _, _, r in reply.children}
        states = {(role, name): state for role, name, _, state, _ in reply.children}
        by_role: dict[str, ActorReport] = {r.role: r for r in reply.reports}
        router = by_role.get("router")
        pool_depth = router.extra.get("pool_depth", 0) if router else 0
        account_depth: dict[str, int] = router.extra.get("account_depth", {}) if router else {}
        actors = []
        for r in reply.reports:
            depth, capacity = r.depth, r.capacity
            if r.role == "ai_pool":
                depth = pool_depth
            elif r.role == "account":
                depth = account_depth.get(r.name, 0)
            counters.update(
                {f"{r.role}.{k}": v for k, v in r.counters.items()} if r.role != "account" else {}
            )
            actors.append(
                {
                    "role": r.role,
                    "name": r.name,
                    "pid": r.pid,
                    "depth": depth,
                    "capacity": capacity,
                    "restarts": restarts.get((r.role, r.name), 0),
                    "generation": r.generation,
                    "state": states.get((r.role, r.name), "up"),
                    "counters": r.counters,
                }
            )
            if r.pid:
                self._pids.add(r.pid)
        reported = {(a["role"], a["name"]) for a in actors}
        for role, name, generation, state, restarts_n in reply.children:
            if (role, name) not in reported:
                actors.append(
                    {
                        "role": role,
                        "name": name,
                        "pid": None,
                        "depth": 0,
                        "capacity": 0,
                        "restarts": restarts_n,
                        "generation": generation,
                        "state": state,
                        "counters": {},
                    }
                )
        counters["restarts"] = sum(restarts.values())
        return {
            "in_flight": self._ledger.in_flight,
            "counters": dict(counters),
            "actors": actors,
            "router_generation": self._router_generation,
            "admin_pid": self._admin_pid,
            "base": self.base,
        }

    def ask_child(self, role: str, name: str, message: Any) -> Any:
        """Send ``message`` to one child through the supervisor and return its answer."""
        with self._lock:
            self._require_running()
            return self._ask(self._supervisor, AskChild(role, name, message))

    def _remember_pids(self) -> None:
        if self._admin_pid is not None:
            self._pids.update(_procs.descendants(self._admin_pid))

    # --- shutdown ---------------------------------------------------------------------------

    def shutdown(self) -> ShutdownReport:
        """Ordered teardown within ``shutdown_timeout_s``; see README "Shutdown"."""
        with self._lock:
            if self._state in ("stopping", "stopped"):
                assert self._report is not None or self._state == "stopping"
                return self._report or ShutdownReport(stages=(), total_s=0.0)
            if self._state == "new":
                self._state = "stopped"
                self._report = ShutdownReport(stages=(), total_s=0.0)
                return self._report
            self._state = "stopping"
            started = time.time()
            self._remember_pids()
            c = self.config
            done = self._ask(
                self._supervisor,
                ShutdownRequest(timeout_s=c.shutdown_timeout_s, drain_timeout_s=c.drain_timeout_s),
                c.shutdown_timeout_s + _MARGIN_S,
            )
            messages = {m.message_id: m for m in self._ledger.unresolved()}
            stages: list[StageReport] = []
            abandoned: list[str] = []
            if isinstance(done, ShutdownDone):
                stages = list(done.report.stages)
                self._ready.extend(self._accept_outcomes(done.outcomes))
                abandoned = list(done.report.abandoned)
            else:
                self.log.error("the supervisor did not report the teardown (got {!r})", done)
            for msg, outcome in self._ledger.abandon_all("shutdown"):
                self._ready.append(outcome)
                abandoned.append(msg.message_id)
            journaled = self._journal([messages[i] for i in abandoned if i in messages])
            self._listeners.close_all()
            t0 = time.time()
            self._stop_system()
            stages.append(StageReport(name="actor_system", seconds=time.time() - t0, abandoned=0))
            self._report = ShutdownReport(
                stages=tuple(stages), total_s=time.time() - started, abandoned=tuple(abandoned)
            )
            self._counters["journaled"] += journaled
            self._state = "stopped"
            self.log.info(
                "engine stopped in {:.3f} s; {} messages abandoned and journaled",
                self._report.total_s,
                len(abandoned),
            )
            return self._report

    def _journal(self, messages: list[InboundMessage]) -> int:
        if not messages or not self.config.dead_letter_path:
            return 0
        journal = DeadLetterJournal(
            self.config.dead_letter_path, max_bytes=self.config.dead_letter_max_bytes
        )
        return journal.append(messages)

    def _stop_system(self) -> None:
        self._system.shutdown()
        if self._admin_pid is None:
            return
        leftovers = _procs.wait_gone(self._pids | {self._admin_pid}, timeout_s=5.0)
        for pid in leftovers:
            self.log.error("process {} of this actor system outlived shutdown; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _procs.wait_gone(leftovers, timeout_s=2.0)

    @property
    def pids(self) -> frozenset[int]:
        """Every process of this actor system seen so far (empty on simpleSystemBase)."""
        pids = set(self._pids)
        if self._admin_pid is not None:
            pids.add(self._admin_pid)
        return frozenset(pids)

    @property
    def shutdown_report(self) -> ShutdownReport | None:
        return self._report


def _fields(msg: Any) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in msg.__dataclass_fields__}
