#!/usr/bin/env python3
"""Replay the dead-letter journal or an intake store: to a running gateway, or into an engine here.

Usage::

    # (a) a running gateway: signed Cloud API webhooks, its dedupe absorbs repeats
    python scripts/replay.py --gateway http://127.0.0.1:8080/webhook \\
        --app-secret-env WHATSAPP_APP_SECRET --phone-number-id-map shop-main=123456789012345 \\
        [--journal wae-dead-letters.bin] [--consume]
    # (b) an engine embedded here, from the gateway's config; waits for the outcomes
    python scripts/replay.py --config gateway.toml [--consume]
    # either, with --dry-run: read and validate the records, check their accounts
    # either, with --store PATH instead of the journal: the unfinished messages of the
    # intake store of an engine that is not running (read-only; no --consume)
    python scripts/replay.py --config other-gateway.toml --store old/wae-intake/intake.db

Prints a summary on stdout (``--json``: the report as JSON). Exit status: 0 when every
record was settled (accepted or a duplicate) and, in mode (b), every accepted message got
its outcome; 1 when some record is not settled or is corrupt (a dry run: corrupt records,
or accounts without a mapping); 2 for bad options, configuration, a missing secret, or a
store that cannot be replayed (held by a live engine, missing, not an intake store).

Importable: ``main(argv)``, ``run(parse_args(argv), out)`` (no logging setup),
``GatewayTarget`` and ``webhook_payload`` (from :mod:`apps.replay.gateway`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

# Run as a file from a checkout: its packages, from any working directory.
if (_root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, _root)

from apps.deps import CORE, CORE_INSTALL, HTTP, HTTP_INSTALL, missing, require

require("replay.py", CORE, CORE_INSTALL)  # one line, not a traceback, when they are missing

from actors.config import load_config  # noqa: E402
from actors.errors import ConfigError, EngineError, StoreError  # noqa: E402
from actors.logging import configure_logging  # noqa: E402
from apps.gateway.config import load_gateway_config  # noqa: E402
from apps.replay import (  # noqa: E402
    ReplayReport,
    ReplayTarget,
    replay_journal,
    replay_store,
    scan_journal,
    scan_store,
)
from apps.replay.gateway import GatewayTarget, webhook_payload  # noqa: E402
from apps.replay.store import refuse_if_held  # noqa: E402

__all__ = ["GatewayTarget", "main", "parse_args", "run", "webhook_payload"]

_PHONE_ID = re.compile(r"[0-9]{1,32}")


def parse_phone_map(text: str) -> dict[str, str]:
    """``acct=PHONEID,...`` -> {account_id: phone_number_id}; ValueError names the bad entry."""
    mapping: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        account_id, sep, phone_id = (s.strip() for s in entry.partition("="))
        if not sep or not account_id or not _PHONE_ID.fullmatch(phone_id):
            raise ValueError(f"--phone-number-id-map entry {entry!r}: must be account_id=digits")
        if account_id in mapping:
            raise ValueError(f"--phone-number-id-map: account {account_id!r} appears twice")
        mapping[account_id] = phone_id
    if not mapping:
        raise ValueError("--phone-number-id-map is empty")
    return mapping


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="replay.py", description=__doc__.split("\n\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--gateway", metavar="URL", help="a running gateway's webhook URL")
    target.add_argument("--config", metavar="TOML", help="start an engine from this gateway config")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--journal",
        help="the journal (default: dead_letter_path of --config, or of WAE_* / $WAE_CONFIG)",
    )
    source.add_argument(
        "--store",
        metavar="PATH",
        help="instead of a journal: the unfinished messages of this intake store (read-only; "
        "refused while an engine holds it)",
    )
    p.add_argument(
        "--app-secret-env",
        default="WHATSAPP_APP_SECRET",
        metavar="NAME",
        help="the variable holding the app secret the gateway checks (--gateway)",
    )
    p.add_argument(
        "--phone-number-id-map",
        metavar="ACCT=PHONEID,...",
        help="each journal account's phone_number_id at the gateway (--gateway)",
    )
    p.add_argument("--dry-run", action="store_true", help="read and validate; submit nothing")
    p.add_argument(
        "--consume",
        action="store_true",
        help="claim the files, write back what was not settled, delete the rest",
    )
    p.add_argument("--no-rotated", action="store_true", help="skip <journal>.1")
    p.add_argument("--batch", type=int, default=200, help="messages per submission (200)")
    p.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="most seconds spent waiting to retry refusals for lack of room (30)",
    )
    p.add_argument(
        "--wait-s",
        type=float,
        help="--config: most seconds to wait for outcomes (processing_timeout_s + 5)",
    )
    p.add_argument("--http-timeout-s", type=float, default=10.0, help="--gateway: per request")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--log-level", default="WARNING", help="loguru level on stderr (WARNING)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    if args.gateway and not args.phone_number_id_map:
        _parser().error("--gateway needs --phone-number-id-map")
    if args.store and args.consume:
        _parser().error(
            "--consume cannot be used with --store: the store belongs to its engine, which "
            "finishes its unfinished messages itself at its next start; the replay only reads it"
        )
    if args.store and args.no_rotated:
        _parser().error("--no-rotated applies to a journal, not to --store")
    return args


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one replay as ``args`` say; print the summary to ``out``; return the exit status."""
    try:
        return _run_gateway(args, out) if args.gateway else _run_engine(args, out)
    except (ConfigError, ValueError, StoreError) as exc:  # StoreError: nothing was read
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the journal could not be read, renamed or written back
        print(f"replay: {exc}", file=sys.stderr)
        return 1


