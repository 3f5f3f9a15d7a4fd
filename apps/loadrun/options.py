"""The load runner's options: the command line, soak defaults, and engine config overrides."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actors import BASES, EngineConfig
from actors.config import loading, settings
from actors.engine.aio_coalesce import MAX_FLIGHT_MESSAGES
from actors.errors import ConfigError

from .argtypes import batch_size, count, count_list, fraction, non_negative, positive, setting
from .checks import check

__all__ = [
    "COMPARE_DURATION_S",
    "DURABILITY_ORDER",
    "EDGES",
    "SOAK",
    "SWEEP_DURATION_S",
    "RunOptions",
    "build_parser",
    "engine_config",
    "parse_args",
]

EDGES = ("embedded", "fake")
"""``--edges``: what the accounts send through and the pool calls (see ``edges.py``)."""

DEFAULTS: dict[str, Any] = {
    "accounts": 20,
    "customers": 200_000,
    "popularity": "uniform",
    "duration": 60.0,
    "rate": 0.0,
}
"""The default run: a minute, as fast as the engine accepts (see README "Load runs")."""

SOAK: dict[str, Any] = {
    "accounts": 20,
    "customers": 200_000,
    "popularity": "zipf",
    "messages": 1_000_000,
    "rate": 2500.0,
}
"""``--soak`` defaults; any option given explicitly wins."""

COMPARE_DURATION_S = 20.0
"""``--durability-compare``: each of its three measurements runs this long unless
``--duration`` or ``--messages`` says otherwise."""
DURABILITY_ORDER = ("fsync", "os", "off")
"""The measurements of ``--durability-compare``, in the order they run."""
SWEEP_DURATION_S = 20.0
AUTO_BATCH_MAX = MAX_FLIGHT_MESSAGES
"""The most one auto-sized submission carries: as many as an AsyncEngine flight."""
"""``--accounts-sweep``: each step runs this long unless ``--duration`` or ``--messages``
says otherwise."""


MEMBER_FREEZE_EVERY_S = 20.0
"""``--member-freeze-every``'s default."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """Everything one load run needs; ``parse_args`` builds it from a command line."""

    base: str = "multiprocTCPBase"
    accounts: int = 20
    customers: int = 200_000
    messages: int | None = None
    duration: float | None = 60.0
    rate: float = 0.0
    popularity: str = "uniform"
    zipf_s: float = 1.1
    seed: int = 1
    edges: str = "embedded"
    graph_throughput: float = 1000.0
    providers: int = 1
    provider_latency: float = 0.0
    provider_jitter: float = 0.0
    provider_failure_rate: float = 0.0
    transport_latency: float = 0.0
    transport_failure_rate: float = 0.0
    duplicates: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    kill_every: float | None = None
    kill_router: bool = False
    crash_every: float | None = None
    members: int = 0  # convention members started for the run (see members.py)
    member_max_accounts: int | None = None  # None: members.member_capacity
    member_kill: float | None = None
    member_freeze: float | None = None  # seconds each freeze lasts
    member_freeze_every: float | None = None  # None: MEMBER_FREEZE_EVERY_S

    @property
    def freeze_every_s(self) -> float:
        """The period of ``--member-freeze``: given, or :data:`MEMBER_FREEZE_EVERY_S`."""
        return self.member_freeze_every or MEMBER_FREEZE_EVERY_S

    durability_compare: bool = False
    accounts_sweep: tuple[int, ...] = ()  # one run per account count (see sweep.py)
    baseline: bool = False
    baseline_messages: int | None = None
    soak: bool = False
    json_path: str | None = None
    plot_path: str | None = None
    batch: int = 0
    """Messages per submit; 0: auto (see ``--batch``)."""
    sample_every: float = 0.5
    collect_timeout: float | None = None
    admin_port: int | None = None
    quiet: bool = False
    progress: bool | None = None  # None: on when stderr is a terminal and not quiet
    log_level: str = "WARNING"
    argv: tuple[str, ...] = ()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``scripts/loadrun.py`` (and ``scripts/run``)."""
    p = argparse.ArgumentParser(
        prog="loadrun",
        description="Drive the engine with simulated WhatsApp traffic and report throughput, "
        "latency, outcomes, bounded structures and memory per actor role.",
        epilog="With no options: a one-minute run as fast as the engine accepts, 20 loopback "
        "accounts, 200,000 customers, instant echo provider, multiprocTCPBase. Exit status: 0 "
        "when every accepted message got exactly one outcome, 1 when not, 2 for bad options.",
    )
    traffic = p.add_argument_group("traffic")
    traffic.add_argument("--base", choices=BASES, default="multiprocTCPBase")
    traffic.add_argument("--accounts", type=count, help="simulated WhatsApp numbers (20)")
    traffic.add_argument("--customers", type=count, help="distinct customers (200,000)")
    amount = traffic.add_mutually_exclusive_group()
    amount.add_argument("--messages", type=count, help="messages to offer, then stop")
    amount.add_argument("--duration", type=positive, help="seconds to offer messages (60)")
    traffic.add_argument("--rate", type=non_negative, help="messages/s offered; 0 = unlimited (0)")
    traffic.add_argument(
        "--popularity", choices=("uniform", "zipf"), help="who writes how often (uniform)"
    )
    traffic.add_argument("--zipf-s", type=positive, default=1.1, help="Zipf exponent (1.1)")
    traffic.add_argument("--seed", type=int, default=1, help="seed of traffic and simulation (1)")
    traffic.add_argument(
        "--batch",
        type=batch_size,
        default=0,
        help="messages per submit, or auto (default): at an unlimited rate, as many as the "
        "engine has room for (max_concurrent_processing less those in flight, at most "
        f"{AUTO_BATCH_MAX:,}); at a --rate, what became due since the last submit, like a "
        "gateway that submits together the webhooks that arrived together",
    )
    world = p.add_argument_group("simulated world")
    world.add_argument(
        "--edges",
        choices=EDGES,
        default="embedded",
        help="embedded: loopback transport and echo providers (default); fake: the cloud_api "
        "transport and openai providers over HTTP against a fake Graph API and a fake "
        "OpenAI server started in this process (needs aiohttp)",
    )
    world.add_argument(
        "--graph-throughput",
        type=positive,
        default=1000.0,
        metavar="N",
        help="--edges fake: cloud_api throughput_per_s of each number (1000)",
    )
    world.add_argument("--providers", type=count, default=1, help="AI providers (1)")
    world.add_argument(
        "--provider-latency",
        type=non_negative,
        default=0.0,
        metavar="S",
        help="AI call time; --edges fake: the fake OpenAI server's answer delay (0)",
    )
    world.add_argument(
        "--provider-jitter",
        type=non_negative,
        default=0.0,
        metavar="S",
        help="extra random AI call time, up to S (needs echo option jitter_s)",
    )
    world.add_argument(
        "--provider-failure-rate", type=fraction, default=0.0, metavar="F", help="AI errors (0)"
    )
    world.add_argument(
        "--transport-latency",
        type=non_negative,
        default=0.0,
        metavar="S",
        help="send time; --edges fake: the fake Graph API's answer delay (0)",
    )
    world.add_argument(
        "--transport-failure-rate", type=fraction, default=0.0, metavar="F", help="send errors"
    )
    world.add_argument(
        "--duplicates",
        type=fraction,
        default=0.0,
        metavar="F",
        help="fraction of submissions that redeliver an accepted message (same id)",
    )
    engine = p.add_argument_group("engine")
    engine.add_argument(
        "--set",
        dest="overrides",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an EngineConfig key (repeatable), e.g. max_concurrent_processing=2000",
    )
    engine.add_argument("--config", dest="config_path", help="TOML file with an [engine] table")
    engine.add_argument("--admin-port", type=int, help="Thespian admin port (default: free port)")
    engine.add_argument(
        "--members",
        type=count,
        metavar="N",
        help="start N convention members (python -m apps.member) on 127.0.0.2, 127.0.0.3, "
        "... joined with a secret made for the run, before the accounts are added, so that "
        "accounts are placed on them (multiprocTCPBase)",
    )
    engine.add_argument(
        "--member-max-accounts",
        type=count,
        metavar="N",
        help="--members: each member's --max-accounts (default: accounts / (members + 1), "
        "rounded up)",
    )
    faults = p.add_argument_group("faults")
    faults.add_argument(
        "--kill-every", type=positive, metavar="S", help="SIGKILL a random account process"
    )
    faults.add_argument("--kill-router", action="store_true", help="at each kill, the router too")
    faults.add_argument(
        "--crash-every",
        type=positive,
        metavar="S",
        help="SIGKILL the whole engine (the process embedding it and every actor process; "
        "the engine runs in a child process for this) every S seconds and start it again "
        "on the same intake store; the books balance across the restarts",
    )
    faults.add_argument(
        "--member-kill",
        type=positive,
        metavar="S",
        help="--members: every S seconds SIGKILL a member's process groups (round-robin) and "
        "start a new one in its place; reports when the leader saw it gone and when its "
        "accounts were up again elsewhere",
    )
    faults.add_argument(
        "--member-freeze",
        type=positive,
        metavar="S",
        help="--members: SIGSTOP a member's process groups for S seconds, then SIGCONT them "
        "(round-robin, every --member-freeze-every); reports detection, re-placement, when "
        "it rejoined and its stale accounts ended, and the other accounts' outcomes/s "
        "before and during the freeze",
    )
    faults.add_argument(
        "--member-freeze-every",
        type=positive,
        metavar="P",
        help="--member-freeze: one freeze every P seconds (default 20; more than twice S)",
    )
    modes = p.add_argument_group("modes and output")
    modes.add_argument("--baseline", action="store_true", help="measure raw Thespian first")
    modes.add_argument("--baseline-messages", type=count, help="tells in the raw measurement")
    modes.add_argument(
        "--soak",
        action="store_true",
        help="long run: 1,000,000 messages at 2,500/s, 200,000 customers, 20 accounts, Zipf; "
        "reports memory growth of each actor process from middle to end",
    )
    modes.add_argument(
        "--durability-compare",
        action="store_true",
        help="three measurements of the same traffic back to back, with durability fsync, os "
        f"and off (each --duration, default {COMPARE_DURATION_S:g} s, or --messages), "
        "reported side by side",
    )
    modes.add_argument(
        "--accounts-sweep",
        type=count_list,
        metavar="N,N,...",
        help="one run per account count (e.g. 4,20,100), each on a fresh engine for --duration "
        f"(default {SWEEP_DURATION_S:g} s) or --messages, after one raw Thespian measurement; "
        "prints one table: throughput, latency, batch sizes per hop, RSS per role",
    )
    modes.add_argument("--json", dest="json_path", metavar="PATH", help="write the report")
    modes.add_argument("--plot", dest="plot_path", metavar="PATH", help="write a PNG (matplotlib)")
    modes.add_argument(
        "--sample-every", type=positive, default=0.5, metavar="S", help="stats/RSS period (0.5)"
    )
    modes.add_argument(
        "--collect-timeout",
        type=positive,
        metavar="S",
        help="after the last submission, wait this long for outcomes "
        "(default processing_timeout_s + 15)",
    )
    modes.add_argument("--quiet", action="store_true", help="no progress on stderr")
    modes.add_argument(
        "--log-level",
        default="WARNING",
        help="level of the run's log file in the temp directory, summed up in the report "
        "(WARNING); ERROR and above also reach stderr",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> RunOptions:
    """Parse a command line; argparse exits with status 2 on a bad one."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    values = {k: v for k, v in vars(ns).items() if v is not None}
    defaults = dict(DEFAULTS)
    if ns.soak:
        defaults.update(SOAK)
        defaults.pop("duration", None)
    if ns.durability_compare:
        defaults["duration"] = COMPARE_DURATION_S
    if ns.accounts_sweep:
        defaults["duration"] = SWEEP_DURATION_S
    if "messages" in values:
        defaults.pop("duration", None)
    if "duration" in values:
        defaults.pop("messages", None)
    merged = {**defaults, **values}
    merged.setdefault("messages", None)
    merged.setdefault("duration", None)
    merged["overrides"] = dict(ns.overrides)
    merged["argv"] = tuple(argv) if argv is not None else ()
    opts = RunOptions(**merged)
    problems = check(opts)
    if ns.accounts_sweep and ns.accounts is not None:
        problems.insert(0, "--accounts-sweep and --accounts: one or the other")
    if problems:
        parser.error("; ".join(problems))
    return opts


