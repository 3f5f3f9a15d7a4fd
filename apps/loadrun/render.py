"""The human report: aligned tables on stdout, ending with the exactly-once verdict."""

from __future__ import annotations

from typing import Any

from actors.config import settings

from .render_durability import compare_lines, crash_lines, store_lines
from .render_members import member_lines
from .sampler import HOPS
from .sweep import sweep_lines
from .tables import cell
from .tables import table as _table
from .tail import tail_lines

__all__ = ["render", "verdict"]


def verdict(report: dict[str, Any]) -> str:
    """The last line: ``exactly-once: OK (...)`` or ``exactly-once: FAILED (...)``."""
    e = report["exactly_once"]
    if not e["ok"]:
        return "exactly-once: FAILED (" + "; ".join(e["problems"]) + ")"
    if "runs" in e:  # --durability-compare, --accounts-sweep
        return (
            f"exactly-once: OK ({e['accepted']:,} accepted, {e['outcomes']:,} outcomes "
            f"in {e['runs']} runs)"
        )
    crashes = report.get("crashes")
    if crashes is None:
        return f"exactly-once: OK ({e['accepted']:,} accepted, {e['outcomes']:,} outcomes)"
    store = e["settled_from_store"]
    kills = crashes["kills"] + crashes["unplanned"]
    return (
        f"exactly-once: OK ({e['owed']:,} accepted, {e['outcomes']:,} outcomes"
        + (f" + {store:,} found in the store" if store else "")
        + f", across {kills} kill{'' if kills == 1 else 's'} of the whole engine)"
    )


def _config_lines(r: dict[str, Any]) -> list[str]:
    o = r["options"]
    amount = f"{o['messages']:,} messages" if o["messages"] else f"{o['duration']:g} s"
    sweep = o.get("accounts_sweep")
    accounts = (
        f"{','.join(map(str, sweep))} accounts (one run each)"
        if sweep
        else f"{o['accounts']} accounts"
    )
    rate = f"{o['rate']:,.0f} msgs/s" if o["rate"] else "unlimited"
    pop = o["popularity"] + (f" s={o['zipf_s']:g}" if o["popularity"] == "zipf" else "")
    m = r["machine"]
    lines = [
        f"  base         {o['base']}  ({m['cpus']} CPUs, Python {m['python']})",
        f"  traffic      {accounts}, {o['customers']:,} customers ({pop}), {amount}, "
        f"rate {rate}, batch {o['batch'] or 'auto'}, seed {o['seed']}",
        _world_line(o),
    ]
    if o["kill_every"]:
        who = "a random account" + (" and the router" if o["kill_router"] else "")
        lines.append(f"  faults       SIGKILL {who} every {o['kill_every']:g} s")
    if o.get("crash_every"):
        lines.append(
            f"  crashes      SIGKILL the whole engine every {o['crash_every']:g} s, restart "
            "on the same intake store (the engine runs in a child process)"
        )
    defaults = {s.name: s.default for s in settings()}
    changed = [
        f"{k}={v!r}"
        for k, v in r["engine_config"].items()
        if v != defaults.get(k) and k not in ("dead_letter_path", "intake_path")
    ]
    lines.append("  engine       " + (", ".join(changed) if changed else "EngineConfig defaults"))
    return lines


def _world_line(o: dict[str, Any]) -> str:
    if o.get("edges") == "fake":
        return (
            f"  world        {o['providers']} openai provider(s) -> fake OpenAI server, latency "
            f"{o['provider_latency']:g} s; cloud_api -> fake Graph API, latency "
            f"{o['transport_latency']:g} s, {o['graph_throughput']:g} msgs/s per number; "
            f"duplicates {o['duplicates']:g}"
        )
    return (
        f"  world        {o['providers']} echo provider(s): latency {o['provider_latency']:g} s, "
        f"jitter {o['provider_jitter']:g} s, failure {o['provider_failure_rate']:g}; loopback: "
        f"latency {o['transport_latency']:g} s, failure {o['transport_failure_rate']:g}; "
        f"duplicates {o['duplicates']:g}"
    )


def _hop_lines(hops: dict[str, Any]) -> list[str]:
    """Items per batch on each hop the router counts (none: an engine that does not)."""
    counted = [(h, hops[h]) for h in HOPS if hops.get(h)]
    if not counted:
        return []
    sizes = ", ".join(
        f"{h} {cell(v['items_per_batch'])} ({v['batches']:,} batches)" for h, v in counted
    )
    return ["", f"batches per hop, items per batch (router's counts): {sizes}"]


