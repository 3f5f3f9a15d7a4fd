"""Dead-letter replay: a journal written by a real shutdown goes back in, and only once.

The journal is made the honest way: an engine whose provider takes 60 s is shut down with
a 0.3 s drain, so every message is abandoned and journaled; its 4 KiB file limit makes it
rotate once, so replays read ``<path>.1`` and ``<path>``. Retry and consume policies are
driven with a fake target and a fake clock; the gateway mode runs against the real
gateway app on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from loguru import logger

from actors.config import EngineConfig
from actors.engine import Engine
from actors.engine.intake import IntakeStore
from actors.engine.journal import HEADER_BYTES, DeadLetterJournal, journal_files, read_journal
from actors.errors import StoreError, StoreLockedError
from apps.gateway import Gateway, parse_payload
from apps.replay import (
    ReplayTargetError,
    replay_journal,
    replay_store,
    scan_journal,
    scan_store,
)
from protocols import Accepted, InboundMessage, Outcome, ProviderSpec, Rejected
from protocols.codec import encode
from tests.conftest import EngineFactory
from tests.engine_helpers import collect, inbound
from tests.store_helpers import store_holder
from tests.test_gateway_app import ENV, make_gateway, replied, until
from tests.test_gateway_webhook import PHONE_ID, SECRET

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "replay.py"
COUNT = 40
TEXT = "where is my order? " * 5  # ~100 characters: 40 records pass the 4 KiB limit once


@pytest.fixture(scope="module")
def cli() -> ModuleType:
    """``scripts/replay.py`` as a module (``run`` and ``parse_args``; no logging setup)."""
    spec = importlib.util.spec_from_file_location("wae_replay_cli", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def abandoned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[InboundMessage]]:
    """A journal of COUNT messages really abandoned at shutdown, rotated once."""
    path = tmp_path_factory.mktemp("abandoned") / "dead.bin"
    messages = [inbound(i, text=TEXT) for i in range(COUNT)]
    # Room for a little over half of them per file: one rotation, nothing shed, whatever
    # size a record has (it grows when InboundMessage gains fields).
    record = HEADER_BYTES + len(encode(messages[0]))
    config = EngineConfig(
        drain_timeout_s=0.3,
        shutdown_timeout_s=3.0,
        dead_letter_path=str(path),
        dead_letter_max_bytes=max(4096, record * (COUNT // 2 + 2)),
        durability="off",  # a durable store would keep them unfinished instead of a journal
    )
    with Engine(config, base="simpleSystemBase", seed=7) as engine:
        engine.add_provider(
            ProviderSpec(name="echo", kind="echo", priority=10, options={"latency_s": 60.0})
        )
        engine.add_account("acct-1")
        assert all(isinstance(r, Accepted) for r in engine.submit_many(messages))
        report = engine.shutdown()
    assert len(report.abandoned) == COUNT
    assert journal_files(path) == [f"{path}.1", str(path)]  # rotated once, nothing shed
    return path, messages


@pytest.fixture
def journal(tmp_path: Path, abandoned: tuple[Path, list[InboundMessage]]) -> Path:
    """This test's own copy of the abandoned journal (both files)."""
    source, _ = abandoned
    target = tmp_path / "dead.bin"
    for name in journal_files(source):
        shutil.copy(name, str(target) + name[len(str(source)) :])
    return target


def ids(messages: Iterable[InboundMessage]) -> list[str]:
    return [m.message_id for m in messages]


class Recorder:
    """A fake target: records what it is sent; ``refuse(msg, attempt)`` picks a reason."""

    def __init__(self, refuse: Callable[[InboundMessage, int], str | None] | None = None) -> None:
        self.refuse = refuse or (lambda msg, attempt: None)
        self.sent: list[InboundMessage] = []
        self.attempts: Counter[str] = Counter()
        self.retry_after_s: float | None = None  # the hint an HTTP target gives

    def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
        out: list[Accepted | Rejected] = []
        for msg in messages:
            self.sent.append(msg)
            self.attempts[msg.message_id] += 1
            reason = self.refuse(msg, self.attempts[msg.message_id])
            out.append(
                Accepted(message_id=msg.message_id)
                if reason is None
                else Rejected(message_id=msg.message_id, reason=reason)
            )
        return out


