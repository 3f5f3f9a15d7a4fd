"""The member agent: the one actor a convention member starts for itself.

The process that starts a member (``python -m apps.member``) is outside its actor system
and cannot see it: Thespian's admin detaches (``setsid`` and a second fork), and whether
the member has joined its leader is known only to the admin. The agent, created by that
process in the member's system, answers :class:`MemberQuery` with a :class:`MemberStatus`:
its pid and its parent's, which is the admin's (so the process can reap the whole system
at the end, as the engine does with its supervisor's report), and the convention members
its admin knows, kept from the ``ActorSystemConventionUpdate`` messages it asks for on the
first query. On a member the only one is the leader, once the leader has answered its
registration: that is what "joined" means.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorSystemConventionUpdate

from actors.runtime.base_actor import EngineActor
from actors.runtime.convention import member_event
from actors.runtime.wiring import Address, crosses_processes

__all__ = ["MemberAgent", "MemberQuery", "MemberStatus"]


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberQuery:
    """Member process -> agent: answer a :class:`MemberStatus`."""


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberStatus:
    """What the agent knows: its process, the admin's, the convention as its admin sees it.

    ``peers`` are the ``host:port`` of the admins this member is in a convention with now
    (its leader, once joined); ``joins`` and ``losses`` count the changes seen so far.
    """

    pid: int
    admin_pid: int
    peers: tuple[str, ...]
    joins: int
    losses: int


class MemberAgent(EngineActor):
    """Answers :class:`MemberQuery`; watches the convention from the first query on."""

    role = "member"

    def __init__(self) -> None:
        super().__init__()
        self._watching = False
        self._peers: dict[str, None] = {}  # admin "host:port", in the order they joined
        self._joins = 0
        self._losses = 0

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        return {
            MemberQuery: self._query,
            ActorSystemConventionUpdate: self._update,
        }

    def _query(self, msg: MemberQuery, sender: Address) -> None:
        if not self._watching:
            # Not in __init__: Thespian wires an actor to its system only after that.
            self.notifyOnSystemRegistrationChanges(True)
            self._watching = True
        self.send(
            sender,
            MemberStatus(
                pid=os.getpid(),
                admin_pid=os.getppid(),
                peers=tuple(self._peers),
                joins=self._joins,
                losses=self._losses,
            ),
        )

    def _update(self, msg: Any, sender: Address) -> None:
        event = member_event(msg)
        if event.added and event.admin not in self._peers:
            self._peers[event.admin] = None
            self._joins += 1
            self.log.info("in a convention with the admin at {}", event.admin)
        elif not event.added and event.admin in self._peers:
            del self._peers[event.admin]
            self._losses += 1
            self.log.warning("no longer in a convention with the admin at {}", event.admin)
