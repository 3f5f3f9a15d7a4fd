"""Bad input of every kind: a clear error or rejection, the engine keeps serving, nothing lost.

Frames (the codec and the dead-letter journal that reads them), webhook payloads and
bodies, messages over their limits, unknown accounts, provider replies that are not
JSON, empty or huge, and config files with wrong types. ``test_codec.py`` already fuzzes
random bytes, truncations, flipped bytes and arbitrary msgpack values; this adds deep
nesting, huge declared lengths, ext types, non-finite floats, invalid UTF-8 and every
field of every message class replaced by a wrong type.

``TRIED`` counts the bad inputs tried, by kind (every hypothesis example counts); the
last test prints the tally (``-s`` independent) for the closing note.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols as p
from actors.config import load_config
from actors.config import settings as config_settings
from actors.engine.journal import JournalCorruptError, read_journal
from actors.errors import ConfigError
from apps.gateway import decode_payload, load_gateway_config, parse_payload
from apps.gateway.webhook import KINDS, PayloadError
from protocols import Accepted, DecodeError, InboundMessage, ProviderSpec, Rejected, codec
from protocols._schema import SchemaError, schema_of
from protocols.chat import is_bsuid
from tests.conftest import EngineFactory
from tests.engine_helpers import collect, inbound
from tests.fakes.openai_api import FakeOpenAI
from tests.strategies import STRATEGIES
from tests.test_gateway_app import make_gateway, post, replied, served, until
from tests.test_gateway_webhook import PHONE_ID, change, payload, status, text_message
from tests.toml_render import render_document

TRIED: Counter[str] = Counter()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = sorted(STRATEGIES, key=lambda c: c.__name__)


# ``["accepted", 1, {"message_id": "a", <one more key and value follow>``
ACCEPTED_HEAD = b"\x93\xa8accepted\x01\x82\xaamessage_id\xa1a"


def frame(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def fields_of(msg: p.Message) -> list[Any]:
    """``[tag, version, fields]`` of a valid message, unpacked for editing."""
    obj: list[Any] = msgpack.unpackb(codec.encode(msg), raw=False)
    return obj


def decode_fails(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    return info.value


# --- frames: the codec ---------------------------------------------------------------------

_HEADERS = {  # msgpack first byte -> size of the length that follows
    0xC4: 1, 0xC5: 2, 0xC6: 4,  # bin
    0xD9: 1, 0xDA: 2, 0xDB: 4,  # str
    0xDC: 2, 0xDD: 4,  # array
    0xDE: 2, 0xDF: 4,  # map
    0xC7: 1, 0xC8: 2, 0xC9: 4,  # ext (followed by a type byte)
}  # fmt: skip


@FUZZ
@given(
    head=st.sampled_from(sorted(_HEADERS)),
    declared=st.integers(min_value=0, max_value=2**32 - 1),
    tail=st.binary(max_size=64),
    nested=st.booleans(),
)
def test_a_huge_declared_length_is_refused_without_allocating_it(
    head: int, declared: int, tail: bytes, nested: bool
) -> None:
    TRIED["frame: huge declared length"] += 1
    size = _HEADERS[head]
    declared %= 1 << (8 * size)
    body = bytes([head]) + declared.to_bytes(size, "big") + (b"\x05" if head >= 0xC7 else b"")
    body += tail
    if nested:  # as the value of a field inside an otherwise valid frame
        body = ACCEPTED_HEAD + b"\xa8deadline" + body
    try:
        out = codec.decode(body)
    except DecodeError:
        return
    # Only a declared length that the tail really holds can decode, into a valid message.
    assert type(out) in STRATEGIES


@FUZZ
@given(depth=st.integers(min_value=1, max_value=40_000), kind=st.sampled_from(["array", "map"]))
def test_deep_nesting_is_refused_or_ignored_never_a_crash(depth: int, kind: str) -> None:
    TRIED["frame: deep nesting"] += 1
    nest = (b"\x91" if kind == "array" else b"\x81\xa1k") * depth + b"\xc0"
    decode_fails(nest)  # as a whole frame: not a frame
    # As an unknown field of a valid frame: ignored when msgpack can unpack it at all.
    inside = ACCEPTED_HEAD + b"\xa5extra" + nest
    try:
        decoded: Any = codec.decode(inside)
    except DecodeError as exc:
        decoded = str(exc)
    assert decoded == p.Accepted(message_id="a") or "over the" in decoded or "StackError" in decoded
    # As a field that must be a scalar: refused by path.
    wrong = b"\x93\xa8accepted\x01\x81\xaamessage_id" + nest
    assert decode_fails(wrong).path in ("$", "$.message_id")


# Raw ext8 values (any type code, -1 being msgpack's timestamp), spliced in as bytes.
raw_ext = st.builds(
    lambda code, data: b"\xc7" + bytes([len(data), code & 0xFF]) + data,
    st.integers(min_value=-128, max_value=127),
    st.binary(max_size=20),
)
MARK = "\x00MARK"  # a placeholder string, replaced by raw bytes after packing


def splice(obj: Any, raw: bytes) -> bytes:
    return frame(obj).replace(b"\xa5" + MARK.encode(), raw)


@FUZZ
@given(msg=st.sampled_from(CLASSES).flatmap(lambda c: STRATEGIES[c]), ext=raw_ext, data=st.data())
def test_an_ext_type_anywhere_in_a_frame_is_refused(
    msg: p.Message, ext: bytes, data: st.DataObject
) -> None:
    TRIED["frame: ext type"] += 1
    obj = fields_of(msg)
    where = data.draw(st.sampled_from(["frame", "tag", "version", "fields", "field"]))
    if where == "frame":
        obj = MARK
    elif where == "field" and obj[2]:
        obj[2][data.draw(st.sampled_from(sorted(obj[2])))] = MARK
    else:
        obj[{"tag": 0, "version": 1, "fields": 2, "field": 2}[where]] = MARK
    decode_fails(splice(obj, ext))


def number_slots(obj: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every number in a wire object, nested frames included."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    slots: list[tuple[Any, Any]] = []
    for key, value in items:
        if isinstance(value, dict | list):
            slots += number_slots(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            slots.append((obj, key))
    return slots


@settings(max_examples=80, deadline=None)
@given(msg=st.sampled_from(CLASSES).flatmap(lambda c: STRATEGIES[c]))
def test_a_nan_or_infinite_number_anywhere_in_a_frame_is_refused(msg: p.Message) -> None:
    obj = fields_of(msg)
    for container, key in number_slots(obj[2]):
        original = container[key]
        for bad in (math.nan, math.inf, -math.inf):
            container[key] = bad
            raw = frame(obj)
            # The same value as a 64-bit and as a 32-bit msgpack float.
            f32 = raw.replace(b"\xcb" + struct.pack(">d", bad), b"\xca" + struct.pack(">f", bad))
            for packed in (raw, f32):
                TRIED["frame: non-finite float"] += 1
                assert decode_fails(packed).path.startswith("$.")
        container[key] = original


wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.lists(st.integers(-(2**63), 2**63), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63), max_size=3),
    st.dictionaries(st.integers(-9, 9), st.integers(-9, 9), min_size=1, max_size=2),
    st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=9)),
    st.builds(msgpack.Timestamp, st.integers(min_value=0, max_value=2**33)),
)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_field_of_every_message_with_a_wrong_type_is_refused_by_path(
    cls: type, data: st.DataObject
) -> None:
    msg = data.draw(STRATEGIES[cls])
    specs = schema_of(cls)
    if not specs:
        return
    spec = data.draw(st.sampled_from(specs))
    value = data.draw(wrong_values)
    try:
        spec.convert(value, "$", True)
    except SchemaError:
        pass
    else:
        return  # the right type after all (an int for a float, a string for a string...)
    TRIED["frame: wrong-typed field"] += 1
    obj = fields_of(msg)
    obj[2][spec.name] = value
    error = decode_fails(frame(obj))
    assert error.path == "$" or error.path.startswith(f"$.{spec.name}"), error


invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80", b"\x80"]
)


@FUZZ
@given(
    msg=st.sampled_from(CLASSES).flatmap(lambda c: STRATEGIES[c]), bad=invalid_utf8, data=st.data()
)
def test_invalid_utf8_in_any_string_of_a_frame_is_refused(
    msg: p.Message, bad: bytes, data: st.DataObject
) -> None:
    obj = fields_of(msg)
    strings = [k for k, v in obj[2].items() if isinstance(v, str) and v]
    # A string field of the message if it has one, else its tag, made of invalid bytes.
    if strings:
        obj[2][data.draw(st.sampled_from(strings))] = MARK
    else:
        obj[0] = MARK
    raw = splice(obj, bytes([0xA0 | len(bad)]) + bad)
    TRIED["frame: invalid UTF-8"] += 1
    error = decode_fails(raw)
    assert "not a valid msgpack frame" in str(error) or error.path.startswith("$")


@FUZZ
@given(
    big=st.integers(min_value=2**64, max_value=2**200)
    | st.integers(min_value=-(2**200), max_value=-(2**63) - 1),
    where=st.sampled_from(["priority", "options", "in_flight", "generation"]),
)
def test_an_integer_beyond_64_bits_is_refused_by_encode_with_encode_error(
    big: int, where: str
) -> None:
    TRIED["frame: integer beyond 64 bits (encode)"] += 1
    msg: p.Message = {
        "priority": lambda: ProviderSpec(name="a", kind="echo", priority=big),
        "options": lambda: ProviderSpec(name="a", kind="echo", options={"k": big}),
        "in_flight": lambda: p.StatsReply(in_flight=abs(big) + 2**64),
        "generation": lambda: p.CancelBatch(message_ids=("a",), generation=abs(big) + 2**64),
    }[where]()
    with pytest.raises(p.EncodeError, match="does not fit in 64 bits"):
        codec.encode(msg)


# --- frames: the dead-letter journal, the other reader of frames ---------------------------


@FUZZ
@given(
    records=st.lists(
        st.binary(max_size=40) | STRATEGIES[InboundMessage].map(codec.encode), max_size=5
    ),
    tail=st.binary(max_size=8),
)
def test_a_corrupt_journal_raises_only_journal_corrupt_error(
    tmp_path_factory: pytest.TempPathFactory, records: list[bytes], tail: bytes
) -> None:
    TRIED["frame: corrupt journal file"] += 1
    path = tmp_path_factory.mktemp("journal") / "dead.bin"
    path.write_bytes(b"".join(len(r).to_bytes(4, "big") + r for r in records) + tail)
    try:
        read = list(read_journal(path, strict=False))
    except JournalCorruptError:
        return
    assert all(isinstance(m, InboundMessage) for m in read)


# --- webhook payloads and bodies ----------------------------------------------------------

ACCOUNTS = {PHONE_ID: "acct-1"}
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
any_json = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=40,
)
# Near-valid shapes: the real keys of a Cloud API webhook, each value right or of any type.
# deferred: not flattened into an enclosing one_of, so ``right | odd`` is right half the time.
odd = st.deferred(
    lambda: st.one_of(
        st.lists(json_scalars, max_size=2),
        st.dictionaries(st.text(max_size=3), json_scalars, max_size=2),
        json_scalars,
    )
)
message_like = st.fixed_dictionaries(
    {
        "from": st.sampled_from(["15550001111", "+15550002222", "12", "x" * 30]) | odd,
        "id": st.text(max_size=200) | odd,
        "type": st.sampled_from(["text", "image", "reaction", "bogus"]) | odd,
        "text": st.fixed_dictionaries({"body": st.text(max_size=20) | odd}) | odd,
    }
)
status_like = st.fixed_dictionaries(
    {"id": st.text(max_size=5) | odd, "status": st.sampled_from(["read", "sent"]) | odd}
)
value_like = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries({"phone_number_id": st.just(PHONE_ID) | odd}) | odd,
        "messages": st.lists(message_like | odd, max_size=4) | odd,
        "statuses": st.lists(status_like | odd, max_size=3) | odd,
    }
)
change_like = st.fixed_dictionaries(
    {"value": value_like | odd}, optional={"field": st.just("messages") | odd}
)
near = st.fixed_dictionaries(
    {
        "object": st.just("whatsapp_business_account") | odd,
        "entry": st.lists(
            st.fixed_dictionaries({"changes": st.lists(change_like | odd, min_size=1, max_size=3)})
            | odd,
            max_size=3,
        )
        | odd,
    }
)


# Whole documents, and each level fuzzed inside an otherwise valid skeleton (a deep level
# of a whole random document is rarely both reached and odd).
payloads = st.one_of(
    near,
    st.dictionaries(st.text(max_size=8), any_json, max_size=5),
    value_like.map(lambda v: payload({"field": "messages", "value": v})),
    st.lists(message_like | odd, min_size=1, max_size=4).map(
        lambda ms: payload(change(messages=ms))
    ),
    st.lists(status_like | odd, min_size=1, max_size=4).map(
        lambda ss: payload(change(statuses=ss))
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=payloads)
def test_any_json_payload_parses_into_counts_and_valid_messages_never_raises(
    doc: dict[str, Any],
) -> None:
    TRIED["webhook: arbitrary JSON payload"] += 1
    # Through the body decoder too: what reaches the parser is what JSON gives back.
    batch = parse_payload(decode_payload(json.dumps(doc).encode()), ACCOUNTS)
    assert set(batch.counts) == set(KINDS)
    assert batch.counts["text"] == len(batch.messages)
    assert all(m.account_id == "acct-1" for m in batch.messages)
    assert len(batch.problems) <= 20


def test_a_status_whose_value_is_a_list_or_object_is_counted_not_crashed_on() -> None:
    # Found by the fuzzing above: an unhashable status value raised TypeError (HTTP 500).
    for value in ([], {}, [1, 2], {"a": 1}, None, 5):
        TRIED["webhook: arbitrary JSON payload"] += 1
        batch = parse_payload(payload(change(statuses=[{"id": "w", "status": value}])), ACCOUNTS)
        assert batch.statuses == {"other": 1}


@FUZZ
@given(
    body=(
        st.binary(max_size=200)
        | st.builds(
            lambda a, bad, b: a + bad + b,
            st.binary(max_size=20),
            invalid_utf8,
            st.binary(max_size=20),
        )
    ).filter(lambda b: not _utf8(b))
)
def test_a_body_that_is_not_utf8_is_refused_naming_the_byte(body: bytes) -> None:
    TRIED["webhook: invalid UTF-8 body"] += 1
    with pytest.raises(PayloadError, match=r"not UTF-8 \(byte \d+\)"):
        decode_payload(body)


@FUZZ
@given(depth=st.integers(min_value=1, max_value=5000), key=st.sampled_from(["object", "entry"]))
def test_a_deeply_nested_body_is_refused_or_parsed_never_a_crash(depth: int, key: str) -> None:
    TRIED["webhook: deep nesting"] += 1
    body = (f'{{"{key}": ' + "[" * depth + "]" * depth + "}").encode()
    try:
        doc = decode_payload(body)
    except PayloadError:
        return
    batch = parse_payload(doc, ACCOUNTS)
    assert batch.messages == ()
    assert batch.counts["ignored"] == (0 if (key, depth) == ("entry", 1) else 1)  # [] is no entry


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- ids and texts over their limits ------------------------------------------------------

too_long_id = st.text(min_size=129, max_size=400)
control_id = st.builds(
    lambda a, c, b: a + c + b,
    st.text(max_size=5),
    st.sampled_from(["\x00", "\n", "\x1f", "\x7f"]),
    st.text(max_size=5),
)
bad_ids = too_long_id | control_id | st.just("")
bad_texts = (
    st.text(min_size=4097, max_size=5000)
    | st.just("")
    | st.builds(lambda a: a + "\ud800", st.text(max_size=5))
)
bad_phones = st.text(max_size=30).filter(  # neither a phone number nor a BSUID
    lambda t: not __import__("re").fullmatch(r"\+?[0-9]{6,20}", t) and not is_bsuid(t)
)
GOOD = {"account_id": "acct-1", "customer_id": "+15550001", "message_id": "w1", "text": "hi"}


@FUZZ
@given(
    field_value=st.one_of(
        bad_ids.map(lambda v: ("account_id", v)),
        bad_ids.map(lambda v: ("message_id", v)),
        bad_texts.map(lambda v: ("text", v)),
        bad_phones.map(lambda v: ("customer_id", v)),
    )
)
def test_an_id_text_or_phone_over_its_limit_is_refused_at_construction_by_field(
    field_value: tuple[str, str],
) -> None:
    name, value = field_value
    TRIED["message: field over its limit"] += 1
    with pytest.raises(p.ValidationError, match=rf"at `InboundMessage\.{name}`"):
        InboundMessage(**{**GOOD, name: value})


# --- through the engine: unknown accounts, wrong types, and the gateway ----------------------


def test_unknown_and_removed_accounts_are_rejected_while_accepted_messages_all_end(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine("multiprocTCPBase", echo={"latency_s": 0.2}, accounts=("acct-1", "gone"))
    assert engine.remove_account("gone").ok
    unknown = ["nope", "gone", "ACCT-1", "acct-1 ", "acct-\u00e9", "x" * 128]
    batch = []
    for i in range(60):  # valid and unknown interleaved in one round trip
        account = "acct-1" if i % 2 else unknown[i // 2 % len(unknown)]
        batch.append(inbound(i, account=account))
    results = engine.submit_many(batch)
    accepted = [r.message_id for r in results if isinstance(r, Accepted)]
    refused = [r for r in results if isinstance(r, Rejected)]
    TRIED["engine: unknown account"] += len(refused)
    assert len(accepted) == 30
    assert {r.reason for r in refused} == {"unknown_account"}
    assert all(r.detail for r in refused)  # says which account
    # Not a message at all: refused whole, before anything of the batch is admitted.
    for junk in ("text", {"message_id": "x"}, None, b"\x93"):
        TRIED["engine: not a message"] += 1
        with pytest.raises(TypeError, match="submit takes InboundMessage"):
            engine.submit_many([inbound(100), junk])  # type: ignore[list-item]
    assert isinstance(engine.submit(inbound(100)), Accepted)  # not a duplicate: never admitted
    outcomes = collect(engine, [*accepted, "wamid.100"])
    assert {o.status for o in outcomes.values()} == {"replied"}


def test_the_gateway_counts_invalid_messages_and_refuses_bad_bodies_and_keeps_serving(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine("multiprocTCPBase", echo={"latency_s": 0.05}, accounts=("acct-1",))
    gateway = make_gateway(engine)
    good = [text_message(f"wamid.ok{i}", f"1555000{i:04d}", "fine") for i in range(10)]
    bad = [
        text_message("x" * 200, "15550009999"),  # id over 128
        text_message("wamid.long", "15550009998", "y" * 5000),  # text over 4,096
        text_message("wamid.phone", "12"),  # not a phone number
        text_message("wamid.ctl\x00", "15550009997"),  # control character in the id
        text_message("wamid.empty", "15550009996", ""),  # empty text
        text_message("wamid.surrogate", "15550009995", "\ud800"),  # not encodable as UTF-8
        {**text_message("wamid.types"), "from": 15550009994, "text": {"body": ["x"]}},
    ]
    unknown = [text_message(f"wamid.unk{i}") for i in range(3)]
    statuses = [status("w", "read"), {"id": "w", "status": ["weird"]}, "not an object"]
    doc = payload(
        change(messages=good[:5] + bad + good[5:], statuses=statuses),
        change(phone_id="424242", messages=unknown),
    )
    rng = random.Random(6)
    bodies = [  # signed, but not UTF-8: invalid bytes at random places in JSON text
        (lambda raw, at: raw[:at] + rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80"]) + raw[at:])(
            json.dumps(doc).encode(), rng.randrange(0, 200)
        )
        for _ in range(25)
    ]

    async def scenario() -> None:
        async with served(gateway) as http:
            for body in bodies:
                code, _, _ = await post(http, body)
                assert code == 400
            code, answer, _ = await post(http, doc)
            assert code == 200
            assert answer["accepted"] == 10
            assert answer["items"]["invalid"] == len(bad)
            assert answer["items"]["unknown_account"] == len(unknown)
            await until(lambda: replied(gateway) == 10, "the 10 good messages replied")

    asyncio.run(scenario())
    TRIED["webhook: invalid UTF-8 body"] += len(bodies)
    TRIED["gateway: invalid message"] += len(bad)
    TRIED["gateway: unknown account (phone_number_id)"] += len(unknown)
    TRIED["webhook: odd status"] += 2
    c = gateway.counters
    assert c.get("webhooks", code="400") == len(bodies)
    assert c.get("messages", kind="invalid") == len(bad)
    assert c.get("messages", kind="unknown_account") == len(unknown)
    assert c.get("statuses", status="other") == 1


# --- provider replies that are not JSON, empty, cut short or huge --------------------------

BAD_REPLIES = {  # how the fake answers -> programmed with fake.<name>(...)
    "not JSON": lambda fake, n: fake.not_json(times=n),
    "empty body": lambda fake, n: fake.empty_body(times=n),
    "no choices": lambda fake, n: fake.empty_choices(times=n),
    "null content": lambda fake, n: fake.null_content(times=n),
    "cut short": lambda fake, n: fake.truncate(times=n),
    "huge (2 MiB, with a length)": lambda fake, n: fake.huge(2 << 20, times=n),
    "huge (2 MiB, chunked)": lambda fake, n: fake.huge(2 << 20, times=n, chunked=True),
}


def test_bad_provider_replies_fail_over_or_end_provider_error_and_the_pool_keeps_serving(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAD_INPUT_OPENAI_KEY", "sk-bad-input")
    # Never bench the provider: every message meets one bad reply first.
    engine = make_engine(
        "multiprocTCPBase",
        accounts=("acct-1",),
        provider_allowed_fails=1000,
        processing_timeout_s=8,
    )
    n = 2
    with FakeOpenAI(api_key="sk-bad-input") as llm:
        options = {"base_url": llm.base_url, "model": "m", "api_key_env": "BAD_INPUT_OPENAI_KEY"}
        assert engine.add_provider(
            ProviderSpec(name="llm", kind="openai", priority=10, options=options)
        ).ok
        assert engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=1)).ok
        for phase in ("fail over to echo", "no fallback"):
            if phase == "no fallback":
                assert engine.remove_provider("echo").ok
            for program in BAD_REPLIES.values():
                program(llm, n)
            calls = llm.request_count
            msgs = [
                inbound(f"{phase[:2]}{i}", customer=f"+1555{len(phase)}{i:06d}")
                for i in range(n * len(BAD_REPLIES))
            ]
            assert all(isinstance(r, Accepted) for r in engine.submit_many(msgs))
            outcomes = collect(engine, [m.message_id for m in msgs], deadline_s=20)
            TRIED["provider: bad reply"] += len(msgs)
            assert llm.request_count - calls == len(msgs)  # each met exactly one bad reply
            if phase == "fail over to echo":
                got = {(o.status, o.reason, o.reply, o.detail) for o in outcomes.values()}
                assert {o.reply for o in outcomes.values()} == {"echo: hi"}, got
            else:
                assert {(o.status, o.reason) for o in outcomes.values()} == {
                    ("failed", "provider_error")
                }
        llm.clear()
        engine.submit(inbound("after", customer="+15559999999"))
        assert collect(engine, ["wamid.after"])["wamid.after"].reply == "reply to: hi"


# --- config files with wrong types ---------------------------------------------------------

_bare = st.from_regex(r"[a-z]{1,6}", fullmatch=True)
_toml_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),  # nan and inf included
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
toml_values = st.one_of(
    _toml_scalars,
    st.lists(st.integers(0, 9) | st.text(max_size=3), max_size=3),
    st.dictionaries(_bare, st.integers(0, 9), max_size=2),
    st.sampled_from([10**400, -(10**400)]),  # TOML integers are unbounded: too big for a float
)
_RIGHT = {  # the Python types tomllib gives that a key may hold
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
}


def _wrong(value: Any, right: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool not in right
    if right == (int, float) and isinstance(value, int) and abs(value) > 10**300:
        return True  # an int, but no float can hold it (a scalar option may be any int)
    return not isinstance(value, right)


@settings(max_examples=200, deadline=None)
@given(spec=st.sampled_from(config_settings()), value=toml_values)
def test_an_engine_config_key_with_a_wrong_type_is_a_config_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, spec: Any, value: Any
) -> None:
    if not _wrong(value, _RIGHT[spec.type]):
        return
    TRIED["config: wrong-typed engine key"] += 1
    path = tmp_path_factory.mktemp("cfg") / "engine.toml"
    path.write_text(render_document({"engine": {spec.name: value}}))
    with pytest.raises(ConfigError, match=spec.name):
        load_config(path, env={})


GATEWAY_DOC: dict[str, Any] = {
    "gateway": {"port": 0, "verify_token_env": "T_VERIFY", "app_secret_env": "T_SECRET"},
    "engine": {"max_instances": 5},
    "accounts": [{"account_id": "acct-1", "phone_number_id": "1", "options": {"latency_s": 0}}],
    "providers": [{"name": "echo", "kind": "echo", "priority": 1, "options": {"latency_s": 0}}],
}
scalar = (str, int, float, bool)
GATEWAY_KEYS: list[tuple[tuple[Any, ...], tuple[type, ...]]] = [
    (("gateway", "host"), (str,)),
    (("gateway", "port"), (int,)),
    (("gateway", "verify_token_env"), (str,)),
    (("gateway", "app_secret_env"), (str,)),
    (("gateway", "max_body_bytes"), (int,)),
    (("gateway", "retry_after_s"), (int,)),
    (("gateway", "base"), (str,)),
    (("gateway", "outcome_wait_s"), (int, float)),
    (("accounts", 0, "account_id"), (str,)),
    (("accounts", 0, "phone_number_id"), (str, int)),
    (("accounts", 0, "transport"), (str,)),
    (("accounts", 0, "options"), (dict,)),
    (("accounts", 0, "options", "latency_s"), scalar),
    (("providers", 0, "name"), (str,)),
    (("providers", 0, "kind"), (str,)),
    (("providers", 0, "priority"), (int,)),
    (("providers", 0, "daily_limit"), (int,)),
    (("providers", 0, "active"), (bool,)),
    (("providers", 0, "options"), (dict,)),
    (("providers", 0, "options", "latency_s"), scalar),
    (("gateway",), (dict,)),
    (("engine",), (dict,)),
    (("accounts",), (list,)),
    (("providers",), (list,)),
]


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(GATEWAY_KEYS), value=toml_values)
def test_a_gateway_config_key_with_a_wrong_type_is_a_config_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory,
    key: tuple[tuple[Any, ...], tuple[type, ...]],
    value: Any,
) -> None:
    path_in_doc, right = key
    if not _wrong(value, right):
        return
    doc = json.loads(json.dumps(GATEWAY_DOC))  # a deep copy
    where: Any = doc
    for part in path_in_doc[:-1]:
        where = where[part]
    where[path_in_doc[-1]] = value
    TRIED["config: wrong-typed gateway key"] += 1
    path = tmp_path_factory.mktemp("cfg") / "gateway.toml"
    path.write_text(render_document(doc))
    name = [part for part in path_in_doc if isinstance(part, str)][-1]
    with pytest.raises(ConfigError, match=name):
        load_gateway_config(path, env={})


def test_the_base_gateway_config_of_the_fuzzing_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(render_document(GATEWAY_DOC))
    assert load_gateway_config(path, env={}).accounts[0].account_id == "acct-1"


def test_an_integer_too_long_for_python_is_a_config_error(tmp_path: Path) -> None:
    # tomllib raises a plain ValueError (int digit limit) for it, not TOMLDecodeError.
    TRIED["config: wrong-typed engine key"] += 1
    path = tmp_path / "engine.toml"
    path.write_text(f"[engine]\nmax_instances = {'9' * 5000}\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_gateway_config(path, env={})


# --- the tally ----------------------------------------------------------------------------


def test_zz_the_tally_of_bad_inputs_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the counts per kind (for the closing note); runs last in this module."""
    if not TRIED:
        pytest.skip("run with the whole module: the other tests fill the tally")
    width = max(map(len, TRIED))
    lines = [f"  {kind:<{width}}  {n:>6}" for kind, n in sorted(TRIED.items())]
    with capsys.disabled():
        print(
            "\n[bad input] tried, by kind:\n"
            + "\n".join(lines)
            + f"\n  {'total':<{width}}  {sum(TRIED.values()):>6}"
        )
    assert all(n > 0 for n in TRIED.values())
    assert sum(TRIED.values()) > 0
