"""The machinery every message class shares: registration, type checks, field rules.

Each message class is a frozen, slotted, keyword-only dataclass that subclasses
``Message`` and is decorated with ``@message(tag, version)``. Its type annotations are
its schema: the same compiled converters check the fields when a message is built in
Python and when the codec decodes one from a frame, so the two can never disagree.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar, Union

from protocols._trusted import builder_of
from protocols.errors import ValidationError

__all__ = [
    "MAX_ID_LEN",
    "MAX_TEXT_LEN",
    "FieldSpec",
    "Message",
    "Scalar",
    "SchemaError",
    "check_customer_id",
    "check_id",
    "check_one_of",
    "check_range",
    "check_slug",
    "check_text",
    "is_bsuid",
    "iter_fields",
    "lookup",
    "message",
    "registry",
    "schema_of",
]

MAX_ID_LEN = 128
"""Longest id (account, message, provider, request) in characters."""

MAX_TEXT_LEN = 4096
"""Longest chat text in characters: the WhatsApp Cloud API text body limit."""

Scalar = str | int | float | bool | None
"""What an ``options`` mapping may hold: it must survive msgpack and pickle unchanged."""

_PHONE_RE = re.compile(r"\+?[0-9]{6,20}")
# WhatsApp business-scoped user ids: a country code, a period, 1-128 ASCII letters and
# digits (``US.13491208655302741918``); the parent (enterprise) form adds ``ENT.``.
_BSUID_RE = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
_PARENT_BSUID_RE = re.compile(r"[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}")
_SLUG_RE = re.compile(r"[a-z][a-z0-9_]*(:[A-Za-z0-9_.-]+)?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

M = TypeVar("M", bound="Message")


class SchemaError(Exception):
    """Internal: a value does not match its declared type (turned into a public error)."""

    def __init__(self, problem: str, path: str) -> None:
        self.problem = problem
        self.path = path
        super().__init__(problem)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: object) -> str:
    return "nil" if value is None else type(value).__name__


Converter = Callable[[Any, str, bool], Any]
"""(value, path, from_wire) -> value; raises SchemaError. ``from_wire`` admits wire forms."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a message class, compiled from its annotation."""

    name: str
    convert: Converter
    required: bool


class Message:
    """Base of every protocol message: type-checks fields, then runs class rules."""

    __slots__ = ()
    TAG: ClassVar[str]
    VERSION: ClassVar[int]

    def __post_init__(self) -> None:
        cls_name = type(self).__name__
        for spec in schema_of(type(self)):
            value = getattr(self, spec.name)
            try:
                new = spec.convert(value, f"{cls_name}.{spec.name}", False)
            except SchemaError as exc:
                raise ValidationError(exc.path, exc.problem) from None
            if new is not value:
                object.__setattr__(self, spec.name, new)
        self._validate()

    @classmethod
    def trusted(cls: type[M], **values: Any) -> M:
        """Build a message without checking it: for the engine's own, made from checked parts.

        Messages are checked where they enter the engine (``Engine.submit``, the codec, a
        provider's or the Graph API's answer). What the engine then builds from those
        checked values — an AI request from an inbound message, a batch of checked items,
        an outcome — would pass the same checks again at every hop; at 100,000 messages a
        second that was a third of the work of the simple base. Every field must be given
        or have a default; unknown names raise ``TypeError`` as the constructor would.
        """
        return builder_of(cls)(**values)  # type: ignore[no-any-return]

    def _validate(self) -> None:
        """Class-specific rules beyond types; raise ``ValidationError``."""

    def _fail(self, field: str, problem: str) -> typing.NoReturn:
        raise ValidationError(f"{type(self).__name__}.{field}", problem)


_REGISTRY: dict[str, type[Message]] = {}
_SCHEMAS: dict[type[Message], tuple[FieldSpec, ...]] = {}


def registry() -> dict[str, type[Message]]:
    """Return a copy of the tag -> class table of every registered message class."""
    return dict(_REGISTRY)


def lookup(tag: str) -> type[Message] | None:
    """Return the class registered under ``tag``, or None."""
    return _REGISTRY.get(tag)


