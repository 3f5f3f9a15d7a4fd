"""The supervisor actor: parent of the router, the AI pool and every account.

It enforces the instance cap, restarts crashed children under a ``RestartPolicy`` (a new
child has a new address and a higher generation), tells the router what changed, and runs
the ordered teardown. Its bookkeeping lives in ``SupervisorCore``; how it learns that a
child ended (Thespian's notice, or the child's pid) in ``watch``; creating children and
catching a new router up in ``spawner``; where each account runs (the leader, or a
convention member it learns of from ``ActorSystemConventionUpdate``) in ``placement``;
moving a lost member's accounts in ``relocation``; this module is the Thespian shell.

The child classes are imported here, at the top, not when first created: the leader's
admin, forked after this module is loaded, then has ``AccountActor`` loaded too, which
its guard (``actors.runtime.actorguard``) requires before it forwards the supervisor's
request for an account pinned to a member.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from thespian.actors import ActorExitRequest, ActorSystemConventionUpdate, ChildActorExited

from actors.account.actor import AccountActor
from actors.pool.actor import PoolActor
from actors.router.actor import RouterActor
from actors.runtime.base_actor import EngineActor
from actors.runtime.convention import member_event
from actors.runtime.wiring import (
    AccountGone,
    AccountUp,
    ActorReport,
    Address,
    AskChild,
    Configured,
    DrainDone,
    EngineStarted,
    Forward,
    LeaseAsk,
    LocateRouter,
    PoolUp,
    StartEngine,
    StatsQuery,
    WiringAck,
)
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.lifecycle import CHILD
from actors.supervisor.placement import Placement
from actors.supervisor.relocation import Relocation
from actors.supervisor.spawner import Spawner
from actors.supervisor.stats import StatsFanout
from actors.supervisor.teardown import Teardown
from actors.supervisor.watch import WATCH_EVERY_S, ChildWatch
from protocols import (
    AccountEvent,
    AddAccount,
    AddProvider,
    CommandResult,
    RemoveAccount,
    RemoveProvider,
    ShutdownRequest,
)

__all__ = ["SupervisorActor"]


class SupervisorActor(EngineActor):
    role = "supervisor"

    def __init__(self) -> None:
        super().__init__()
        self.core: SupervisorCore | None = None
        self.facade: Address = None
        self.addresses: dict[tuple[str, str], Address] = {}
        self.waiting: dict[int, tuple[Address, str, str]] = {}  # token -> (asker, command, name)
        self.adding: dict[str, Address] = {}  # account id -> the facade asking to add it
        self.stats: StatsFanout | None = None  # both made with the core, on StartEngine
        self.teardown: Teardown | None = None
        self.watch: ChildWatch | None = None
        self.spawner: Spawner | None = None
        self.relocation: Relocation | None = None  # a lost member's accounts move through it
        self._token = 0

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        table: dict[type, Callable[[Any, Address], None]] = {
            StartEngine: self.on_start,
            Configured: self.on_configured,
            WiringAck: self.on_wiring_ack,
            AddAccount: self.on_add_account,
            RemoveAccount: self.on_remove_account,
            AddProvider: self.on_provider_command,
            RemoveProvider: self.on_provider_command,
            AskChild: self.on_ask_child,
            ActorSystemConventionUpdate: self.on_convention_update,
        }
        if self.relocation is not None:
            table[LeaseAsk] = self.relocation.lease_asked
        if self.stats is not None and self.teardown is not None and self.watch is not None:
            table[LocateRouter] = self.on_locate_router
            table[StatsQuery] = self.stats.query
            table[ActorReport] = self.stats.report
            table[ShutdownRequest] = self.teardown.start
            table[DrainDone] = self.teardown.drain_done
        return table

    def _next_token(self) -> int:
        self._token += 1
        return self._token

    @property
    def _core(self) -> SupervisorCore:
        assert self.core is not None, "supervisor used before StartEngine"
        return self.core

    # --- start ----------------------------------------------------------------------------

    def on_start(self, msg: StartEngine, sender: Address) -> None:
        self.base = msg.base
        self.core = core = SupervisorCore(msg.config, seed=msg.seed)
        placement = Placement(max_instances=msg.config.max_instances)
        self.stats = StatsFanout(
            core,
            addresses=self.addresses,
            send=self.send,
            wake_at=self.wakeupAfter_at,
            next_token=self._next_token,
            pid=self.pid,
            depth=lambda: len(self.waiting),
            process_counters=self.process_counters,
            placement=placement,
            fencing=lambda: self.relocation.counters() if self.relocation else {},
        )
        self.teardown = Teardown(
            core,
            send=self.send,
            wake_at=self.wakeupAfter_at,
            stop_child=self._stop_child,
            live_router=self._live_router,
            log=self.log,
        )
        self.watch = ChildWatch(
            core,
            addresses=self.addresses,
            send=self.send,
            wake_at=self.wakeupAfter_at,
            live_router=self._live_router,
            event=self._event,
            reply_adding=self._reply_adding,
            teardown=self.teardown,
            forget=lambda address: self.send(self.myAddress, ChildActorExited(address)),
            log=self.log,
        )
        self.spawner = Spawner(
            core,
            addresses=self.addresses,
            create=self._create,
            send=self.send,
            base=msg.base,
            seed=msg.seed,
            fork_pids=self.pid is not None,
            placement=placement,
            create_pinned=self._create,
            log=self.log,
            # Not from the seed: a leader restarted with the same seed must differ.
            incarnation=secrets.randbits(63),
        )
        self.relocation = Relocation(
            self.spawner, self.watch, send=self.send, stop=ActorExitRequest, log=self.log
        )
        self.facade = sender
        if self.pid is not None:  # processes to watch: see actors.supervisor.watch
            self.wakeupAfter_at(time.time() + WATCH_EVERY_S, ("watch",))
            # Convention members (other hosts) that join the leader: accounts go there.
            self.notifyOnSystemRegistrationChanges(True)
        self.log.info("starting engine on {}", msg.base)
        self._spawn(self._core.add_child("ai_pool", "ai_pool"))
        self._spawn(self._core.add_child("router", "router"))

    def _create(self, role: str, requirements: dict[str, Any] | None = None) -> Address:
        cls = {"router": RouterActor, "ai_pool": PoolActor, "account": AccountActor}[role]
        return self.createActor(cls, targetActorRequirements=requirements)

    def on_convention_update(self, msg: Any, sender: Address) -> None:
        if self.relocation is not None:
            self.relocation.member_changed(member_event(msg), time.time())

    def _spawn(self, child: Child) -> None:
        assert self.spawner is not None, "supervisor used before StartEngine"
        self.spawner.spawn(child)

    def on_configured(self, msg: Configured, sender: Address) -> None:
        core = self._core
        child = core.children.get((msg.role, msg.name))
        if child is None or child.generation != msg.generation:
            return
        if not CHILD.allows(child.state, "configured"):
            # Its actor's exit (down) or our request to stop it (stopping) came first: the
            # answer is stale, and that exit decides what happens to the child.
            return
        if not msg.ok:
            self.log.error("{} {} failed to configure: {}", msg.role, msg.name, msg.error)
            core.child_refused(child)
            if self.spawner is not None:
                self.spawner.placement.release(msg.name)
            self.send(sender, ActorExitRequest())
            self._reply_adding(msg.name, ok=False, error="invalid_account", detail=msg.error)
            return
        restarted = child.generation > 1
        assert self.spawner is not None
        core.child_up(child, self.spawner.local_pid(child, msg.pid), time.time())
        self.log.info(
            "{} {} generation {} up at {} (pid {})",
            msg.role,
            msg.name,
            msg.generation,
            sender,
            msg.pid,
        )
        router = self._live_router()
        if msg.role == "account":
            token = 0
            asker = self.adding.pop(msg.name, None)
            if asker is not None:
                token = self._next_token()
                self.waiting[token] = (asker, "add_account", msg.name)
            if router is not None:
                self.send(
                    router,
                    AccountUp(
                        account_id=msg.name,
                        address=sender,
                        generation=msg.generation,
                        restarted=restarted,
                        token=token,
                    ),
                )
            elif token:
                self._reply(token, ok=True)
            self._event(msg.name, "restarted" if restarted else "connected")
        elif msg.role == "ai_pool":
            if router is not None:
                self.send(
                    router, PoolUp(address=sender, generation=msg.generation, restarted=restarted)
                )
        elif msg.role == "router":
            assert self.spawner is not None
            caught_up = self.spawner.router_up(sender)
            if restarted:
                self.log.warning(
                    "router restarted as generation {} ({} changes it missed while starting)",
                    msg.generation,
                    caught_up,
                )
        if self.facade is not None and router is not None and core.is_up("ai_pool"):
            router_child = core.children[("router", "router")]
            self.send(
                self.facade,
                EngineStarted(
                    router=router,
                    router_generation=router_child.generation,
                    supervisor_pid=os.getpid(),
                    admin_pid=os.getppid(),
                ),
            )
            self.facade = None

    def _router_address(self) -> Address:
        return self.addresses.get(("router", "router"))

    def _live_router(self) -> Address:
        """The router's address while it is up, else None: a starting router is not told."""
        return self._router_address() if self._core.is_up("router") else None

    def _event(self, account_id: str, kind: str, detail: str = "") -> None:
        router = self._live_router()
        if router is not None:
            self.send(
                router,
                AccountEvent(account_id=account_id, kind=kind, at=time.time(), detail=detail),
            )

    # --- commands from the facade -------------------------------------------------------------

    def on_add_account(self, msg: AddAccount, sender: Address) -> None:
        spec = msg.spec
        error = self._core.check_add_account(spec.account_id)
        if error is not None:
            code, detail = error
            self.log.warning(detail)
            self.send(
                sender, CommandResult(command="add_account", ok=False, error=code, detail=detail)
            )
            return
        child = self._core.add_child("account", spec.account_id, spec=spec)
        self.adding[spec.account_id] = sender
        self._spawn(child)

    def on_remove_account(self, msg: RemoveAccount, sender: Address) -> None:
        child = self._core.children.get(("account", msg.account_id))
        if child is None:
            self.send(
                sender,
                CommandResult(
                    command="remove_account",
                    ok=False,
                    error="unknown_account",
                    detail=f"no account {msg.account_id!r}",
                ),
            )
            return
        if CHILD.allows(child.state, "stop"):  # else the teardown already asked it
            self._stop_child(child)
        self._core.remove_child(child)  # frees the instance slot now
        if self.spawner is not None and self.relocation is not None:
            self.spawner.placement.release(msg.account_id)
            self.relocation.forget(msg.account_id)
        token = self._next_token()
        self.waiting[token] = (sender, "remove_account", msg.account_id)
        router = self._live_router()
        if router is not None:
            self.send(router, AccountGone(account_id=msg.account_id, state="removed", token=token))
        else:
            self._reply(token, ok=True)
        self._event(msg.account_id, "removed")

    def _stop_child(self, child: Child) -> None:
        if self._core.stop_child(child):
            self.send(self.addresses[(child.role, child.name)], ActorExitRequest())

    def on_wiring_ack(self, msg: WiringAck, sender: Address) -> None:
        if msg.token in self.waiting:
            detail = f"{msg.ended} pending messages ended" if msg.ended else ""
            self._reply(msg.token, ok=True, detail=detail)

    def _reply(self, token: int, *, ok: bool, error: str = "", detail: str = "") -> None:
        asker, command, _ = self.waiting.pop(token)
        self.send(asker, CommandResult(command=command, ok=ok, error=error, detail=detail))

    def _reply_adding(self, account_id: str, **kw: Any) -> None:
        asker = self.adding.pop(account_id, None)
        if asker is not None:
            self.send(asker, CommandResult(command="add_account", **kw))

    def on_provider_command(self, msg: AddProvider | RemoveProvider, sender: Address) -> None:
        if isinstance(msg, AddProvider):
            self._core.remember_provider(msg.spec)
        else:
            self._core.forget_provider(msg.name)
        pool = self.addresses.get(("ai_pool", "ai_pool"))
        if pool is None or not self._core.is_up("ai_pool"):
            command = "add_provider" if isinstance(msg, AddProvider) else "remove_provider"
            self.send(
                sender,
                CommandResult(
                    command=command, ok=True, detail="recorded; applied when the AI pool is up"
                ),
            )
            return
        self.send(pool, Forward(message=msg, reply_to=sender))

    def on_ask_child(self, msg: AskChild, sender: Address) -> None:
        address = self.addresses.get((msg.role, msg.name))
        if address is None or not self._core.is_up(msg.role, msg.name):
            self.send(
                sender,
                CommandResult(
                    command="ask_child",
                    ok=False,
                    error="not_up",
                    detail=f"{msg.role} {msg.name!r} is not up",
                ),
            )
            return
        self.send(address, Forward(message=msg.message, reply_to=sender))

    def on_locate_router(self, msg: LocateRouter, sender: Address) -> None:
        assert self.watch is not None  # the handler is registered with it
        self.send(sender, self.watch.locate_router(msg, time.time()))

    # --- crashes and restarts (how an end is learnt and handled: actors.supervisor.watch) ---

    def on_child_exited(self, address: Address) -> None:
        if self.watch is not None:
            self.watch.exited(address, time.time())

    def wakeupAfter_at(self, at: float, payload: Any) -> None:  # noqa: N802
        self.wakeupAfter(timedelta(seconds=max(0.0, at - time.time())), payload=payload)

    def on_wakeup(self, payload: Any, now: float) -> None:
        kind = payload[0]
        if kind == "restart":
            _, role, name, generation = payload
            # A lost member's account waits until its old generation's lease ran out.
            wait = self.relocation.fence_wait(role, name, generation) if self.relocation else 0
            if wait > 0:
                self.wakeupAfter_at(now + wait, payload)
                return
            child = self._core.children.get((role, name))
            # The child may have been stopped or removed while its restart was pending.
            if (
                child is not None
                and child.generation == generation
                and CHILD.allows(child.state, "respawned")
            ):
                self._core.respawn(child)
                self._spawn(child)
        elif kind == "watch" and self.watch is not None:
            self.watch.sweep(now)
            self.wakeupAfter_at(now + WATCH_EVERY_S, ("watch",))
        elif kind == "stats" and self.stats is not None:
            self.stats.finish(payload[1])
        elif kind == "stage" and self.teardown is not None:
            self.teardown.advance(now, timed_out=payload[1])
