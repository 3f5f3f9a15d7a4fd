#!/usr/bin/env python3
"""Replay the dead-letter journal: to a running gateway, or into an engine started here.

Usage::

    # (a) a running gateway: signed Cloud API webhooks, its dedupe absorbs repeats
    python scripts/replay.py --gateway http://127.0.0.1:8080/webhook \\
        --app-secret-env WHATSAPP_APP_SECRET --phone-number-id-map shop-main=123456789012345 \\
        [--journal wae-dead-letters.bin] [--consume]
    # (b) an engine embedded here, from the gateway's config; waits for the outcomes
    python scripts/replay.py --config gateway.toml [--consume]
    # either, with --dry-run: read and validate the records, check their accounts

Prints a summary on stdout (``--json``: the report as JSON). Exit status: 0 when every
record was settled (accepted or a duplicate) and, in mode (b), every accepted message got
its outcome; 1 when some record is not settled or is corrupt (a dry run: corrupt records,
or accounts without a mapping); 2 for bad options, configuration or a missing secret.

Importable: ``main(argv)``, ``run(parse_args(argv), out)`` (no logging setup),
``GatewayTarget`` and ``webhook_payload``.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import re
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

from actors.config import load_config
from actors.errors import ConfigError, EngineError
from actors.gateway import load_gateway_config, start_engine
from actors.logging import configure_logging
from actors.replay import ReplayReport, ReplayTargetError, replay_journal, scan_journal
from protocols import REJECT_REASONS, Accepted, InboundMessage, Rejected

__all__ = ["GatewayTarget", "main", "parse_args", "run", "webhook_payload"]

_PHONE_ID = re.compile(r"[0-9]{1,32}")
_REFUSALS = ("shutting_down", "capacity", "customer_backlog")  # the reasons of a 503


def webhook_payload(
    phone_number_id: str, messages: Iterable[InboundMessage], *, timestamp: int
) -> dict[str, Any]:
    """A Cloud API ``messages`` webhook carrying ``messages`` as text messages to one number."""
    items = [
        {
            # The gateway adds the '+' back: the customer id round-trips.
            "from": m.customer_id.removeprefix("+"),
            "id": m.message_id,
            "timestamp": str(timestamp),
            "type": "text",
            "text": {"body": m.text},
        }
        for m in messages
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "", "phone_number_id": phone_number_id},
        "messages": items,
    }
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "replay", "changes": [change]}]}


class GatewayTarget:
    """Posts messages to a gateway as signed webhooks; answers like ``Engine.submit_many``.

    One webhook per account per call (a 413 splits it in halves). The gateway answers
    with counts, not ids, so: a 503 refuses the whole webhook (its ``Retry-After`` becomes
    :attr:`retry_after_s`, and the repost's duplicates are counted as accepted by the
    earlier post); a 200 whose messages were all taken or all refused for one reason is
    exact; any other 200 is resolved by posting its messages one by one (dedupe absorbs
    what was taken). The connection is kept alive; a broken one is retried once.

    Raises (from ``submit_many``):
        ReplayTargetError: the gateway is unreachable or answers something else (401, 5xx).
    """

    def __init__(
        self,
        url: str,
        app_secret: bytes,
        phone_number_ids: Mapping[str, str],
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--gateway must be an http(s) URL, got {url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._parts = parts
        self._target = (parts.path or "/webhook") + (f"?{parts.query}" if parts.query else "")
        self._secret = app_secret
        self._phone_ids = dict(phone_number_ids)
        self._timeout_s = timeout_s
        self._clock = clock
        self._conn: http.client.HTTPConnection | None = None
        self._taken: dict[tuple[str, ...], int] = {}
        self.retry_after_s: float | None = None
        self.answers: Counter[int] = Counter()

    def __repr__(self) -> str:
        return f"GatewayTarget({self.origin!r})"  # never the secret

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
        batch = list(messages)
        self.retry_after_s = None
        groups: dict[str, list[int]] = {}
        for i, msg in enumerate(batch):
            groups.setdefault(msg.account_id, []).append(i)
        results: dict[int, Accepted | Rejected] = {}
        for account_id, indexes in groups.items():
            group = [batch[i] for i in indexes]
            phone_id = self._phone_ids.get(account_id)
            if phone_id is None:
                detail = f"account {account_id!r} is not in --phone-number-id-map"
                answers: list[Accepted | Rejected] = [
                    _rejected(m, "unknown_account", detail) for m in group
                ]
            else:
                answers = self._deliver(phone_id, group)
            results.update(zip(indexes, answers, strict=True))
        return [results[i] for i in range(len(batch))]

    def _deliver(self, phone_id: str, msgs: list[InboundMessage]) -> list[Accepted | Rejected]:
        status, answer, retry_after = self._post(phone_id, msgs)
        n = len(msgs)
        if status == 413 and n > 1:
            return self._deliver(phone_id, msgs[: n // 2]) + self._deliver(phone_id, msgs[n // 2 :])
        if status != 503 and (status != 200 or answer is None):
            raise ReplayTargetError(
                f"the gateway at {self.origin} answered {status} to {n} messages"
            )
        key = tuple(m.message_id for m in msgs)
        answer = answer or {}  # a proxy's 503 (the gateway restarting) has no JSON body
        accepted = _count(answer.get("accepted"))
        if status == 503:
            self._taken[key] = self._taken.get(key, 0) + accepted
            self.retry_after_s = max(self.retry_after_s or 0.0, retry_after)
            rejected = answer.get("rejected")
            reason = next(
                (r for r in _REFUSALS if isinstance(rejected, dict) and rejected.get(r)), "capacity"
            )
            detail = f"the gateway answered 503, Retry-After {retry_after:g} s"
            return [_rejected(m, reason, detail) for m in msgs]
        taken = accepted + self._taken.pop(key, 0)
        counts = _unsettled(answer)
        if accepted + counts.pop("duplicate", 0) == n:
            return [
                Accepted(message_id=m.message_id) if i < taken else _rejected(m, "duplicate", "")
                for i, m in enumerate(msgs)
            ]
        reasons = [r for r, c in counts.items() if c]
        if len(reasons) == 1 and (n == 1 or counts[reasons[0]] == n):
            return [_rejected(m, reasons[0], "answered by the gateway") for m in msgs]
        if n == 1:
            raise ReplayTargetError(f"the gateway's answer does not account for {key[0]!r}")
        singles = [self._deliver(phone_id, [m])[0] for m in msgs]
        for i, result in enumerate(singles):  # reposts of what the batch post took
            if taken and isinstance(result, Rejected) and result.reason == "duplicate":
                singles[i], taken = Accepted(message_id=result.message_id), taken - 1
        return singles

    def _post(
        self, phone_id: str, msgs: list[InboundMessage]
    ) -> tuple[int, dict[str, Any] | None, float]:
        doc = webhook_payload(phone_id, msgs, timestamp=int(self._clock()))
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + digest}
        for attempt in (1, 2):
            try:
                conn = self._connection()
                conn.request("POST", self._target, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    raise ReplayTargetError(
                        f"cannot post to the gateway at {self.origin}: {exc}"
                    ) from None
        self.answers[resp.status] += 1
        answer: dict[str, Any] | None = None
        with contextlib.suppress(ValueError):
            doc = json.loads(data)
            answer = doc if isinstance(doc, dict) else None
        return resp.status, answer, _retry_after(resp.getheader("Retry-After"), self._clock())

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = (
                http.client.HTTPSConnection
                if self._parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = kind(self._parts.hostname or "", self._parts.port, timeout=self._timeout_s)
        return self._conn


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _unsettled(answer: Mapping[str, Any]) -> Counter[str]:
    """The gateway's rejections by reason plus its items that never reached the engine."""
    counts: Counter[str] = Counter()
    rejected, items = answer.get("rejected"), answer.get("items")
    for source in (
        rejected,
        {k: items.get(k) for k in ("invalid", "unknown_account")}
        if isinstance(items, dict)
        else None,
    ):
        if isinstance(source, dict):
            for reason, n in source.items():
                if reason not in REJECT_REASONS:
                    raise ReplayTargetError(f"the gateway answered an unknown reason {reason!r}")
                counts[reason] += _count(n)
    return counts


