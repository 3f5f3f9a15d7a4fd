"""Engine configuration: every bound in one frozen object, with its default's origin.

Defaults equal the constants of the original service's memory-safety change (the
"seed"); the bounds the seed left implicit have documented defaults of their own.
Values come from, in increasing precedence: the defaults, the ``[engine]`` table of a
TOML file, ``WAE_<KEY>`` environment variables, and explicit keyword overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.cores.ratelog import sweep_budget_for
from actors.errors import ConfigError

__all__ = ["ENV_PREFIX", "EngineConfig", "Setting", "load_config", "markdown_table", "settings"]

ENV_PREFIX = "WAE_"
"""Environment variables ``WAE_<KEY>`` override config keys (``WAE_MAX_INSTANCES=50``)."""

CONFIG_PATH_ENV = "WAE_CONFIG"
"""Environment variable naming a TOML file to load when no path is given."""


def _key(
    default: Any,
    *,
    doc: str,
    source: str,
    lo: float | None = None,
    hi: float | None = None,
    above: float | None = None,
) -> Any:
    return field(
        default=default,
        metadata={"doc": doc, "source": source, "lo": lo, "hi": hi, "above": above},
    )


_SEED = "seed"
_NEW = "engine"


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Every limit of the engine. Construction validates each value (``ConfigError``)."""

    # --- the seed's constants -----------------------------------------------------------
    max_instances: int = _key(
        100,
        lo=1,
        source=f"{_SEED}: WhatsAppService.MAX_INSTANCES",
        doc="WhatsApp account actors at once; the next add_account raises InstanceLimitError.",
    )
    max_queue_recipients: int = _key(
        10_000,
        lo=1,
        source=f"{_SEED}: WhatsAppService.MAX_QUEUE_RECIPIENTS",
        doc="Recipients tracked by each account's rate log; the least recently used is evicted.",
    )
    max_queue_size_per_recipient: int = _key(
        100,
        lo=1,
        source=f"{_SEED}: WhatsAppService.MAX_QUEUE_SIZE_PER_RECIPIENT",
        doc="Send times kept per recipient; the oldest is dropped.",
    )
    queue_cleanup_interval_s: float = _key(
        300.0,
        above=0,
        source=f"{_SEED}: QUEUE_CLEANUP_INTERVAL (5 min)",
        doc="Every tracked recipient is swept at least once per interval, a slice per tick.",
    )
    max_concurrent_processing: int = _key(
        1000,
        lo=1,
        source=f"{_SEED}: ConversationService.MAX_CONCURRENT_PROCESSING",
        doc="Customers in processing at once; a new customer past it is rejected `capacity`.",
    )
    processing_timeout_s: float = _key(
        120.0,
        above=0,
        source=f"{_SEED}: ConversationService.PROCESSING_TIMEOUT (2 min)",
        doc="Deadline from acceptance to outcome; past it the outcome is `timeout`.",
    )
    max_providers: int = _key(
        50,
        lo=1,
        source=f"{_SEED}: AIService.MAX_PROVIDERS",
        doc="AI providers loaded, highest priority first; the rest are left out with a warning.",
    )
    drain_timeout_s: float = _key(
        5.0,
        lo=0,
        source=f"{_SEED}: ConversationService.shutdown (5 s race)",
        doc="Shutdown: how long the router may drain in-flight messages.",
    )
    shutdown_timeout_s: float = _key(
        10.0,
        above=0,
        source=f"{_SEED}: gracefulShutdown (10 s forced)",
        doc="Shutdown: deadline of the whole ordered teardown.",
    )
    max_listeners: int = _key(
        50,
        lo=1,
        source=f"{_SEED}: setMaxListeners(50)",
        doc="Status-event subscriptions per account; the next one is refused.",
    )
    occupancy_warn_ratio: float = _key(
        0.9,
        above=0,
        hi=1,
        source=f"{_SEED}: warns at 90 % of MAX_CONCURRENT_PROCESSING",
        doc="Processing occupancy that logs a warning (edge-triggered).",
    )
    # --- bounds the seed left implicit ------------------------------------------------
    recipient_rate_window_s: float = _key(
        60.0,
        above=0,
        source=f"{_NEW}: Meta pair rate, about 1 message per 6 s",
        doc="Sliding window of the per-recipient rate limit.",
    )
    recipient_rate_allowance: int = _key(
        10,
        lo=1,
        source=f"{_NEW}: 10 per 60 s = 1 per 6 s on average, short bursts allowed",
        doc="Sends per recipient per window; a send over it waits if its deadline allows.",
    )
    max_pending_per_customer: int = _key(
        20,
        lo=0,
        source=f"{_NEW}: per-customer FIFO bound",
        doc="Messages queued behind a customer's one in processing; the next is "
        "rejected `customer_backlog`.",
    )
    dedupe_capacity: int = _key(
        100_000,
        lo=1,
        source=f"{_NEW}: webhooks are delivered at least once",
        doc="Message ids remembered to reject redeliveries as `duplicate` (LRU).",
    )
    sweep_tick_s: float = _key(
        1.0,
        above=0,
        source=f"{_NEW}: incremental form of the seed's cleanup",
        doc="How often an account sweeps one slice of its rate log.",
    )
    provider_cooldown_s: float = _key(
        5.0,
        above=0,
        source=f"{_NEW}: LiteLLM cooldown_time",
        doc="Cooldown of a failing provider (a longer Retry-After wins; never shortened).",
    )
    provider_allowed_fails: int = _key(
        1,
        lo=1,
        source=f"{_NEW}: fail over at the first error, the deadline is shared",
        doc="Consecutive failures of a provider before it cools down.",
    )
    restart_min_backoff_s: float = _key(
        0.1,
        above=0,
        source=f"{_NEW}: Akka BackoffSupervisor minBackoff",
        doc="First restart delay of a crashed actor.",
    )
    restart_max_backoff_s: float = _key(
        30.0,
        above=0,
        source=f"{_NEW}: Akka BackoffSupervisor maxBackoff",
        doc="Largest restart delay (before jitter).",
    )
    restart_backoff_factor: float = _key(
        2.0,
        lo=1,
        source=f"{_NEW}: exponential backoff",
        doc="Each consecutive crash multiplies the delay by this.",
    )
    restart_jitter: float = _key(
        0.2,
        lo=0,
        hi=1,
        source=f"{_NEW}: Akka randomFactor",
        doc="Random extra delay, as a fraction of the delay.",
    )
    restart_max_restarts: int = _key(
        5,
        lo=0,
        source=f"{_NEW}: OTP intensity",
        doc="Restarts allowed within restart_period_s; one more and the actor is failed.",
    )
    restart_period_s: float = _key(
        60.0,
        above=0,
        source=f"{_NEW}: OTP period",
        doc="Window of the restart intensity limit.",
    )
    restart_reset_after_s: float = _key(
        30.0,
        above=0,
        source=f"{_NEW}: Akka reset after",
        doc="Uptime after which an actor counts as stable and its backoff resets.",
    )
    max_uncollected_outcomes: int = _key(
        10_000,
        lo=1,
        source=f"{_NEW}: back-pressure on a gateway that stops collecting",
        doc="Outcomes waiting for outcomes(); past it new submissions are rejected `capacity`.",
    )
    dead_letter_path: str = _key(
        "wae-dead-letters.bin",
        source=f"{_NEW}: abandoned messages are journaled, never dropped",
        doc="Journal of messages abandoned at shutdown (length-prefixed msgpack frames).",
    )
    dead_letter_max_bytes: int = _key(
        64 * 1024 * 1024,
        lo=4096,
        source=f"{_NEW}: the journal is bounded too",
        doc="Journal size before it rotates to `<path>.1`; frames past both are counted.",
    )
    max_frame_bytes: int = _key(
        64 * 1024,
        lo=1024,
        source=f"{_NEW}: codec frame limit",
        doc="Largest msgpack frame encoded or decoded; checked before unpacking.",
    )

    def __post_init__(self) -> None:
        for spec in settings():
            value = _check(spec, getattr(self, spec.name), origin=None)
            object.__setattr__(self, spec.name, value)
        self._check_relations()

    def _check_relations(self) -> None:
        pairs = [
            ("recipient_rate_allowance", "max_queue_size_per_recipient"),
            ("drain_timeout_s", "shutdown_timeout_s"),
            ("restart_min_backoff_s", "restart_max_backoff_s"),
            ("sweep_tick_s", "queue_cleanup_interval_s"),
        ]
        for small, big in pairs:
            a, b = getattr(self, small), getattr(self, big)
            if a > b:
                raise ConfigError(f"{small} = {a!r} must be <= {big} = {b!r}")

    @property
    def sweep_budget(self) -> int:
        """Recipients one sweep tick examines so a whole pass fits the cleanup interval."""
        return sweep_budget_for(
            self.max_queue_recipients, self.queue_cleanup_interval_s, self.sweep_tick_s
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> EngineConfig:
        """Build a config from defaults, a TOML file, ``WAE_*`` variables and overrides.

        Args:
            path: TOML file whose ``[engine]`` table holds config keys; None reads the
                file named by ``WAE_CONFIG`` if set, else no file.
            env: the environment to read (default ``os.environ``).
            overrides: keyword values that win over everything else.

        Raises:
            ConfigError: an unknown key, or a value that breaks its rule; the message names
                the key, the value, where it came from and the rule.
        """
        return load_config(path, env=env, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """Return every key and its value (for reports)."""
        return {spec.name: getattr(self, spec.name) for spec in settings()}


@dataclass(frozen=True, slots=True)
class Setting:
    """The description of one config key: for validation, loading and the README table."""

    name: str
    type: type
    default: Any
    doc: str
    source: str
    lo: float | None
    hi: float | None
    above: float | None

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def rule(self) -> str:
        """The rule in words, e.g. ``an integer >= 1``."""
        kind = {int: "an integer", float: "a finite number", bool: "a boolean", str: "a string"}
        parts = [kind[self.type]]
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.lo is not None:
            parts.append(f">= {self.lo:g}")
        if self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        return " ".join(parts[:1]) + (" " + " and ".join(parts[1:]) if parts[1:] else "")


_SETTINGS: tuple[Setting, ...] = ()


def settings() -> tuple[Setting, ...]:
    """Return the description of every config key, in declaration order."""
    global _SETTINGS
    if not _SETTINGS:
        types = {"int": int, "float": float, "bool": bool, "str": str}
        _SETTINGS = tuple(
            Setting(
                name=f.name,
                type=types[str(f.type)],
                default=f.default,
                doc=f.metadata["doc"],
                source=f.metadata["source"],
                lo=f.metadata["lo"],
                hi=f.metadata["hi"],
                above=f.metadata["above"],
            )
            for f in dataclasses.fields(EngineConfig)
        )
    return _SETTINGS


def _fail(spec: Setting, value: Any, origin: str | None) -> ConfigError:
    where = f" (from {origin})" if origin else ""
    return ConfigError(f"{spec.name} = {value!r}{where}: must be {spec.rule}")


def _check(spec: Setting, value: Any, origin: str | None) -> Any:
    kind = type(value)
    if spec.type is float:
        ok = kind in (int, float) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = kind is spec.type  # exact: True is not an integer here
    if not ok:
        raise _fail(spec, value, origin)
    if spec.type in (int, float) and (
        (spec.lo is not None and value < spec.lo)
        or (spec.hi is not None and value > spec.hi)
        or (spec.above is not None and value <= spec.above)
    ):
        raise _fail(spec, value, origin)
    return value


def _parse_env(spec: Setting, raw: str, origin: str) -> Any:
    text = raw.strip()
    try:
        if spec.type is int:
            return int(text, 10)
        if spec.type is float:
            return float(text)
    except ValueError:
        raise _fail(spec, raw, origin) from None
    if spec.type is bool:
        words = {"1": True, "true": True, "yes": True, "on": True}
        words |= {"0": False, "false": False, "no": False, "off": False}
        if text.lower() not in words:
            raise _fail(spec, raw, origin)
        return words[text.lower()]
    return raw


def _unknown(name: str, origin: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {name!r} (from {origin}){hint}")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> EngineConfig:
    """Build an ``EngineConfig``; see ``EngineConfig.load``."""
    env = os.environ if env is None else env
    by_name = {spec.name: spec for spec in settings()}
    values: dict[str, Any] = {}

    if path is None and env.get(CONFIG_PATH_ENV):
        path = env[CONFIG_PATH_ENV]
    if path is not None:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from None
        table = doc.get("engine", {})
        if not isinstance(table, dict):
            raise ConfigError(f"[engine] in {os.fspath(path)!r} must be a table")
        for name, value in table.items():
            origin = f"{Path(path).name} [engine]"
            if name not in by_name:
                raise _unknown(name, origin, list(by_name))
            values[name] = _check(by_name[name], value, origin)

    env_names = {spec.env_var: spec for spec in settings()}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_PATH_ENV:
            continue
        spec = env_names.get(var)
        if spec is None:
            raise _unknown(var, "environment", list(env_names))
        values[spec.name] = _check(spec, _parse_env(spec, raw, var), var)

    for name, value in overrides.items():
        if name not in by_name:
            raise _unknown(name, "keyword argument", list(by_name))
        values[name] = _check(by_name[name], value, "keyword argument")

    return EngineConfig(**values)


def _show(value: Any) -> str:
    if type(value) is int and abs(value) >= 10_000:
        return f"{value:_}"
    return repr(value)


def markdown_table() -> str:
    """Return README's configuration table, generated from the settings themselves."""
    rows = [
        "| key | default | rule | source | what it bounds |",
        "|---|---|---|---|---|",
    ]
    for spec in settings():
        rows.append(
            f"| `{spec.name}` | `{_show(spec.default)}` | {spec.rule} | {spec.source} "
            f"| {spec.doc} |"
        )
    return "\n".join(rows) + "\n"
