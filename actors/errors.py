"""Exceptions raised by the engine, named by the condition that caused them."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "EngineError",
    "InstanceLimitError",
    "ListenerLimitError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
]


class EngineError(Exception):
    """Base class of every error the engine raises."""


class ConfigError(EngineError, ValueError):
    """A configuration value breaks its rule.

    Raised by ``EngineConfig`` and its loaders; the message names the key, the value,
    where the value came from and the rule it breaks.
    """


class InstanceLimitError(EngineError):
    """Raised by ``Engine.add_account`` when ``max_instances`` accounts already run."""


class ListenerLimitError(EngineError):
    """Raised by ``Engine.subscribe`` when the account has no free listener slot.

    The account already has ``max_listeners`` subscriptions; the message names the
    account and the limit.
    """


class StoreError(EngineError):
    """The durable intake store cannot be used: unreadable, corrupt, not an intake store,
    written by a newer version, in a directory others can write, or a failed write.

    Attributes:
        path: the store's database file (``":memory:"`` for ``durability = "off"``).
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes: the default reduce would call cls(message) and fail, so
        # an error reported from a child process (the load runner's) would not unpickle.
        return (_restore, (type(self), str(self), dict(self.__dict__)))


class StoreLockedError(StoreError):
    """Another engine holds the intake store's lock: two engines on one store refuse to start.

    Attributes:
        path: the store's database file.
        pid: the process id the holder wrote into the lock file, or None if unreadable.
    """

    def __init__(self, message: str, *, path: str, pid: int | None) -> None:
        super().__init__(message, path=path)
        self.pid = pid


class StoreFullError(StoreError):
    """The intake store holds ``intake_max_records`` records: the batch was not recorded.

    Messages that do not fit are refused ``capacity`` (never dropped); check
    ``IntakeStore.room()`` before admitting a batch.

    Attributes:
        path: the store's database file.
        records: the records kept when the batch was refused.
        limit: ``intake_max_records``.
    """

    def __init__(self, message: str, *, path: str, records: int, limit: int) -> None:
        super().__init__(message, path=path)
        self.records = records
        self.limit = limit


def _restore(cls: type[StoreError], message: str, state: dict[str, Any]) -> StoreError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