def message(tag: str, version: int = 1) -> Callable[[type[M]], type[M]]:
    """Register a message class under a wire tag and schema version.

    Raises:
        ValueError: the tag is taken, or the class is not a frozen slotted dataclass.
    """

    def register(cls: type[M]) -> type[M]:
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen or "__slots__" not in cls.__dict__:
            raise ValueError(f"{cls.__name__} must be a frozen, slotted dataclass")
        if tag in _REGISTRY and _REGISTRY[tag] is not cls:
            raise ValueError(f"tag {tag!r} is already used by {_REGISTRY[tag].__name__}")
        cls.TAG = tag
        cls.VERSION = version
        _REGISTRY[tag] = cls
        return cls

    return register


def schema_of(cls: type[Message]) -> tuple[FieldSpec, ...]:
    """Return the compiled field specs of a message class (compiled once, then cached)."""
    specs = _SCHEMAS.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        specs = tuple(
            FieldSpec(
                name=f.name,
                convert=_converter(hints[f.name]),
                required=f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        )
        _SCHEMAS[cls] = specs
    return specs


# --- converters -------------------------------------------------------------------------


def _converter(tp: Any) -> Converter:
    origin = typing.get_origin(tp)
    if tp is str:
        return _str
    if tp is bool:
        return _exact(bool, "bool")
    if tp is int:
        return _exact(int, "int")
    if tp is float:
        return _float
    if tp is type(None):
        return _exact(type(None), "nil")
    if origin in (Union, types.UnionType):
        return _union(typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only tuple[T, ...] is supported, not {tp}")
        return _tuple(_converter(args[0]))
    if origin is dict:
        key, val = typing.get_args(tp)
        if key is not str:
            raise TypeError(f"only dict[str, T] is supported, not {tp}")
        return _dict(_converter(val))
    if isinstance(tp, type) and issubclass(tp, Message):
        return _nested(tp)
    raise TypeError(f"unsupported field type {tp!r}")


def _exact(tp: type, name: str) -> Converter:
    def convert(value: Any, path: str, wire: bool) -> Any:
        if type(value) is not tp:  # exact: a bool is not an int here
            raise SchemaError(f"Expected `{name}`, got `{_type_name(value)}`", path)
        return value

    return convert


def _str(value: Any, path: str, wire: bool) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, str):  # StrEnum members and other subclasses: keep plain data
        return str.__str__(value)
    raise SchemaError(f"Expected `str`, got `{_type_name(value)}`", path)


def _float(value: Any, path: str, wire: bool) -> Any:
    kind = type(value)
    if kind is not float and kind is not int:
        raise SchemaError(f"Expected `float`, got `{_type_name(value)}`", path)
    if kind is float and not math.isfinite(value):
        raise SchemaError(f"Expected a finite `float`, got {value!r}", path)
    return float(value)


def _union(members: tuple[Any, ...]) -> Converter:
    optional = type(None) in members
    rest = [m for m in members if m is not type(None)]
    if len(rest) == 1:
        inner = _converter(rest[0])

        def convert_optional(value: Any, path: str, wire: bool) -> Any:
            return None if value is None else inner(value, path, wire)

        return convert_optional
    if all(isinstance(m, type) and issubclass(m, Message) for m in rest):
        return _message_union(tuple(rest), optional)
    # A union of scalars (e.g. ``Scalar``): dispatch on the value's exact type.
    table: dict[type, Converter] = {}
    for m in rest:
        if m not in (str, int, float, bool):
            raise TypeError(f"unions may only mix scalars, not {m!r}")
        table[m] = _converter(m)
    names = " | ".join(m.__name__ for m in rest) + (" | nil" if optional else "")

    def convert_scalar(value: Any, path: str, wire: bool) -> Any:
        if value is None and optional:
            return None
        conv = table.get(type(value))
        if conv is None:
            raise SchemaError(f"Expected `{names}`, got `{_type_name(value)}`", path)
        return conv(value, path, wire)

    return convert_scalar


def _tuple(item: Converter) -> Converter:
    def convert(value: Any, path: str, wire: bool) -> Any:
        if type(value) is not tuple and type(value) is not list:
            raise SchemaError(f"Expected `array`, got `{_type_name(value)}`", path)
        return tuple(item(v, f"{path}[{i}]", wire) for i, v in enumerate(value))

    return convert


def _dict(item: Converter) -> Converter:
    def convert(value: Any, path: str, wire: bool) -> Any:
        if type(value) is not dict:
            raise SchemaError(f"Expected `object`, got `{_type_name(value)}`", path)
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise SchemaError(f"Expected `str` key, got `{_type_name(k)}`", path)
            out[k] = item(v, f"{path}[{k!r}]", wire)
        return out

    return convert


def _message_union(classes: tuple[type[Message], ...], optional: bool) -> Converter:
    """A union of message classes: each value is one of them, told apart by its tag."""
    names = " | ".join(c.__name__ for c in classes) + (" | nil" if optional else "")

    def convert(value: Any, path: str, wire: bool) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, classes):
            return value
        if wire and _nested_decoder and type(value) is list and value:
            tag = value[0]
            cls = _REGISTRY.get(tag) if type(tag) is str else None
            if cls in classes:
                return _nested_decoder[0](value, path, cls)
        raise SchemaError(f"Expected `{names}`, got `{_type_name(value)}`", path)

    return convert


