"""Tests for the dead-letter journal of messages abandoned at shutdown (actors.engine.journal)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.engine.journal import (
    HEADER_BYTES,
    DeadLetterJournal,
    JournalCorruptError,
    journal_files,
    read_journal,
)
from actors.errors import EngineError
from protocols import DecodeError, InboundMessage, Outcome, codec
from tests.strategies import inbound


def msg(n: int, text: str = "hello") -> InboundMessage:
    # Fixed-width ids keep every record of the same text the same size.
    return InboundMessage(
        account_id="acct-1", customer_id="+15550001", message_id=f"wamid.{n:04d}", text=text
    )


def record(message: InboundMessage) -> bytes:
    frame = codec.encode(message)
    return len(frame).to_bytes(HEADER_BYTES, "big") + frame


REC = len(record(msg(0)))


def read_all(path: Path) -> list[InboundMessage]:
    return [m for name in journal_files(path) for m in read_journal(name)]


# -- round trip and format ------------------------------------------------------------


def test_appended_messages_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=1 << 20)
    batch = [msg(1), msg(2, "héllo 👋"), msg(3)]
    assert journal.append(batch) == 3
    assert list(read_journal(path)) == batch
    assert journal.written_total == 3


def test_each_record_is_a_big_endian_length_and_one_codec_frame(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    DeadLetterJournal(path, max_bytes=1 << 20).append([msg(1), msg(2)])
    frame = codec.encode(msg(1))
    data = path.read_bytes()
    assert data[:HEADER_BYTES] == len(frame).to_bytes(4, "big")
    assert data[HEADER_BYTES : HEADER_BYTES + len(frame)] == frame
    assert data == record(msg(1)) + record(msg(2))


def test_nothing_touches_the_disk_until_something_is_appended(tmp_path: Path) -> None:
    journal = DeadLetterJournal(tmp_path / "dead.bin", max_bytes=1 << 20)
    assert journal.append([]) == 0
    assert list(tmp_path.iterdir()) == []


def test_a_new_journal_appends_after_the_records_already_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    DeadLetterJournal(path, max_bytes=1 << 20).append([msg(1)])
    DeadLetterJournal(path, max_bytes=1 << 20).append([msg(2)])
    assert list(read_journal(path)) == [msg(1), msg(2)]


def test_append_takes_any_iterable_such_as_a_generator(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(str(path), max_bytes=1 << 20)
    assert journal.append(msg(i) for i in range(3)) == 3
    assert len(list(read_journal(str(path)))) == 3


def test_a_batch_with_a_non_message_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=1 << 20)
    bad = Outcome(message_id="wamid.1", status="abandoned", reason="shutdown")
    with pytest.raises(TypeError, match=r"messages\[1\] must be an InboundMessage, got Outcome"):
        journal.append([msg(1), bad])  # type: ignore[list-item]
    assert not path.exists()


def test_each_append_is_fsynced_and_a_new_file_also_fsyncs_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    journal = DeadLetterJournal(tmp_path / "dead.bin", max_bytes=1 << 20)
    journal.append([msg(1)])
    assert len(synced) == (2 if os.name == "posix" else 1)  # file, then directory
    synced.clear()
    journal.append([msg(2)])
    assert len(synced) == 1  # the file existed: only the file


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_bytes": 0}, "max_bytes must be an int >= 1, got 0"),
        ({"max_bytes": True}, "max_bytes must be an int >= 1, got True"),
        ({"max_bytes": 10, "max_frame_bytes": 0}, "max_frame_bytes must be an int >= 1"),
    ],
)
def test_the_constructor_names_the_bad_bound(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DeadLetterJournal(tmp_path / "dead.bin", **kwargs)


# -- the bound, rotation and overflow -------------------------------------------------


def test_a_file_filled_exactly_to_max_bytes_does_not_rotate(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=3 * REC)
    assert journal.append([msg(1), msg(2), msg(3)]) == 3
    assert path.stat().st_size == 3 * REC
    assert journal.rotations == 0
    assert journal_files(path) == [str(path)]


def test_one_record_past_max_bytes_rotates_to_dot_one(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=3 * REC)
    assert journal.append([msg(1), msg(2), msg(3), msg(4)]) == 4
    assert journal.rotations == 1
    assert journal.overflow == 0
    assert list(read_journal(journal.rotated_path)) == [msg(1), msg(2), msg(3)]
    assert list(read_journal(path)) == [msg(4)]
    assert journal_files(path) == [f"{path}.1", str(path)]
    assert read_all(path) == [msg(1), msg(2), msg(3), msg(4)]


def test_replacing_an_older_dot_one_counts_its_records_as_overflow(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=2 * REC)
    assert journal.append([msg(i) for i in range(1, 6)]) == 5
    # [1,2] -> .1, then [3,4] -> .1 replacing [1,2]; 5 is current.
    assert journal.rotations == 2
    assert journal.overflow == 2
    assert read_all(path) == [msg(3), msg(4), msg(5)]
    assert journal.stats()["overflow_rotated"] == 2


def test_a_dot_one_left_by_an_earlier_run_is_counted_by_walking_it(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    DeadLetterJournal(path, max_bytes=3 * REC).append([msg(i) for i in range(1, 5)])
    journal = DeadLetterJournal(path, max_bytes=3 * REC)
    journal.append([msg(5), msg(6), msg(7)])
    # The old .1 held [1,2,3]; the old current [4,5,6] became .1.
    assert journal.overflow == 3
    assert read_all(path) == [msg(4), msg(5), msg(6), msg(7)]


def test_a_record_exactly_max_bytes_long_is_written(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=REC)
    assert journal.append([msg(1)]) == 1
    assert journal.overflow == 0


def test_a_record_one_byte_over_max_bytes_is_refused_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=REC - 1)
    assert journal.append([msg(1)]) == 0
    assert journal.overflow == 1
    assert journal.stats()["overflow_oversized"] == 1
    assert not path.exists()


def test_an_oversized_record_does_not_stop_the_rest_of_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=4096)
    huge = msg(2, "x" * 4096)
    assert journal.append([msg(1), huge, msg(3)]) == 2
    assert journal.overflow == 1
    assert list(read_journal(path)) == [msg(1), msg(3)]


def test_a_message_over_the_frame_limit_is_refused_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=1 << 20, max_frame_bytes=REC - HEADER_BYTES - 1)
    assert journal.append([msg(1)]) == 0
    assert journal.overflow == 1


def test_the_journal_leaves_only_its_two_files(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=2 * REC)
    for i in range(20):
        journal.append([msg(i)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.bin", "dead.bin.1"]
    assert all(p.stat().st_size <= 2 * REC for p in tmp_path.iterdir())
    assert journal.written_total == 20
    assert journal.overflow == 20 - 4


_example = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(st.lists(inbound, max_size=6), min_size=1, max_size=5),
    max_bytes=st.integers(min_value=100, max_value=3000),
)
def test_the_journal_keeps_the_newest_messages_within_its_bound_and_counts_the_rest(
    tmp_path: Path, batches: list[list[InboundMessage]], max_bytes: int
) -> None:
    path = tmp_path / f"dead-{next(_example)}.bin"
    journal = DeadLetterJournal(path, max_bytes=max_bytes)
    fits = [m for batch in batches for m in batch if len(record(m)) <= max_bytes]
    for batch in batches:
        journal.append(batch)
    kept = read_all(path)
    assert kept == fits[len(fits) - len(kept) :]
    assert journal.written_total == len(fits)
    assert journal.written_total + journal.stats()["overflow_oversized"] == sum(map(len, batches))
    assert len(kept) + journal.stats()["overflow_rotated"] == len(fits)
    assert all(os.path.getsize(p) <= max_bytes for p in journal_files(path))


# -- reading damaged journals ---------------------------------------------------------


def write(path: Path, *messages: InboundMessage) -> None:
    path.write_bytes(b"".join(record(m) for m in messages))


def test_a_torn_final_record_raises_after_every_valid_record_was_read(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    write(path, msg(1), msg(2), msg(3))
    os.truncate(path, 3 * REC - 5)
    seen: list[InboundMessage] = []
    with pytest.raises(JournalCorruptError, match=r"truncated record") as info:
        seen.extend(read_journal(path))
    assert seen == [msg(1), msg(2)]
    assert info.value.offset == 2 * REC
    assert f"at byte {2 * REC} of {str(path)!r}" in str(info.value)


def test_a_torn_length_prefix_is_a_truncated_record_too(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    write(path, msg(1))
    with path.open("ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(JournalCorruptError, match=r"2 of 4 length bytes") as info:
        list(read_journal(path))
    assert info.value.offset == REC


def test_a_torn_final_record_ends_the_reading_quietly_when_not_strict(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    write(path, msg(1), msg(2))
    os.truncate(path, 2 * REC - 1)
    assert list(read_journal(path, strict=False)) == [msg(1)]


def test_a_record_that_does_not_decode_raises_with_its_offset_even_when_not_strict(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dead.bin"
    write(path, msg(1), msg(2), msg(3))
    data = bytearray(path.read_bytes())
    data[REC + HEADER_BYTES] = 0xC1  # a byte msgpack never uses, at the second frame's start
    path.write_bytes(bytes(data))
    seen: list[InboundMessage] = []
    with pytest.raises(JournalCorruptError, match=r"not a valid msgpack frame") as info:
        seen.extend(read_journal(path, strict=False))
    assert seen == [msg(1)]
    assert info.value.offset == REC
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value, EngineError)


def test_a_bad_field_in_a_record_names_the_field_and_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    frame = codec.encode(msg(1)).replace(b"+15550001", b"+1555000X")
    path.write_bytes(len(frame).to_bytes(4, "big") + frame)
    with pytest.raises(JournalCorruptError) as info:
        list(read_journal(path))
    assert info.value.path == "$.customer_id"
    assert info.value.offset == 0
    assert "at `$.customer_id` in the record at byte 0" in str(info.value)


def test_a_record_of_another_message_type_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    frame = codec.encode(Outcome(message_id="wamid.1", status="abandoned", reason="shutdown"))
    path.write_bytes(record(msg(1)) + len(frame).to_bytes(4, "big") + frame)
    with pytest.raises(JournalCorruptError, match="Expected `InboundMessage`, got `Outcome`"):
        list(read_journal(path))


@pytest.mark.parametrize("length", [0, codec.MAX_FRAME_BYTES + 1, 2**32 - 1])
def test_an_impossible_record_length_is_corrupt_without_reading_the_frame(
    tmp_path: Path, length: int
) -> None:
    path = tmp_path / "dead.bin"
    path.write_bytes(record(msg(1)) + length.to_bytes(4, "big") + b"\x00" * 16)
    with pytest.raises(JournalCorruptError, match=rf"record length {length} is outside") as info:
        list(read_journal(path, strict=False))
    assert info.value.offset == REC


def test_an_empty_journal_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    path.write_bytes(b"")
    assert list(read_journal(path)) == []


# -- crash recovery on the writing side -----------------------------------------------


def test_appending_after_a_crash_cuts_the_torn_record_first(tmp_path: Path) -> None:
    path = tmp_path / "dead.bin"
    write(path, msg(1), msg(2))
    os.truncate(path, 2 * REC - 7)
    journal = DeadLetterJournal(path, max_bytes=1 << 20)
    assert journal.append([msg(3)]) == 1
    assert journal.repaired_bytes == REC - 7
    assert list(read_journal(path)) == [msg(1), msg(3)]


class _FailingFile:
    """Writes half of what it is given, then fails like a full disk."""

    def __init__(self, path: str, mode: str) -> None:
        self._real = open(path, mode)  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> int:
        self._real.write(data[: len(data) // 2])
        self._real.flush()
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        self._real.close()


def test_a_failed_write_propagates_and_the_next_append_cuts_its_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=1 << 20)
    journal.append([msg(1)])
    monkeypatch.setattr("actors.engine.journal.open", _FailingFile, raising=False)
    with pytest.raises(OSError, match="No space left"):
        journal.append([msg(2)])
    monkeypatch.undo()
    assert journal.append([msg(3)]) == 1
    assert journal.repaired_bytes == REC // 2
    assert list(read_journal(path)) == [msg(1), msg(3)]
    assert journal.written_total == 2