def _edge_lines(e: dict[str, Any]) -> list[str]:
    """``--edges fake``: HTTP requests held at once, seen by the servers and by the engine."""
    if e.get("kind") != "fake":
        return []
    llm, graph = e.get("llm", {}), e.get("graph", {})
    pool, acc = e.get("pool", {}), e.get("accounts", {})
    calls = {
        k: sum(int(p.get(k, 0)) for p in pool.get("provider_stats", {}).values())
        for k in ("calls", "ok", "errors")
    }
    one = acc.get("one", {"name": "-", "transport": {}})
    t = one["transport"]
    checks = [
        ("LLM bearer key", llm.get("bearer_ok")),
        ("Graph bearer token", graph.get("bearer_ok")),
        ("Graph 'to' all digits", graph.get("to_digits")),
    ]
    out = ["", "HTTP edges: concurrent requests (peak at once) and requests"]
    out += _table(
        ["", "peak at once", "requests", "note"],
        [
            ["fake OpenAI server saw", llm.get("peak_in_flight"), llm.get("requests"), ""],
            [
                "fake Graph API saw",
                graph.get("peak_in_flight"),
                graph.get("requests"),
                f"{graph.get('phone_number_ids', 0)} phone_number_ids in the last requests kept",
            ],
            [
                "ai_pool (openai providers)",
                pool.get("sampled_peak_in_flight"),
                calls["calls"],
                f"sampled in_flight; ok {calls['ok']:,}, errors {calls['errors']:,}",
            ],
            [
                f"one account ({one['name']})",
                t.get("peak_http"),
                t.get("http_calls"),
                f"transport.peak_http; sent {t.get('sent', 0):,}, failed {t.get('failed', 0):,}, "
                f"retryable {t.get('retryable', 0):,}, throttled {t.get('throttled', 0):,}",
            ],
            [
                f"all {acc.get('accounts', 0)} accounts",
                acc.get("sampled_peak_in_http_sum"),
                acc.get("http_calls"),
                f"sampled sum of transport.in_http; sum of peaks {acc.get('peak_http_sum', 0):,}",
            ],
        ],
    )
    out.append(
        "  checks: " + ", ".join(f"{name} {'ok' if ok else 'NOT OK'}" for name, ok in checks)
    )
    return out


