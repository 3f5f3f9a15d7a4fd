"""One load run, start to end: baseline, engine, traffic, shutdown, books (``run_once``).

The engine is embedded in this process, or with ``--crash-every`` hosted in a child
process (:mod:`apps.loadrun.hosted`) that a :class:`~apps.loadrun.crashes.Crasher` kills
and the driver replaces. :func:`apps.loadrun.run` chooses the mode (``--durability-compare``
runs three of these, see ``compare.py``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from actors import ConfigError, Engine, EngineConfig, EngineError
from protocols import ShutdownReport

from . import procs
from .baseline import measure
from .crashes import CrashBook, Crasher
from .driver import Driver, Phases
from .edges import Edges, make_edges
from .engine_host import HostSetup
from .hosted import EngineLike, HostedEngine
from .member_faults import MemberFaults, members_section
from .member_freezes import MemberFreezer
from .member_kills import MemberKiller
from .members import MemberSet, accounts_by_host, member_capacity
from .options import RunOptions, engine_config
from .progress import Progress
from .report import build
from .runlog import current_file
from .sampler import Sampler
from .store import RunStore
from .tracker import Tracker
from .traffic import Traffic, account_id

__all__ = ["run_once", "run_single"]

_REDELIVERY_MEMORY = 10_000


def _baseline_messages(opts: RunOptions) -> int:
    if opts.baseline_messages:
        return opts.baseline_messages
    return 5_000 if opts.base.startswith("multiproc") else 100_000


def run_single(opts: RunOptions) -> dict[str, Any]:
    """One run of ``opts`` on the store it names or a fresh one; see :func:`run_once`.

    Raises:
        ConfigError: a bad ``--set``/``--config`` value.
        EngineError: the engine could not start or set up its accounts.
    """
    cfg = engine_config(opts)
    if opts.crash_every is not None and cfg.durability == "off":
        raise ConfigError(
            "--crash-every needs a store that outlives the engine: durability=off keeps "
            "none (use fsync or os)"
        )
    store, cfg = RunStore.place(opts, cfg)
    return run_once(opts, cfg, store)


def run_once(opts: RunOptions, cfg: EngineConfig, store: RunStore) -> dict[str, Any]:
    """One run of ``opts`` on ``cfg`` (whose intake store is ``store``); see :func:`run`."""
    baseline = measure(opts.base, _baseline_messages(opts)) if opts.baseline else None
    edges = make_edges(opts)
    edges.prepare()  # secrets in the environment before any engine process starts
    ok = False
    try:
        report = _run(opts, cfg, edges, baseline)
        ok = bool(report["exactly_once"]["ok"])
    finally:
        edges.close()  # after the engine's shutdown, so that calls in flight could finish
        kept = store.finish(ok=ok)
        if not ok and kept["path"] and store.ours:
            print(f"loadrun: the intake store of this run is kept: {store.path}", file=sys.stderr)
    report["intake_store"] = kept
    return report


def _start_embedded(
    opts: RunOptions, cfg: EngineConfig, edges: Edges, members: MemberSet | None = None
) -> Engine:
    port = members.admin_port if members is not None else opts.admin_port
    engine = Engine(cfg, base=opts.base, admin_port=port, seed=opts.seed)
    engine.start()
    try:
        if members is not None:  # joined before the accounts: they are placed on members
            members.start_all(engine)
        edges.start()  # the fake servers' threads start after the actor processes
        for spec in edges.providers():
            result = engine.add_provider(spec)
            if not result.ok:
                raise EngineError(f"provider {spec.name!r}: {result.detail or result.error}")
        for i in range(opts.accounts):
            transport, options = edges.account(i)
            engine.add_account(account_id(i), transport=transport, options=options)
    except BaseException:
        engine.shutdown()
        raise
    return engine


def _start_hosted(opts: RunOptions, cfg: EngineConfig, edges: Edges) -> HostedEngine:
    edges.start()  # the host is a new program (fork + exec): no thread of ours goes with it
    log = current_file()
    setup = HostSetup(
        config=cfg,
        base=opts.base,
        admin_port=opts.admin_port,
        seed=opts.seed,
        providers=tuple(edges.providers()),
        accounts=tuple((account_id(i), *edges.account(i)) for i in range(opts.accounts)),
        log_path=log[0] if log else None,
        log_level=log[1] if log else opts.log_level,
    )
    return HostedEngine(setup).start()


def _run(
    opts: RunOptions, cfg: EngineConfig, edges: Edges, baseline: dict[str, Any] | None
) -> dict[str, Any]:
    engine: EngineLike
    host: HostedEngine | None = None
    members: MemberSet | None = None
    killer: MemberFaults | None = None
    spread: dict[str, int] = {}
    if opts.members:
        members = MemberSet(
            opts.members,
            opts.member_max_accounts or member_capacity(opts.accounts, opts.members),
            bind=cfg.bind_address,
            admin_port=opts.admin_port,
        )
        cfg = members.secure(cfg)
    if opts.crash_every is not None:
        host = _start_hosted(opts, cfg, edges)
        engine = host
        sampler = Sampler(host, gateway_pid=lambda: host.host_pid if host else os.getpid())
    else:
        try:
            engine = _start_embedded(opts, cfg, edges, members)
            spread = accounts_by_host(engine.stats()) if members is not None else {}
        except BaseException:
            if members is not None:
                members.close()
            raise
        sampler = Sampler(engine)
    # Across restarts and members, a second outcome for an id is counted as a duplicate.
    tracker = Tracker(across_restarts=host is not None or members is not None)
    if members is not None and opts.member_kill:
        killer = MemberKiller(engine, members, opts.member_kill, until_s=opts.duration)
    elif members is not None and opts.member_freeze:
        killer = MemberFreezer(
            engine,
            members,
            opts.freeze_every_s,
            freeze_s=opts.member_freeze,
            tracker=tracker,
            until_s=opts.duration,
        )
    crashes = CrashBook(opts.crash_every, cfg.intake_path) if opts.crash_every else None
    phases = Phases()
    shutdown: ShutdownReport | None = None
    pids: frozenset[int] = frozenset()
    leftovers: set[int] = set()
    try:
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
                crashes=crashes,
                crasher=Crasher(host, opts.crash_every, until_s=opts.duration)
                if host and opts.crash_every
                else None,
            )
            if killer is not None:
                killer.watch([account_id(i) for i in range(opts.accounts)])
                killer.start(time.monotonic())
            try:
                phases = driver.run()
            finally:
                if killer is not None:
                    killer.stop()
        finally:
            progress.close()
    finally:
        pids = engine.pids
        with contextlib.suppress(EngineError):  # a hosted engine that died at the very end
            shutdown = engine.shutdown()
            # Outcomes the shutdown produced (abandoned at the drain deadline) are owed too.
            while late := engine.outcomes(timeout=0):  # at most max_items per call
                tracker.resolved(late, time.monotonic())
                if crashes is not None:
                    crashes.outcomes(late)
        if host is not None:
            leftovers |= host.close()
        leftovers |= procs.wait_gone(pids, timeout_s=5.0)
        closed = members.close() if members is not None else {}  # after the engine's end
    report = build(
        opts=opts,
        cfg=cfg,
        tracker=tracker,
        sampler=sampler,
        phases=phases,
        shutdown=shutdown,
        leftover_pids=sorted(leftovers),
        baseline=baseline,
        dead_letters=_dead_letters(cfg.dead_letter_path),
        edges=edges.report(),
    )
    if crashes is not None:
        report["crashes"] = crashes.report(tracker)
        report["crashes"]["last_engine_pids"] = sorted(pids)  # shut down in order at the end
    if members is not None:
        report["members"] = members_section(
            members, killer, spread, sampler.last_stats, tracker, closed
        )
        report["members"]["engine_pids"] = sorted(pids)
    return report


def _dead_letters(path: str) -> dict[str, Any] | None:
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return {"path": path, "bytes": size}
