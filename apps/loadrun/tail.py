"""The tail: outcomes that came a second or more after their submission, and why.

A run of the default traffic can end with a few outcomes seconds after the offering
stopped. The suspects are the per-recipient rate limit (``recipient_rate_allowance``
sends per ``recipient_rate_window_s`` to one customer: a reply over it waits until the
oldest send leaves the window), the per-customer FIFO (a customer's next message waits
for the one before it), and timeouts. The tracker keeps the slow outcomes with their
customer (the :data:`~apps.loadrun.tracker.SLOW_KEEP` slowest); this module adds the
accounts' rate counters and, when the traffic can be replayed from its seed (no
redeliveries, no crashes: then the seed alone decides which customer writes each message),
every earlier message of each slow message's customer. It then predicts when the rate
limit lets each send start, ``send[j] = max(accept[j], send[j-allowance] + window)`` over
the customer's messages in order (offer times from the runner's log of submissions; past
its end, interpolated between samples), and names the cause:

- ``allowance``: the message was over the customer's allowance and waited for the window
  (a customer's later messages wait behind it in the per-customer queue, and come out
  over the allowance too);
- ``other``: the rate limit predicts no wait of half a second or more (a stalled engine or
  machine, a slow provider, a timeout).

Rejected messages are not known by id and are replayed as if accepted (the report says
how many there were).
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from typing import TYPE_CHECKING, Any

from .tables import table
from .tracker import SLOW_S
from .traffic import Traffic, customer_index

if TYPE_CHECKING:
    from actors import EngineConfig

    from .driver import Phases
    from .options import RunOptions
    from .sampler import Sampler
    from .tracker import Tracker

__all__ = ["analyse", "tail_lines"]

_SEQ = re.compile(r"lr\.(\d+)")  # the ids Traffic gives new messages
_SHOWN = 10  # rows of the human report; --json keeps every slow outcome kept
_CAUSES = ("allowance", "other")


def analyse(
    *, opts: RunOptions, cfg: EngineConfig, tracker: Tracker, sampler: Sampler, phases: Phases
) -> dict[str, Any]:
    """The report's ``tail`` section (see the module's docstring)."""
    rows = [{**r, "outcome_s": r["submitted_s"] + r["latency_s"]} for r in tracker.slowest()]
    latencies = sorted(r["latency_s"] for r in rows)
    stats = sampler.last_stats
    accounts = stats.of_role("account") if stats is not None else ()
    out: dict[str, Any] = {
        "slow_s": SLOW_S,
        "slow": tracker.slow_total,
        "kept": len(rows),
        "by_outcome": dict(sorted(tracker.slow_by_outcome.items())),
        "customers": len({r["customer"] for r in rows if r["customer"]}),
        "after_offering": sum(1 for r in rows if r["outcome_s"] > phases.offer_s),
        "latency_s": _spread(latencies),
        "rate_allowance": cfg.recipient_rate_allowance,
        "rate_window_s": cfg.recipient_rate_window_s,
        "account_counters": {
            k: sum(int(a.counters.get(k, 0)) for a in accounts)
            for k in ("rate_waits", "rate_limited", "timeouts")
        },
        "rejected_in_run": tracker.rejected_total,
        "replay": _replay(opts, cfg, rows, _Clock(tracker, sampler.rows)),
        "rows": rows,
    }
    return out


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": values[0], "median": statistics.median(values), "max": values[-1]}


def _why_not(opts: RunOptions, rows: list[dict[str, Any]], clock: _Clock) -> str:
    if not rows:
        return "no slow outcomes"
    if opts.duplicates > 0:
        return "redelivered webhooks (--duplicates) take draws of the seeded sequence"
    if opts.crash_every is not None:
        return "messages were offered again after crashes (--crash-every)"
    if clock.empty:
        return "no record of when messages were offered"
    if any(not _SEQ.fullmatch(r["id"]) or r["customer"] is None for r in rows):
        return "a slow outcome of a message the traffic did not make"
    return ""


class _Clock:
    """When the ``seq``-th message was offered.

    From the tracker's log of ``submit_many`` calls (exact); past its end, interpolated
    between the sampled ``offered`` counts (within one sample period).
    """

    def __init__(self, tracker: Tracker, series: list[dict[str, Any]]) -> None:
        self._log_t, self._log_n = tracker.offer_log_s, tracker.offer_log_n
        self._t = [float(r["t"]) for r in series]
        self._n = [int(r["offered"]) for r in series]

    @property
    def empty(self) -> bool:
        return not self._log_n and not self._n

    def at(self, seq: int) -> float:
        i = bisect.bisect_left(self._log_n, seq)
        if i < len(self._log_n):
            return self._log_t[i]
        i = bisect.bisect_left(self._n, seq)
        if i == 0:
            return self._t[0]
        if i == len(self._n):
            return self._t[-1]
        n0, n1, t0, t1 = self._n[i - 1], self._n[i], self._t[i - 1], self._t[i]
        return t0 + (t1 - t0) * (seq - n0) / (n1 - n0)


def _replay(
    opts: RunOptions, cfg: EngineConfig, rows: list[dict[str, Any]], clock: _Clock
) -> dict[str, Any]:
    why_not = _why_not(opts, rows, clock)
    if why_not:
        return {"done": False, "why_not": why_not}
    # Pass the seeded sequence once, keeping only the slow customers' messages.
    mine: dict[int, list[int]] = {}
    for r in rows:
        index = customer_index(r["customer"])
        if index is None:
            return {"done": False, "why_not": f"customer {r['customer']!r} is no traffic number"}
        mine.setdefault(index, [])
    traffic = Traffic(
        accounts=opts.accounts,
        customers=opts.customers,
        popularity=opts.popularity,
        zipf_s=opts.zipf_s,
        seed=opts.seed,
    )
    last = max(int(r["id"][3:]) for r in rows)
    for seq in range(1, last + 1):
        c = traffic.next_customer()
        if c in mine:
            mine[c].append(seq)
    window, allowance = cfg.recipient_rate_window_s, cfg.recipient_rate_allowance
    # Per customer, once: its messages' offer times and predicted sends (a hot Zipf
    # customer has many thousands; every look-up below is a bisection).
    plans: dict[int, tuple[list[float], list[float], list[str]]] = {}
    for r in rows:
        index, seq = customer_index(r["customer"]), int(r["id"][3:])
        assert index is not None  # checked above
        seqs = mine[index]
        k = bisect.bisect_left(seqs, seq)
        if k == len(seqs) or seqs[k] != seq:
            return {"done": False, "why_not": f"the seed does not replay {r['id']}'s customer"}
        if index not in plans:
            accepts = [clock.at(s) for s in seqs]
            plans[index] = (accepts, *_predict(accepts, allowance, window))
        accepts, times, causes = plans[index]
        accepted = accepts[k]
        r.update(
            nth=k + 1,
            in_window=k + 1 - bisect.bisect_right(accepts, accepted - window, hi=k),
            predicted_send_s=times[k],
            cause=causes[k] if times[k] - accepted >= SLOW_S / 2 else "other",
        )
    waited = [r["outcome_s"] - r["predicted_send_s"] for r in rows if r["cause"] != "other"]
    return {
        "done": True,
        "customers": len(mine),
        "causes": {c: sum(1 for r in rows if r["cause"] == c) for c in _CAUSES},
        "outcome_minus_predicted_s": _spread(sorted(waited)),
    }


def _predict(accepts: list[float], allowance: int, window: float) -> tuple[list[float], list[str]]:
    """When each of a customer's messages can be sent, and whether the allowance held it.

    ``send[j] = max(accept[j], send[j - allowance] + window)``. The per-customer FIFO
    (a message waits for the one before it) needs no term of its own: both terms grow
    with ``j``, so the sends come out in order anyway.
    """
    times: list[float] = []
    causes: list[str] = []
    for j, accepted in enumerate(accepts):
        freed = times[j - allowance] + window if j >= allowance else -math.inf
        times.append(max(accepted, freed))
        causes.append("allowance" if freed > accepted else "other")
    return times, causes


def tail_lines(r: dict[str, Any]) -> list[str]:
    """The human report's tail section: counts, the replay's verdict, the last rows."""
    k = r.get("tail")
    if not k:
        return []
    if not k["slow"]:
        return ["", f"tail: no outcome took {k['slow_s']:g} s or more"]
    lat, acc = k["latency_s"], k["account_counters"]
    out = [
        "",
        f"tail: {k['slow']:,} outcomes took {k['slow_s']:g} s or more ({k['after_offering']:,} "
        f"of the {k['kept']:,} kept came after the offering stopped), {k['customers']:,} "
        f"customers; latency {lat['min']:.1f} / {lat['median']:.1f} / {lat['max']:.1f} s "
        "min/median/max; " + ", ".join(f"{n:,} {o}" for o, n in k["by_outcome"].items()),
        f"  the accounts counted {acc['rate_waits']:,} rate waits, {acc['rate_limited']:,} "
        f"rate_limited, {acc['timeouts']:,} timeouts (allowance {k['rate_allowance']} sends "
        f"per {k['rate_window_s']:g} s to one customer)",
    ]
    rp = k["replay"]
    last = sorted(k["rows"], key=lambda x: x["outcome_s"])[-_SHOWN:]
    header = ["id", "customer", "account", "offered s", "latency s", "outcome s"]
    rows = [
        [x["id"], x["customer"], x["account"], x["submitted_s"], x["latency_s"], x["outcome_s"]]
        for x in last
    ]
    if not rp["done"]:
        return [*out, f"  not replayed from the seed: {rp['why_not']}", *table(header, rows)]
    c, err = rp["causes"], rp["outcome_minus_predicted_s"]
    out.append(
        f"  replayed from the seed: {c['allowance']:,} over their customer's allowance "
        f"(held until the window let them go), {c['other']:,} with no rate wait predicted"
    )
    if err:
        out.append(
            f"  outcome - predicted send: {err['min']:.2f} / {err['median']:.2f} / "
            f"{err['max']:.2f} s min/median/max"
        )
    if k["rejected_in_run"]:
        out.append(f"  ({k['rejected_in_run']:,} rejected messages were replayed as accepted)")
    header += ["nth", f"in {k['rate_window_s']:g} s", "send s (predicted)", "cause"]
    for row, x in zip(rows, last, strict=True):
        row += [x["nth"], x["in_window"], x["predicted_send_s"], x["cause"]]
    out.append(f"  the {len(last)} last slow outcomes (--json has all {k['kept']:,} kept):")
    return out + table(header, rows)
