"""Builders that make a message without checking it (``Message.trusted``), one per class.

Generated like the dataclass ``__init__`` itself — one assignment per field, defaults
bound once — minus ``__post_init__``, where the checks run: a loop over the fields cost
as much as the checks. Only the engine's own messages, built from checked parts, use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["builder_of"]

_BUILDERS: dict[type, Callable[..., Any]] = {}
_NO_VALUE = object()


def builder_of(cls: type) -> Callable[..., Any]:
    """A keyword-only function that builds the dataclass ``cls`` without checks."""
    found = _BUILDERS.get(cls)
    if found is not None:
        return found
    scope: dict[str, Any] = {"new": object.__new__, "put": object.__setattr__, "cls": cls}
    params, body = [], []
    for i, f in enumerate(dataclasses.fields(cls)):
        if f.default_factory is not dataclasses.MISSING:
            scope[f"_f{i}"] = f.default_factory
            params.append(f"{f.name}=_NO_VALUE")
            body.append(f" put(o, {f.name!r}, _f{i}() if {f.name} is _NO_VALUE else {f.name})")
            scope["_NO_VALUE"] = _NO_VALUE
        else:
            if f.default is not dataclasses.MISSING:
                scope[f"_d{i}"] = f.default
                params.append(f"{f.name}=_d{i}")
            else:
                params.append(f.name)
            body.append(f" put(o, {f.name!r}, {f.name})")
    signature = ", ".join(params)
    source = f"def trusted(*, {signature}):\n o = new(cls)\n" + "\n".join(body) + "\n return o\n"
    exec(source, scope)  # built from the class's own field names only
    built: Callable[..., Any] = scope["trusted"]
    _BUILDERS[cls] = built
    return built
