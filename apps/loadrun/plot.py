"""``--plot``: throughput, latency percentiles and RSS per role over time, as one PNG."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["PlotUnavailableError", "plot"]


class PlotUnavailableError(RuntimeError):
    """Raised by ``plot`` when matplotlib cannot be imported (it is an optional extra)."""


def plot(report: dict[str, Any], path: str) -> None:
    """Write the PNG; a dotted line marks the end of submissions, red lines the kills.

    Raises:
        PlotUnavailableError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailableError(
            f"--plot needs matplotlib ({exc}); install the 'load' extra: pip install -e '.[load]'"
        ) from None
    rows = report["series"]
    t = [r["t"] for r in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    o = report["options"]
    fig.suptitle(
        f"{o['base']}: {o['accounts']} accounts, {o['customers']:,} customers ({o['popularity']}), "
        f"rate {o['rate'] or 'unlimited'}"
    )
    for key, label in (
        ("offered", "offered"),
        ("accepted", "accepted"),
        ("completed", "completed"),
    ):
        ax1.plot(t[1:], _rate(rows, key), label=label)
    ax1.set_ylabel("messages/s")
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        ax2.plot(
            t, [r[key] if r["window_outcomes"] else float("nan") for r in rows], label=key[:-3]
        )
    ax2.set_ylabel("submit to outcome, ms")
    ax2.set_yscale("log")
    ax2.legend(loc="upper right")
    ax2.grid(alpha=0.3)
    roles = [k for k in rows[0]["rss_kb"] if any(r["rss_kb"].get(k) for r in rows)] if rows else []
    for role in roles:
        if role != "accounts":
            ax3.plot(t, [r["rss_kb"].get(role, 0) / 1024 for r in rows], label=role)
    ax3.set_ylabel("RSS per process, MB")
    ax3.set_xlabel("seconds since the first submission")
    ax3.legend(loc="lower right", ncol=4, fontsize="small")
    if "accounts" in roles:
        total = ax3.twinx()
        total.plot(t, [r["rss_kb"]["accounts"] / 1024 for r in rows], "k--", label="accounts (sum)")
        total.set_ylabel("accounts summed, MB (dashed)")
        total.set_ylim(bottom=0)
    ax3.set_ylim(bottom=0)
    end = report["phases"]["offer_s"]
    for ax in (ax1, ax2, ax3):
        ax.axvline(end, color="grey", linestyle=":", linewidth=1)
        for kill in report["restarts"]["kills"]:
            ax.axvline(kill["t"], color="red", alpha=0.3, linewidth=1)
    ax3.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rate(rows: list[dict[str, Any]], key: str) -> list[float]:
    out = []
    for a, b in itertools.pairwise(rows):
        dt = b["t"] - a["t"]
        out.append((b[key] - a[key]) / dt if dt > 0 else 0.0)
    return out
