"""``/healthz``: the engine's actors and each number's ability to send, as one answer (pure).

The rule (README "Health"): a number **can send** when its account actor is ``up``, its
transport has not failed (a 190 from a send fails it: ``account_auth``), and no webhook
has reported an account-level error for it since (:class:`~apps.gateway.delivery.
NumberHealth`). Its ``state`` says which: the actor's state when not ``up``, else
``auth_failed`` or ``degraded``, else ``up``. The answer is 200 with ``status`` ``ok``
(everything up) or ``degraded`` (something is not), and **503** with ``status`` ``down``
when the engine does not answer or no number can send.

Placement (README "Running on several hosts"): each account says the ``host`` it runs on
(``leader`` or a convention member's id; left out while unknown), and ``members`` counts,
per host, its accounts whose actor is ``up`` against all it hosts, beside the supervisor's
``members_up`` and ``members_lost``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.gateway.delivery import AUTH_FAILED, NumberHealth
from protocols import ActorStats, StatsReply

__all__ = ["health_report"]


def _account(
    state: str,
    transport_failed: str,
    phone_number_id: str | None,
    numbers: NumberHealth,
) -> tuple[str, dict[str, Any] | None]:
    """The account's state and the problem behind it (None when there is none)."""
    if transport_failed:
        problem: dict[str, Any] | None = {"source": "send", "detail": transport_failed}
        return (state if state != "up" else AUTH_FAILED), problem
    found = numbers.problem(phone_number_id) if phone_number_id is not None else None
    if found is None:
        return state, None
    problem = {"source": found.source, "code": found.code, "title": found.title, "at": found.at}
    return (state if state != "up" else found.state), problem


def _members(accounts: tuple[ActorStats, ...], counters: Mapping[str, int]) -> dict[str, Any]:
    """Accounts up / hosted per host (by name), and the members up and lost.

    ``up`` is the actor's own state, not whether its number can send: a number whose
    token expired says nothing about the host it runs on.
    """
    hosts: dict[str, dict[str, int]] = {}
    for actor in sorted(accounts, key=lambda a: a.host):
        if actor.host:
            tally = hosts.setdefault(actor.host, {"up": 0, "total": 0})
            tally["up"] += int(actor.state == "up")
            tally["total"] += 1
    return {
        "members_up": counters.get("supervisor.members_up", 0),
        "members_lost": counters.get("supervisor.members_lost", 0),
        "hosts": hosts,
    }


def health_report(
    stats: StatsReply | None, accounts: Mapping[str, str], numbers: NumberHealth
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of ``/healthz``.

    Args:
        stats: the engine's stats, None when it did not answer.
        accounts: phone_number_id -> account id, as configured.
        numbers: the account-level problems the webhooks reported.
    """
    if stats is None:
        return 503, {"status": "down", "engine": "not running"}
    phone_of = {account_id: phone for phone, account_id in accounts.items()}
    body: dict[str, dict[str, Any]] = {}
    for actor in stats.of_role("account"):
        phone = phone_of.get(actor.name)
        state, problem = _account(actor.state, actor.transport_failed, phone, numbers)
        entry: dict[str, Any] = {
            "state": state,
            "can_send": state == "up",
            "depth": actor.depth,
            "restarts": actor.restarts,
        }
        if phone is not None:
            entry["phone_number_id"] = phone
        if actor.host:
            entry["host"] = actor.host
        if problem is not None:
            entry["problem"] = problem
        body[actor.name] = entry
    for phone, account_id in accounts.items():
        body.setdefault(
            account_id,
            {
                "state": "missing",
                "can_send": False,
                "depth": 0,
                "restarts": 0,
                "phone_number_id": phone,
            },
        )
    not_up = [f"{a.role}:{a.name}" for a in stats.actors if a.state != "up"]
    not_up += [
        f"account:{name}"
        for name, entry in body.items()
        if entry["state"] != "up" and f"account:{name}" not in not_up
    ]
    can_send = [name for name, entry in body.items() if entry["can_send"]]
    status = "down" if not can_send else "degraded" if not_up else "ok"
    report = {
        "status": status,
        "engine": "running",
        "base": stats.base,
        "in_flight": stats.in_flight,
        "oldest_in_flight_s": stats.oldest_in_flight_s,
        "accounts": body,
        "can_send": can_send,
        "not_up": not_up,
        "members": _members(stats.of_role("account"), stats.counters),
    }
    return (503 if status == "down" else 200), report