def _parse_setting(key: str, raw: str) -> Any:
    spec = {s.name: s for s in settings()}.get(key)
    if spec is None:
        return raw  # load_config names the unknown key and the closest known one
    try:
        if spec.type is int:
            return int(raw, 10)
        if spec.type is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"--set {key}={raw!r}: must be {spec.rule}") from None
    if spec.type is bool:
        return raw.lower() in ("1", "true", "yes", "on")
    return raw


def engine_config(opts: RunOptions) -> EngineConfig:
    """The engine's config: defaults, ``--config`` file, ``WAE_*`` variables, ``--set``.

    Abandoned messages are journaled to a file in the temp directory, and the intake store
    is kept in a directory of its own there, unless their paths were set explicitly: a load
    run must not litter the working directory (nor find a store of an earlier run there).

    Raises:
        ConfigError: an unknown key or a bad value (the message names it).
    """
    overrides = {k: _parse_setting(k, v) for k, v in opts.overrides.items()}
    cfg = loading.load(  # errors about overrides say "--set", where the user typed them
        EngineConfig,
        opts.config_path,
        env=os.environ,
        overrides=overrides,
        overrides_origin="--set",
    )
    defaults = {s.name: s.default for s in settings()}
    run = os.path.join(tempfile.gettempdir(), f"wae-loadrun-{os.getpid()}")
    if cfg.dead_letter_path == defaults["dead_letter_path"]:
        cfg = dataclasses.replace(cfg, dead_letter_path=f"{run}-dead-letters.bin")
    if cfg.intake_path == defaults["intake_path"]:  # the store creates its directory 0700
        cfg = dataclasses.replace(cfg, intake_path=os.path.join(run, "intake.db"))
    return cfg