def _replay(
    target: ReplayTarget,
    args: argparse.Namespace,
    journal: str,
    *,
    max_bytes: int | None = None,
    **options: Any,
) -> ReplayReport:
    """Replay ``--store`` if given, else ``journal`` (``max_bytes``: its write-back limit)."""
    common = {"batch": args.batch, "timeout_s": args.timeout_s, **options}
    if args.store:
        return replay_store(target, args.store, **common)
    if max_bytes is not None:
        common["max_bytes"] = max_bytes
    return replay_journal(
        target, journal, include_rotated=not args.no_rotated, consume=args.consume, **common
    )


def _print(
    out: TextIO, args: argparse.Namespace, report: ReplayReport, extra: dict[str, Any]
) -> None:
    if args.json:
        print(json.dumps({**report.as_dict(), **extra}, indent=2, sort_keys=True), file=out)
        return
    print(report.summary(), file=out)
    for key, value in extra.items():
        print(f"  {key.replace('_', ' ')}: {value}", file=out)


def _dry_run(args: argparse.Namespace, out: TextIO, journal: str, known: Iterable[str]) -> int:
    report = (
        scan_store(args.store)
        if args.store
        else scan_journal(journal, include_rotated=not args.no_rotated, claims=args.consume)
    )
    unknown = sorted(set(report.by_account) - set(known))
    _print(out, args, report, {"accounts_without_mapping": unknown})
    return 0 if report.complete and not unknown else 1


def _run_gateway(args: argparse.Namespace, out: TextIO) -> int:
    phone_ids = parse_phone_map(args.phone_number_id_map)
    journal = args.journal or ("" if args.store else load_config().dead_letter_path)
    if args.dry_run:
        return _dry_run(args, out, journal, phone_ids)
    secret = os.environ.get(args.app_secret_env, "")
    if not secret:
        raise ConfigError(f"environment variable {args.app_secret_env!r} is not set or empty")
    target = GatewayTarget(
        args.gateway, secret.encode("utf-8"), phone_ids, timeout_s=args.http_timeout_s
    )
    try:
        report = _replay(target, args, journal)
    finally:
        target.close()
    _print(out, args, report, {"http_answers": dict(sorted(target.answers.items()))})
    return 0 if report.complete else 1


def _run_engine(args: argparse.Namespace, out: TextIO) -> int:
    config = load_gateway_config(args.config)
    journal = args.journal or config.engine.dead_letter_path
    if args.dry_run:
        return _dry_run(args, out, journal, (a.account_id for a in config.accounts))
    if args.store and _same_file(args.store, config.engine.intake_path):
        raise ConfigError(
            f"--store {args.store!r} is the intake_path of --config {args.config!r}: the engine "
            f"started from it resumes its unfinished messages itself; start it (the gateway) "
            f"instead, or replay the store into another engine's config"
        )
    if args.store:
        refuse_if_held(args.store)  # before starting processes for nothing
    if gone := missing(HTTP):  # the gateway's start_engine lives with its aiohttp server
        needs = ", ".join(gone)
        raise ConfigError(f"--config starts an engine here, which needs {needs}: {HTTP_INSTALL}")
    from apps.gateway.app import start_engine

    try:
        engine = start_engine(config)
    except EngineError as exc:
        print(f"replay: the engine did not start: {exc}", file=sys.stderr)
        return 1
    outcomes: Counter[str] = Counter()

    def collect(seconds: float) -> None:
        for outcome in engine.outcomes(timeout=seconds):
            outcomes[
                f"{outcome.status}/{outcome.reason}" if outcome.reason else outcome.status
            ] += 1

    try:
        report = _replay(
            engine,
            args,
            journal,
            wait=collect,
            max_bytes=config.engine.dead_letter_max_bytes,
            max_frame_bytes=config.engine.max_frame_bytes,
        )
        wait_s = args.wait_s if args.wait_s is not None else config.engine.processing_timeout_s + 5
        until = time.monotonic() + wait_s
        while outcomes.total() < report.accepted and (left := until - time.monotonic()) > 0:
            collect(min(left, 0.5))
    finally:
        shutdown = engine.shutdown()
        collect(0.0)  # the outcomes of messages abandoned by that shutdown
    extra = {
        "base": engine.base,
        "outcomes": dict(sorted(outcomes.items())),
        "abandoned_at_shutdown": len(shutdown.abandoned),
    }
    if shutdown.abandoned and config.engine.durability == "off":
        extra["journaled_again_to"] = config.engine.dead_letter_path
    elif shutdown.abandoned:  # a durable engine keeps them for its next start
        extra["kept_unfinished_in"] = config.engine.intake_path
    _print(out, args, report, extra)
    # Every accepted message ended before the shutdown: none was abandoned (kept) again.
    return 0 if report.complete and not shutdown.abandoned else 1


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(level=args.log_level.upper())
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
