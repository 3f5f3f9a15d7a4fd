"""Shared fixtures: engines on both bases that always shut down and leave no process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from actors.config import EngineConfig
from actors.engine import Engine
from actors.runtime import procs as _procs
from protocols import ProviderSpec

BASES = ["simpleSystemBase", "multiprocTCPBase"]

# Property tests judge behaviour, never speed: no per-example deadline (200 ms by default)
# and no health check failing because a busy machine generated the examples slowly.
# Loaded here, before any test module builds its own settings on top of it.
settings.register_profile(
    "behaviour-not-speed", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("behaviour-not-speed")


@pytest.fixture(scope="session", autouse=True)
def _thespian_log(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Thespian's own log goes to $TMPDIR/thespian.log unless told otherwise.
    os.environ["THESPLOG_FILE"] = str(tmp_path_factory.mktemp("thespian") / "thespian.log")


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineFactory]:
    """Start engines; at teardown shut each down and check none of its processes is left.

    Each engine gets its own intake store, outside ``tmp_path`` (tests count the files
    there): one left in the working directory would dedupe ids across tests.
    """
    engines: list[Engine] = []

    def make(
        base: str = "multiprocTCPBase",
        *,
        echo: dict[str, Any] | None = None,
        accounts: tuple[str, ...] = (),
        **config: Any,
    ) -> Engine:
        config.setdefault("dead_letter_path", str(tmp_path / "dead-letters.bin"))
        config.setdefault("intake_path", str(tmp_path_factory.mktemp("intake") / "intake.db"))
        engine = Engine(EngineConfig(**config), base=base, seed=1234, ask_timeout_s=10.0)
        engines.append(engine)
        engine.start()
        if echo is not None:
            engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=10, options=echo))
        for account_id in accounts:
            engine.add_account(account_id)
        return engine

    yield make
    for engine in engines:
        pids = engine.pids
        engine.shutdown()
        assert not [p for p in pids if _procs.alive(p)], "an actor process outlived shutdown"
