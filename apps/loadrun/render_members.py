"""The report's ``members`` section (``--members``, ``--member-kill``, ``--member-freeze``)."""

from __future__ import annotations

from typing import Any

from .tables import table

__all__ = ["member_lines"]


def _hosts(spread: dict[str, int]) -> str:
    return ", ".join(f"{host} {n}" for host, n in spread.items()) or "none"


def _window(after: float, at: float | None) -> str:
    return "-" if at is None else f"{after:.2f}-{at:.2f}"


def member_lines(r: dict[str, Any]) -> list[str]:
    """Members, accounts per host, each kill with its detection and re-placement times."""
    m = r.get("members")
    if not m:
        return []
    out = [
        "",
        f"members: {m['count']} on {', '.join(m['hosts'])} (max {m['max_accounts']} accounts "
        f"each), leader admin {m['leader_admin']}; started {', '.join(m['started'])}",
        f"  accounts per host at start: {_hosts(m['accounts_at_start'])}",
        f"  accounts per host at end:   {_hosts(m['accounts_at_end'])}",
    ]
    k = m.get("member_kill") or m.get("member_freeze")
    if k:
        out += _fault_lines(k)
    out.append(
        f"  accepted {m['accepted']:,}, outcomes {m['outcomes']:,}; double-served: "
        f"{m['double_served']} (accepted messages with a second outcome); replies re-sent "
        f"by a new generation after a loss: {m['resent_after_restart']:,} (at most that "
        "many sent twice at the transport)"
    )
    if m["leftover_pids"] or m["leftover_ports"]:
        out.append(
            f"  LEFT after the run: processes {m['leftover_pids']}, ports {m['leftover_ports']}"
        )
    for member, tail in m["failed"].items():
        last = tail.splitlines()[-1] if tail else "(nothing logged)"
        out.append(f"  member {member} exited with an error: {last}")
    return out


def _fault_lines(k: dict[str, Any]) -> list[str]:
    """Each kill or freeze with its detection and re-placement times."""
    freeze = k["kind"] == "freeze"
    if freeze:
        frozen = [f["frozen_for_s"] for f in k["faults"] if f["frozen_for_s"] is not None]
        head = (
            f"  member freezes: SIGSTOP of a member's process groups every {k['every_s']:g} s "
            f"for {max(frozen, default=0):.1f} s, then SIGCONT (round-robin): "
            f"{len(k['faults'])}"
        )
    else:
        head = (
            f"  member kills: SIGKILL of a member's process groups every {k['every_s']:g} s "
            f"(round-robin, a new member started in its place): {len(k['faults'])}"
        )
    out = [
        head + "; seconds from the fault: lost/up as the supervisor's account events stamped "
        "them, and as stats() saw them (not yet at the first time, by the second)"
    ]
    for name, key in (
        ("detected (the supervisor took the member's accounts as lost)", "lost_event_s"),
        ("re-placed (every one of them up again in a new generation)", "up_event_s"),
    ):
        spread = k[key]
        if spread:
            out.append(
                f"    {name}: {spread['min']:.2f} / {spread['median']:.2f} / "
                f"{spread['max']:.2f} s min/median/max after the fault"
            )
    header = ["#", "t s", "member", "procs", "accounts", "lost s", "up s"]
    header += ["stats: lost s", "stats: up s", "now on"]
    header += (
        ["rejoined s", "stale", "stale gone s", "others/s before", "during"]
        if freeze
        else ["replaced by"]
    )
    rows = []
    for n, f in enumerate(k["faults"], 1):
        row = [
            n,
            f["t"],
            f["member"],
            f["processes"],
            len(f["accounts"]),
            f["lost_event_s"],
            f["up_event_s"],
            _window(f["detected_after_s"], f["detected_s"]),
            _window(f["replaced_after_s"], f["replaced_s"]),
            ", ".join(sorted(set(f["placed_on"].values()))) or "-",
        ]
        if freeze:
            row += [
                f["rejoined_s"],
                f["stale"],
                f["stale_gone_s"],
                f["others_before_per_s"],
                f["others_during_per_s"],
            ]
        else:
            row.append(f["replacement"] or "-")
        rows.append(row)
    if rows:
        out += table(header, rows, indent="    ")
    for what in ("not_detected", "not_replaced"):
        if k[what]:
            out.append(f"    {what.replace('_', ' ')} within the deadline: {k[what]}")
    if k["error"]:
        out.append(f"    the faults stopped: {k['error']}")
    return out
