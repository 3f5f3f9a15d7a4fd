"""What the gateway benchmark prints and writes: one row per concurrency, both targets side by side.

The first table is the comparison (webhooks answered 200 per second and latency, request
to answer, for the gateway and the bare handler, and their ratio); the second is where the
CPU went, per webhook, by process role: the gateway process, each engine role, and the
bare handler's process for scale. Every answer other than a 200 is listed; a run with one
(or an accepted message without its outcome, or a process left behind) fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.bench.client import LevelResult
from apps.loadrun.tables import table

__all__ = ["Level", "Report"]

ROLE_ORDER = ("gateway", "router", "ai_pool", "account", "supervisor", "other")
"""The CPU table's columns, in the order a message crosses the processes."""


@dataclass
class Level:
    """One concurrency: both targets' answers, and the gateway's books after it.

    Attributes:
        drain_s: from the end of the gateway's traffic to the last accepted message's
            outcome collected by the gateway; None when that did not happen in time.
        outcomes: outcomes the gateway collected for this level, by status.
        cpu: CPU seconds by role over the gateway's traffic and its drain.
        bare_cpu: CPU seconds of the bare handler's process over its traffic.
    """

    concurrency: int
    gateway: LevelResult
    bare: LevelResult
    drain_s: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    bare_cpu: float = 0.0

    @property
    def ratio(self) -> float | None:
        return self.gateway.rate / self.bare.rate if self.bare.rate > 0 else None

    def cpu_ms(self) -> dict[str, float]:
        """CPU milliseconds per webhook answered 200, by role (and ``bare``)."""
        out = {r: 1000 * s / self.gateway.ok for r, s in self.cpu.items() if self.gateway.ok}
        if self.bare.ok:
            out["bare"] = 1000 * self.bare_cpu / self.bare.ok
        return out

    def problems(self) -> list[str]:
        found = []
        for result in (self.gateway, self.bare):
            if result.failed:
                answers = ", ".join(f"{n:,} x {code}" for code, n in result.failed.items())
                found.append(f"{result.target} at concurrency {self.concurrency}: {answers}")
        if self.gateway.accepted != self.gateway.ok:
            found.append(
                f"gateway at concurrency {self.concurrency}: {self.gateway.ok:,} answers 200 "
                f"but {self.gateway.accepted:,} messages accepted"
            )
        if self.drain_s is None and self.gateway.accepted:
            found.append(
                f"gateway at concurrency {self.concurrency}: not every accepted message's "
                f"outcome was collected in time ({sum(self.outcomes.values()):,} of "
                f"{self.gateway.accepted:,})"
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        def target(r: LevelResult) -> dict[str, Any]:
            return {
                "answered_200": r.ok,
                "webhooks_per_s": round(r.rate, 1),
                "p50_ms": round(r.ms(50), 2),
                "p99_ms": round(r.ms(99), 2),
                "max_ms": round(r.latency.max * 1000, 2),
                "seconds": round(r.seconds, 3),
                "answers": dict(r.answers),
                "accepted": r.accepted,
            }

        return {
            "concurrency": self.concurrency,
            "gateway": target(self.gateway),
            "bare": target(self.bare),
            "gateway_over_bare": None if self.ratio is None else round(self.ratio, 4),
            "drain_s": None if self.drain_s is None else round(self.drain_s, 3),
            "outcomes": self.outcomes,
            "cpu_ms_per_webhook": {k: round(v, 3) for k, v in self.cpu_ms().items()},
        }


@dataclass
class Report:
    """The whole run: its settings, each level, and how the servers ended."""

    settings: dict[str, Any]
    levels: list[Level] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    left: list[int] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = [p for level in self.levels for p in level.problems()]
        for kind, code in sorted(self.exit_codes.items()):
            if code != 0:
                found.append(f"the {kind} server exited with {code}")
        if self.left:
            found.append(f"processes left after the servers stopped (SIGKILLed): {self.left}")
        return found

    def render(self) -> str:
        s = self.settings
        lines = [
            f"gateway benchmark: {s['numbers']} loopback numbers, echo provider, {s['base']}, "
            f"durability {s['durability']}; {s['duration_s']:g} s per target and concurrency; "
            f"one text message per webhook from {s['customers']:,} customers in turn; "
            "the same client for both targets (latency = request to answer)",
            "",
        ]
        rows = [
            [
                lv.concurrency,
                lv.gateway.rate,
                lv.gateway.ms(50),
                lv.gateway.ms(99),
                lv.bare.rate,
                lv.bare.ms(50),
                lv.bare.ms(99),
                lv.ratio,
            ]
            for lv in self.levels
        ]
        header = ["concurrency", "gateway wh/s", "p50 ms", "p99 ms", "bare wh/s", "p50 ms"]
        lines += table([*header, "p99 ms", "gateway / bare"], rows)
        roles = [r for r in ROLE_ORDER if any(r in lv.cpu for lv in self.levels)]
        cpu_rows = []
        for lv in self.levels:
            per = lv.cpu_ms()
            total = sum(per.get(r, 0.0) for r in roles)
            cpu_rows.append([lv.concurrency, *(per.get(r) for r in roles), total, per.get("bare")])
        lines += ["", "CPU ms per webhook, by process (the gateway's: its traffic and drain)"]
        lines += table(["concurrency", *roles, "gateway total", "bare"], cpu_rows)
        lines += ["", *self._answers()]
        if self.profile:
            lines += ["", *self.profile]
        problems = self.problems()
        lines += ["", "FAILED: " + "; ".join(problems) if problems else "OK: " + self._ok()]
        return "\n".join(lines)

    def _answers(self) -> list[str]:
        out = []
        for lv in self.levels:
            drained = "-" if lv.drain_s is None else f"{lv.drain_s:.2f} s"
            outcomes = ", ".join(f"{n:,} {status}" for status, n in sorted(lv.outcomes.items()))
            out.append(
                f"  concurrency {lv.concurrency}: gateway {lv.gateway.ok:,} x 200 "
                f"({lv.gateway.accepted:,} accepted; outcomes {outcomes or 'none'}, the last "
                f"{drained} after its traffic), bare {lv.bare.ok:,} x 200"
            )
        return ["answers", *out]

    def _ok(self) -> str:
        return (
            "every answer 200, every accepted message's outcome collected, "
            "the servers and every engine process gone"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "levels": [lv.as_dict() for lv in self.levels],
            "exit_codes": self.exit_codes,
            "left": self.left,
            "problems": self.problems(),
        }