def _rejected(msg: InboundMessage, reason: str, detail: str) -> Rejected:
    return Rejected(message_id=msg.message_id, reason=reason, detail=detail)


def _retry_after(value: str | None, now: float) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); 1 if unreadable."""
    if value is None:
        return 1.0
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    return 1.0


# --- the command line ------------------------------------------------------------------------


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
    p.add_argument(
        "--journal",
        help="the journal (default: dead_letter_path of --config, or of WAE_* / $WAE_CONFIG)",
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
    return args


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one replay as ``args`` say; print the summary to ``out``; return the exit status."""
    try:
        return _run_gateway(args, out) if args.gateway else _run_engine(args, out)
    except (ConfigError, ValueError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the journal could not be read, renamed or written back
        print(f"replay: {exc}", file=sys.stderr)
        return 1


def _common(args: argparse.Namespace, **limits: int) -> dict[str, Any]:
    return {
        "batch": args.batch,
        "include_rotated": not args.no_rotated,
        "timeout_s": args.timeout_s,
        "consume": args.consume,
        **limits,
    }


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
    report = scan_journal(journal, include_rotated=not args.no_rotated, claims=args.consume)
    unknown = sorted(set(report.by_account) - set(known))
    _print(out, args, report, {"accounts_without_mapping": unknown})
    return 0 if report.complete and not unknown else 1


def _run_gateway(args: argparse.Namespace, out: TextIO) -> int:
    phone_ids = parse_phone_map(args.phone_number_id_map)
    journal = args.journal or load_config().dead_letter_path
    if args.dry_run:
        return _dry_run(args, out, journal, phone_ids)
    secret = os.environ.get(args.app_secret_env, "")
    if not secret:
        raise ConfigError(f"environment variable {args.app_secret_env!r} is not set or empty")
    target = GatewayTarget(
        args.gateway, secret.encode("utf-8"), phone_ids, timeout_s=args.http_timeout_s
    )
    try:
        report = replay_journal(target, journal, **_common(args))
    finally:
        target.close()
    _print(out, args, report, {"http_answers": dict(sorted(target.answers.items()))})
    return 0 if report.complete else 1


def _run_engine(args: argparse.Namespace, out: TextIO) -> int:
    config = load_gateway_config(args.config)
    journal = args.journal or config.engine.dead_letter_path
    if args.dry_run:
        return _dry_run(args, out, journal, (a.account_id for a in config.accounts))
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
        limits = {
            "max_bytes": config.engine.dead_letter_max_bytes,
            "max_frame_bytes": config.engine.max_frame_bytes,
        }
        report = replay_journal(engine, journal, wait=collect, **_common(args, **limits))
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
    if shutdown.abandoned:
        extra["journaled_again_to"] = config.engine.dead_letter_path
    _print(out, args, report, extra)
    # Every accepted message ended before the shutdown: none was abandoned (journaled) again.
    return 0 if report.complete and not shutdown.abandoned else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(level=args.log_level.upper())
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
