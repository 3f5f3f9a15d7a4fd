"""The run's intake store: a fresh private directory per run, removed after a good run.

A load run's messages are ``lr.1``, ``lr.2``, ... for every run with the same seed, so two
runs on one store would see each other's ids as duplicates: each run (and each of the
three measurements of ``--durability-compare``) gets a directory of its own in the temp
directory, unless ``intake_path`` was set (``--set``, ``--config`` or ``WAE_INTAKE_PATH``):
a store the user named is used and kept. After the run the store's files are removed if
every accepted message got exactly one outcome; after a failed run they are kept for a
look (``python scripts/replay.py`` reads them), and the report says where.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from actors import EngineConfig
from actors.config import loading, settings

from .options import RunOptions

__all__ = ["RunStore"]

_SUFFIXES = ("", "-wal", "-shm", "-journal", ".lock")  # SQLite's files and the store's lock


def _default_path() -> str:
    return str(next(s.default for s in settings() if s.name == "intake_path"))


def _named_by_user(opts: RunOptions) -> bool:
    if "intake_path" in opts.overrides:
        return True
    # The config file or the environment, without the runner's own choices.
    return loading.load(EngineConfig, opts.config_path, env=os.environ).intake_path != (
        _default_path()
    )


@dataclass(slots=True)
class RunStore:
    """Where a run's intake store is, and whether the run made it (and may remove it)."""

    path: str
    ours: bool
    durability: str

    @classmethod
    def place(cls, opts: RunOptions, cfg: EngineConfig) -> tuple[RunStore, EngineConfig]:
        """The store for a run of ``cfg``: the user's, or a fresh temp directory.

        Returns:
            The store and the config that uses it.
        """
        if _named_by_user(opts):
            return cls(cfg.intake_path, ours=False, durability=cfg.durability), cfg
        # A new directory even if engine_config chose one: a run in the same process
        # (a test) after a failed one would otherwise find that run's kept store.
        return cls.fresh(cfg)

    @classmethod
    def fresh(cls, cfg: EngineConfig, label: str = "") -> tuple[RunStore, EngineConfig]:
        """A store in a new private temp directory (0700), for ``cfg``."""
        directory = tempfile.mkdtemp(prefix=f"wae-loadrun-{os.getpid()}-intake{label}-")
        path = os.path.join(directory, "intake.db")
        return cls(path, ours=True, durability=cfg.durability), dataclasses.replace(
            cfg, intake_path=path
        )

    def files(self) -> list[str]:
        """The store's files that exist now."""
        return [self.path + s for s in _SUFFIXES if os.path.exists(self.path + s)]

    def finish(self, *, ok: bool) -> dict[str, Any]:
        """Remove the store if the run made it and went well; the report's account of it."""
        out: dict[str, Any] = {"path": self.path, "durability": self.durability}
        if not self.ours:
            out.update(removed=False, note="named by the configuration: kept")
        elif not ok:
            out.update(removed=False, note="kept: the run failed")
        else:
            for name in self.files():
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
            with contextlib.suppress(OSError):  # only if empty: never someone else's files
                os.rmdir(os.path.dirname(self.path))
            out.update(removed=True, note="removed after the run")
        return out