# The codec installs the function that turns a nested wire frame into a message; it
# lives there so that all frame parsing stays in one module.
_nested_decoder: list[Callable[[Any, str, type[Message]], Message]] = []


def _nested(cls: type[Message]) -> Converter:
    def convert(value: Any, path: str, wire: bool) -> Any:
        if isinstance(value, cls):
            return value
        if wire and _nested_decoder:
            return _nested_decoder[0](value, path, cls)
        raise SchemaError(f"Expected `{cls.__name__}`, got `{_type_name(value)}`", path)

    return convert


# --- field rules shared by the message families ------------------------------------------


def check_id(msg: Message, field: str, value: str) -> None:
    """An id: 1..MAX_ID_LEN characters, no control characters."""
    if not value or len(value) > MAX_ID_LEN:
        msg._fail(field, f"must be 1-{MAX_ID_LEN} characters, got {len(value)}")
    if _CONTROL_RE.search(value):
        msg._fail(field, f"must not contain control characters, got {_short(value)}")


def check_text(msg: Message, field: str, value: str, *, allow_empty: bool = False) -> None:
    """Chat text: at most MAX_TEXT_LEN characters and encodable as UTF-8."""
    if len(value) > MAX_TEXT_LEN:
        msg._fail(field, f"must be at most {MAX_TEXT_LEN} characters, got {len(value)}")
    if not value and not allow_empty:
        msg._fail(field, "must not be empty")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            msg._fail(field, f"is not valid UTF-8 text ({exc.reason} at {exc.start})")


def is_bsuid(value: str) -> bool:
    """Whether ``value`` is a business-scoped user id (``US.1349...``, ``US.ENT.9a...``)."""
    return _BSUID_RE.fullmatch(value) is not None or _PARENT_BSUID_RE.fullmatch(value) is not None


def check_customer_id(msg: Message, field: str, value: str) -> None:
    """A customer id: a phone number (6-20 digits, optional ``+``) or a BSUID (``is_bsuid``)."""
    if _PHONE_RE.fullmatch(value) is None and not is_bsuid(value):
        msg._fail(
            field,
            "must be a phone number (6-20 digits, optional leading '+') or a BSUID "
            f"(e.g. US.<1-128 letters/digits> or US.ENT.<...>), got {_short(value)}",
        )


def check_slug(msg: Message, field: str, value: str, *, max_len: int = 64) -> None:
    """A reason code: ``lower_snake`` with an optional ``:detail`` (e.g. ``api_error:131000``)."""
    if len(value) > max_len or _SLUG_RE.fullmatch(value) is None:
        msg._fail(
            field, f"must be a short lower_snake code (optional ':detail'), got {_short(value)}"
        )


def check_one_of(msg: Message, field: str, value: str, allowed: frozenset[str]) -> None:
    """The value must be one of a fixed set."""
    if value not in allowed:
        msg._fail(field, f"must be one of {sorted(allowed)}, got {_short(value)}")


def check_range(
    msg: Message, field: str, value: float, *, lo: float | None = None, hi: float | None = None
) -> None:
    """A number inside an inclusive range."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
        msg._fail(field, f"must be {bounds}, got {value!r}")


def iter_fields(msg: Message) -> Iterator[tuple[FieldSpec, Any]]:
    """Yield (spec, value) for each field of a message, in declaration order."""
    for spec in schema_of(type(msg)):
        yield spec, getattr(msg, spec.name)
