"""The placement core: which host each account runs on, driven with plain values."""

from __future__ import annotations

from typing import Any

import pytest

from actors.config import EngineConfig
from actors.runtime.convention import MEMBER_CAPABILITY, MemberEvent, pinned_check
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.placement import LEADER, MAX_LOST_MEMBERS, Placement, PlacementError
from actors.supervisor.spawner import Spawner


def _two_members(max_instances: int = 100, a: int = 2, b: int = 2) -> Placement:
    p = Placement(max_instances=max_instances)
    assert p.on_joined("m-a", "127.0.0.2:1", a, now=1.0)
    assert p.on_joined("m-b", "127.0.0.3:1", b, now=1.0)
    return p


def test_with_no_member_every_account_runs_on_the_leader() -> None:
    p = Placement(max_instances=3)
    assert [p.place(f"a{i}").host for i in range(3)] == [LEADER] * 3
    assert p.load() == {LEADER: 3}
    assert not p.remote("a0")


def test_accounts_go_to_the_least_loaded_member_ties_broken_by_member_id() -> None:
    p = _two_members(a=2, b=2)
    hosts = [p.place(f"a{i}").host for i in range(4)]
    assert hosts == ["m-a", "m-b", "m-a", "m-b"]
    assert p.load() == {LEADER: 0, "m-a": 2, "m-b": 2}


def test_load_is_a_share_of_each_members_capacity() -> None:
    p = _two_members(a=1, b=4)
    hosts = [p.place(f"a{i}").host for i in range(5)]
    # m-a (1 slot) is tied at 0/1 vs 0/4 and wins by id; then m-b has the smaller share.
    assert hosts == ["m-a", "m-b", "m-b", "m-b", "m-b"]


def test_a_member_at_its_max_accounts_takes_no_more_and_the_leader_takes_the_rest() -> None:
    p = _two_members(a=2, b=2)
    for i in range(4):
        p.place(f"a{i}")
    assert p.place("a4").host == LEADER
    assert p.load() == {LEADER: 1, "m-a": 2, "m-b": 2}


def test_a_member_offering_no_accounts_gets_none() -> None:
    p = Placement(max_instances=5)
    p.on_joined("m-zero", "127.0.0.2:1", 0, now=0.0)
    assert p.place("a").host == LEADER


def test_max_instances_holds_across_the_whole_convention() -> None:
    p = _two_members(max_instances=3)
    for i in range(3):
        p.place(f"a{i}")
    with pytest.raises(PlacementError, match=r"'a3': instance limit \(3\)"):
        p.place("a3")
    p.release("a0")  # a removed account frees its slot, on its member
    assert p.place("a3").host == "m-a"


def test_placing_an_account_again_where_it_lives_changes_nothing() -> None:
    p = _two_members()
    first = p.place("a")
    assert p.place("a") == first
    assert first.generation == 1


def test_a_lost_members_accounts_are_listed_and_placed_elsewhere_with_a_new_generation() -> None:
    p = _two_members(a=2, b=2)
    for i in range(4):
        p.place(f"a{i}")
    moved = p.on_lost("m-a", "127.0.0.2:1", now=5.0)
    assert moved == ("a0", "a2")
    assert p.where("a0") == "m-a"  # still listed until moved
    assert p.on_lost("m-a", "127.0.0.2:1", now=6.0) is None  # a second notice: nothing
    # m-b is full, so the leader takes them
    again = [p.place(a) for a in moved]
    assert [(x.host, x.generation) for x in again] == [(LEADER, 2), (LEADER, 2)]
    assert p.load() == {LEADER: 2, "m-a": 0, "m-b": 2}


def test_a_loss_notice_from_another_admin_or_an_unknown_member_is_ignored() -> None:
    p = _two_members()
    p.place("a")
    assert p.on_lost("m-a", "127.0.0.9:1", now=2.0) is None
    assert p.on_lost("nobody", "127.0.0.9:1", now=2.0) is None
    assert p.on_lost("m-b", "127.0.0.3:1", now=2.0) == ()  # a real loss, nothing on it
    assert p.members["m-a"].up


def test_lost_members_hosting_nothing_are_remembered_up_to_the_bound_oldest_forgotten() -> None:
    """Members replaced under new ids for months must not grow the leader's table."""
    p = Placement(max_instances=100)
    assert p.on_joined("busy", "127.0.0.2:1", 1, now=0.0)
    p.place("a0")
    assert p.on_lost("busy", "127.0.0.2:1", now=0.5) == ("a0",)  # still lists a0: kept
    for k in range(MAX_LOST_MEMBERS + 1):
        assert p.on_joined(f"m{k}", f"127.0.0.3:{k + 1}", 1, now=1.0 + k)
        assert p.on_lost(f"m{k}", f"127.0.0.3:{k + 1}", now=1.5 + k) == ()
    lost = [m for m, s in p.members.items() if not s.up]
    assert "m0" not in lost  # the one lost longest ago went at the bound + 1
    assert len([m for m in lost if not p.members[m].accounts]) == MAX_LOST_MEMBERS
    assert "busy" in lost  # a member still listing an account is never forgotten
    assert p.counters() == {"members_up": 0, "members_lost": MAX_LOST_MEMBERS + 1}
    p.place("a0")  # moved to the leader: "busy" now hosts nothing, and is the oldest
    assert "busy" not in p.members
    assert p.on_joined("m0", "127.0.0.3:99", 1, now=500.0)  # forgotten: joins as new


