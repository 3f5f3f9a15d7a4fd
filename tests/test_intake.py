"""The durable intake store (actors.engine.intake): commits, recovery, bounds, files, lock."""

from __future__ import annotations

import math
import os
import pickle
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.config import EngineConfig, load_config
from actors.engine.intake import PRUNE_SQL, UNFINISHED_SQL, IntakeStore
from actors.engine.intake_marks import SentMarks
from actors.errors import ConfigError, StoreError, StoreFullError, StoreLockedError
from actors.runtime import procs
from protocols import EncodeError, InboundMessage, Outcome
from tests.store_helpers import store_holder

ROOT = Path(__file__).resolve().parent.parent
DAY = 24 * 3600.0


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def msg(n: int, text: str = "hello") -> InboundMessage:
    return InboundMessage(
        account_id="acct-1", customer_id="+15550001", message_id=f"wamid.{n:05d}", text=text
    )


def mid(n: int) -> str:
    return msg(n).message_id


def replied(n: int, reply: str = "hi!") -> Outcome:
    return Outcome(message_id=mid(n), status="replied", reply=reply)


def failed(n: int) -> Outcome:
    return Outcome(message_id=mid(n), status="failed", reason="no_provider")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "intake" / "intake.db"


def open_store(
    path: Path,
    clock: Clock | None = None,
    *,
    durability: str = "fsync",
    retention_s: float = 7 * DAY,
    max_records: int = 1_000,
) -> IntakeStore:
    return IntakeStore.open(
        path,
        durability=durability,
        retention_s=retention_s,
        max_records=max_records,
        clock=clock or Clock(),
    )


@pytest.fixture
def store(db_path: Path, clock: Clock) -> Iterator[IntakeStore]:
    s = open_store(db_path, clock)
    yield s
    s.close()


def committed_ids(path: Path) -> set[str]:
    """What another connection sees: only committed rows."""
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT message_id FROM intake")}
    finally:
        conn.close()


# -- commits -------------------------------------------------------------------------


def test_a_batch_of_accepted_messages_is_one_commit(store: IntakeStore, db_path: Path) -> None:
    assert store.record_accepted([(msg(n), 2_000.0) for n in range(200)]) == 200
    assert store.stats()["commits"] == 1
    assert len(committed_ids(db_path)) == 200
    assert store.record_outcomes([replied(n) for n in range(150)]) == 150
    assert store.record_sent([(mid(n), "hi!") for n in range(150, 160)]) == 10
    assert store.stats()["commits"] == 3


def test_writes_inside_a_batch_share_the_outermost_commit(
    store: IntakeStore, db_path: Path
) -> None:
    with store.batch():
        store.record_accepted([(msg(1), 2_000.0)])
        with store.batch():
            store.record_accepted([(msg(2), 2_000.0)])
            store.record_outcomes([failed(1)])
        assert committed_ids(db_path) == set()  # the inner exit did not commit
        store.record_sent([(mid(2), "hi!")])
    assert committed_ids(db_path) == {mid(1), mid(2)}
    assert store.stats()["commits"] == 1


def test_a_batch_that_raises_rolls_back_its_writes_and_counts(
    store: IntakeStore, db_path: Path
) -> None:
    store.record_accepted([(msg(1), 2_000.0)])
    before = store.stats()

    def give_up() -> None:
        with store.batch():
            store.record_accepted([(msg(2), 2_000.0), (msg(3), 2_000.0)])
            store.record_outcomes([failed(1)])
            raise RuntimeError("gateway gave up")

    with pytest.raises(RuntimeError, match="gateway gave up"):
        give_up()
    assert committed_ids(db_path) == {mid(1)}
    assert store.stats() == before
    assert store.seen([mid(2)]) == set()


