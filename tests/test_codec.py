"""The msgpack codec: round trips, limits, and DecodeError for every bad frame."""

from __future__ import annotations

import contextlib
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols as p
from protocols import DecodeError, EncodeError, Message, codec
from tests.strategies import STRATEGIES, any_message


def _frame(tag: str, fields: dict[str, Any], version: int = 1) -> bytes:
    data: bytes = msgpack.packb([tag, version, fields], use_bin_type=True)
    return data


INBOUND = {"account_id": "acct-1", "customer_id": "+15550001", "message_id": "w1", "text": "hi"}


def test_every_registered_message_class_has_a_round_trip_strategy() -> None:
    assert set(p.registry().values()) == set(STRATEGIES)


@pytest.mark.parametrize("cls", sorted(STRATEGIES, key=lambda c: c.__name__))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_class_round_trips_through_msgpack_and_pickle(
    cls: type[Message], data: st.DataObject
) -> None:
    msg = data.draw(STRATEGIES[cls])
    assert codec.decode(codec.encode(msg)) == msg
    assert pickle.loads(pickle.dumps(msg)) == msg


def test_a_frame_carries_its_tag_and_version() -> None:
    msg = p.InboundMessage(**INBOUND)
    defaults = {"kind": "text", "context_id": "", "fixed_reply": ""}
    assert msgpack.unpackb(codec.encode(msg)) == ["inbound", 1, INBOUND | defaults]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data)


