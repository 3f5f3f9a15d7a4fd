"""The transport key's settings: random per engine start, or derived from a shared secret.

Pure (configuration and the file system only): :func:`wanted` turns an ``EngineConfig``
into the :class:`Settings` an actor system's transport should run with;
:mod:`actors.runtime.frameauth` installs them. A secret comes from the environment
variable named by ``transport_secret_env`` or from ``transport_secret_file`` (a regular
file owned by this user, mode 0600; anything else is refused); the key is the SHA-256 of
a label and the secret, so every host with the secret derives the same key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

from actors.config import EngineConfig
from actors.errors import ConfigError

__all__ = ["KEY_LABEL", "MIN_SECRET_BYTES", "Settings", "derive", "wanted"]

MIN_SECRET_BYTES = 32
"""The shortest shared secret accepted (``openssl rand -hex 32`` prints 64)."""

KEY_LABEL = b"wa-actor-engine transport key v1\x00"
"""Hashed in front of the secret, so the key serves this purpose only."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The transport's authentication settings in one process."""

    auth: bool
    key: bytes  # empty in what wanted() returns for a random key: made at start
    max_frame_bytes: int
    origin: str  # where the key came from, for messages: "random", "env NAME", "file"


def derive(secret: bytes) -> bytes:
    """The 32-byte key of a shared secret."""
    return hashlib.sha256(KEY_LABEL + secret).digest()


def wanted(config: EngineConfig) -> Settings:
    """The settings ``config`` asks for (``key`` empty: a random one, made by the caller).

    Raises:
        ConfigError: the secret's variable is unset or empty, its file cannot be opened or
            is not a private regular file, or the secret is shorter than
            :data:`MIN_SECRET_BYTES`.
    """
    secret: bytes | None = None
    origin = "random"
    if config.transport_secret_env:
        name = config.transport_secret_env
        secret, origin = os.environb.get(name.encode()), f"env {name}"
        if not secret:
            raise ConfigError(
                f"transport_secret_env = {name!r}: the environment variable {name} "
                "is not set or is empty"
            )
    elif config.transport_secret_file:
        secret, origin = _read_secret_file(config.transport_secret_file), "file"
    key = b""
    if secret is not None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the transport secret ({origin}) has {len(secret)} bytes; at least "
                f"{MIN_SECRET_BYTES} are needed (e.g. `openssl rand -hex 32`)"
            )
        key = derive(secret)
    return Settings(config.transport_auth, key, config.transport_max_frame_bytes, origin)


def _read_secret_file(path: str) -> bytes:
    where = f"transport_secret_file = {path!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot open it ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{where}: owned by uid {st.st_uid}, not by this user")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{where}: mode {stat.S_IMODE(st.st_mode):04o} lets others read or write "
                "it; it must be 0600 (chmod 600)"
            )
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(64 * 1024).strip()
    finally:
        os.close(fd)
