"""The engine's edges during a run: embedded (loopback + echo) or the fake HTTP servers.

``--edges embedded`` (the default) gives every account the ``loopback`` transport and the
pool ``echo`` providers: no sockets beyond Thespian's. ``--edges fake`` runs the real HTTP
edges against servers on loopback: every account uses the ``cloud_api`` transport against a
:class:`~apps.loadrun.fakes.FakeGraphAPI`, and the pool ``openai`` providers against a
:class:`~apps.loadrun.fakes.FakeOpenAI`, both in this process. ``--transport-latency`` and
``--provider-latency`` become the fakes' answer delays.

Order matters with the fakes (see ``run.run``): :meth:`Edges.prepare` puts the secrets in the
environment *before* the engine starts (actor processes inherit the environment when they
are forked), :meth:`Edges.start` starts the servers' threads *after* it (no thread is
forked with the actor processes), and :meth:`Edges.close` stops them after the engine's
shutdown (calls still in flight finish) and restores the environment.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from apps.environment import EnvOverlay
from protocols import ActorStats, ProviderSpec, Scalar, StatsReply

from .options import RunOptions

if TYPE_CHECKING:  # imported at run time only for --edges fake: the fakes need aiohttp
    from .fakes import FakeGraphAPI, FakeOpenAI

__all__ = [
    "GRAPH_TOKEN_ENV",
    "OPENAI_KEY_ENV",
    "Edges",
    "account_stats",
    "make_edges",
    "phone_number_id",
    "pool_stats",
]

GRAPH_TOKEN_ENV = "LOADRUN_FAKE_GRAPH_TOKEN"
"""The variable the ``cloud_api`` accounts read their token from (not ``WAE_*``: those are
engine config keys)."""
OPENAI_KEY_ENV = "LOADRUN_FAKE_OPENAI_KEY"
"""The variable the ``openai`` providers read their API key from."""
FAKE_MODEL = "loadrun-fake-model"
_RECORDS = 1_000  # requests each fake keeps for the checks; counts and peaks are exact


def phone_number_id(index: int) -> str:
    """The Graph ``phone_number_id`` of the ``index``-th simulated account (15 digits)."""
    return f"{100_000_000_000_000 + index}"


class Edges:
    """Embedded edges (``loopback`` + ``echo``); :class:`FakeEdges` overrides each step."""

    kind = "embedded"

    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts

    def prepare(self) -> None:
        """Before the engine starts: nothing to do for the embedded edges."""

    def start(self) -> None:
        """After the engine started, before any account or provider is added."""

    def providers(self) -> list[ProviderSpec]:
        """The pool's providers, best first."""
        opts = self.opts
        options: dict[str, Scalar] = {
            "latency_s": opts.provider_latency,
            "failure_rate": opts.provider_failure_rate,
        }
        if opts.provider_jitter:
            options["jitter_s"] = opts.provider_jitter
        return [
            ProviderSpec(name=f"echo-{i}", kind="echo", priority=100 - i, options=options)
            for i in range(opts.providers)
        ]

    def account(self, index: int) -> tuple[str, dict[str, Scalar]]:
        """The transport kind and options of the ``index``-th account."""
        return "loopback", {
            "latency_s": self.opts.transport_latency,
            "failure_rate": self.opts.transport_failure_rate,
        }

    def close(self) -> None:
        """After the engine's shutdown."""

    def report(self) -> dict[str, Any]:
        """What the edges saw (the fake servers' counts; nothing for embedded edges)."""
        return {"kind": self.kind}


