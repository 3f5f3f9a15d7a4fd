"""The intake store wired into the engine: nothing acknowledged is lost across restarts.

Each engine here runs on a store in ``tmp_path`` (real SQLite files); a second engine on
the same store is what a restart is. The crash test runs an engine in a child process
(``tests/crash_engine.py``) and SIGKILLs it with every actor process.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from loguru import logger

from actors import Engine, EngineConfig, StoreError, StoreLockedError
from actors.account.actor import LoopbackSent
from actors.engine.intake import IntakeStore
from actors.engine.ledger import TIMEOUT_DETAIL
from actors.runtime import procs
from protocols import Accepted, Rejected
from tests.conftest import BASES, EngineFactory
from tests.engine_helpers import collect, inbound, wait_for

ROOT = Path(__file__).resolve().parent.parent
CRASH_ENGINE = ROOT / "tests" / "crash_engine.py"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store" / "intake.db"


def rows(store: Path) -> dict[str, tuple[str | None, float | None]]:
    """Each recorded id: its status (None: unfinished) and when it was marked sent."""
    conn = sqlite3.connect(store)
    try:
        return {
            mid: (status, sent_at)
            for mid, status, sent_at in conn.execute(
                "SELECT message_id, status, sent_at FROM intake"
            )
        }
    finally:
        conn.close()


def sent_ids(engine: Engine, account: str = "acct-1") -> set[str]:
    return {r.message_id for r in engine.ask_child("account", account, LoopbackSent()).records}


# -- shutdown and restart --------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_what_shutdown_leaves_pending_resumes_on_the_next_start_with_one_outcome_each(
    make_engine: EngineFactory, base: str, store: Path, tmp_path: Path
) -> None:
    first = make_engine(
        base,
        echo={"latency_s": 60.0},
        accounts=("acct-1",),
        drain_timeout_s=0.3,
        shutdown_timeout_s=3.0,
        intake_path=str(store),
    )
    submitted = [inbound(i) for i in range(12)]
    assert all(isinstance(r, Accepted) for r in first.submit_many(submitted))
    report = first.shutdown()
    ids = {m.message_id for m in submitted}
    assert set(report.abandoned) == ids  # listed, but kept: no outcome now, no journal
    assert first.outcomes(timeout=0) == []
    assert not (tmp_path / "dead-letters.bin").exists()
    assert {mid: status for mid, (status, _) in rows(store).items()} == dict.fromkeys(ids)

    second = make_engine(base, echo={"latency_s": 0.0}, intake_path=str(store))
    assert second.stats().counters["intake.parked"] == 12  # waiting for their account
    second.add_account("acct-1")
    outcomes = collect(second, ids)
    assert {o.status for o in outcomes.values()} == {"replied"}
    assert second.outcomes(timeout=0.2) == []
    counters = second.stats().counters
    assert (counters["intake.recovered"], counters["intake.readmitted"]) == (12, 12)
    assert counters["intake.parked"] == 0
    assert {status for status, _ in rows(store).values()} == {"replied"}


def test_a_redelivery_after_a_restart_is_rejected_duplicate(
    make_engine: EngineFactory, store: Path
) -> None:
    first = make_engine(
        "simpleSystemBase", echo={"latency_s": 0.0}, accounts=("acct-1",), intake_path=str(store)
    )
    assert isinstance(first.submit(inbound(1)), Accepted)
    assert collect(first, ["wamid.1"])["wamid.1"].status == "replied"
    first.shutdown()

    second = make_engine(
        "simpleSystemBase", echo={"latency_s": 0.0}, accounts=("acct-1",), intake_path=str(store)
    )
    again, fresh = second.submit_many([inbound(1), inbound(2)])
    assert again == Rejected(
        message_id="wamid.1",
        reason="duplicate",
        detail="message id seen before (the intake store keeps ids up to 7 days)",
    )
    assert isinstance(fresh, Accepted)
    collect(second, ["wamid.2"])
    counters = second.stats().counters
    assert (counters["intake.duplicates"], counters["reject.duplicate"]) == (1, 1)
    assert sent_ids(second) == {"wamid.2"}  # the redelivery was not answered again


def test_a_second_engine_on_the_store_fails_at_start_before_any_process_exists(
    make_engine: EngineFactory, store: Path
) -> None:
    make_engine("simpleSystemBase", intake_path=str(store))
    second = Engine(EngineConfig(intake_path=str(store)), base="multiprocTCPBase")
    with pytest.raises(StoreLockedError, match=r"is in use by another engine \(pid \d+, this"):
        second.start()
    assert second.pids == frozenset()
    assert second.admin_port is None  # no actor system was made
    with pytest.raises(StoreLockedError):  # still new: it may be started again, and refused
        second.start()


# -- recovery --------------------------------------------------------------------------


def test_recovery_ends_what_is_over_without_a_send_and_readmits_the_rest_with_its_deadline(
    make_engine: EngineFactory, store: Path
) -> None:
    now = time.time()
    with IntakeStore.open(store, durability="fsync", retention_s=60.0, max_records=100) as s:
        s.record_accepted(
            [
                (inbound("sent"), now + 100.0),  # its reply went out before the crash
                (inbound("late"), now - 1.0),  # its deadline passed while nothing ran
                (inbound("short"), now + 1.5),  # must keep its 1.5 s, not get 120 s
                (inbound("fresh"), now + 100.0),
            ],
            now - 5.0,
        )
        s.record_sent([("wamid.sent", "your order shipped")])

    engine = make_engine("multiprocTCPBase", echo={"latency_s": 60.0}, intake_path=str(store))
    over = {o.message_id: o for o in engine.outcomes(timeout=0)}  # ready at start
    assert over["wamid.sent"].status == "replied"
    assert over["wamid.sent"].reply == "your order shipped"
    assert over["wamid.late"].status == "timeout"
    assert "past its deadline; nothing was sent" in over["wamid.late"].detail
    assert set(over) == {"wamid.sent", "wamid.late"}
    counters = engine.stats().counters
    recovered = [counters[f"intake.recovered{k}"] for k in ("", "_replied", "_timeout")]
    assert recovered == [2, 1, 1]

    engine.add_account("acct-1")
    short = collect(engine, ["wamid.short"], deadline_s=30)["wamid.short"]
    # The router (or the pool) timed it out at the deadline it was re-admitted with: with
    # a new 120 s deadline, the ledger's backstop would have ended it, one second after.
    assert (short.status, short.reason) == ("timeout", "timeout")
    assert short.detail != TIMEOUT_DETAIL
    assert engine.ask_child("account", "acct-1", LoopbackSent()).sent_total == 0
    assert rows(store)["wamid.fresh"][0] is None  # still in processing (60 s echo)
    assert {mid: status for mid, (status, _) in rows(store).items() if status} == {
        "wamid.sent": "replied",
        "wamid.late": "timeout",
        "wamid.short": "timeout",
    }


def test_a_recovered_message_whose_account_never_returns_times_out_at_its_deadline(
    make_engine: EngineFactory, store: Path
) -> None:
    now = time.time()
    with IntakeStore.open(store, durability="os", retention_s=60.0, max_records=100) as s:
        s.record_accepted([(inbound(1, account="gone"), now + 0.5)], now)
    engine = make_engine("simpleSystemBase", intake_path=str(store), durability="os")
    outcome = collect(engine, ["wamid.1"], deadline_s=20)["wamid.1"]
    assert (outcome.status, outcome.reason) == ("timeout", "timeout")  # the ledger's backstop
    assert rows(store)["wamid.1"][0] == "timeout"


# -- bounds ----------------------------------------------------------------------------


def test_a_store_full_of_unfinished_messages_refuses_new_ones_capacity(
    make_engine: EngineFactory, store: Path
) -> None:
    engine = make_engine(
        "simpleSystemBase",
        echo={"latency_s": 60.0},
        accounts=("acct-1",),
        intake_path=str(store),
        intake_max_records=5,
        drain_timeout_s=0.1,
    )
    results = engine.submit_many([inbound(i) for i in range(8)])
    assert [type(r).__name__ for r in results] == ["Accepted"] * 5 + ["Rejected"] * 3
    assert results[5] == Rejected(
        message_id="wamid.5",
        reason="capacity",
        detail="the intake store is full (intake_max_records=5: 0 records, 0 of them "
        "unfinished, room for 5 of this batch)",
    )
    assert engine.submit(inbound(9)) == Rejected(
        message_id="wamid.9",
        reason="capacity",
        detail="the intake store is full (intake_max_records=5: 5 records, 5 of them "
        "unfinished, room for 0 of this batch)",
    )
    counters = engine.stats().counters
    assert (counters["reject.capacity"], counters["intake.refused_capacity"]) == (4, 4)
    assert counters["router.accepted"] == 5  # the router was not asked for the others


def test_finished_records_make_room_early_when_the_store_is_full(
    make_engine: EngineFactory, store: Path
) -> None:
    engine = make_engine(
        "simpleSystemBase",
        echo={"latency_s": 0.0},
        accounts=("acct-1",),
        intake_path=str(store),
        intake_max_records=5,
    )
    assert all(isinstance(r, Accepted) for r in engine.submit_many(inbound(i) for i in range(5)))
    collect(engine, [f"wamid.{i}" for i in range(5)])
    # Full, but finished: the oldest go first (a week's retention or not), nothing is refused.
    assert all(isinstance(r, Accepted) for r in engine.submit_many(inbound(i) for i in range(5, 8)))
    counters = engine.stats().counters
    assert counters["intake.evicted"] == 3
    assert counters["intake.records"] == 5
    # The dedupe horizon of the evicted ones is over: the store does not know them now.
    assert set(rows(store)) == {f"wamid.{i}" for i in range(3, 8)}


# -- failures --------------------------------------------------------------------------


def test_a_failed_write_keeps_the_accepted_messages_going_and_says_so(
    make_engine: EngineFactory, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(
        "simpleSystemBase", echo={"latency_s": 0.0}, accounts=("acct-1",), intake_path=str(store)
    )
    keeper = engine._book.intake
    assert keeper is not None

    def broken(*args: object, **kwargs: object) -> int:
        raise StoreError("disk I/O error (injected)", path=str(store))

    monkeypatch.setattr(keeper.store, "record_accepted", broken)
    logs: list[str] = []
    sink = logger.add(logs.append, level="ERROR", format="{message}")
    try:
        result = engine.submit(inbound(1))
    finally:
        logger.remove(sink)
    # In the router already: refusing it now would leave it processed and unanswered.
    assert isinstance(result, Accepted)
    assert collect(engine, ["wamid.1"])["wamid.1"].status == "replied"
    assert engine.stats().counters["intake.unrecorded"] == 1
    assert any("a crash before their outcome would lose them" in line for line in logs)


# -- the crash -------------------------------------------------------------------------


class CrashChild:
    """``crash_engine.py`` in its own session, its lines read by a thread as they come."""

    def __init__(self, store: Path, durability: str, count: int, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAE_")}
        env["THESPLOG_FILE"] = str(tmp_path / "thespian.log")
        self.proc = subprocess.Popen(
            [sys.executable, str(CRASH_ENGINE), str(store), durability, str(count)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: one killpg reaches it all
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def take(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.seen.append(self.lines.get_nowait())

    def words(self, kind: str) -> list[list[str]]:
        return [line.split()[1:] for line in self.seen if line.split()[:1] == [kind]]

    def wait(self, what: str, condition: Callable[[], object]) -> None:
        def ready() -> bool:
            self.take()
            return bool(condition())

        wait_for(ready, deadline_s=90.0, what=what)

    def kill_everything(self) -> set[int]:
        """SIGKILL the child's process group and every process of its actor system."""
        pids = {int(p) for words in self.words("pids") for p in words}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert procs.wait_gone(pids, timeout_s=10.0) == set(), "a killed process lives on"
        self.reader.join(timeout=10)
        self.take()
        return pids

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_everything()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_sigkill_of_the_engine_and_every_actor_process_loses_nothing_acknowledged(
    make_engine: EngineFactory, store: Path, tmp_path: Path, durability: str
) -> None:
    child = CrashChild(store, durability, 400, tmp_path)
    try:
        child.wait("the child's pids", lambda: child.words("pids"))
        child.wait("10 outcomes", lambda: len(child.words("outcome")) >= 10)
        # Mid-stream, between two collections: messages in processing, replies sent and
        # marked sent but not collected yet.
        then = len(child.words("accepted"))
        child.wait("40 more accepted", lambda: len(child.words("accepted")) >= then + 40)
        child.kill_everything()
    finally:
        child.close()
    accepted = {w[0] for w in child.words("accepted")}
    before = {w[0]: w[1] for w in child.words("outcome")}
    recorded = rows(store)
    unfinished = {mid for mid, (status, _) in recorded.items() if status is None}
    marked = {mid for mid, (status, sent_at) in recorded.items() if status is None and sent_at}
    # Acknowledged means recorded; an outcome handed out means an outcome recorded.
    assert accepted <= set(recorded)
    assert not set(before) & unfinished
    # The account processes marked every reply they sent.
    replied = [mid for mid, status in before.items() if status == "replied"]
    assert replied
    assert all(recorded[mid][1] is not None for mid in replied)

    engine = make_engine(
        "multiprocTCPBase", echo={"latency_s": 0.0}, intake_path=str(store), durability=durability
    )
    engine.add_account("acct-1")
    after = collect(engine, unfinished, deadline_s=60)
    assert engine.outcomes(timeout=0.5) == []  # nothing else: no second outcome for anyone
    assert set(after) == unfinished
    assert accepted <= set(before) | set(after)  # every acknowledged message: one outcome
    assert {o.status for o in after.values()} == {"replied"}
    counters = engine.stats().counters
    assert counters["intake.recovered_replied"] == len(marked)
    assert counters["intake.recovered"] == len(unfinished) - len(marked)
    # A reply marked sent before the crash is not sent again; the others are sent once.
    resent = sent_ids(engine)
    assert not resent & marked
    assert resent == unfinished - marked
    print(
        f"\ncrash ({durability}): {len(accepted)} acknowledged, {len(before)} outcomes "
        f"before the kill, {len(unfinished)} unfinished in the store ({len(marked)} marked "
        f"sent), {len(after)} outcomes after the restart, 0 twice, 0 lost; "
        f"{len(resent)} replies sent by the new engine"
    )


def test_an_outcome_is_recorded_when_handed_out_not_when_it_waits_in_the_book(
    tmp_path: Path,
) -> None:
    from actors.config import EngineConfig
    from actors.engine.intake_book import MessageBook
    from protocols import Accepted, Outcome

    store = tmp_path / "intake.db"
    book = MessageBook(EngineConfig(intake_path=str(store), durability="os"))
    book.open(1_700_000_000.0)
    try:
        msg = inbound(1)
        book.admit([msg], [Accepted(message_id=msg.message_id, deadline=1_700_000_100.0)], 1e9)
        assert rows(store)[msg.message_id][0] is None
        # An outcome resolved but still waiting in the book (a late answer set aside):
        # a crash now must find the message unfinished, to recover it.
        outcome = Outcome(message_id=msg.message_id, status="replied", reply="hi")
        book.ready.extend(book.resolve([outcome]))
        book.record()
        assert rows(store)[msg.message_id][0] is None
        handed = book.take_ready(10)
        book.record(handed=handed)
        assert handed == [outcome]
        assert rows(store)[msg.message_id][0] == "replied"
    finally:
        book.close()
