"""One load run from options to report: baseline, engine, traffic, shutdown, books."""

from __future__ import annotations

import os
import time
from typing import Any

from actors import Engine, EngineConfig, EngineError
from protocols import ShutdownReport

from . import procs
from .baseline import measure
from .driver import Driver, Phases
from .edges import Edges, make_edges
from .options import RunOptions, engine_config
from .progress import Progress
from .report import build
from .sampler import Sampler
from .tracker import Tracker
from .traffic import Traffic, account_id

__all__ = ["run"]

_REDELIVERY_MEMORY = 10_000


def _baseline_messages(opts: RunOptions) -> int:
    if opts.baseline_messages:
        return opts.baseline_messages
    return 5_000 if opts.base.startswith("multiproc") else 100_000


def run(opts: RunOptions) -> dict[str, Any]:
    """Run the load described by ``opts`` and return the report (see ``report.build``).

    Raises:
        ConfigError: a bad ``--set``/``--config`` value.
        EngineError: the engine could not start or set up its accounts.
    """
    cfg = engine_config(opts)
    baseline = measure(opts.base, _baseline_messages(opts)) if opts.baseline else None
    edges = make_edges(opts)
    edges.prepare()  # secrets in the environment before any actor process is forked
    try:
        return _run(opts, cfg, edges, baseline)
    finally:
        edges.close()  # after the engine's shutdown, so that calls in flight could finish


def _run(
    opts: RunOptions, cfg: EngineConfig, edges: Edges, baseline: dict[str, Any] | None
) -> dict[str, Any]:
    engine = Engine(cfg, base=opts.base, admin_port=opts.admin_port, seed=opts.seed)
    engine.start()
    tracker = Tracker()
    sampler = Sampler(engine)
    phases = Phases()
    shutdown: ShutdownReport | None = None
    pids: frozenset[int] = frozenset()
    try:
        edges.start()  # the fake servers' threads start after the actor processes
        for spec in edges.providers():
            result = engine.add_provider(spec)
            if not result.ok:
                raise EngineError(f"provider {spec.name!r}: {result.detail or result.error}")
        for i in range(opts.accounts):
            transport, options = edges.account(i)
            engine.add_account(account_id(i), transport=transport, options=options)
        traffic = Traffic(
            accounts=opts.accounts,
            customers=opts.customers,
            popularity=opts.popularity,
            zipf_s=opts.zipf_s,
            duplicates=opts.duplicates,
            seed=opts.seed,
            memory=min(_REDELIVERY_MEMORY, cfg.dedupe_capacity),
        )
        sampler.sample(
            0.0,
            {
                "offered": 0,
                "accepted": 0,
                "completed": 0,
                "window_outcomes": 0,
                "p50_ms": 0.0,
                "p90_ms": 0.0,
                "p99_ms": 0.0,
            },
        )
        show = opts.progress if opts.progress is not None else (not opts.quiet and os.isatty(2))
        total = float(opts.messages) if opts.messages is not None else float(opts.duration or 0)
        progress = Progress(total, "msg" if opts.messages is not None else "s", enabled=show)
        collect_timeout = opts.collect_timeout or cfg.processing_timeout_s + 15.0
        try:
            driver = Driver(
                engine,
                traffic,
                tracker,
                sampler,
                opts,
                collect_timeout_s=collect_timeout,
                progress=progress,
            )
            phases = driver.run()
        finally:
            progress.close()
    finally:
        pids = engine.pids
        shutdown = engine.shutdown()
        # Outcomes the shutdown produced (abandoned at the drain deadline) are owed too.
        while late := engine.outcomes(timeout=0):  # at most max_items per call
            tracker.resolved(late, time.monotonic())
    leftovers = sorted(procs.wait_gone(pids, timeout_s=5.0))
    return build(
        opts=opts,
        cfg=cfg,
        tracker=tracker,
        sampler=sampler,
        phases=phases,
        shutdown=shutdown,
        leftover_pids=leftovers,
        baseline=baseline,
        dead_letters=_dead_letters(cfg.dead_letter_path),
        edges=edges.report(),
    )


def _dead_letters(path: str) -> dict[str, Any] | None:
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return {"path": path, "bytes": size}
