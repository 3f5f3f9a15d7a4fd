"""Engine configuration: every bound in one frozen object, with its default's origin.

Defaults equal the constants of the original service's memory-safety change (the
"seed"); the bounds the seed left implicit have documented defaults of their own.
Values come from, in increasing precedence: the defaults, the ``[engine]`` table of a
TOML file, ``WAE_<KEY>`` environment variables, and explicit keyword overrides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.config import loading
from actors.config.keys import Setting, check, settings_of
from actors.config.keys import key as _key
from actors.cores.ratelog import sweep_budget_for
from actors.errors import ConfigError

__all__ = ["EngineConfig", "settings"]

_SEED = "seed"
_NEW = "engine"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    batch_window: int = _key(
        2,
        lo=1,
        hi=64,
        source=f"{_NEW}: adaptive batching, a window of a few batches per peer",
        doc="Batches the router sends a peer (the pool, each account) before one is "
        "acknowledged; past it items wait and leave together at the next acknowledgement.",
    )
    account_silence_s: float = _key(
        1.0,
        lo=0,
        source=f"{_NEW}: a hung account (a frozen member) must not fill the engine",
        doc="An account that has left a batch unacknowledged this long is not reading: new "
        "messages for it are rejected `account_unresponsive` (retryable) until it reads "
        "again or is replaced; 0 never refuses.",
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
    durability: str = _key(
        "fsync",
        form="durability",
        source=f"{_NEW}: an acknowledged message survives power loss",
        doc="How the intake store commits: `fsync` survives power loss, `os` a process "
        "crash but not an OS crash, `off` keeps no file (benchmarks only).",
    )
    intake_path: str = _key(
        "wae-intake/intake.db",
        form="path",
        source=f"{_NEW}: like dead_letter_path, relative to the working directory",
        doc="The intake store's SQLite file; its directory is created 0700 (an existing one "
        "others may write is refused); a second engine on the same path refuses to start.",
    )
    intake_retention_s: float = _key(
        7 * 24 * 3600.0,
        lo=0,
        source=f"{_NEW}: WhatsApp retries a failed webhook for up to 7 days",
        doc="How long a finished message stays recorded, at most: redeliveries within it are "
        "rejected `duplicate` across restarts; older records are pruned in small steps, and "
        "when the store is full the oldest finished ones go earlier (a shorter horizon).",
    )
    intake_max_records: int = _key(
        1_000_000,
        lo=1,
        source=f"{_NEW}: the intake store is bounded too",
        doc="Records the intake store keeps, finished or not; finished ones make room first, "
        "and only when unfinished ones fill it are new messages rejected `capacity`, never "
        "dropped.",
    )
    max_frame_bytes: int = _key(
        64 * 1024,
        lo=1024,
        source=f"{_NEW}: codec frame limit",
        doc="Largest msgpack frame encoded or decoded; checked before unpacking.",
    )
    bind_address: str = _key(
        "127.0.0.1",
        form="ipv4",
        source=f"{_NEW}: Thespian listens on every interface and runs what it unpickles",
        doc="Address every Thespian port (admin, actors) listens on; anything but loopback "
        "exposes the actor system (README, Security); `0.0.0.0` means every interface.",
    )
    transport_auth: bool = _key(
        True,
        source=f"{_NEW}: loopback is no trust boundary; Thespian authenticates nothing",
        doc="Every Thespian frame carries an HMAC-SHA256 checked before unpickling, and "
        "counts once (README, Security); `false` is for measuring its cost only, and warns.",
    )
    transport_secret_env: str = _key(
        "",
        source=f"{_NEW}: actor systems on several hosts share a key",
        doc="Name of an environment variable holding the transport secret (>= 32 bytes); "
        "empty, and no `transport_secret_file`: a random key per engine start.",
    )
    transport_secret_file: str = _key(
        "",
        source=f"{_NEW}: as transport_secret_env, from a file",
        doc="A file holding the transport secret; refused unless it is a regular file "
        "owned by this user with mode 0600.",
    )
    transport_max_frame_bytes: int = _key(
        256 * 1024 * 1024,
        lo=64 * 1024,
        source=f"{_NEW}: one frame carries a batch; 10,000 outcomes of 4,096 characters "
        "take ~165 MB",
        doc="Largest Thespian frame received; a longer length prefix is refused before "
        "more is read (from a peer without the key, nothing past 62 bytes is read).",
    )

    def __post_init__(self) -> None:
        for spec in settings():
            value = check(spec, getattr(self, spec.name), origin=None)
            object.__setattr__(self, spec.name, value)
        self._check_relations()

    def _check_relations(self) -> None:
        pairs = [
            ("recipient_rate_allowance", "max_queue_size_per_recipient"),
            ("drain_timeout_s", "shutdown_timeout_s"),
            ("restart_min_backoff_s", "restart_max_backoff_s"),
            ("sweep_tick_s", "queue_cleanup_interval_s"),
            ("max_frame_bytes", "transport_max_frame_bytes"),
        ]
        for small, big in pairs:
            a, b = getattr(self, small), getattr(self, big)
            if a > b:
                raise ConfigError(f"{small} = {a!r} must be <= {big} = {b!r}")
        env, path = self.transport_secret_env, self.transport_secret_file
        if env and not _ENV_NAME.fullmatch(env):
            raise ConfigError(
                f"transport_secret_env = {env!r}: must name an environment variable "
                "(letters, digits and _, not starting with a digit)"
            )
        if env and path:
            raise ConfigError(
                f"transport_secret_env = {env!r} and transport_secret_file = {path!r}: "
                "set one of them, not both"
            )
        if "\x00" in path:
            raise ConfigError(f"transport_secret_file = {path!r}: must be a file path")

    @property
    def capacity(self) -> int:
        """Messages the engine may hold at once: every customer in processing with a full
        backlog behind it. The router's admission and the facade's ledger are sized by it."""
        return self.max_concurrent_processing * (1 + self.max_pending_per_customer)

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
            path: TOML file whose ``[engine]`` table holds config keys (a file with any
                other table, or without that one, is refused); None reads the file named
                by ``WAE_CONFIG`` if set, else no file.
            env: the environment to read (default ``os.environ``).
            overrides: keyword values that win over everything else.

        Raises:
            ConfigError: an unknown table or key, or a value that breaks its rule; the
                message names the key, the value, where it came from and the rule.
        """
        return loading.load(cls, path, env=env, overrides=overrides)

    def as_dict(self) -> dict[str, Any]:
        """Return every key and its value (for reports)."""
        return {spec.name: getattr(self, spec.name) for spec in settings()}


def settings() -> tuple[Setting, ...]:
    """Return the description of every ``EngineConfig`` key, in declaration order."""
    return settings_of(EngineConfig)
