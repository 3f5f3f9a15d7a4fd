"""Placement on multiprocTCPBase: the supervisor puts accounts on the members it chooses.

A leader engine with the shared secret and two members (``python -m apps.member`` on
127.0.0.2 and 127.0.0.3, two accounts each), as in ``tests/test_conventions.py``, whose
fixtures kill every process of a member at teardown and check that nothing is left and no
port is open; the engine's fixture checks its own processes.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.runtime import procs
from actors.supervisor.placement import LEADER
from protocols import Accepted, ProviderSpec, StatsReply
from tests.engine_helpers import collect, inbound
from tests.test_conventions import Leader, Member, leader, members, two_members  # noqa: F401


def _hosts(stats: StatsReply) -> dict[str, str]:
    """Each account's host, as its stats entry says."""
    out = {entry.name: entry.host for entry in stats.of_role("account")}
    assert all(out.values()), out
    return out


def test_accounts_fill_the_members_least_loaded_first_then_the_leader_and_all_reply(
    members: Callable[..., Member],  # noqa: F811 - first: the engine stops before the members
    leader: Leader,  # noqa: F811
) -> None:
    engine = leader.engine
    a, b = two_members(leader, members)
    engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=10, options={}))
    names = [f"acct-{i}" for i in range(5)]
    for name in names[:4]:
        engine.add_account(name)
    stats = engine.stats()
    hosts = _hosts(stats)
    assert sorted(hosts.values()) == ["member-a", "member-a", "member-b", "member-b"]
    assert stats.counters["placement.member-a"] == 2
    assert stats.counters["placement.member-b"] == 2
    engine.add_account(names[4])  # both members are full
    stats = engine.stats()
    assert _hosts(stats)[names[4]] == LEADER
    assert stats.counters["placement.leader"] == 1

    # Each account runs in its member's actor system, not in the leader's.
    leader_procs = procs.descendants(stats.admin_pid) if stats.admin_pid else set()
    for entry in stats.of_role("account"):
        assert entry.pid is not None
        host = hosts.get(entry.name, LEADER)
        if host == LEADER:
            assert entry.pid in leader_procs
            continue
        member = a if host == "member-a" else b
        assert entry.pid in procs.descendants(member.up["admin_pid"]), (entry.name, host)
        assert entry.pid not in leader_procs

    # Messages to every account end in exactly one outcome each, a reply.
    batch = [inbound(i, account=names[i % 5]) for i in range(20)]
    results = engine.submit_many(batch)
    assert all(isinstance(r, Accepted) for r in results), results
    outcomes = collect(engine, [m.message_id for m in batch])  # fails on a second outcome
    assert {o.status for o in outcomes.values()} == {"replied"}, outcomes
    for name in names:
        assert engine.stats().actor("account", name) is not None

    # A leader whose accounts ran on members shuts down without an error: its admin does
    # not keep the create requests it forwarded (actors.runtime.thespian_fixes), so it has
    # none to refuse at its shutdown ("Pending Actor create ... failed (3585)" per account).
    engine.shutdown()
    errors = leader.log.read_text()
    assert "Pending Actor create" not in errors, errors
