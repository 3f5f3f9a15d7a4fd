"""The report's durability sections: crashes, the intake store, the durability comparison."""

from __future__ import annotations

from typing import Any

from .tables import table

__all__ = ["compare_lines", "crash_lines", "store_lines"]

_STORE_ONLY = " (store only)"  # crashes.CrashBook.settled: an outcome found in the store


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def crash_lines(r: dict[str, Any]) -> list[str]:
    """``--crash-every``: each kill of the whole engine and what became of its messages."""
    k = r.get("crashes")
    if not k:
        return []
    rs = k["restart_s"]
    out = [
        "",
        f"crashes: the whole engine (host process and every actor process) SIGKILLed every "
        f"{k['every_s']:g} s: {_n(k['kills'], 'kill')}"
        + (f", {_n(k['unplanned'], 'death')} it was not killed for" if k["unplanned"] else "")
        + f"; restart (kill -> engine ready) {rs['min']:.2f} / {rs['median']:.2f} / "
        f"{rs['max']:.2f} s min/median/max",
    ]
    rows = []
    for n, c in enumerate(k["rows"], 1):
        ended = c["ended"]
        store = sum(v for s, v in ended.items() if s.endswith(_STORE_ONLY))
        other = sum(ended.values()) - store - ended.get("replied", 0) - ended.get("timeout", 0)
        rows.append(
            [
                str(n),
                c["t"],
                c["processes"],
                c["gone_s"] * 1000,
                len(c["leftovers"]),
                c["restart_s"],
                c["unfinished"],
                c["answers_lost"],
                ended.get("replied", 0),
                ended.get("timeout", 0),
                other,
                store,
            ]
        )
    out += table(
        [
            "#",
            "at s",
            "processes",
            "all gone ms",
            "left",
            "ready s",
            "unfinished",
            "answers lost",
            "then replied",
            "timeout",
            "other",
            "store only",
        ],
        rows,
    )
    e = k["engine_recovery"]
    out.append(
        "  the next engines recovered from the store: "
        f"{e.get('intake.recovered', 0):,} admitted again with their accounts, "
        f"{e.get('intake.recovered_replied', 0):,} replied before the crash (ended replied, "
        f"not sent again), {e.get('intake.recovered_timeout', 0):,} past their deadline "
        "(ended timeout)"
    )
    out.append(
        f"  answers lost (submit_many in progress at a kill): {k['answers_lost']:,} messages, "
        f"offered again like redelivered webhooks: {k['lost_then_accepted']:,} accepted, "
        f"{k['lost_but_recorded']:,} already recorded (rejected duplicate, or their outcome "
        f"came first), {k['lost_unresolved']:,} never answered"
    )
    if k["settled_from_store"]:
        found = ", ".join(f"{v:,} {s}" for s, v in k["settled_from_store"].items())
        out.append(
            f"  outcomes a killed engine recorded but never got to the runner (found in the "
            f"store after the restart): {found}"
        )
    gone = (
        f"  every process of each killed engine gone within {k['gone_s_max'] * 1000:.0f} ms "
        f"(limit {k['gone_within_s']:g} s)"
    )
    if k["leftover_processes"]:
        gone = f"  ORPHANS: still alive {k['gone_within_s']:g} s after a kill (SIGKILLed): " + (
            ", ".join(map(str, k["leftover_processes"]))
        )
    out.append(gone)
    return out


def store_lines(r: dict[str, Any]) -> list[str]:
    """Where the run's intake store was and whether it is still there."""
    s = r.get("intake_store")
    if not s:
        return []
    return [f"  intake store ({s['durability']}): {s['path']}: {s['note']}"]


def compare_lines(r: dict[str, Any]) -> list[str]:
    """``--durability-compare``: completed messages/s of each durability and its ratio."""
    d = r["durability_compare"]
    rows = [
        [
            leg["durability"],
            leg["offered"],
            leg["accepted"],
            leg["completed_per_s"],
            None if leg["vs_off"] is None else f"{leg['vs_off']:.2f}x",
            leg["p50_ms"],
            leg["p99_ms"],
            leg["store_commits"],
            "OK" if leg["exactly_once"] else "FAILED",
        ]
        for leg in d["legs"]
    ]
    out = [
        "",
        "durability: the same traffic three times, one store each (completed = while offering)",
    ]
    out += table(
        [
            "durability",
            "offered",
            "accepted",
            "completed/s",
            "vs off",
            "p50 ms",
            "p99 ms",
            "commits",
            "exactly-once",
        ],
        rows,
    )
    ratio = d["fsync_vs_off"]
    if ratio is not None:
        out.append(
            f"  fsync / off = {ratio:.2f}x (target >= {d['target_vs_off']:g}x: "
            f"{'met' if d['met'] else 'missed'})"
        )
    for leg in d["legs"]:
        s = leg.get("store")
        if s:
            out.append(f"  store of {leg['durability']}: {s['path']}: {s['note']}")
    return out