class FakeEdges(Edges):
    """The ``cloud_api`` transport and ``openai`` providers against the fake servers."""

    kind = "fake"

    def __init__(self, opts: RunOptions) -> None:
        super().__init__(opts)
        # Fresh secrets each run: the fakes check them, so a leak between runs shows.
        self._token = secrets.token_urlsafe(24)
        self._key = "sk-loadrun-" + secrets.token_hex(16)
        self._env = EnvOverlay()
        self.graph: FakeGraphAPI | None = None
        self.llm: FakeOpenAI | None = None

    def prepare(self) -> None:
        self._env.set({GRAPH_TOKEN_ENV: self._token, OPENAI_KEY_ENV: self._key})

    def start(self) -> None:
        from .fakes import Behaviour, FakeGraphAPI, FakeOpenAI

        graph = FakeGraphAPI(token=self._token, max_requests=_RECORDS)
        graph.program(Behaviour(latency_s=self.opts.transport_latency))
        self.graph = graph.start()
        self.llm = FakeOpenAI(
            api_key=self._key, latency_s=self.opts.provider_latency, max_records=_RECORDS
        ).start()

    def providers(self) -> list[ProviderSpec]:
        assert self.llm is not None, "start() first"
        options: dict[str, Scalar] = {
            "base_url": self.llm.base_url,
            "model": FAKE_MODEL,
            "api_key_env": OPENAI_KEY_ENV,
        }
        return [
            ProviderSpec(name=f"llm-{i}", kind="openai", priority=100 - i, options=options)
            for i in range(self.opts.providers)
        ]

    def account(self, index: int) -> tuple[str, dict[str, Scalar]]:
        assert self.graph is not None, "start() first"
        return "cloud_api", {
            "api_base": self.graph.base_url,
            "token_env": GRAPH_TOKEN_ENV,
            "phone_number_id": phone_number_id(index),
            "throughput_per_s": self.opts.graph_throughput,
        }

    def close(self) -> None:
        try:
            if self.llm is not None:
                self.llm.stop()
            if self.graph is not None:
                self.graph.close()
        finally:
            self._env.restore()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.llm is not None:
            calls = self.llm.requests
            out["llm"] = {
                "url": self.llm.base_url,
                "latency_s": self.llm.latency_s,
                "requests": self.llm.request_count,
                "peak_in_flight": self.llm.peak,
                "bearer_ok": all(c.bearer_ok for c in calls),
                "model_ok": all(c.model == FAKE_MODEL for c in calls),
            }
        if self.graph is not None:
            sent = self.graph.requests
            out["graph"] = {
                "url": self.graph.base_url,
                "latency_s": self.opts.transport_latency,
                "requests": self.graph.request_count,
                "peak_in_flight": self.graph.peak_in_flight,
                "bearer_ok": all(r.bearer_ok for r in sent),
                # The Cloud API's ``to`` is the customer's number in digits.
                "to_digits": all(r.to is not None and r.to.isdigit() for r in sent),
                "phone_number_ids": len({r.path.split("/")[2] for r in sent}),
            }
        return out


def make_edges(opts: RunOptions) -> Edges:
    """The edges ``--edges`` names."""
    return FakeEdges(opts) if opts.edges == "fake" else Edges(opts)


def pool_stats(stats: StatsReply | None) -> dict[str, Any]:
    """The AI pool's entry of ``engine.stats()``: depth, capacity, its providers' counters."""
    pool = stats.actor("ai_pool") if stats else None
    if pool is None:
        return {}
    return {
        "depth": pool.depth,
        "capacity": pool.capacity,
        "provider_stats": {name: dict(c) for name, c in pool.provider_stats.items()},
    }


def account_stats(stats: StatsReply | None) -> dict[str, Any]:
    """The accounts' transport counters: the busiest account's in full, and the maxima.

    "Busiest" is the account with the highest ``transport.peak_http`` (HTTP calls held at
    once); ``transport.*`` counters exist only for transports that keep them (``cloud_api``).
    """
    accounts = stats.of_role("account") if stats else ()
    if not accounts:
        return {}

    def transport(a: ActorStats) -> dict[str, int]:
        return {k[len("transport.") :]: v for k, v in a.counters.items() if k[:10] == "transport."}

    rows = [(a.name, transport(a)) for a in accounts]
    name, one = max(rows, key=lambda r: (r[1].get("peak_http", 0), r[0]))
    return {
        "accounts": len(rows),
        "one": {"name": name, "transport": one},
        "peak_http_max": max(r[1].get("peak_http", 0) for r in rows),
        "peak_http_sum": sum(r[1].get("peak_http", 0) for r in rows),
        "http_calls": sum(r[1].get("http_calls", 0) for r in rows),
        "sent": sum(r[1].get("sent", 0) for r in rows),
    }
