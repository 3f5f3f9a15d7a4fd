"""``/metrics``: the engine's stats and the gateway's own metrics, through ``prometheus_client``.

Each :class:`GatewayMetrics` has its own ``CollectorRegistry`` (not the library's global
one), so several gateways in one process never share or collide. It holds three parts:

- the engine's stats, turned into families at scrape time by :func:`engine_families`
  (pure: it takes a ``StatsReply``). Engine counters are named after their keys
  (``router.gate.queued`` -> ``wae_router_gate_queued``); outcomes and rejections get
  labels instead, one series per reason (``wae_outcomes_total{status,reason}``,
  ``wae_rejections_total{reason}``). The few keys that are levels rather than counts
  (sizes, capacities, peaks) are gauges; every other key is a counter with ``_total``.
- the gateway's own counters (:class:`GatewayCounters`, ``wae_gateway_<name>_total``),
  and ``wae_gateway_connections``, a gauge of the client connections open
  (:meth:`GatewayMetrics.track_connections`).
- ``wae_gateway_outcome_latency_seconds{status}``: a histogram of the time from
  submitting an accepted message to collecting its outcome (:class:`SubmitTimes` keeps
  the submit times).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from protocols import ActorStats, StatsReply

__all__ = [
    "LATENCY_BUCKETS",
    "EngineCollector",
    "GatewayCounters",
    "GatewayMetrics",
    "SubmitTimes",
    "engine_families",
]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Submit -> outcome, in seconds: an echo reply takes milliseconds, an AI call seconds, and
``processing_timeout_s`` (120 s by default) ends the slowest with a timeout outcome."""

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
_MAX_CACHED_SERIES = 4096
"""Labelled series of the gateway's counters kept for reuse; their label values come from
bounded sets (status codes, kinds, reasons), so this is a backstop, never reached."""
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]


def _metric_name(key: str) -> str:
    return "wae_" + _BAD_NAME_CHARS.sub("_", key)


# --- the engine's stats ------------------------------------------------------------------


@dataclass
class _Family:
    kind: str  # "counter" or "gauge"
    help: str
    labelnames: tuple[str, ...]
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)