def render(r: dict[str, Any]) -> str:
    """The whole human report."""
    out = ["wa-actor-engine load run", "", "configuration", *_config_lines(r)]
    if "durability_compare" in r or "accounts_sweep" in r:
        out += compare_lines(r) if "durability_compare" in r else sweep_lines(r)
        out += _log_lines(r.get("log"))
        return "\n".join([*out, "", verdict(r)])
    out.append("")
    c, t, ph = r["counts"], r["throughput"], r["phases"]
    tail = c["outcomes"] - ph["outcomes_while_offering"]
    out.append(
        f"traffic: offered for {ph['offer_s']:.1f} s; {tail:,} outcomes after that, the last "
        f"at {ph['last_outcome_s']:.1f} s; per second = while offering"
        + ("  (interrupted)" if ph["interrupted"] else "")
        + (f"  (STOPPED: {ph['error']})" if ph.get("error") else "")
        + ("  (collection timed out)" if ph["collect_timed_out"] else "")
    )
    out += _table(
        ["", "offered", "accepted", "rejected", "outcomes", "replied"],
        [
            [
                "messages",
                c["offered"],
                c["accepted"],
                c["rejected"],
                c["outcomes"],
                r["outcomes_by_status"].get("replied", 0),
            ],
            [
                "per second",
                t["offered_per_s"],
                t["accepted_per_s"],
                None,
                t["completed_per_s"],
                t["replied_per_s"],
            ],
        ],
    )
    if c["duplicates_offered"]:
        out.append(
            f"  redelivered webhooks: {c['duplicates_offered']:,} offered, "
            f"{c['duplicates_rejected']:,} rejected duplicate, "
            f"{c['duplicates_accepted']:,} accepted"
        )
    lat = r["latency_ms"]
    out += ["", "latency, submit to outcome (ms)"]
    out += _table(
        ["", "p50", "p90", "p99", "max", "outcomes"],
        [["", lat["p50"], lat["p90"], lat["p99"], lat["max"], lat["count"]]],
    )
    out += _hop_lines(r.get("hops") or {})
    out += tail_lines(r)
    out += _edge_lines(r.get("edges", {}))
    out += ["", "outcomes by status and reason"]
    out += _table(["", "count"], [[k, v] for k, v in r["outcomes"].items()] or [["(none)", 0]])
    out += ["", "rejections by reason"]
    out += _table(["", "count"], [[k, v] for k, v in r["rejections"].items()] or [["(none)", 0]])
    rs = r["restarts"]
    out += [
        "",
        f"restarts: {rs['total']} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(rs["by_role"].items()) if v)
        + ")"
        + f"; router relocations {rs['router_relocations']}, re-admitted {rs['readmitted']:,}"
        + (f"; kills sent {sum(1 for k in rs['kills'] if k['delivered'])}" if rs["kills"] else "")
        + (f"; FAILED: {', '.join(rs['failed_actors'])}" if rs["failed_actors"] else ""),
    ]
    out += ["", "bounded structures: peak against cap"]
    out += _table(
        ["structure", "peak", "cap", "reached", "2nd half at cap", "note"],
        [
            [
                b["name"],
                b["peak"],
                b["cap"],
                b["reached"],
                f"{b['at_cap_second_half']:.0%}" if "at_cap_second_half" in b else None,
                b["note"],
            ]
            for b in r["bounds"]
        ],
    )
    if r["rss_kb"]:
        has_mid = any("middle" in v for v in r["rss_kb"].values())
        header = ["RSS (MB)", "start"] + (["middle"] if has_mid else []) + ["peak", "end"]
        rows = []
        for role, v in r["rss_kb"].items():
            if not v["peak"]:
                continue
            rows.append(
                [role, v["start"] / 1024]
                + ([v.get("middle", 0) / 1024] if has_mid else [])
                + [v["peak"] / 1024, v["end"] / 1024]
            )
        out += ["", *(_table(header, rows))]
    if r["options"]["soak"] and r["rss_growth"]:
        out += ["", "memory growth per process, middle to end of the run"]
        out += _table(
            ["process", "pid", "middle MB", "end MB", "growth", ""],
            [
                [
                    g["process"],
                    str(g["pid"]),
                    g["middle_kb"] / 1024,
                    g["end_kb"] / 1024,
                    None if g["growth_pct"] is None else f"{g['growth_pct']:+.1f} %",
                    "> 5 %  FLAG" if g["flag"] else g["note"],
                ]
                for g in r["rss_growth"]
            ],
        )
    if r.get("soak"):
        k = r["soak"]
        grew = ", ".join(k["grew_too_much"]) or "none"
        out += [
            "",
            f"soak: processes grown > {k['growth_limit_pct']:g} % from middle to end: {grew}",
            f"  at their cap: {len(k['reached_cap'])} of {len(r['bounds'])} bounded structures "
            f"({len(k['held_cap_second_half'])} held it through the second half)",
            "  never reached: " + (", ".join(k["not_reached"]) or "none"),
        ]
    sd = r["shutdown"]
    if sd:
        out += ["", f"shutdown: {sd['total_s']:.3f} s, {sd['abandoned']} abandoned"]
        out += _table(
            ["stage", "seconds", "drained", "abandoned"],
            [[s["name"], s["seconds"], s["drained"], s["abandoned"]] for s in sd["stages"]],
        )
    if r["leftover_processes"]:
        out.append(f"  processes left after shutdown (killed): {r['leftover_processes']}")
    if r["dead_letters"]:
        dl = r["dead_letters"]
        out.append(f"  dead-letter journal: {dl['path']} ({dl['bytes']:,} bytes)")
    out += store_lines(r)
    out += crash_lines(r)
    out += member_lines(r)
    if r["baseline"]:
        b, q = r["baseline"], r["ratios"]
        out += [
            "",
            f"raw Thespian on {b['base']} (same machine, same run) and the engine against it"
            + _auth_note(b),
        ]
        out += _table(
            ["", "raw Thespian", "engine", "engine / raw"],
            [
                [
                    "one item per tell, msgs/s",
                    b["tell_per_s"],
                    t["completed_per_s"],
                    f"{q['completed_vs_raw_tell']:.2f}x",
                ],
                [
                    f"{b['batch_size']} items per tell, items/s",
                    b["batch_items_per_s"],
                    t["completed_per_s"],
                    f"{q['completed_vs_raw_batched']:.3f}x",
                ],
                [
                    "round trip (ask) median vs p50 latency, ms",
                    b["rtt_median_ms"],
                    lat["p50"],
                    f"{q['p50_latency_vs_raw_rtt']:.1f}x",
                ],
            ],
        )
        if b.get("auth_cost"):
            cost, off = b["auth_cost"], b["without_auth"]
            out.append(
                f"  raw Thespian without transport authentication: {off['tell_per_s']:,.1f} "
                f"one-item tells/s; authentication costs {cost['tell']:+.1%} of one-item "
                f"tells, {cost['batch']:+.1%} of batched tells, {cost['rtt']:+.1%} round trip"
            )
    out += _log_lines(r.get("log"))
    out += ["", verdict(r)]
    return "\n".join(out)


_LOG_HEADER = ("count", "level", "from", "message (numbers as N)")


def _log_lines(log: dict[str, Any] | None) -> list[str]:
    """The engine's warnings and errors, counted from the run's log file (see ``runlog``)."""
    if log is None:  # run() called directly: the caller chose the sinks
        return []
    records = log["records"]
    where = f"log: {log['path']}" if log["path"] else "no log file kept"
    if not records:
        return ["", f"warnings during the run: none at {log['level']} or above ({where})"]
    counts = ", ".join(f"{n:,} {level}" for level, n in records.items())
    lines = [
        "",
        f"warnings during the run: {counts} ({where}; stderr showed "
        f"{log['console_level']} and above)",
    ]
    rows = [(f"{k['count']:,}", k["level"], k["who"], k["kind"]) for k in log["kinds"]]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(_LOG_HEADER)]
    for n, row in enumerate([_LOG_HEADER, *rows]):
        texts = [v.ljust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join([row[0].rjust(widths[0]), *texts]).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if log["more_kinds"]:
        lines.append(f"  ... and {log['more_kinds']} more kinds of message")
    return lines


def _auth_note(baseline: dict[str, Any]) -> str:
    # Which transport the raw figures were taken on: the engine's own runs authenticate.
    notes = {"on": ", transport authentication on", "off": ", transport authentication off"}
    return notes.get(baseline.get("transport_auth", "n/a"), "")
