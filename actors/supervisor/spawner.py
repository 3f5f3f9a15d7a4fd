"""Creating the supervisor's children, and keeping a new router's picture of them current.

A child is created with a ``Configure`` that carries what it must know of the others: a
router gets the accounts and the pool. The supervisor tells the router of later changes
(an account up, down, failed or removed; the pool restarted) only while the router is up,
so whatever changed while a router was starting was never sent to it. Measured with the
load runner's SIGKILLs: a router restarted together with an account never heard of that
account's new generation and rejected its messages ``unknown_account``, for good. So the
spawner remembers what each router was configured with, and ``router_up`` sends the
difference when that router answers.

A router is configured with the accounts that are up *and* those restarting (down, or
starting again): it holds their replies until they are back, instead of refusing their
messages (re-admitted ones included) as unknown. ``router_up`` then tells it which of
them are still down; the router re-sends what it holds when they come up.

Where an account runs is the placement's choice (:mod:`actors.supervisor.placement`): the
spawner asks it for the account's host at each creation and pins the actor there with the
member's id as a requirement (``actors.runtime.convention.pinned_check``); an account with
no requirement runs on the leader. An account on a member is not a process of ours: its pid
(on another host) is never watched here, and what it reports is the member's business;
its ``Configure`` gives it a lease to hold (``lease_s``), so that it stops sending when
the leader can no longer reach it (``actors.supervisor.relocation``).

Like ``Teardown``, the spawner gets what it acts on as explicit collaborators, so it runs
without Thespian.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.cores.lease import LEASE_VALID_FOR_S
from actors.runtime.convention import MEMBER_CAPABILITY, MemberEvent
from actors.runtime.wiring import AccountGone, AccountUp, Address, Configure, PoolUp
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.lifecycle import ChildState
from actors.supervisor.placement import LEADER, Placement
from actors.supervisor.watch import child_pids

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["Spawner"]

_UP = ChildState.UP


class Spawner:
    """Creates children (learning their pid at the fork) and catches a new router up.

    Args:
        core: the supervisor's children.
        addresses: the children's addresses by ``(role, name)``; set here on creation.
        create: creates the actor of a role (``"router"``, ``"ai_pool"``, ``"account"``)
            on the leader and returns its address.
        send: sends a message to an address.
        base: the actor system base, passed on to every child.
        seed: the engine's seed; each child's is derived from it.
        fork_pids: whether children are processes of ours whose pid can be seen at the
            fork (the multiproc bases).
        placement: where accounts run; a new one with no member knows only the leader.
        create_pinned: creates an account on a member: the role and Thespian's
            ``targetActorRequirements``; needed once a member has joined.
        log: where members joining and lost are reported.
        incarnation: this supervisor's lifetime, a random number drawn at its start: given
            to each fenced account, which asks for its lease with it.
    """

    def __init__(
        self,
        core: SupervisorCore,
        *,
        addresses: MutableMapping[tuple[str, str], Address],
        create: Callable[[str], Address],
        send: Callable[[Address, Any], None],
        base: str,
        seed: int,
        fork_pids: bool,
        placement: Placement | None = None,
        create_pinned: Callable[[str, dict[str, Any]], Address] | None = None,
        log: Logger = logger,
        incarnation: int = 0,
    ) -> None:
        self.core = core
        self.incarnation = incarnation
        self.addresses = addresses
        self._create = create
        self._send = send
        self._base = base
        self._seed = seed
        self._fork_pids = fork_pids
        self.placement = placement or Placement(max_instances=core.config.max_instances)
        self._log = log
        self._create_pinned = create_pinned
        # What the newest router was configured with: account -> (generation, up?), the
        # failed accounts, and the pool's generation and whether it was up.
        self._told_accounts: dict[str, tuple[int, bool]] = {}
        self._told_failed: frozenset[str] = frozenset()
        self._told_pool: tuple[int, bool] = (0, False)

    def spawn(self, child: Child) -> None:
        """Create the actor of ``child`` (starting) and send it its ``Configure``."""
        core = self.core
        requirements = None
        if child.role == "account":
            # The core refused an account over max_instances already: this cannot raise.
            host = self.placement.place(child.name).host
            requirements = None if host == LEADER else {MEMBER_CAPABILITY: host}
        before = child_pids() if self._fork_pids else set()
        # Forks the child's process now on multiproc bases; a pinned account is created by
        # its member's admin, later: nothing of ours is forked for it.
        if requirements is None:
            address = self._create(child.role)
        else:
            assert self._create_pinned is not None, "a member joined a spawner that cannot pin"
            address = self._create_pinned(child.role, requirements)
        forked = child_pids() - before if self._fork_pids and requirements is None else set()
        core.child_spawned(child, forked.pop() if len(forked) == 1 else None)
        self.addresses[(child.role, child.name)] = address
        pool = core.children.get(("ai_pool", "ai_pool"))
        listed = [
            c
            for c in core.accounts()
            if c.state in (_UP, ChildState.DOWN)
            or (c.state is ChildState.STARTING and c.generation > 1)
        ]
        failed = tuple(c.name for c in core.accounts(ChildState.FAILED))
        if child.role == "router":
            self._told_accounts = {c.name: (c.generation, c.state is _UP) for c in listed}
            self._told_failed = frozenset(failed)
            self._told_pool = (pool.generation, pool.state is _UP) if pool else (0, False)
        self._send(
            address,
            Configure(
                role=child.role,
                name=child.name,
                generation=child.generation,
                config=core.config,
                base=self._base,
                seed=self._seed + child.generation * 7919 + zlib.crc32(child.name.encode()),
                account=child.spec,
                providers=core.provider_specs(),
                pool=self.addresses.get(("ai_pool", "ai_pool")) if pool else None,
                pool_generation=pool.generation if pool else 0,
                accounts=tuple(
                    (c.name, self.addresses[(c.role, c.name)], c.generation) for c in listed
                ),
                failed_accounts=failed,
                # An account on a member is fenced (actors.supervisor.relocation).
                lease_s=0.0 if requirements is None else LEASE_VALID_FOR_S,
                incarnation=self.incarnation,
            ),
        )

    def local_pid(self, child: Child, pid: int | None) -> int | None:
        """``pid`` when ``child`` runs on the leader, else None: a member's pid is not ours."""
        if child.role == "account" and self.placement.remote(child.name):
            return None
        return pid

    def member_changed(self, event: MemberEvent, now: float) -> tuple[str, ...] | None:
        """Feed a convention update to the placement.

        Returns:
            None when the update was ignored (not an engine member, its id taken by a live
            member at another admin, a stale loss); else the accounts the lost member
            hosted (``()`` for a join).
        """
        who, where = event.member_id, event.admin
        if not who:
            return None
        if event.added:
            if not self.placement.on_joined(who, where, event.max_accounts, now):
                self._log.error("member {!r} at {} refused: its id is up elsewhere", who, where)
                return None
            self._log.info(
                "member {!r} joined from {} (max {} accounts)", who, where, event.max_accounts
            )
            return ()
        moved = self.placement.on_lost(who, where, now)
        if moved is not None:  # actors.supervisor.relocation moves them
            self._log.warning(
                "member {!r} at {} lost; re-placing its accounts: {}",
                who,
                where,
                ", ".join(moved) or "none",
            )
        return moved

    def router_up(self, router: Address) -> int:
        """Tell a router that just came up what changed since its ``Configure``.

        Returns:
            How many messages were sent.
        """
        news: list[Any] = []
        accounts = self.core.accounts()
        for c in accounts:
            told = self._told_accounts.get(c.name)
            if c.state is _UP and told != (c.generation, True):
                address = self.addresses[(c.role, c.name)]
                news.append(
                    AccountUp(
                        account_id=c.name,
                        address=address,
                        generation=c.generation,
                        restarted=told is not None,
                    )
                )
            elif c.state in (ChildState.DOWN, ChildState.STARTING) and told is not None:
                news.append(AccountGone(account_id=c.name, state="down"))
            elif c.state is ChildState.FAILED and c.name not in self._told_failed:
                news.append(AccountGone(account_id=c.name, state="failed"))
        for name in sorted(self._told_accounts.keys() - {c.name for c in accounts}):
            news.append(AccountGone(account_id=name, state="removed"))
        pool = self.core.children.get(("ai_pool", "ai_pool"))
        if pool is not None and pool.state is _UP and self._told_pool != (pool.generation, True):
            address = self.addresses[("ai_pool", "ai_pool")]
            news.append(PoolUp(address=address, generation=pool.generation, restarted=True))
        elif pool is not None and pool.state is ChildState.FAILED:
            # Its Configure named the failed pool's last address: say it is gone for good
            # (the router ends what waits for it ``no_provider``; saying it twice is harmless).
            news.append(
                PoolUp(address=None, generation=pool.generation, restarted=False, failed=True)
            )
        for msg in news:
            self._send(router, msg)
        return len(news)
