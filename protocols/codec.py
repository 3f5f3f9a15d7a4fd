"""The msgpack wire form of every protocol message.

Frame layout
    A frame is one msgpack array ``[tag, version, fields]``: ``tag`` is the class's wire
    tag (``"inbound"``, ``"outcome"``, ...), ``version`` its schema version (int) and
    ``fields`` a map from field name to value. A field whose type is another message
    holds that message's own frame, so every nested value carries its tag and version.
    Tuples travel as arrays, ``dict[str, T]`` as maps, ``None`` as nil.

Limits checked before anything is unpacked
    ``decode`` refuses a frame longer than ``max_size`` bytes (default ``MAX_FRAME_BYTES``,
    64 KiB) without looking inside, and unpacks with msgpack's own container and string
    limits set to that size, so a small frame cannot announce a huge allocation.
    ``encode`` refuses to produce a frame the default decoder would refuse.

Errors
    Anything wrong with a frame raises ``DecodeError`` (never another exception) whose
    message names the path of the bad value, msgspec style:
    ``Expected `int`, got `str` - at `$.stages[1].drained```.

Schema evolution rules
    1. A new field must have a default. Old frames lack it and decode to the default; the
       version does not change.
    2. Decoders ignore fields they do not know, so an old reader accepts a frame from a
       newer writer of the same version (it just loses the new field).
    3. Never change a field's type or meaning, never reuse a removed field's name, and
       never change an existing default. A change like that needs a new ``version``
       (the class keeps decoding its older versions through ``UPGRADES``) or a new tag.
    4. Removing a field, or adding one without a default, also needs a new version.
    5. Tags are never reused for another class. A frame with an unknown tag, or a version
       newer than the reader's, is refused with ``DecodeError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from protocols._schema import (
    Message,
    SchemaError,
    _nested_decoder,
    lookup,
    schema_of,
)
from protocols.errors import DecodeError, EncodeError, ValidationError

__all__ = ["MAX_FRAME_BYTES", "UPGRADES", "decode", "encode"]

MAX_FRAME_BYTES = 64 * 1024
"""Default frame size limit in bytes, both ways."""

UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""(tag, old version) -> function turning that version's field map into the next one's.

Empty while every class is at version 1; rule 3 of the module docstring fills it.
"""


def encode(msg: Message, *, max_size: int = MAX_FRAME_BYTES) -> bytes:
    """Turn a message into one msgpack frame.

    Raises:
        EncodeError: ``msg`` is not a registered message, holds an integer msgpack cannot
            carry (beyond 64 bits), or the frame is over ``max_size``.
    """
    if not isinstance(msg, Message) or lookup(type(msg).TAG) is not type(msg):
        raise EncodeError(f"cannot encode {type(msg).__name__}: not a registered message")
    try:
        data: bytes = msgpack.packb(_to_wire(msg), use_bin_type=True)
    except OverflowError:  # Python ints are unbounded; msgpack's stop at 64 bits
        raise EncodeError(
            f"cannot encode {type(msg).__name__}: an integer does not fit in 64 bits"
        ) from None
    if len(data) > max_size:
        raise EncodeError(
            f"{type(msg).__name__} frame is {len(data)} bytes, over the {max_size}-byte limit"
        )
    return data


def decode(data: bytes, *, max_size: int = MAX_FRAME_BYTES) -> Message:
    """Turn one msgpack frame back into its message.

    Raises:
        DecodeError: the frame is too big, not msgpack, has trailing bytes, an unknown tag
            or version, or a missing, mistyped or invalid field (the message names its path).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"Expected bytes, got `{type(data).__name__}`")
    if len(data) > max_size:
        raise DecodeError(f"frame is {len(data)} bytes, over the {max_size}-byte limit")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max_size,
            max_map_len=max_size,
            max_ext_len=max_size,
        )
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the frame") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # ValueError covers truncated data, bad UTF-8 and msgpack's limit errors.
        raise DecodeError(f"not a valid msgpack frame ({type(exc).__name__}: {exc})") from None
    return _from_wire(obj, "$", None)


def _to_wire(msg: Message) -> list[Any]:
    fields: dict[str, Any] = {}
    for spec in schema_of(type(msg)):
        fields[spec.name] = _value_to_wire(getattr(msg, spec.name))
    return [msg.TAG, msg.VERSION, fields]


def _value_to_wire(value: Any) -> Any:
    if isinstance(value, Message):
        return _to_wire(value)
    if type(value) is tuple:
        return [_value_to_wire(v) for v in value]
    if type(value) is dict:
        return {k: _value_to_wire(v) for k, v in value.items()}
    return value


def _from_wire(obj: Any, path: str, expected: type[Message] | None) -> Message:
    if type(obj) is not list or len(obj) != 3:
        raise DecodeError("Expected a frame `[tag, version, fields]`", path)
    tag, version, fields = obj
    if type(tag) is not str:
        raise DecodeError(f"Expected `str` tag, got `{type(tag).__name__}`", f"{path}[0]")
    cls = lookup(tag)
    if cls is None:
        raise DecodeError(f"unknown message tag {tag[:40]!r}", f"{path}[0]")
    if expected is not None and cls is not expected:
        raise DecodeError(f"Expected `{expected.__name__}`, got `{cls.__name__}`", path)
    if type(version) is not int:
        raise DecodeError(f"Expected `int` version, got `{type(version).__name__}`", f"{path}[1]")
    if type(fields) is not dict:
        raise DecodeError(f"Expected `object`, got `{type(fields).__name__}`", f"{path}[2]")
    fields = _upgrade(tag, version, cls.VERSION, fields, path)

    kwargs: dict[str, Any] = {}
    for spec in schema_of(cls):
        field_path = f"{path}.{spec.name}"
        if spec.name not in fields:
            if spec.required:
                raise DecodeError("Object missing required field", field_path)
            continue
        try:
            kwargs[spec.name] = spec.convert(fields[spec.name], field_path, True)
        except SchemaError as exc:
            raise DecodeError(exc.problem, exc.path) from None
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        # The constructor names the field as ``Class.field``; re-root it at this frame.
        _, _, rest = exc.path.partition(".")
        raise DecodeError(exc.problem, f"{path}.{rest}" if rest else path) from None


def _upgrade(
    tag: str, version: int, current: int, fields: dict[str, Any], path: str
) -> dict[str, Any]:
    if version == current:
        return fields
    if version < 1 or version > current:
        raise DecodeError(
            f"unsupported version {version} of {tag!r} (this reader knows 1..{current})",
            f"{path}[1]",
        )
    while version < current:
        step = UPGRADES.get((tag, version))
        if step is None:
            raise DecodeError(f"no upgrade from version {version} of {tag!r}", f"{path}[1]")
        fields = step(fields)
        version += 1
    return fields


def _decode_nested(value: Any, path: str, expected: type[Message]) -> Message:
    try:
        return _from_wire(value, path, expected)
    except DecodeError as exc:
        raise SchemaError(exc.problem, exc.path) from None


_nested_decoder.append(_decode_nested)