def test_a_database_error_inside_a_batch_dooms_it_even_when_caught(
    store: IntakeStore, db_path: Path
) -> None:
    def catch_and_go_on() -> None:
        with store.batch():
            store.record_accepted([(msg(1), 2_000.0)])
            with pytest.raises(StoreError):
                store._db.execute("INSERT INTO nowhere VALUES (1)")

    with pytest.raises(StoreError, match=r"cannot use the intake store .*intake\.db.*nowhere"):
        catch_and_go_on()
    assert committed_ids(db_path) == set()
    assert store.stats()["records"] == 0
    store.record_accepted([(msg(2), 2_000.0)])  # the store is usable again
    assert committed_ids(db_path) == {mid(2)}


def test_the_store_may_be_used_from_another_thread(store: IntakeStore) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            store.record_accepted([(msg(7), 2_000.0)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert errors == []
    assert store.seen([mid(7)]) == {mid(7)}


# -- recovery and dedupe across restarts ----------------------------------------------


def test_recorded_ids_are_seen_after_a_reopen(db_path: Path, clock: Clock) -> None:
    with open_store(db_path, clock) as store:
        store.record_accepted([(msg(1), 2_000.0), (msg(2), 2_000.0)])
        store.record_outcomes([replied(1)])
    with open_store(db_path, clock) as store:
        assert store.seen([mid(1), mid(2), mid(3)]) == {mid(1), mid(2)}
        assert store.stats()["records"] == 2
        assert store.stats()["unfinished"] == 1


def test_seen_answers_for_more_ids_than_one_query_takes(store: IntakeStore) -> None:
    store.record_accepted([(msg(n), 2_000.0) for n in range(0, 1_500, 2)])
    assert store.seen(mid(n) for n in range(1_500)) == {mid(n) for n in range(0, 1_500, 2)}


def test_unfinished_messages_come_back_after_a_reopen_with_their_deadlines(
    db_path: Path, clock: Clock
) -> None:
    with open_store(db_path, clock) as store:
        store.record_accepted([(msg(3), 1_120.0), (msg(1), 1_050.0)])
        clock.now = 1_010.0
        store.record_accepted([(msg(2), 1_130.0)])
        store.record_outcomes([failed(1)])
    with open_store(db_path, Clock(5_000.0)) as store:
        back = store.unfinished()
    assert [(u.message, u.deadline, u.accepted_at) for u in back] == [
        (msg(3), 1_120.0, 1_000.0),  # acceptance order, not id or deadline order
        (msg(2), 1_130.0, 1_010.0),
    ]
    assert all(u.sent_at is None and u.reply is None for u in back)
    message, deadline, sent_at, reply, _ = back[0]  # also a plain tuple
    assert (message.text, deadline, sent_at, reply) == ("hello", 1_120.0, None, None)


def test_unfinished_takes_a_limit(store: IntakeStore) -> None:
    store.record_accepted([(msg(n), 2_000.0) for n in range(5)])
    assert [u.message.message_id for u in store.unfinished(limit=2)] == [mid(0), mid(1)]


def test_a_confirmed_send_survives_a_reopen(db_path: Path, clock: Clock) -> None:
    with open_store(db_path, clock) as store:
        store.record_accepted([(msg(1), 2_000.0), (msg(2), 2_000.0)])
        clock.now = 1_005.0
        assert store.record_sent([(mid(1), "your order shipped")]) == 1
        assert store.record_sent([(mid(1), "a second confirmation")]) == 0  # the first wins
    with open_store(db_path, clock) as store:
        first, second = store.unfinished()
    assert (first.sent_at, first.reply) == (1_005.0, "your order shipped")
    assert (second.sent_at, second.reply) == (None, None)


def test_an_outcome_finishes_its_row_once(store: IntakeStore) -> None:
    store.record_accepted([(msg(1), 2_000.0), (msg(2), 2_000.0)])
    assert store.record_outcomes([replied(1), Outcome(message_id="wamid.unknown", status="timeout",
                                                      reason="deadline")]) == 1  # fmt: skip
    assert store.record_outcomes([failed(1)]) == 0  # the first outcome stays
    assert [u.message.message_id for u in store.unfinished()] == [mid(2)]
    row = store._db.execute(
        "SELECT status, reason, reply, finished_at FROM intake WHERE message_id = ?", (mid(1),)
    ).fetchone()
    assert row == ("replied", "", "hi!", 1_000.0)
    assert store.stats()["finished"] == 1


def test_an_abandoned_outcome_leaves_the_message_to_resume_at_the_next_start(
    store: IntakeStore,
) -> None:
    store.record_accepted([(msg(1), 2_000.0)])
    abandoned = Outcome(message_id=mid(1), status="abandoned", reason="shutdown")
    assert store.record_outcomes([abandoned]) == 0
    assert [u.message for u in store.unfinished()] == [msg(1)]


def test_an_id_recorded_twice_keeps_its_first_row(store: IntakeStore, clock: Clock) -> None:
    store.record_accepted([(msg(1), 1_100.0)])
    clock.now = 1_050.0
    assert store.record_accepted([(msg(1), 9_999.0), (msg(2), 1_200.0)]) == 1
    assert [(u.message.message_id, u.deadline) for u in store.unfinished()] == [
        (mid(1), 1_100.0),
        (mid(2), 1_200.0),
    ]


def test_a_message_over_the_frame_limit_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "intake.db"
    with IntakeStore.open(
        path, durability="os", retention_s=1.0, max_records=10, max_frame_bytes=1024
    ) as store:
        with pytest.raises(EncodeError, match="over the 1024-byte limit"):
            store.record_accepted([(msg(1), 2_000.0), (msg(2, "x" * 2_000), 2_000.0)])
        assert store.stats()["records"] == 0


# -- bounds --------------------------------------------------------------------------


def test_pruning_deletes_old_finished_records_in_bounded_steps(db_path: Path, clock: Clock) -> None:
    store = open_store(db_path, clock, retention_s=DAY, max_records=2_000)
    try:
        store.record_accepted([(msg(n), 2_000.0) for n in range(1_300)])
        store.record_outcomes([failed(n) for n in range(1_200)])  # finished at 1_000
        clock.now = 1_000.0 + DAY
        assert store.prune() == 0  # exactly the retention: kept
        clock.now += 1
        assert store.record_outcomes([failed(1_200)]) == 1  # finished now: not yet due
        assert [store.prune(budget=500) for _ in range(4)] == [500, 500, 200, 0]
        stats = store.stats()
        assert (stats["records"], stats["pruned"], stats["unfinished"]) == (100, 1_200, 99)
        assert store.seen([mid(0), mid(1_199), mid(1_200), mid(1_299)]) == {mid(1_200), mid(1_299)}
    finally:
        store.close()
    with open_store(db_path, clock) as again:
        assert again.stats()["records"] == 100


def test_pruning_and_recovery_walk_their_partial_indexes(store: IntakeStore) -> None:
    def plan(sql: str, params: tuple[object, ...]) -> str:
        rows = store._db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return " | ".join(row[-1] for row in rows)

    assert "USING COVERING INDEX intake_finished" in plan(PRUNE_SQL, (0.0, 500))
    assert "USING INDEX intake_unfinished" in plan(UNFINISHED_SQL, ())


def test_the_store_refuses_the_first_message_past_max_records(db_path: Path, clock: Clock) -> None:
    store = open_store(db_path, clock, max_records=3, retention_s=10.0)
    try:
        store.record_accepted([(msg(1), 2_000.0), (msg(2), 2_000.0)])
        assert (store.room(), store.full) == (1, False)
        with pytest.raises(StoreFullError) as refused:
            store.record_accepted([(msg(3), 2_000.0), (msg(4), 2_000.0)])  # all or nothing
        assert (refused.value.records, refused.value.limit) == (2, 3)
        assert "intake_max_records = 3" in str(refused.value)
        store.record_accepted([(msg(3), 2_000.0)])
        assert (store.room(), store.full) == (0, True)
        with pytest.raises(StoreFullError, match=r"is full: 3 records.*1 new messages do not fit"):
            store.record_accepted([(msg(4), 2_000.0)])
        assert store.record_accepted([(msg(2), 2_000.0)]) == 0  # a known id takes no room
        assert store.seen([mid(4)]) == set()
        assert store.stats()["refused_full"] == 3
        store.record_outcomes([failed(1)])
        clock.now += 11.0
        assert store.prune() == 1
        store.record_accepted([(msg(4), 2_000.0)])
        assert store.stats()["records"] == 3
    finally:
        store.close()


def test_make_room_deletes_the_oldest_finished_records_early_never_unfinished_ones(
    db_path: Path, clock: Clock
) -> None:
    store = open_store(db_path, clock, max_records=6, retention_s=DAY)
    try:
        store.record_accepted([(msg(n), 2_000.0) for n in range(6)])
        store.record_outcomes([failed(3)])
        clock.now += 1
        store.record_outcomes([failed(1)])
        clock.now += 1
        store.record_outcomes([failed(4)])
        assert store.prune() == 0  # a day's retention: nothing is due
        assert store.make_room(0) == 0  # room enough: nothing deleted
        assert store.make_room(2) == 2  # the two oldest outcomes, not the oldest ids
        assert store.seen(mid(n) for n in range(6)) == {mid(0), mid(2), mid(4), mid(5)}
        assert store.make_room(5, budget=1) == 1  # one step at most
        assert store.make_room(5) == 0  # only unfinished ones left: they are never deleted
        stats = store.stats()
        assert (stats["records"], stats["room"], stats["evicted"], stats["pruned"]) == (3, 3, 3, 0)
        plan = store._db.execute("EXPLAIN QUERY PLAN " + PRUNE_SQL, (math.inf, 5)).fetchall()
        assert "USING COVERING INDEX intake_finished" in " | ".join(row[-1] for row in plan)
    finally:
        store.close()


# -- sent marks from another connection (an account process) ---------------------------


def test_sent_marks_reach_the_store_through_their_own_connection(
    store: IntakeStore, db_path: Path
) -> None:
    store.record_accepted([(msg(1), 2_000.0), (msg(2), 2_000.0)])
    marks = SentMarks(str(db_path), "fsync", clock=lambda: 1_234.0)
    try:
        assert marks.mark([(mid(1), "shipped"), ("wamid.unknown", "x")]) == 1
        assert marks.mark([(mid(1), "again")]) == 0  # the first confirmation wins
        assert marks._conn is not None
        # NORMAL whatever the durability: a mark survives any process crash (module docs).
        assert marks._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        marks.close()
    first, second = store.unfinished()
    assert (first.sent_at, first.reply) == (1_234.0, "shipped")
    assert second.sent_at is None
    assert marks.marked == 1


def test_sent_marks_never_create_a_store_and_mark_nothing_without_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "intake.db"
    marks = SentMarks(str(missing), "os")
    with pytest.raises(StoreError, match=r"cannot open the intake store .*nowhere.* to mark"):
        marks.mark([(mid(1), "hi")])
    assert not missing.parent.exists()
    assert marks.failures == 1
    assert SentMarks(str(missing), "off").mark([(mid(1), "hi")]) == 0  # in memory: nothing
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).close()
    with pytest.raises(StoreError, match=r"not an intake store of schema version 1 \(it has 0\)"):
        SentMarks(str(foreign), "os").mark([(mid(1), "hi")])


def test_a_refusal_inside_a_batch_leaves_the_batch_usable(db_path: Path, clock: Clock) -> None:
    with open_store(db_path, clock, max_records=1) as store:
        with store.batch():
            store.record_accepted([(msg(1), 2_000.0)])
            with pytest.raises(StoreFullError):
                store.record_accepted([(msg(2), 2_000.0)])
            store.record_sent([(mid(1), "hi!")])
        assert committed_ids(db_path) == {mid(1)}
        assert store.stats()["refused_full"] == 1


# -- files and the lock --------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_0600_in_a_created_0700_directory_whatever_the_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "deep" / "intake.db"
    old = os.umask(0)
    try:
        store = open_store(path)
    finally:
        os.umask(old)
    try:
        store.record_accepted([(msg(1), 2_000.0)])
        names = sorted(p.name for p in path.parent.iterdir())
        assert names == ["intake.db", "intake.db-shm", "intake.db-wal", "intake.db.lock"]
        assert {name: mode(path.parent / name) for name in names} == dict.fromkeys(names, 0o600)
        assert mode(path.parent) == 0o700
    finally:
        store.close()


def test_existing_files_with_loose_modes_are_narrowed_to_0600(db_path: Path) -> None:
    with open_store(db_path) as store:
        store.record_accepted([(msg(1), 2_000.0)])
    for name in ("intake.db", "intake.db.lock"):
        os.chmod(db_path.parent / name, 0o644)
    with open_store(db_path):
        assert mode(db_path) == 0o600
        assert mode(db_path.parent / "intake.db.lock") == 0o600


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(
        StoreError, match=r"'.*shared' is writable by group or others \(mode 0777\)"
    ):
        open_store(shared / "intake.db")
    assert list(shared.iterdir()) == []


def test_a_second_store_on_the_same_path_is_refused_naming_the_path_and_pid(
    store: IntakeStore, db_path: Path
) -> None:
    with pytest.raises(StoreLockedError) as locked:
        open_store(db_path)
    assert locked.value.pid == os.getpid()
    assert str(locked.value) == (
        f"the intake store {str(db_path)!r} is in use by another engine (pid {os.getpid()}, "
        f"this process); two engines cannot share one intake_path"
    )
    store.close()
    open_store(db_path).close()  # closing released it


def test_a_sigkilled_holder_does_not_block_the_next_open_and_loses_nothing(
    db_path: Path,
) -> None:
    with store_holder(db_path) as holder:
        with pytest.raises(
            StoreLockedError, match=rf"in use by another engine \(pid {holder.pid}\)"
        ):
            open_store(db_path, durability="os")
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
    with open_store(db_path, durability="os") as store:
        [back] = store.unfinished()
    assert back.message.text == "acknowledged before the crash"


FORKER = textwrap.dedent(
    """
    import os, sys
    from actors.engine.intake import IntakeStore
    store = IntakeStore.open(sys.argv[1], durability="os", retention_s=60.0, max_records=10)
    child = os.fork()  # as Thespian forks an actor process from the embedding process
    if child == 0:  # the at-fork hooks have run when fork returns here
        print(os.getpid(), flush=True)
        sys.stdin.read()  # outlives its parent until the test closes stdin
        os._exit(0)
    sys.stdin.read()
    """
)


def test_an_actor_process_forked_by_a_sigkilled_engine_does_not_keep_the_lock(
    db_path: Path,
) -> None:
    # The child inherits the lock's descriptor; without the at-fork close it would keep the
    # lock for as long as it runs after its parent's death (an orphaned actor).
    engine = subprocess.Popen(
        [sys.executable, "-c", FORKER, str(db_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    orphan = 0
    try:
        assert engine.stdout is not None
        orphan = int(engine.stdout.readline())
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=30)
        assert procs.alive(orphan)
        open_store(db_path).close()
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(timeout=30)
        for pipe in (engine.stdin, engine.stdout):
            if pipe is not None:
                pipe.close()  # the orphan reads EOF and exits
        if orphan and procs.wait_gone([orphan], timeout_s=10.0):
            os.kill(orphan, signal.SIGKILL)
            procs.wait_gone([orphan], timeout_s=10.0)


def test_a_forked_child_cannot_use_the_store_and_leaves_the_parents_alone(
    db_path: Path,
) -> None:
    store = open_store(db_path)
    store.record_accepted([(msg(1), 2_000.0)])
    said_r, said_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try the store, report, leave at once
        code = 1
        try:
            os.close(said_r)
            try:
                store.seen(["x"])
                os.write(said_w, b"usable")
            except StoreError as exc:
                os.write(said_w, str(exc).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(said_w)
    try:
        said = os.read(said_r, 1000).decode()
    finally:
        os.close(said_r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert said == f"the intake store {str(db_path)!r} is inherited by a fork"
    store.record_accepted([(msg(2), 2_000.0)])  # the parent's store still works
    store.close()
    with open_store(db_path) as again:
        assert again.seen([mid(1), mid(2)]) == {mid(1), mid(2)}


# -- durability ----------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "synchronous"), [("fsync", 2), ("os", 1)])
def test_durability_sets_the_wal_mode_and_its_sync_level(
    db_path: Path, durability: str, synchronous: int
) -> None:
    with open_store(db_path, durability=durability) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == synchronous


def test_durability_off_keeps_no_file_and_the_same_bounds(tmp_path: Path) -> None:
    path = tmp_path / "never" / "intake.db"
    with open_store(path, durability="off", max_records=2) as store:
        store.record_accepted([(msg(1), 2_000.0), (msg(2), 2_000.0)])
        assert store.seen([mid(1)]) == {mid(1)}
        with pytest.raises(StoreFullError):
            store.record_accepted([(msg(3), 2_000.0)])
        assert store.path == ":memory:"
        assert store.stats()["db_bytes"] > 0
        open_store(path, durability="off").close()  # no lock either
    assert list(tmp_path.iterdir()) == []


# -- refused files -------------------------------------------------------------------


def test_a_corrupt_file_is_a_store_error_naming_the_path(db_path: Path) -> None:
    db_path.parent.mkdir(mode=0o700)
    db_path.write_bytes(b"this is not an SQLite database, it is a note\n" * 200)
    for _ in range(2):  # the failed open released its lock
        with pytest.raises(
            StoreError, match=rf"{db_path}' cannot be opened: file is not a database"
        ):
            open_store(db_path)


def test_a_foreign_database_and_a_newer_schema_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"is an SQLite database but not an intake store"):
        open_store(foreign)
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99, newer than this engine's 1"):
        open_store(newer)


def test_a_stored_message_that_does_not_decode_is_a_store_error_naming_it(
    db_path: Path,
) -> None:
    with open_store(db_path) as store:
        store.record_accepted([(msg(1), 2_000.0)])
        store._db.execute("UPDATE intake SET message = x'c1'")
        with pytest.raises(StoreError, match=r"holds an unreadable message 'wamid.00001'"):
            store.unfinished()


def test_store_errors_keep_their_attributes_through_pickling() -> None:
    error = StoreLockedError("in use", path="/x/intake.db", pid=42)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.path, copy.pid) == (
        StoreLockedError,
        "in use",
        "/x/intake.db",
        42,
    )
    full = pickle.loads(pickle.dumps(StoreFullError("full", path="p", records=3, limit=3)))
    assert (full.records, full.limit) == (3, 3)


# -- config --------------------------------------------------------------------------


def test_the_intake_keys_have_their_documented_defaults() -> None:
    cfg = EngineConfig()
    assert cfg.durability == "fsync"
    assert cfg.intake_path == "wae-intake/intake.db"
    assert cfg.intake_retention_s == 7 * DAY
    assert cfg.intake_max_records == 1_000_000


def test_durability_takes_one_of_three_values() -> None:
    assert load_config(env={"WAE_DURABILITY": "os"}).durability == "os"
    with pytest.raises(
        ConfigError,
        match=r"^durability = 'sync' \(from WAE_DURABILITY\): must be a string holding "
        r"one of 'fsync', 'os', 'off'$",
    ):
        load_config(env={"WAE_DURABILITY": "sync"})
    with pytest.raises(
        ConfigError, match=r"intake_path = '': must be a string holding a non-empty"
    ):
        EngineConfig(intake_path="")