class FakeClock:
    """``clock`` and ``wait`` for replay_journal: waiting advances time instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.now += seconds


# --- into an engine ----------------------------------------------------------------------------


def test_every_abandoned_message_replayed_into_a_new_engine_ends_replied(
    make_engine: EngineFactory, journal: Path, abandoned: tuple[Path, list[InboundMessage]]
) -> None:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    report = replay_journal(engine, journal, batch=16)
    assert report.files == (f"{journal}.1", str(journal))
    assert (report.read, report.accepted, report.duplicate) == (COUNT, COUNT, 0)
    assert report.complete
    assert report.unsettled_ids == ()
    outcomes = collect(engine, ids(abandoned[1]), deadline_s=10)
    assert {o.status for o in outcomes.values()} == {"replied"}
    assert journal_files(journal) == [f"{journal}.1", str(journal)]  # not consumed: untouched


def test_a_second_replay_into_the_same_engine_is_absorbed_as_duplicates(
    make_engine: EngineFactory, journal: Path, abandoned: tuple[Path, list[InboundMessage]]
) -> None:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    assert replay_journal(engine, journal).accepted == COUNT
    collect(engine, ids(abandoned[1]), deadline_s=10)
    again = replay_journal(engine, journal)
    assert (again.read, again.accepted, again.duplicate) == (COUNT, 0, COUNT)
    assert again.complete
    assert engine.outcomes(timeout=0.2) == []  # nothing was processed twice


def test_refusals_for_capacity_are_retried_while_outcomes_are_collected(
    make_engine: EngineFactory, journal: Path
) -> None:
    engine = make_engine(
        "simpleSystemBase",
        echo={"latency_s": 0.02},
        accounts=("acct-1",),
        max_concurrent_processing=8,
    )
    done: list[str] = []

    def collecting(seconds: float) -> None:
        done.extend(o.message_id for o in engine.outcomes(timeout=seconds))

    # A budget for waits far beyond the ~0.1 s of calls, so that a busy machine gives up none.
    report = replay_journal(engine, journal, timeout_s=60, wait=collecting)
    assert (report.accepted, report.refused, report.retries > 0) == (COUNT, {}, True)
    collect(engine, set(ids(read_all(journal))) - set(done), deadline_s=10)


def read_all(path: Path) -> list[InboundMessage]:
    return [m for name in journal_files(path) for m in read_journal(name)]


# --- reading -----------------------------------------------------------------------------------


def test_a_torn_tail_replays_the_valid_part_and_reports_the_torn_bytes(
    journal: Path, abandoned: tuple[Path, list[InboundMessage]]
) -> None:
    record = journal.read_bytes()[: 4 + 30]  # a header and 30 of its frame's bytes
    with open(journal, "ab") as f:
        f.write(record)
    target = Recorder()
    report = replay_journal(target, journal)
    assert target.sent == abandoned[1]
    assert (report.read, report.torn_bytes, report.corrupt) == (COUNT, len(record), 0)
    assert report.complete  # a torn tail is the trace of a crash, not a lost record
    assert "truncated record: 30 of" in report.problems[0]
    assert f"of {str(journal)!r}" in report.problems[0]


def test_a_corrupt_record_is_skipped_and_the_ones_after_it_are_replayed(
    journal: Path, abandoned: tuple[Path, list[InboundMessage]]
) -> None:
    good = journal.read_bytes()
    bad = (5).to_bytes(4, "big") + b"\xc1" * 5  # 0xc1 is never valid msgpack
    journal.write_bytes(bad + good + (10**9).to_bytes(4, "big") + b"rest")
    target = Recorder()
    report = replay_journal(target, journal)
    assert target.sent == abandoned[1]
    assert (report.read, report.corrupt, report.torn_bytes) == (COUNT, 1, 8)
    assert not report.complete
    assert "skipped:" in report.problems[0]
    assert "at byte 0 of" in report.problems[0]
    assert "outside 1..65536" in report.problems[1]


def test_a_rotated_journal_is_replayed_whole_and_in_order(
    journal: Path, abandoned: tuple[Path, list[InboundMessage]]
) -> None:
    older = list(read_journal(f"{journal}.1"))
    assert 0 < len(older) < COUNT
    target = Recorder()
    report = replay_journal(target, journal, batch=7)
    assert target.sent == abandoned[1]  # .1 first, then the current file, in write order
    assert report.by_account == {"acct-1": COUNT}
    current_only = Recorder()
    replay_journal(current_only, journal, include_rotated=False)
    assert current_only.sent == abandoned[1][len(older) :]


# --- retries and what is never lost -------------------------------------------------------------


def test_refusals_for_lack_of_room_back_off_exponentially_on_the_clock(journal: Path) -> None:
    clock = FakeClock()
    target = Recorder(lambda msg, attempt: "capacity" if attempt <= 3 else None)
    report = replay_journal(
        target, journal, batch=COUNT, wait=clock.wait, clock=clock, backoff_min_s=0.5
    )
    assert clock.waits == [0.5, 1.0, 2.0]
    assert (report.accepted, report.retries, report.waited_s) == (COUNT, 3 * COUNT, 3.5)


def test_a_retry_after_hint_from_the_target_is_honoured(journal: Path) -> None:
    clock = FakeClock()
    target = Recorder(lambda msg, attempt: "customer_backlog" if attempt == 1 else None)
    target.retry_after_s = 7.0
    report = replay_journal(target, journal, batch=COUNT, wait=clock.wait, clock=clock)
    assert (clock.waits, report.accepted) == ([7.0], COUNT)


def test_what_is_still_refused_at_the_budget_is_reported_by_id_and_written_back(
    journal: Path,
) -> None:
    stuck = {"wamid.3", "wamid.31"}
    unknown = {"wamid.5"}

    def refuse(msg: InboundMessage, attempt: int) -> str | None:
        if msg.message_id in unknown:
            return "unknown_account"
        return "capacity" if msg.message_id in stuck else None

    clock = FakeClock()
    report = replay_journal(
        Recorder(refuse), journal, timeout_s=3, consume=True, wait=clock.wait, clock=clock
    )
    assert sum(clock.waits) <= 3
    assert {k: set(v) for k, v in report.refused.items()} == {"capacity": stuck}
    assert {k: set(v) for k, v in report.rejected.items()} == {"unknown_account": unknown}
    assert (report.accepted, report.kept, len(report.removed)) == (COUNT - 3, 3, 2)
    assert journal_files(journal) == [str(journal)]
    assert set(ids(read_journal(journal))) == stuck | unknown  # back in the journal, nothing lost


def test_a_target_shutting_down_stops_the_replay_and_keeps_the_rest(journal: Path) -> None:
    target = Recorder(lambda msg, attempt: "shutting_down" if msg.message_id == "wamid.2" else None)
    report = replay_journal(target, journal, batch=10, consume=True)
    assert report.stopped == "the target is shutting down"
    assert report.accepted == 9
    assert report.refused == {"shutting_down": ("wamid.2",)}
    assert len(report.unsubmitted) == COUNT - 10
    assert len(target.sent) == 10
    assert set(ids(read_journal(journal))) == set(report.unsettled_ids)
    assert len(report.unsettled_ids) == COUNT - 9


def test_a_target_error_stops_the_replay_and_nothing_is_lost(journal: Path) -> None:
    class Broken:
        def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted]:
            raise ReplayTargetError("connection refused")

    report = replay_journal(Broken(), journal, consume=True)
    assert (report.stopped, len(report.unsubmitted), report.kept) == (
        "connection refused",
        COUNT,
        COUNT,
    )
    assert len(read_all(journal)) == COUNT


# --- consume ---------------------------------------------------------------------------------


def test_consume_deletes_what_was_settled_so_a_second_replay_reads_nothing(
    make_engine: EngineFactory, journal: Path
) -> None:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    report = replay_journal(engine, journal, consume=True)
    assert (report.accepted, report.kept, len(report.removed)) == (COUNT, 0, 2)
    assert all(".replaying-" in name for name in report.files)
    assert list(journal.parent.iterdir()) == []  # no journal, no claim left
    assert replay_journal(engine, journal, consume=True).read == 0


def test_claims_left_by_an_interrupted_consume_are_replayed_first(journal: Path) -> None:
    older = journal.parent / "dead.bin.replaying-20000101T000000000000Z-0"
    DeadLetterJournal(older, max_bytes=4096).append([inbound("old", text="hi")])
    target = Recorder()
    report = replay_journal(target, journal, consume=True)
    assert ids(target.sent[:1]) == ["wamid.old"]
    assert report.read == COUNT + 1
    assert list(journal.parent.iterdir()) == []


def test_a_claimed_file_written_to_during_the_replay_is_left_for_the_next_run(
    journal: Path,
) -> None:
    class LateWriter(Recorder):
        """An engine that still had the current file open appends after the claim."""

        def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
            if not self.sent:
                claim = sorted(journal.parent.glob("dead.bin.replaying-*"))[-1]
                DeadLetterJournal(claim, max_bytes=1 << 20).append([inbound("late")])
            return super().submit_many(messages)

    first = replay_journal(LateWriter(), journal, consume=True)
    assert (first.read, len(first.removed)) == (COUNT, 1)
    assert "grew while replayed" in first.problems[0]
    target = Recorder()
    second = replay_journal(target, journal, consume=True)
    assert "wamid.late" in ids(target.sent)
    assert list(journal.parent.iterdir()) == []
    assert second.removed == first.files[1:]


def test_consume_quarantines_a_file_with_corrupt_records(journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write((3).to_bytes(4, "big") + b"\xc1\xc1\xc1")
    report = replay_journal(Recorder(), journal, consume=True)
    assert report.corrupt == 1
    assert len(report.removed) == 1
    (quarantined,) = report.quarantined
    assert ".corrupt-" in quarantined
    assert Path(quarantined).exists()
    assert journal_files(journal) == []


# --- the CLI ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[str]:
    """Serve the gateway on 127.0.0.1:<free port>; yield its webhook URL."""
    runner = gateway.runner()
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}/webhook"
    finally:
        await runner.cleanup()


def dead_url() -> str:
    """A webhook URL on a loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/webhook"


