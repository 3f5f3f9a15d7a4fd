"""``scripts/bench_gateway.py``: the gateway against a bare aiohttp handler, in one run.

Both servers run in processes of their own (:mod:`apps.bench.serve`); this process is the
client. For each concurrency level the bare handler is driven first, then the gateway,
with the same code and fresh webhooks; after the gateway's traffic the run waits until the
gateway has collected the outcome of every message it accepted (read from its
``/metrics``), so that no level's backlog is measured in the next. CPU time is read from
``/proc`` for every process by role. The run is bounded: each target's traffic lasts
``--duration`` (plus at most one request timeout), each drain at most
:data:`DRAIN_TIMEOUT_S`. At the end the servers get SIGTERM, the gateway shuts its engine
down, and every process the run started must be gone; the run's directory (the intake
store, the logs) is removed.

Exit status: 0 when every answer was a 200, every accepted message got its outcome and
nothing was left behind; 1 otherwise; 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

import aiohttp

from actors.config import EngineConfig
from actors.errors import ConfigError
from apps.bench.client import WebhookMaker, drive, gateway_books
from apps.bench.profile import Profiler, py_spy
from apps.bench.report import Level, Report
from apps.bench.serve import NUMBERS, numbers
from apps.bench.servers import Server, Servers
from apps.loadrun.report import write_json

__all__ = ["DRAIN_TIMEOUT_S", "main", "parse_args", "run"]

DRAIN_TIMEOUT_S = 60.0
"""Longest wait, after a level, for the gateway to collect the outcomes it still owes."""
_POLL_S = 0.1


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated integers") from None
    if not levels or any(n < 1 or n > 1000 for n in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: each level from 1 to 1000")
    return levels


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_gateway.py",
        description="Signed webhooks over HTTP to the real gateway (embedded engine on "
        "multiprocTCPBase, loopback numbers, echo provider) and to a bare aiohttp handler "
        "that checks the same signature, at each concurrency; prints both rates.",
    )
    parser.add_argument(
        "--concurrency", type=_levels, default=[1, 10, 100], help="levels (default 1,10,100)"
    )
    parser.add_argument(
        "--duration", type=_positive, default=10.0, help="seconds per target and level (10)"
    )
    parser.add_argument("--numbers", type=int, default=NUMBERS, help="WhatsApp numbers (3)")
    parser.add_argument(
        "--customers",
        type=int,
        default=100_000,
        help="distinct senders, in turn (100,000: none nears the per-recipient rate limit)",
    )
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="write the report")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record the gateway process with py-spy while its traffic runs at "
        "--profile-at, into DIR (raw collapsed stacks), and print where its time went",
    )
    parser.add_argument("--profile-at", type=int, default=10, metavar="N", help="(10)")
    args = parser.parse_args(argv)
    if not 1 <= args.numbers <= 100 or args.customers < 1:
        parser.error("--numbers from 1 to 100, --customers >= 1")
    if args.profile and args.profile_at not in args.concurrency:
        parser.error(f"--profile-at {args.profile_at} is not one of --concurrency")
    return args


async def _drained(gateway: Server, owed: int) -> tuple[float | None, dict[str, int]]:
    """Wait until the gateway collected ``owed`` outcomes in all; (seconds, outcomes)."""
    base = gateway.url.rsplit("/", 1)[0]
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    while gateway.proc.poll() is None:  # a gateway that died owes nothing more
        try:
            books = await gateway_books(base)
        except (aiohttp.ClientError, TimeoutError):
            books = None  # not answering now: asked again until the deadline
        if books is not None:
            outcomes = books.outcomes
            if books.in_flight == 0 and books.collected >= owed:
                return time.monotonic() - started, outcomes
        if time.monotonic() - started > DRAIN_TIMEOUT_S:
            break
        await asyncio.sleep(_POLL_S)
    return None, outcomes


async def _measure(
    args: argparse.Namespace, gateway: Server, bare: Server, secret: str, report: Report
) -> None:
    maker = WebhookMaker(secret, numbers(args.numbers), args.customers, secrets.token_hex(4))
    owed = 0
    before: dict[str, int] = {}
    for concurrency in args.concurrency:
        if gateway.proc.poll() is not None or bare.proc.poll() is not None:
            break  # a server died: its exit code fails the run; no level can be measured
        cpu = bare.cpu()
        bare_result = await drive(bare.url, maker, "bare", concurrency, args.duration)
        bare_cpu = bare.cpu_by_role(cpu, bare.cpu()).get("bare", 0.0)
        start_cpu = gateway.cpu()
        profiler = None
        if args.profile and concurrency == args.profile_at:
            profiler = Profiler.start(gateway.pid, args.duration, args.profile, concurrency)
        result = await drive(gateway.url, maker, "gateway", concurrency, args.duration)
        owed += result.accepted
        drain_s, outcomes = await _drained(gateway, owed)
        end_cpu = gateway.cpu()
        level = Level(concurrency, result, bare_result, drain_s, bare_cpu=bare_cpu)
        level.outcomes = {
            k: n - before.get(k, 0) for k, n in outcomes.items() if n > before.get(k, 0)
        }
        level.cpu = gateway.cpu_by_role(start_cpu, end_cpu)
        before = outcomes
        report.levels.append(level)
        if profiler is not None:
            report.profile = profiler.finish(result.ok, level.cpu_ms().get("gateway", 0.0))
        print(f"concurrency {concurrency}: done", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> Report:
    """Start both servers, measure every level, stop them; the report (see :class:`Report`).

    Raises:
        ConfigError: a ``WAE_*`` variable is not a valid engine setting.
        RuntimeError: a server did not start (everything started is stopped first), or
            ``--profile`` without py-spy.
    """
    if args.profile and py_spy() is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    engine = EngineConfig.load()  # as the gateway's process reads it: defaults and WAE_*
    report = Report(
        settings={
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "numbers": args.numbers,
            "customers": args.customers,
            "base": "multiprocTCPBase",
            "durability": engine.durability,
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    )
    directory = tempfile.mkdtemp(prefix="wae-bench-gateway-")  # 0700
    secret = secrets.token_hex(16)
    servers = Servers(directory, secret)
    try:
        gateway = servers.start("gateway", "--numbers", str(args.numbers))
        bare = servers.start("bare")
        print(
            f"gateway on port {gateway.port} (pid {gateway.pid}), bare on port {bare.port}",
            file=sys.stderr,
            flush=True,
        )
        asyncio.run(_measure(args, gateway, bare, secret, report))
    finally:
        report.left = sorted(servers.close())
        report.exit_codes = dict(servers.exit_codes)
        if report.levels and report.problems():  # a failed start showed its log already
            for kind in report.exit_codes:
                if tail := servers.log_tail(kind):
                    print(f"--- the {kind} server's log, last lines:\n{tail}", file=sys.stderr)
        shutil.rmtree(directory, ignore_errors=True)
    report.settings["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its report; returns the exit status."""
    args = parse_args(argv)
    try:
        report = run(args)
    except ConfigError as exc:  # a bad WAE_* variable: the gateway would refuse it too
        print(f"bench_gateway.py: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"bench_gateway.py: {exc}", file=sys.stderr)
        return 1
    print(report.render(), flush=True)
    if args.json_path:
        write_json(report.as_dict(), args.json_path)
    return 1 if report.problems() else 0
