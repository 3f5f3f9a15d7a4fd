"""``Engine``: the facade a gateway process embeds.

It starts a Thespian actor system, creates the supervisor, and turns each call into a
blocking ask. It is also the final arbiter of the contract "every accepted message ends
in exactly one outcome": its ``Ledger`` holds every accepted message until its outcome
arrives, drops second outcomes, times out what no actor answered for (an actor died), and
re-admits everything to a restarted router. The durable intake store makes the contract
outlive the process: a message is recorded before ``submit_many`` answers ``Accepted``,
its outcome before ``outcomes`` returns it, and what a crash left unfinished is recovered
at the next ``start`` (the ledger and the store are kept in step by ``intake_book``).
Calls are serialised by a lock: Thespian's external API is not thread-safe.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from loguru import logger

from actors.config import BASES, EngineConfig
from actors.engine.collect import collect
from actors.engine.commands import ask_command, raise_if_refused, readmit
from actors.engine.intake_book import MessageBook
from actors.engine.listeners import Listeners, Subscription
from actors.engine.router_link import RouterLink
from actors.engine.shutdown import DeadLetters
from actors.engine.state import ENGINE, EngineState
from actors.engine.stats import build_stats
from actors.errors import EngineError
from actors.runtime.system import SystemHandle
from actors.runtime.wiring import AskChild, ShutdownDone, StatsQuery, SupervisorStats
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
    StatsReply,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["Engine"]

_MARGIN_S = 5.0


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
        self._book = MessageBook(self.config)
        self._listeners = Listeners(max_per_account=self.config.max_listeners)
        self._lock = threading.RLock()
        self._sys: SystemHandle | None = None
        self._supervisor: Any = None
        self._link: RouterLink | None = None
        self._counters: Counter[str] = Counter()
        self._state = EngineState.NEW  # moved only through the ENGINE table
        self._report: ShutdownReport | None = None
        self._dead_letters = DeadLetters(self.config)
        self.log = logger.bind(actor="engine")

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Engine:
        """Open the intake store, recover what it holds unfinished, start the actors.

        Raises:
            StoreLockedError: another engine uses ``intake_path`` (before any process starts).
            StoreError: the intake store cannot be opened or read (names the path).
            EngineError: the engine was started before, or the actor system did not start.
        """
        with self._lock:
            if not ENGINE.allows(self._state, "start"):
                raise EngineError(f"can't start an engine that is {self._state}")
            # First, so that a second engine on the store, or a store that cannot be read,
            # fails before any process exists.
            self._book.open(time.time())
            try:
                self._start_actors()
            except BaseException:
                self._book.close()  # a failed system start has stopped what it started
                raise
            self._state = ENGINE.next(self._state, "start")
            self.log.info("engine started on {} (admin port {})", self.base, self.admin_port)
            return self

    def _start_actors(self) -> None:
        system = SystemHandle(self.base, self.admin_port)
        self.admin_port = system.admin_port
        # The account processes open the store themselves (sent marks): an absolute path.
        path = os.path.abspath(self.config.intake_path)
        config = dataclasses.replace(self.config, intake_path=path)
        started = system.start(config, self.seed, self.ask_timeout_s * 3)
        self._sys = system
        self._supervisor = system.supervisor
        self._link = RouterLink(
            system,
            started.router,
            started.router_generation,
            ask_timeout_s=self.ask_timeout_s,
            restart_wait_s=self.config.restart_max_backoff_s,
        )
        system.on_stale = self._link.set_aside

    def __enter__(self) -> Engine:
        return self.start() if self._state is EngineState.NEW else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is EngineState.RUNNING:
            self.shutdown()

    def _require_running(self) -> None:
        if self._state is not EngineState.RUNNING:
            raise EngineError(f"the engine is {self._state}, not running")

    def _ask(
        self,
        target: Any,
        msg: Any,
        timeout: float | None = None,
        accept: Callable[[Any], bool] = lambda reply: True,
    ) -> Any:
        """Ask an actor; late answers to earlier asks are set aside, not taken for this one."""
        assert self._sys is not None
        return self._sys.ask(
            target,
            msg,
            self.ask_timeout_s if timeout is None else timeout,
            accept=lambda r: not isinstance(r, SubmitResults | OutcomeBatch) and accept(r),
        )

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

        Messages the intake store recovered for this account at ``start`` are admitted
        again now, each with its original deadline.

        Raises:
            InstanceLimitError: ``max_instances`` accounts already run.
            EngineError: the id is taken, or the transport or its options are invalid.
        """
        spec = AccountSpec(account_id=account_id, transport=transport, options=dict(options or {}))
        with self._lock:
            raise_if_refused(self._command(AddAccount(spec=spec)))
            readmit(self._book, self._ask_router, self._counters, account_id)

    def remove_account(self, account_id: str) -> CommandResult:
        """Stop an account and free its slot; its pending messages end with an outcome."""
        result = self._command(RemoveAccount(account_id=account_id))
        if result.ok:
            self._listeners.close_account(account_id)
        return result

    def _command(self, msg: Any) -> CommandResult:
        with self._lock:
            self._require_running()
            return ask_command(self._ask, self._supervisor, msg)

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
            if self._state is not EngineState.RUNNING:
                why = "the engine is not running"
                return [self._counted(_refusal(m, "shutting_down", why)) for m in batch]
            if not batch:
                return []
            # The store's duplicate and capacity refusals; None: ask the router.
            answers: list[Accepted | Rejected | None] = list(self._book.screen(batch))
            ask = tuple(m for m, a in zip(batch, answers, strict=True) if a is None)
            if ask:
                reply = self._ask_router(SubmitBatch(messages=ask))
                results: Sequence[Accepted | Rejected] = (
                    reply.results
                    if isinstance(reply, SubmitResults)
                    else [_refusal(m, "capacity", "the router is unavailable") for m in ask]
                )
                self._book.admit(ask, results, time.time())  # recorded before we answer
                fill = iter(results)
                answers = [a or next(fill) for a in answers]
            return [self._counted(a) for a in answers if a is not None]

    def _counted(self, answer: Accepted | Rejected) -> Accepted | Rejected:
        if isinstance(answer, Rejected):
            self._counters[f"reject.{answer.reason}"] += 1
        return answer

    def outcomes(self, timeout: float = 1.0, *, max_items: int = 10_000) -> list[Outcome]:
        """Outcomes ready now; if none, wait up to ``timeout`` seconds for the first."""
        with self._lock:
            out = self._book.take_ready(max_items)
            if self._state is not EngineState.RUNNING:
                return out + self._book.ledger.expire(time.time())
            # Then what the router has (waiting up to ``timeout`` if there is none).
            out = collect(
                out,
                timeout,
                max_items,
                book=self._book,
                listeners=self._listeners,
                ask_router=self._ask_router,
                generation=lambda: self._link.generation if self._link else 0,
                ask_timeout_s=self.ask_timeout_s,
            )
            self._book.record(handed=out)  # before they are returned
            self._book.upkeep()
            return out

    def _ask_router(self, msg: SubmitBatch | CollectOutcomes, timeout: float | None = None) -> Any:
        assert self._link is not None
        book = self._book
        reply = self._link.ask(msg, self.ask_timeout_s if timeout is None else timeout, book.ledger)
        book.ready.extend(book.resolve(self._link.take_refused()))
        book.ready.extend(book.resolve(self._link.take_set_aside()))
        return reply

    # --- stats ----------------------------------------------------------------------------

    def stats(self) -> StatsReply:
        """Messages in flight, counters, and one ``ActorStats`` per actor (see README).

        Raises:
            EngineError: the engine is not running, or the supervisor did not answer.
        """
        with self._lock:
            self._require_running()
            reply = self._ask(
                self._supervisor,
                StatsQuery(token=0),
                accept=lambda r: isinstance(r, SupervisorStats),
            )
            if not isinstance(reply, SupervisorStats):
                raise EngineError(f"no stats from the supervisor (got {reply!r})")
            return build_stats(
                reply,
                self._counters,
                ledger=self._book.ledger,
                intake=self._book.stats(),
                listeners=self._listeners,
                link=self._link,
                system=self._sys,
                journal=self._dead_letters.journal,
                base=self.base,
                now=time.time(),
            )

    def ask_child(self, role: str, name: str, message: Any) -> Any:
        """Send ``message`` to one child through the supervisor and return its answer."""
        with self._lock:
            self._require_running()
            return self._ask(self._supervisor, AskChild(role=role, name=name, message=message))

    # --- shutdown ---------------------------------------------------------------------------

    def shutdown(self) -> ShutdownReport:
        """Ordered teardown within ``shutdown_timeout_s``; see README "Shutdown"."""
        with self._lock:
            if not ENGINE.allows(self._state, "shutdown"):
                # Stopping or stopped already: shutdown is idempotent, and a second call
                # answers with the first call's report.
                assert self._report is not None or self._state is EngineState.STOPPING
                return self._report or ShutdownReport(stages=(), total_s=0.0)
            self._state = ENGINE.next(self._state, "shutdown")
            if self._state is EngineState.STOPPED:  # it was never started
                self._report = ShutdownReport(stages=(), total_s=0.0)
                return self._report
            started = time.time()
            assert self._sys is not None
            self._sys.remember_pids()
            c = self.config
            done = self._ask(
                self._supervisor,
                ShutdownRequest(timeout_s=c.shutdown_timeout_s, drain_timeout_s=c.drain_timeout_s),
                c.shutdown_timeout_s + _MARGIN_S,
                accept=lambda r: isinstance(r, ShutdownDone),
            )
            keep = self._book.durable  # the store keeps what is unfinished: no journal
            settled = self._book.settle(done)
            journaled = self._dead_letters.write(settled.unsent)
            self._listeners.close_all()
            t0 = time.time()
            try:
                self._sys.stop()
            finally:
                self._book.close()  # the very end: after every process that marks sends
            self._report = settled.report(system_s=time.time() - t0, total_s=time.time() - started)
            self._counters["journaled"] += journaled
            self._counters["intake.kept_at_shutdown"] += settled.kept
            self._state = ENGINE.next(self._state, "stopped")
            self.log.info(
                "engine stopped in {:.3f} s; {} messages {}",
                self._report.total_s,
                len(settled.abandoned),
                "left unfinished in the intake store for the next start"
                if keep
                else "abandoned and journaled",
            )
            return self._report

    @property
    def pids(self) -> frozenset[int]:
        """Every process of this actor system seen so far (empty on simpleSystemBase)."""
        return self._sys.pids if self._sys is not None else frozenset()

    @property
    def shutdown_report(self) -> ShutdownReport | None:
        return self._report


def _refusal(msg: InboundMessage, reason: str, detail: str) -> Rejected:
    return Rejected(message_id=msg.message_id, reason=reason, detail=detail)
