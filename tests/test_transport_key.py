"""The transport key's life: random per engine start, shared secrets, refusals.

No actor system here (tests/test_frameauth_engine.py runs engines with a shared secret).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from actors.config import EngineConfig
from actors.errors import ConfigError
from actors.runtime import frameauth, transport_key
from actors.runtime.system import install_patches


@pytest.fixture(autouse=True)
def _restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no engine running and leaves the settings as it found them."""
    install_patches()
    saved = frameauth._settings
    monkeypatch.setattr(frameauth, "_owners", type(frameauth._owners)())
    yield
    frameauth._install(saved)


class _Owner:
    """Stands for a SystemHandle (weakly referenced by frameauth)."""


def test_each_engine_start_gets_a_fresh_random_key_unless_one_runs() -> None:
    a, b, c = _Owner(), _Owner(), _Owner()
    first = frameauth.start(a, EngineConfig())
    assert (len(first.key), first.origin, first.auth) == (32, "random", True)
    assert frameauth.start(b, EngineConfig()).key == first.key  # a runs: b shares its key
    frameauth.stop(a)
    frameauth.stop(b)
    assert frameauth.start(c, EngineConfig()).key != first.key


def test_a_shared_secret_gives_every_process_the_same_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "s3cret-" * 6
    monkeypatch.setenv("TEST_TRANSPORT_SECRET", secret)
    path = tmp_path / "secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    from_env = EngineConfig(transport_secret_env="TEST_TRANSPORT_SECRET")
    by_env = frameauth.start(_Owner(), from_env)
    frameauth._owners.clear()
    by_file = frameauth.start(_Owner(), EngineConfig(transport_secret_file=str(path)))
    assert (
        by_env.key
        == by_file.key
        == hashlib.sha256(transport_key.KEY_LABEL + secret.encode()).digest()
    )
    assert by_env.origin == "env TEST_TRANSPORT_SECRET"


def test_an_engine_with_other_transport_settings_is_refused_while_one_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_TRANSPORT_SECRET", "x" * 40)
    owner = _Owner()
    frameauth.start(owner, EngineConfig())
    with pytest.raises(ConfigError, match=r"different the transport secret \(random key\)"):
        frameauth.start(_Owner(), EngineConfig(transport_secret_env="TEST_TRANSPORT_SECRET"))
    with pytest.raises(ConfigError, match="different transport_auth"):
        frameauth.start(_Owner(), EngineConfig(transport_auth=False))
    frameauth.stop(owner)
    off = _Owner()
    assert frameauth.start(off, EngineConfig(transport_auth=False)).auth is False
    frameauth.stop(off)
    assert frameauth.current().auth is True  # off lasts while its system runs


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unset", r"the environment variable TEST_TRANSPORT_SECRET is not set or is empty"),
        ("short", r"has 31 bytes; at least 32 are needed"),
        ("0644", r"mode 0644 lets others read or write it; it must be 0600"),
        ("symlink", r"cannot open it"),
        ("missing", r"cannot open it \(No such file or directory\)"),
    ],
)
def test_an_unusable_secret_is_refused_naming_why(
    setup: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_text("y" * 64)
    path.chmod(0o600)
    if setup in ("unset", "short"):
        monkeypatch.delenv("TEST_TRANSPORT_SECRET", raising=False)
        if setup == "short":
            monkeypatch.setenv("TEST_TRANSPORT_SECRET", "z" * 31)
        config = EngineConfig(transport_secret_env="TEST_TRANSPORT_SECRET")
    else:
        target = {"0644": path, "symlink": tmp_path / "link", "missing": tmp_path / "none"}
        if setup == "0644":
            path.chmod(0o644)
        if setup == "symlink":
            (tmp_path / "link").symlink_to(path)
        config = EngineConfig(transport_secret_file=str(target[setup]))
    with pytest.raises(ConfigError, match=message):
        frameauth.start(_Owner(), config)


def test_authentication_off_is_warned_about_loudly() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        frameauth.start(_Owner(), EngineConfig(transport_auth=False))
    finally:
        logger.remove(sink)
    assert [x for x in lines if x.startswith("TRANSPORT AUTHENTICATION IS OFF")]


def test_the_transport_keys_are_checked_with_the_config() -> None:
    with pytest.raises(ConfigError, match=r"transport_secret_env = '1X': must name an env"):
        EngineConfig(transport_secret_env="1X")
    with pytest.raises(ConfigError, match="set one of them, not both"):
        EngineConfig(transport_secret_env="A", transport_secret_file="/a")
    with pytest.raises(
        ConfigError, match="max_frame_bytes = 100000 must be <= transport_max_frame_bytes = 65536"
    ):
        EngineConfig(max_frame_bytes=100_000, transport_max_frame_bytes=65_536)