def test_a_member_that_comes_back_takes_new_accounts_again() -> None:
    p = _two_members(a=2, b=1)
    p.place("a0")  # m-a
    p.on_lost("m-a", "127.0.0.2:1", now=3.0)
    assert p.place("a1").host == "m-b"
    assert p.place("a2").host == LEADER  # m-a lost, m-b full
    # back from a restart: another port, a new capacity
    assert p.on_joined("m-a", "127.0.0.2:2", 3, now=4.0)
    assert p.members["m-a"].up
    assert p.members["m-a"].admin == "127.0.0.2:2"
    assert p.place("a0").host == "m-a"  # its old account stays where it is listed
    assert p.place("a3").host == "m-a"


def test_an_id_taken_by_a_live_member_is_refused_and_a_repeated_join_is_harmless() -> None:
    p = _two_members()
    assert p.on_joined("m-a", "127.0.0.2:1", 2, now=2.0)  # same admin again
    assert not p.on_joined("m-a", "127.0.0.9:1", 2, now=2.0)  # another admin, same id
    assert not p.on_joined(LEADER, "127.0.0.9:1", 2, now=2.0)
    assert not p.on_joined("", "127.0.0.9:1", 2, now=2.0)
    assert p.members["m-a"].admin == "127.0.0.2:1"


def test_pinned_check_runs_an_account_only_where_it_was_pinned() -> None:
    member = {"Admin Port": 1, MEMBER_CAPABILITY: "m-a"}
    leader = {"Admin Port": 2}
    pin = {MEMBER_CAPABILITY: "m-a"}
    assert pinned_check(member, pin)
    assert not pinned_check({MEMBER_CAPABILITY: "m-b"}, pin)
    assert not pinned_check(leader, pin)
    assert pinned_check(leader, {})  # no requirement: the leader
    assert not pinned_check(member, {})  # and never a member


# --- the spawner pins accounts where the placement says, without Thespian ---------------------


class _Rig:
    """A Spawner over a real SupervisorCore whose create functions record what they made."""

    def __init__(self) -> None:
        self.core = SupervisorCore(EngineConfig(max_instances=3), seed=1)
        self.made: list[tuple[str, dict[str, Any] | None]] = []
        self.spawner = Spawner(
            self.core,
            addresses={},
            create=lambda role: self._made(role, None),
            create_pinned=self._made,
            send=lambda to, msg: None,
            base="simpleSystemBase",
            seed=1,
            fork_pids=False,
        )

    def _made(self, role: str, requirements: dict[str, Any] | None) -> str:
        self.made.append((role, requirements))
        return f"{role}#{len(self.made)}"

    def add(self, name: str) -> Child:
        child = self.core.add_child("account", name)
        self.spawner.spawn(child)
        return child

    def member(self, member_id: str, admin: str, *, added: bool = True) -> tuple[str, ...] | None:
        event = MemberEvent(admin=admin, member_id=member_id, max_accounts=1, added=added)
        return self.spawner.member_changed(event, now=1.0)


def test_the_spawner_pins_an_account_to_its_member_and_never_watches_its_pid() -> None:
    rig = _Rig()
    assert rig.member("m-a", "127.0.0.2:1") == ()
    on_member = rig.add("a0")
    on_leader = rig.add("a1")  # m-a is full
    assert rig.made == [("account", {MEMBER_CAPABILITY: "m-a"}), ("account", None)]
    assert rig.spawner.local_pid(on_member, 4242) is None  # a pid on another host
    assert rig.spawner.local_pid(on_leader, 4242) == 4242
    assert rig.member("m-a", "127.0.0.2:1", added=False) == ("a0",)
    assert rig.member("m-a", "127.0.0.2:1", added=False) is None  # said once
    assert rig.member("", "127.0.0.9:1") is None  # not an engine member: ignored


def test_a_restarted_account_goes_back_to_its_member_while_it_is_up() -> None:
    rig = _Rig()
    rig.member("m-a", "127.0.0.2:1")
    child = rig.add("a0")
    rig.core.child_up(child, None, 0.0)
    rig.core.child_crashed(child, 0.0)
    rig.core.respawn(child)
    rig.spawner.spawn(child)
    assert rig.made[-1] == ("account", {MEMBER_CAPABILITY: "m-a"})
    assert rig.spawner.placement.placements() == {"a0": "m-a"}
