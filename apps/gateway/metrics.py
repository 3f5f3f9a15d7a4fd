"""Prometheus text exposition (format 0.0.4) of ``engine.stats()`` and the gateway's counters.

Pure: :func:`render` takes the stats dict and a :class:`GatewayCounters` and returns the
text, so the mapping is tested without a server. Engine counters are named after their
keys (``router.gate.queued`` -> ``wae_router_gate_queued``); outcomes and rejections get
labels instead of one name per reason. The few keys that are levels rather than counts
(sizes, capacities, peaks) are gauges; every other key is a counter with ``_total``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTENT_TYPE", "GatewayCounters", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Leaf names of stats keys that are levels, not counts (see each core's stats()).
_GAUGE_LEAVES = frozenset(
    {
        "accounts",
        "capacity",
        "in_transport",
        "max_per_account",
        "max_providers",
        "outcomes_ready",
        "parked",
        "peak_processing",
        "pending",
        "processing",
        "providers_draining",
        "providers_left_out",
        "providers_loaded",
        "queued",
        "recipients",
        "recipients_peak",
        "sent_memory",
        "subscriptions",
        "waiting",
        "waiting_customers",
    }
)
_ROLES = ("router", "ai_pool", "supervisor")
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    kind: str  # "counter" or "gauge"
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)


class _Exposition:
    """Families in first-seen order; a sample seen twice is summed (names may collide)."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def add(self, name: str, kind: str, help_text: str, value: Any, /, **labels: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        family = self.families.setdefault(name, _Family(kind, help_text))
        key = tuple(sorted(labels.items()))
        family.samples[key] = family.samples.get(key, 0) + value

    def text(self) -> str:
        lines: list[str] = []
        for name, family in self.families.items():
            lines.append(f"# HELP {name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {name} {family.kind}")
            for labels, value in family.samples.items():
                body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                lines.append(
                    f"{name}{{{body}}} {_number(value)}" if body else f"{name} {_number(value)}"
                )
        return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _metric_name(key: str) -> str:
    return "wae_" + _BAD_NAME_CHARS.sub("_", key)


_GATEWAY_HELP = {
    "webhooks": "POST /webhook requests by HTTP status answered.",
    "handshakes": "GET /webhook subscribe handshakes by result.",
    "signature_failures": "Webhooks refused 401, by why the signature failed.",
    "messages": "Webhook items by kind (text, status, non_text, invalid, ...).",
    "non_text_messages": "Non-text messages acknowledged, by type.",
    "statuses": "Status updates acknowledged, by status.",
    "submissions": "Messages submitted to the engine, by result and reason.",
    "outcomes": "Outcomes collected from the engine, by status and reason.",
    "engine_errors": "Engine calls that raised, by call.",
}
"""What each gateway counter counts (its HELP line)."""


class GatewayCounters:
    """The gateway's own counters; touched only on the event loop (no lock needed)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, Labels]] = Counter()

    def inc(self, name: str, n: int = 1, /, **labels: str) -> None:
        """Add ``n`` to the counter ``name`` (a key of ``_GATEWAY_HELP``) with ``labels``."""
        if name not in _GATEWAY_HELP:
            raise KeyError(f"unknown gateway counter {name!r}")
        self._counts[(name, tuple(sorted(labels.items())))] += n

    def get(self, name: str, /, **labels: str) -> int:
        """The value of one sample (0 if never counted)."""
        return self._counts[(name, tuple(sorted(labels.items())))]

    def total(self, name: str, /, **labels: str) -> int:
        """The sum over every sample of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, lab), v in self._counts.items() if n == name and want <= set(lab))

    def add_to(self, out: _Exposition) -> None:
        for (name, labels), value in sorted(self._counts.items()):
            help_text = _GATEWAY_HELP[name]
            out.add(f"wae_gateway_{name}_total", "counter", help_text, value, **dict(labels))


def _add_counter_key(out: _Exposition, key: str, value: Any) -> None:
    """One key of ``stats()["counters"]``: outcomes/rejections get labels, others a name."""
    role = ""
    rest = key
    for candidate in _ROLES:
        if key.startswith(candidate + "."):
            role, rest = candidate, key[len(candidate) + 1 :]
    if rest.startswith("outcome."):
        parts = rest.split(".", 2)
        labels = {"status": parts[1], "reason": parts[2] if len(parts) > 2 else ""}
        if role:
            out.add(
                "wae_actor_outcomes_total",
                "counter",
                "Outcomes by actor.",
                value,
                role=role,
                **labels,
            )
        else:
            out.add(
                "wae_outcomes_total", "counter", "Outcomes passed to the gateway.", value, **labels
            )
        return
    if rest.startswith("reject."):
        reason = rest[len("reject.") :]
        if role:
            out.add(
                "wae_actor_rejections_total",
                "counter",
                "Rejections by actor.",
                value,
                role=role,
                reason=reason,
            )
        else:
            out.add("wae_rejections_total", "counter", "Submissions refused.", value, reason=reason)
        return
    leaf = key.rsplit(".", 1)[-1]
    if leaf in _GAUGE_LEAVES:
        out.add(_metric_name(key), "gauge", f"Engine level {key}.", value)
    else:
        out.add(_metric_name(key) + "_total", "counter", f"Engine counter {key}.", value)


def _add_actor(out: _Exposition, actor: Mapping[str, Any]) -> None:
    role, name = str(actor.get("role", "")), str(actor.get("name", ""))
    for stat, help_text in (
        ("depth", "Items the engine holds at this actor."),
        ("capacity", "The actor's declared capacity (its bound on depth)."),
        ("restarts", "Restarts of this actor by its supervisor."),
        ("generation", "The generation of the actor's current incarnation."),
    ):
        out.add(f"wae_actor_{stat}", "gauge", help_text, actor.get(stat), role=role, name=name)
    out.add(
        "wae_actor_state",
        "gauge",
        "1 for the actor's current state (up, restarting, failed, ...).",
        1,
        role=role,
        name=name,
        state=str(actor.get("state", "")),
    )
    if role != "account":
        return  # the other roles' counters are in stats()["counters"] already
    counters = actor.get("counters") or {}
    for key, value in sorted(counters.items()):
        base = "wae_account_" + _BAD_NAME_CHARS.sub("_", key)
        if key.rsplit(".", 1)[-1] in _GAUGE_LEAVES:
            out.add(base, "gauge", f"Account level {key}.", value, account=name)
        else:
            out.add(base + "_total", "counter", f"Account counter {key}.", value, account=name)


def render(stats: Mapping[str, Any] | None, gateway: GatewayCounters) -> str:
    """The Prometheus text for ``stats`` (None when the engine is down) and ``gateway``."""
    out = _Exposition()
    out.add(
        "wae_engine_up",
        "gauge",
        "1 when the embedded engine answers stats.",
        int(stats is not None),
    )
    if stats is not None:
        out.add(
            "wae_in_flight",
            "gauge",
            "Accepted messages without an outcome yet.",
            stats.get("in_flight"),
        )
        oldest = stats.get("oldest_in_flight_s")
        out.add(
            "wae_oldest_in_flight_seconds",
            "gauge",
            "Age of the oldest message in flight.",
            oldest or 0.0,
        )
        out.add(
            "wae_router_generation",
            "gauge",
            "Generation of the router.",
            stats.get("router_generation"),
        )
        for key, value in sorted((stats.get("counters") or {}).items()):
            _add_counter_key(out, key, value)
        for actor in stats.get("actors") or ():
            _add_actor(out, actor)
    gateway.add_to(out)
    return out.text()
