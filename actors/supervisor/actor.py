"""The supervisor actor: parent of the router, the AI pool and every account.

It enforces the instance cap, restarts crashed children under a ``RestartPolicy`` (a new
child has a new address and a higher generation), tells the router what changed, and runs
the ordered teardown. Its bookkeeping lives in ``SupervisorCore``; this module is the
Thespian shell: it creates actors, sends messages and arms timers.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from thespian.actors import ActorExitRequest

from actors.runtime.base_actor import EngineActor
from actors.runtime.wiring import (
    AccountGone,
    AccountUp,
    ActorReport,
    Address,
    AskChild,
    Configure,
    Configured,
    DrainDone,
    EngineStarted,
    Forward,
    PoolUp,
    RouterLocation,
    StartEngine,
    StatsQuery,
    WhereIsRouter,
    WiringAck,
)
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.lifecycle import CHILD, ChildState
from actors.supervisor.stats import StatsFanout
from actors.supervisor.teardown import Teardown
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
        self.seed = 0
        self.facade: Address = None
        self.addresses: dict[tuple[str, str], Address] = {}
        self.waiting: dict[int, tuple[Address, str, str]] = {}  # token -> (asker, command, name)
        self.adding: dict[str, Address] = {}  # account id -> the facade asking to add it
        self.stats: StatsFanout | None = None  # both made with the core, on StartEngine
        self.teardown: Teardown | None = None
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
            WhereIsRouter: self.on_where_is_router,
            AskChild: self.on_ask_child,
        }
        if self.stats is not None and self.teardown is not None:
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
        self.seed = msg.seed
        self.core = core = SupervisorCore(msg.config, seed=msg.seed)
        self.stats = StatsFanout(
            core,
            addresses=self.addresses,
            send=self.send,
            wake_at=self.wakeupAfter_at,
            next_token=self._next_token,
            pid=self.pid,
            depth=lambda: len(self.waiting),
            process_counters=self.process_counters,
        )
        self.teardown = Teardown(
            core,
            send=self.send,
            wake_at=self.wakeupAfter_at,
            stop_child=self._stop_child,
            live_router=self._live_router,
            log=self.log,
        )
        self.facade = sender
        self.log.info("starting engine on {}", msg.base)
        self._spawn(self._core.add_child("ai_pool", "ai_pool"))
        self._spawn(self._core.add_child("router", "router"))

    def _spawn(self, child: Child) -> None:
        from actors.account.actor import AccountActor
        from actors.pool.actor import PoolActor
        from actors.router.actor import RouterActor

        cls = {"router": RouterActor, "ai_pool": PoolActor, "account": AccountActor}[child.role]
        address = self.createActor(cls)
        self.addresses[(child.role, child.name)] = address
        core = self._core
        pool = core.children.get(("ai_pool", "ai_pool"))
        accounts = tuple(
            (c.name, self.addresses[(c.role, c.name)], c.generation)
            for c in core.accounts(ChildState.UP)
        )
        self.send(
            address,
            Configure(
                role=child.role,
                name=child.name,
                generation=child.generation,
                config=core.config,
                base=self.base,
                seed=self.seed + child.generation * 7919 + zlib.crc32(child.name.encode()),
                account=child.spec,
                providers=core.provider_specs(),
                pool=self.addresses.get(("ai_pool", "ai_pool")) if pool else None,
                pool_generation=pool.generation if pool else 0,
                accounts=accounts,
                failed_accounts=tuple(c.name for c in core.accounts(ChildState.FAILED)),
            ),
        )

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
            self.send(sender, ActorExitRequest())
            self._reply_adding(msg.name, ok=False, error="invalid_account", detail=msg.error)
            return
        restarted = child.generation > 1
        core.child_up(child, msg.pid, time.time())
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
        elif msg.role == "router" and restarted:
            self.log.warning("router restarted as generation {}", msg.generation)
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

    def on_where_is_router(self, msg: WhereIsRouter, sender: Address) -> None:
        child = self._core.children.get(("router", "router"))
        self.send(
            sender,
            RouterLocation(
                address=self._router_address(),
                generation=child.generation if child else 0,
                up=self._core.is_up("router"),
            ),
        )

    # --- crashes and restarts -------------------------------------------------------------

    def on_child_exited(self, address: Address) -> None:
        key = next((k for k, a in self.addresses.items() if a == address), None)
        if key is None:
            return
        core = self._core
        child = core.children.get(key)
        if child is None:  # removed: forget its address (bounded by the children we have)
            del self.addresses[key]
            return
        now = time.time()
        if CHILD.allows(child.state, "exited"):  # stopping: the exit we asked for
            core.child_stopped(child)
            if self.teardown is not None:
                self.teardown.advance(now)
            return
        if not CHILD.allows(child.state, "crashed"):
            # down, failed or stopped: this actor's end was already counted (a duplicate
            # notice); counting it again would restart a child twice.
            return
        decision = core.child_crashed(child, now)
        router = self._live_router()
        if decision.give_up:
            self.log.error("{} {} failed for good: {}", child.role, child.name, decision.reason)
            if child.role == "account":
                if router is not None:
                    self.send(router, AccountGone(account_id=child.name, state="failed"))
                self._event(child.name, "failed", decision.reason)
            elif child.role == "ai_pool" and self._router_address() is not None:
                # Even a starting router is told: it gets this after its Configure.
                self.send(
                    self._router_address(),
                    PoolUp(address=None, generation=child.generation, restarted=False, failed=True),
                )
            self._reply_adding(child.name, ok=False, error="account_failed", detail=decision.reason)
            return
        self.log.warning(
            "{} {} exited unexpectedly; restart {} in {:.3f} s",
            child.role,
            child.name,
            child.restarts,
            decision.delay_s,
        )
        if child.role == "account" and router is not None:
            self.send(router, AccountGone(account_id=child.name, state="down"))
            self._event(child.name, "disconnected", "actor exited; restarting")
        self.wakeupAfter_at(
            now + decision.delay_s, ("restart", child.role, child.name, child.generation)
        )

    def wakeupAfter_at(self, at: float, payload: Any) -> None:  # noqa: N802
        self.wakeupAfter(timedelta(seconds=max(0.0, at - time.time())), payload=payload)

    def on_wakeup(self, payload: Any, now: float) -> None:
        kind = payload[0]
        if kind == "restart":
            _, role, name, generation = payload
            child = self._core.children.get((role, name))
            # The child may have been stopped or removed while its restart was pending.
            if (
                child is not None
                and child.generation == generation
                and CHILD.allows(child.state, "respawned")
            ):
                self._core.respawn(child)
                self._spawn(child)
        elif kind == "stats" and self.stats is not None:
            self.stats.finish(payload[1])
        elif kind == "stage" and self.teardown is not None:
            self.teardown.advance(now, timed_out=payload[1])
