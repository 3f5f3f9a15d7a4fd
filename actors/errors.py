"""Exceptions raised by the engine, named by the condition that caused them."""

from __future__ import annotations

__all__ = ["ConfigError", "EngineError", "InstanceLimitError", "ListenerLimitError"]


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