class _Families:
    """Families in first-seen order; a sample seen twice is summed (names may collide)."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def add(self, name: str, kind: str, help_text: str, value: float, /, **labels: str) -> None:
        names = tuple(sorted(labels))
        family = self.families.setdefault(name, _Family(kind, help_text, names))
        if family.labelnames != names:
            return  # two keys collided into one name with other labels: keep the first
        key = tuple(labels[n] for n in names)
        family.samples[key] = family.samples.get(key, 0) + value

    def metrics(self) -> Iterator[Metric]:
        for name, f in self.families.items():
            metric: CounterMetricFamily | GaugeMetricFamily
            if f.kind == "counter":  # the library adds the _total suffix back
                metric = CounterMetricFamily(name, f.help, labels=f.labelnames)
            else:
                metric = GaugeMetricFamily(name, f.help, labels=f.labelnames)
            for values, value in f.samples.items():
                metric.add_metric(list(values), value)
            yield metric


def _add_counter_key(out: _Families, key: str, value: int) -> None:
    """One key of ``stats().counters``: outcomes/rejections get labels, others a name."""
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


def _add_actor(out: _Families, actor: ActorStats) -> None:
    role, name = actor.role, actor.name
    for stat, value, help_text in (
        ("depth", actor.depth, "Items the engine holds at this actor."),
        ("capacity", actor.capacity, "The actor's declared capacity (its bound on depth)."),
        ("restarts", actor.restarts, "Restarts of this actor by its supervisor."),
        ("generation", actor.generation, "The generation of the actor's current incarnation."),
    ):
        out.add(f"wae_actor_{stat}", "gauge", help_text, value, role=role, name=name)
    out.add(
        "wae_actor_state",
        "gauge",
        "1 for the actor's current state (up, restarting, failed, ...).",
        1,
        role=role,
        name=name,
        state=actor.state,
    )
    if role != "account":
        return  # the other roles' counters are in stats().counters already
    for key, value in sorted(actor.counters.items()):
        base = "wae_account_" + _BAD_NAME_CHARS.sub("_", key)
        if key.rsplit(".", 1)[-1] in _GAUGE_LEAVES:
            out.add(base, "gauge", f"Account level {key}.", value, account=name)
        else:
            out.add(base + "_total", "counter", f"Account counter {key}.", value, account=name)


def engine_families(stats: StatsReply | None) -> list[Metric]:
    """The metric families of ``stats`` (None when the engine is down: only ``wae_engine_up``)."""
    out = _Families()
    out.add(
        "wae_engine_up",
        "gauge",
        "1 when the embedded engine answers stats.",
        int(stats is not None),
    )
    if stats is not None:
        out.add(
            "wae_in_flight", "gauge", "Accepted messages without an outcome yet.", stats.in_flight
        )
        out.add(
            "wae_oldest_in_flight_seconds",
            "gauge",
            "Age of the oldest message in flight.",
            stats.oldest_in_flight_s or 0.0,
        )
        out.add(
            "wae_router_generation", "gauge", "Generation of the router.", stats.router_generation
        )
        for key, value in sorted(stats.counters.items()):
            _add_counter_key(out, key, value)
        for actor in stats.actors:
            _add_actor(out, actor)
    return list(out.metrics())


class EngineCollector:
    """A custom collector: the families of the stats snapshot the scrape just fetched.

    Stats come from a blocking engine call, which a collector must not make: the scrape
    handler fetches them on the engine thread and sets :attr:`stats` before generating.
    """

    def __init__(self) -> None:
        self.stats: StatsReply | None = None

    def collect(self) -> Iterable[Metric]:
        return engine_families(self.stats)


# --- the gateway's own metrics -----------------------------------------------------------

_GATEWAY: dict[str, tuple[str, tuple[str, ...]]] = {
    "webhooks": ("POST /webhook requests by HTTP status answered.", ("code",)),
    "handshakes": ("GET /webhook subscribe handshakes by result.", ("result",)),
    "signature_failures": ("Webhooks refused 401, by why the signature failed.", ("why",)),
    "messages": (
        "Webhook items by kind: each message by its kind (text, button_reply, image, audio, "
        "...; README: Message kinds), and status, invalid, unknown_account, ignored.",
        ("kind",),
    ),
    "statuses": ("Status updates acknowledged, by status.", ("status",)),
    "submissions": (
        "Messages submitted to the engine, by result and reason.",
        ("reason", "result"),
    ),
    "outcomes": ("Outcomes collected from the engine, by status and reason.", ("reason", "status")),
    "delivery_failures": (
        "Replies the Graph API accepted that WhatsApp then reported failed (a failed status "
        "webhook), by error code.",
        ("code",),
    ),
    "deliveries_unmatched": (
        "Status updates for a wamid this gateway did not see sent (reported with an empty "
        "message_id), by status.",
        ("status",),
    ),
    "error_notifications": (
        "Error notifications about a number (a webhook's value.errors), by error code.",
        ("code",),
    ),
    "read_receipts": (
        "Mark-as-read requests (with the typing indicator), by result: sent, failed, "
        "throttled (no token left in the number's read budget), busy (too many at once).",
        ("result",),
    ),
    "listener_errors": ("Delivery listeners that raised, by listener kind.", ("kind",)),
    "engine_errors": ("Engine calls that raised, by call.", ("call",)),
    "connections_closed": (
        "Client connections the gateway closed itself, by reason: header_timeout, "
        "body_timeout, idle_timeout; shed (at max_connections, the one that waited longest "
        "on its client, to admit a new one); refused (a new one at max_connections, with a "
        "503, every open one being busy).",
        ("reason",),
    ),
}
"""Each gateway counter: what it counts (its HELP line) and its label names."""


class GatewayCounters:
    """The gateway's own counters, ``wae_gateway_<name>_total``; touched only on the event loop.

    Args:
        registry: where the counters are registered (default: a registry of their own).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self._counters = {
            name: Counter(f"wae_gateway_{name}", help_text, labels, registry=registry)
            for name, (help_text, labels) in _GATEWAY.items()
        }
        # Each webhook counts a few series; the library's labels() checks the names and
        # takes a lock on every call, so the series once looked up are kept here.
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], Counter] = {}

    def inc(self, name: str, n: int = 1, /, **labels: str) -> None:
        """Add ``n`` to the counter ``name`` (a key of ``_GATEWAY``) with ``labels``.

        Raises:
            KeyError: ``name`` is no gateway counter.
            ValueError: ``labels`` are not that counter's label names.
        """
        key = (name, tuple(labels.items()))  # a call site always names them in one order
        series = self._series.get(key)
        if series is None:
            if name not in self._counters:
                raise KeyError(f"unknown gateway counter {name!r}")
            series = self._counters[name].labels(**labels)
            if len(self._series) < _MAX_CACHED_SERIES:  # past it: looked up each time
                self._series[key] = series
        series.inc(n)

    def _samples(self, name: str) -> Iterator[tuple[dict[str, str], int]]:
        # Read through collect(): labels() would create the series it is asked about.
        total = f"wae_gateway_{name}_total"
        for metric in self._counters[name].collect():
            for sample in metric.samples:
                if sample.name == total:
                    yield sample.labels, int(sample.value)

    def get(self, name: str, /, **labels: str) -> int:
        """The value of one sample (0 if never counted)."""
        return sum(v for lab, v in self._samples(name) if lab == labels)

    def total(self, name: str, /, **labels: str) -> int:
        """The sum over every sample of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for lab, v in self._samples(name) if want <= set(lab.items()))


class SubmitTimes:
    """When each accepted message was submitted, until its outcome is collected.

    Pure (the caller passes ``now``). At most ``max_pending`` ids are kept: past that the
    oldest is forgotten (its outcome goes unobserved), so an engine that lost outcomes
    cannot grow the gateway.

    Args:
        max_pending: the most ids kept; the engine's own bound on messages in flight fits.
    """

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max(1, max_pending)
        self.forgotten = 0
        self._at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._at)

    def start(self, message_ids: Iterable[str], now: float) -> frozenset[str]:
        """Note ``now`` for each id not already pending; returns the ids noted.

        Called before the submission, so no outcome can arrive before its start. An id
        already pending (a redelivery, refused as a duplicate) keeps its first time.
        """
        noted = set()
        for message_id in message_ids:
            if message_id in self._at:
                continue
            while len(self._at) >= self.max_pending:
                del self._at[next(iter(self._at))]  # dicts keep insertion order: the oldest
                self.forgotten += 1
            self._at[message_id] = now
            noted.add(message_id)
        return frozenset(noted)

    def cancel(self, message_ids: Iterable[str]) -> None:
        """Forget ids whose submission was refused or failed: no outcome will come."""
        for message_id in message_ids:
            self._at.pop(message_id, None)

    def finish(self, message_id: str, now: float) -> float | None:
        """Seconds from the submission of ``message_id`` to ``now`` (None if not pending)."""
        at = self._at.pop(message_id, None)
        return None if at is None else max(0.0, now - at)


class GatewayMetrics:
    """The gateway's registry: the engine collector, the counters, the latency histogram.

    Attributes:
        registry: this gateway's ``CollectorRegistry``.
        counters: the gateway's own counters.
        latency: ``wae_gateway_outcome_latency_seconds{status}``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._engine = EngineCollector()
        self.registry.register(self._engine)  # first: engine families lead the text
        self.counters = GatewayCounters(self.registry)
        self.latency = Histogram(
            "wae_gateway_outcome_latency_seconds",
            "Seconds from submitting an accepted message to collecting its outcome, by status.",
            ("status",),
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self._latency_series: dict[str, Histogram] = {}

    def track_connections(self, open_now: Callable[[], float]) -> None:
        """Add ``wae_gateway_connections``, a gauge read from ``open_now`` at each scrape."""
        gauge = Gauge(
            "wae_gateway_connections",
            "Client connections open now (at most max_connections).",
            registry=self.registry,
        )
        gauge.set_function(open_now)

    def observe(self, status: str, seconds: float) -> None:
        """One outcome of ``status``, ``seconds`` after its submission."""
        series = self._latency_series.get(status)
        if series is None:  # the statuses are five: each series is looked up once
            series = self._latency_series[status] = self.latency.labels(status=status)
        series.observe(seconds)

    def exposition(self, stats: StatsReply | None, accept: str = "") -> tuple[bytes, str]:
        """The body and content type of ``/metrics`` for ``stats`` (None: the engine is down).

        Args:
            stats: the engine's stats, fetched for this scrape.
            accept: the scraper's ``Accept`` header: the library picks the format it
                asks for (OpenMetrics, say), else the Prometheus text format 0.0.4.
        """
        encoder, content_type = choose_encoder(accept)
        self._engine.stats = stats
        try:
            body = encoder(self.registry)
        finally:
            self._engine.stats = None  # a snapshot serves one scrape only
        return body, content_type