def run_cli(cli: ModuleType, *argv: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = cli.run(cli.parse_args([*argv, "--json"]), out)
    return code, json.loads(out.getvalue())


def gateway_argv(url: str, journal: Path, *more: str) -> list[str]:
    return [
        f"--gateway={url}",
        "--app-secret-env=T_SECRET",
        f"--phone-number-id-map=acct-1={PHONE_ID}",
        f"--journal={journal}",
        *more,
    ]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def test_the_webhook_payload_parses_back_to_the_journaled_messages(
    cli: ModuleType, abandoned: tuple[Path, list[InboundMessage]]
) -> None:
    doc = cli.webhook_payload(PHONE_ID, abandoned[1], timestamp=1700000000)
    assert parse_payload(doc, {PHONE_ID: "acct-1"}).messages == tuple(abandoned[1])


@pytest.mark.usefixtures("secret_env")
def test_gateway_mode_posts_signed_webhooks_and_a_second_run_is_absorbed(
    cli: ModuleType, make_engine: EngineFactory, journal: Path
) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG")

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        async with serving(gateway) as url:
            argv = gateway_argv(url, journal, "--batch=25")
            first = await asyncio.to_thread(run_cli, cli, *argv)
            await until(lambda: replied(gateway) == COUNT, "every replayed message replied")
            second = await asyncio.to_thread(run_cli, cli, *argv)
            return [first, second]

    try:
        (code1, first), (code2, second) = asyncio.run(scenario())
    finally:
        logger.remove(sink)
    assert (code1, first["accepted"], first["duplicate"], first["http_answers"]) == (
        0,
        COUNT,
        0,
        {"200": 2},
    )
    assert (code2, second["accepted"], second["duplicate"]) == (0, 0, COUNT)
    assert gateway.counters.total("signature_failures") == 0
    assert gateway.counters.get("submissions", result="rejected", reason="duplicate") == COUNT
    assert SECRET.decode() not in "\n".join(logs) + json.dumps([first, second])


@pytest.mark.usefixtures("secret_env")
def test_gateway_mode_honours_retry_after_of_a_503(
    cli: ModuleType, make_engine: EngineFactory, tmp_path: Path
) -> None:
    # One in processing at a time: the second of the two is refused in the same webhook, and
    # the first (an immediate echo) has long ended when the Retry-After brings it back.
    engine = make_engine(
        "simpleSystemBase",
        echo={"latency_s": 0.0},
        accounts=("acct-1",),
        max_concurrent_processing=1,
    )
    gateway = make_gateway(engine, retry_after_s=2)
    journal = tmp_path / "two.bin"
    DeadLetterJournal(journal, max_bytes=4096).append([inbound(1), inbound(2)])

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with serving(gateway) as url:
            result = await asyncio.to_thread(run_cli, cli, *gateway_argv(url, journal))
            await until(lambda: replied(gateway) == 2, "both messages replied")
            return result

    code, report = asyncio.run(scenario())
    assert (code, report["accepted"], report["duplicate"]) == (0, 2, 0)  # 1 taken, then 1 more
    assert report["http_answers"] == {"200": 1, "503": 1}
    assert report["waited_s"] >= 2.0
    assert report["retries"] == 2


def test_gateway_mode_with_a_wrong_secret_stops_at_the_401_and_keeps_everything(
    cli: ModuleType, make_engine: EngineFactory, journal: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    monkeypatch.setenv("T_SECRET", "not-the-app-secret")

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with serving(gateway) as url:
            argv = gateway_argv(url, journal, "--consume")
            return await asyncio.to_thread(run_cli, cli, *argv)

    code, report = asyncio.run(scenario())
    assert code == 1
    assert "answered 401" in report["stopped"]
    assert (report["accepted"], len(report["unsubmitted"]), report["kept"]) == (0, COUNT, COUNT)
    assert len(read_all(journal)) == COUNT
    assert gateway.counters.get("signature_failures", why="mismatch") == 1


def test_gateway_mode_resolves_a_mixed_answer_message_by_message(cli: ModuleType) -> None:
    target = cli.GatewayTarget(dead_url(), SECRET, {"acct-1": PHONE_ID})
    answers = iter(
        [
            (200, {"accepted": 1, "rejected": {"account_failed": 1}}, 1.0),
            (200, {"accepted": 0, "rejected": {"duplicate": 1}}, 1.0),  # the one taken above
            (200, {"accepted": 0, "rejected": {"account_failed": 1}}, 1.0),
        ]
    )
    target._post = lambda phone_id, msgs: next(answers)
    results = target.submit_many([inbound(1), inbound(2)])
    assert [type(r).__name__ for r in results] == ["Accepted", "Rejected"]
    assert results[1].reason == "account_failed"


def test_gateway_mode_reports_an_unmapped_account_and_a_dead_gateway(
    cli: ModuleType, journal: Path, secret_env: None
) -> None:
    code, report = run_cli(cli, *gateway_argv(dead_url(), journal))
    assert code == 1
    assert report["stopped"].startswith("cannot post to the gateway")
    assert len(report["unsubmitted"]) == COUNT
    argv = gateway_argv(dead_url(), journal)
    argv[2] = "--phone-number-id-map=acct-9=1"
    code, report = run_cli(cli, *argv)
    assert (code, len(report["rejected"]["unknown_account"])) == (1, COUNT)


def test_dry_run_counts_and_validates_without_submitting(cli: ModuleType, journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write(b"\x00\x00")
    code, report = run_cli(cli, *gateway_argv(dead_url(), journal, "--dry-run"))
    assert (code, report["read"], report["torn_bytes"], report["dry_run"]) == (0, COUNT, 2, True)
    assert report["accounts_without_mapping"] == []
    argv = gateway_argv(dead_url(), journal, "--dry-run")
    argv[2] = "--phone-number-id-map=acct-9=1"
    code, report = run_cli(cli, *argv)
    assert (code, report["accounts_without_mapping"]) == (1, ["acct-1"])
    assert len(journal_files(journal)) == 2


def write_config(path: Path, journal: Path, base: str) -> Path:
    path.write_text(
        f"""
[gateway]
base = "{base}"

[engine]
dead_letter_path = "{journal}"
intake_path = "{path.parent / "intake" / "intake.db"}"
drain_timeout_s = 1.0

[[accounts]]
account_id = "acct-1"
phone_number_id = "{PHONE_ID}"

[[providers]]
name = "echo"
kind = "echo"
options = {{ latency_s = 0.0 }}
"""
    )
    return path


def test_config_mode_replays_into_an_embedded_multiproc_engine_and_consumes(
    cli: ModuleType, journal: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "gateway.toml", journal, "multiprocTCPBase")
    code, report = run_cli(cli, f"--config={config}", "--dry-run")
    assert (code, report["read"]) == (0, COUNT)
    code, report = run_cli(cli, f"--config={config}", "--consume")
    assert (code, report["accepted"], report["outcomes"]) == (0, COUNT, {"replied": COUNT})
    assert report["base"] == "multiprocTCPBase"
    assert report["abandoned_at_shutdown"] == 0
    assert len(report["removed"]) == 2
    assert journal_files(journal) == []
    code, report = run_cli(cli, f"--config={config}", "--consume")
    assert (code, report["read"], report["outcomes"]) == (0, 0, {})


def test_the_summary_names_counts_and_refused_ids(journal: Path) -> None:
    report = replay_journal(
        Recorder(lambda msg, attempt: "unknown_account" if msg.message_id == "wamid.4" else None),
        journal,
    )
    text = report.summary()
    assert text.startswith(f"replayed {COUNT} records from 2 file(s): {journal}.1, {journal}")
    assert f"accepted {COUNT - 1}, duplicate 0" in text
    assert "rejected (kept): unknown_account 1 [wamid.4]" in text
    assert scan_journal(journal).summary().startswith(f"scanned {COUNT} records")


# --- the intake store as a source ----------------------------------------------------------------

STORE_NOW = 1_700_000_000.0
FINISHED = (1, 4)
SENT = (2, 7)  # reply confirmed sent, no outcome recorded yet: already replied
FINISHED_AND_SENT = (5,)
UNFINISHED = ("wamid.0", "wamid.3", "wamid.6", "wamid.8", "wamid.9")  # in acceptance order


def make_store(path: Path) -> Path:
    """A closed store of 10 messages: finished, sent, both, and UNFINISHED ones."""
    with IntakeStore.open(
        path, durability="fsync", retention_s=3600.0, max_records=100, clock=lambda: STORE_NOW
    ) as store:
        store.record_accepted([(inbound(i, text=f"store {i}"), STORE_NOW + 60) for i in range(10)])
        store.record_sent([(f"wamid.{i}", "on its way") for i in (*SENT, *FINISHED_AND_SENT)])
        store.record_outcomes(
            Outcome(message_id=f"wamid.{i}", status="replied", reply="done")
            for i in (*FINISHED, *FINISHED_AND_SENT)
        )
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "old-engine" / "intake.db")


def rows(path: Path) -> list[tuple[Any, ...]]:
    """Every row of the store, every column (to show a replay changed nothing)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT * FROM intake ORDER BY seq").fetchall()


def test_a_store_replays_exactly_its_unfinished_unsent_messages_in_order(store: Path) -> None:
    before = rows(store)
    target = Recorder()
    report = replay_store(target, store, batch=2)
    assert ids(target.sent) == list(UNFINISHED)
    assert (report.source, report.files, report.read) == ("store", (str(store),), len(UNFINISHED))
    assert (report.accepted, report.sent_skipped, report.corrupt) == (len(UNFINISHED), 2, 0)
    assert report.complete
    assert report.summary().splitlines()[:2] == [
        f"replayed {len(UNFINISHED)} unfinished records from the intake store {store}",
        "  already replied (marked sent), skipped 2",
    ]
    assert rows(store) == before  # read only: every row as it was, none finished
    # No lock was kept: the store's engine can start on it again.
    IntakeStore.open(store, durability="fsync", retention_s=3600.0, max_records=100).close()


def test_a_store_replayed_into_an_embedded_engine_ends_each_unfinished_message_once(
    make_engine: EngineFactory, store: Path
) -> None:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    report = replay_store(engine, store)
    assert (report.accepted, report.sent_skipped) == (len(UNFINISHED), 2)
    outcomes = collect(engine, UNFINISHED, deadline_s=10)
    assert {o.status for o in outcomes.values()} == {"replied"}
    assert engine.outcomes(timeout=0.2) == []  # nothing finished or sent was submitted
    again = replay_store(engine, store)
    assert (again.accepted, again.duplicate) == (0, len(UNFINISHED))


def test_a_store_held_by_a_live_engine_is_refused_before_anything_is_read(
    cli: ModuleType, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = Recorder()
    with IntakeStore.open(store, durability="fsync", retention_s=3600.0, max_records=100):
        with pytest.raises(StoreLockedError, match="held by a live engine") as caught:
            replay_store(target, store)
        assert caught.value.pid == os.getpid()
        with pytest.raises(StoreLockedError):
            scan_store(store)
        argv = store_argv(dead_url(), store, "--dry-run")
        assert cli.run(cli.parse_args(argv), io.StringIO()) == 2
        refusal = f"replay: the intake store {str(store)!r} is held by a live engine (pid "
        assert refusal in capsys.readouterr().err
    assert target.sent == []
    assert replay_store(target, store).read == len(UNFINISHED)  # released: replayable now


def test_corrupt_rows_of_a_store_are_counted_and_the_others_replayed(store: Path) -> None:
    with contextlib.closing(sqlite3.connect(store)) as conn, conn:
        conn.execute("UPDATE intake SET message = x'c1c1' WHERE message_id = 'wamid.3'")
        other = encode(inbound(99))  # a valid frame filed under another id
        conn.execute("UPDATE intake SET message = ? WHERE message_id = 'wamid.8'", (other,))
    target = Recorder()
    report = replay_store(target, store)
    assert ids(target.sent) == ["wamid.0", "wamid.6", "wamid.9"]
    assert (report.read, report.corrupt, report.sent_skipped) == (3, 2, 2)
    assert not report.complete
    assert "in row 4 ('wamid.3') of the intake store" in report.problems[0]
    assert "the frame holds message 'wamid.99' in row 9 ('wamid.8')" in report.problems[1]


def test_a_path_that_is_no_intake_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="there is no intake store at"):
        replay_store(Recorder(), tmp_path / "missing.db")
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="is not an intake store"):
        scan_store(foreign)


def store_argv(url: str, store: Path, *more: str) -> list[str]:
    argv = gateway_argv(url, store, *more)
    argv[3] = f"--store={store}"  # instead of --journal
    return argv


def test_consume_is_refused_for_a_store(
    cli: ModuleType, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(store_argv(dead_url(), store, "--consume"))
    assert caught.value.code == 2
    assert "--consume cannot be used with --store: the store belongs to its engine" in (
        capsys.readouterr().err
    )


@pytest.mark.usefixtures("secret_env")
def test_gateway_mode_posts_a_stores_unfinished_unsent_messages(
    cli: ModuleType, make_engine: EngineFactory, store: Path
) -> None:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    submitted: list[str] = []
    submit_many = engine.submit_many

    def recording(messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
        batch = list(messages)
        submitted.extend(ids(batch))
        return submit_many(batch)

    engine.submit_many = recording  # type: ignore[method-assign]
    gateway = make_gateway(engine)

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with serving(gateway) as url:
            code, dry = await asyncio.to_thread(run_cli, cli, *store_argv(url, store, "--dry-run"))
            assert (code, dry["read"], dry["sent_skipped"]) == (0, len(UNFINISHED), 2)
            result = await asyncio.to_thread(run_cli, cli, *store_argv(url, store))
            await until(lambda: replied(gateway) == len(UNFINISHED), "the replayed ones replied")
            return result

    code, report = asyncio.run(scenario())
    assert (code, report["source"], report["accepted"], report["sent_skipped"]) == (
        0,
        "store",
        len(UNFINISHED),
        2,
    )
    assert submitted == list(UNFINISHED)


def test_config_mode_replays_a_store_into_another_engine_and_refuses_its_own(
    cli: ModuleType, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "gateway.toml", tmp_path / "dead.bin", "simpleSystemBase")
    code, report = run_cli(cli, f"--config={config}", f"--store={store}")
    assert (code, report["accepted"], report["sent_skipped"]) == (0, len(UNFINISHED), 2)
    assert report["outcomes"] == {"replied": len(UNFINISHED)}
    own = tmp_path / "intake" / "intake.db"  # the config's intake_path, now created
    out = io.StringIO()
    assert cli.run(cli.parse_args([f"--config={config}", f"--store={own}"]), out) == 2
    assert out.getvalue() == ""
    assert f"is the intake_path of --config {str(config)!r}" in capsys.readouterr().err


def test_a_store_is_refused_while_its_engine_lives_and_replayed_whole_after_it_was_killed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crashed" / "intake.db"
    with store_holder(path) as holder:
        with pytest.raises(StoreLockedError, match=rf"held by a live engine \(pid {holder.pid}\)"):
            scan_store(path)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 0  # the commit is in the log, not checkpointed
    target = Recorder()
    report = replay_store(target, path)
    assert ids(target.sent) == ["wamid.k"]
    assert report.complete