@settings(max_examples=200, deadline=None)
@given(msg=any_message, data=st.data())
def test_every_truncation_of_a_valid_frame_raises_decode_error(
    msg: Message, data: st.DataObject
) -> None:
    frame = codec.encode(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    with pytest.raises(DecodeError):
        codec.decode(frame[:cut])


@settings(max_examples=200, deadline=None)
@given(msg=any_message, data=st.data())
def test_a_flipped_byte_raises_decode_error_or_decodes_a_valid_message(
    msg: Message, data: st.DataObject
) -> None:
    frame = bytearray(codec.encode(msg))
    i = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    frame[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        out = codec.decode(bytes(frame))
    except DecodeError:
        return
    assert type(out) in STRATEGIES  # decoded means validated: a real, valid message


@settings(max_examples=200, deadline=None)
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_msgpack_values_raise_only_decode_error(obj: Any) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(msgpack.packb(obj))


def test_an_oversized_frame_is_refused_before_unpacking() -> None:
    data = b"\xff" * (codec.MAX_FRAME_BYTES + 1)  # not even msgpack: never looked at
    with pytest.raises(DecodeError, match="over the 65536-byte limit"):
        codec.decode(data)


def test_a_frame_exactly_at_the_limit_is_decoded() -> None:
    msg = p.InboundMessage(**INBOUND)
    frame = codec.encode(msg)
    assert codec.decode(frame, max_size=len(frame)) == msg
    with pytest.raises(DecodeError, match="over the"):
        codec.decode(frame, max_size=len(frame) - 1)


def test_encode_refuses_a_frame_the_decoder_would_refuse() -> None:
    report = p.ShutdownReport(
        stages=(), total_s=1.0, abandoned=tuple(f"id-{i}" for i in range(9000))
    )
    with pytest.raises(EncodeError, match="over the 65536-byte limit"):
        codec.encode(report)


def test_a_small_frame_cannot_announce_a_huge_array() -> None:
    # array32 header claiming 2**31 items, followed by nothing.
    with pytest.raises(DecodeError):
        codec.decode(b"\xdd\x80\x00\x00\x00")


def test_encode_refuses_what_is_not_a_registered_message() -> None:
    with pytest.raises(EncodeError, match="not a registered message"):
        codec.encode({"tag": "inbound"})  # type: ignore[arg-type]


def test_an_unknown_tag_is_named_in_the_error() -> None:
    with pytest.raises(DecodeError, match=r"unknown message tag 'nope' - at `\$\[0\]`"):
        codec.decode(_frame("nope", {}))


def test_a_newer_version_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"unsupported version 2 of 'inbound' .*`\$\[1\]`"):
        codec.decode(_frame("inbound", INBOUND, version=2))


def test_version_zero_is_refused() -> None:
    with pytest.raises(DecodeError, match="unsupported version 0"):
        codec.decode(_frame("inbound", INBOUND, version=0))


def test_an_older_version_is_upgraded_through_the_registered_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(p.InboundMessage, "VERSION", 2)
    monkeypatch.setitem(
        codec.UPGRADES,
        ("inbound", 1),
        lambda f: {**f, "text": f.pop("body")},
    )
    old = {**INBOUND}
    old["body"] = old.pop("text")
    assert codec.decode(_frame("inbound", old, version=1)) == p.InboundMessage(**INBOUND)


def test_an_older_version_without_an_upgrade_step_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(p.InboundMessage, "VERSION", 2)
    with pytest.raises(DecodeError, match="no upgrade from version 1 of 'inbound'"):
        codec.decode(_frame("inbound", INBOUND, version=1))


def test_a_missing_field_is_named_by_path() -> None:
    fields = {k: v for k, v in INBOUND.items() if k != "customer_id"}
    with pytest.raises(DecodeError, match=r"Object missing required field - at `\$.customer_id`"):
        codec.decode(_frame("inbound", fields))


def test_a_missing_field_with_a_default_decodes_to_the_default() -> None:
    frame = _frame("rejected", {"message_id": "w1", "reason": "duplicate"})
    assert codec.decode(frame) == p.Rejected(message_id="w1", reason="duplicate", detail="")


def test_a_submit_batch_from_before_deadlines_decodes_with_none() -> None:
    frame = _frame("submit_batch", {"messages": [["inbound", 1, INBOUND]], "readmit": True})
    batch = codec.decode(frame)
    assert isinstance(batch, p.SubmitBatch)
    assert (batch.readmit, batch.deadlines) == (True, ())


def test_a_submit_batch_takes_no_deadline_or_one_per_message() -> None:
    msg = p.InboundMessage(**INBOUND)
    ok = p.SubmitBatch(messages=(msg, msg), deadlines=(1.0, 2.0), readmit=True)
    assert codec.decode(codec.encode(ok)) == ok
    with pytest.raises(p.ValidationError, match=r"message \(2\), got 1 - at `SubmitBatch.dead"):
        p.SubmitBatch(messages=(msg, msg), deadlines=(1.0,))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    frame = _frame("accepted", {"message_id": "w1", "added_later": [1, 2]})
    assert codec.decode(frame) == p.Accepted(message_id="w1")


def test_a_mistyped_field_is_named_by_path() -> None:
    with pytest.raises(DecodeError, match=r"Expected `str`, got `int` - at `\$.text`"):
        codec.decode(_frame("inbound", {**INBOUND, "text": 5}))


def test_a_bool_is_not_accepted_for_an_int_field() -> None:
    with pytest.raises(DecodeError, match=r"Expected `int`, got `bool` - at `\$.in_flight`"):
        codec.decode(_frame("stats_reply", {"in_flight": True}))


def test_a_mistyped_nested_field_is_named_by_its_full_path() -> None:
    stages = [["stage_report", 1, {"name": "drain", "seconds": 1.0}]] * 2
    stages[1] = ["stage_report", 1, {"name": "drain", "seconds": 1.0, "drained": "x"}]
    frame = _frame("shutdown_report", {"stages": stages, "total_s": 1.0})
    with pytest.raises(
        DecodeError, match=r"Expected `int`, got `str` - at `\$.stages\[1\].drained`"
    ):
        codec.decode(frame)


def test_a_nested_frame_of_the_wrong_class_is_refused() -> None:
    frame = _frame("add_account", {"spec": ["provider_spec", 1, {"name": "x", "kind": "echo"}]})
    with pytest.raises(
        DecodeError, match=r"Expected `AccountSpec`, got `ProviderSpec` - at `\$.spec`"
    ):
        codec.decode(frame)


def test_a_field_that_breaks_its_rule_is_named_by_path() -> None:
    with pytest.raises(DecodeError, match=r"6-20 digits.* - at `\$.customer_id`"):
        codec.decode(_frame("inbound", {**INBOUND, "customer_id": "12ab"}))


def test_invalid_utf8_raises_decode_error() -> None:
    bad = msgpack.packb(["inbound", 1, {**INBOUND, "text": "x"}]).replace(b"\xa1x", b"\xa1\xff")
    with pytest.raises(DecodeError, match="not a valid msgpack frame"):
        codec.decode(bad)


def test_trailing_bytes_are_refused() -> None:
    frame = codec.encode(p.Accepted(message_id="w1"))
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(frame + b"\x00")


def test_non_bytes_input_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="Expected bytes"):
        codec.decode("not bytes")  # type: ignore[arg-type]


def test_a_frame_that_is_not_an_array_of_three_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"Expected a frame"):
        codec.decode(msgpack.packb({"tag": "inbound"}))
    with pytest.raises(DecodeError, match=r"Expected `int` version"):
        codec.decode(msgpack.packb(["inbound", "1", INBOUND]))
    with pytest.raises(DecodeError, match=r"Expected `object`, got `list` - at `\$\[2\]`"):
        codec.decode(msgpack.packb(["inbound", 1, []]))


def test_a_union_field_decodes_each_member_by_its_tag() -> None:
    results = (
        p.Accepted(message_id="a", deadline=5.0),
        p.Rejected(message_id="b", reason="capacity"),
    )
    msg = p.SubmitResults(results=results, generation=3)
    assert codec.decode(codec.encode(msg)) == msg


def test_a_union_member_of_the_wrong_class_is_refused_by_path() -> None:
    frame = _frame(
        "submit_results",
        {"results": [["accepted", 1, {"message_id": "a"}], ["inbound", 1, INBOUND]]},
    )
    with pytest.raises(
        DecodeError, match=r"Expected `Accepted \| Rejected`, got `list` - at `\$.results\[1\]`"
    ):
        codec.decode(frame)
