"""Private files: what the engine writes is 0600, in a 0700 directory when it makes one.

The unit tests run under umask 0, so a file that is private only thanks to the usual umask
fails them. The engine run happens in a child Python process: Thespian reads its log
settings from the environment when it is imported.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.engine.journal import DeadLetterJournal
from actors.logging import THESPIAN_LOG_DIR, private_thespian_log
from tests.engine_helpers import inbound

ROOT = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_journal_creates_its_missing_directory_0700_and_its_files_0600(
    tmp_path: Path, no_umask: None
) -> None:
    path = tmp_path / "new" / "journal" / "dead.bin"
    journal = DeadLetterJournal(path, max_bytes=4096)

    journal.append([inbound(1)])
    journal.append([inbound(i, text="x" * 1000) for i in range(2, 8)])  # rotates

    assert journal.rotations >= 1
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert mode(Path(journal.rotated_path)) == 0o600


def test_the_journal_narrows_an_existing_file_and_leaves_an_existing_directory_alone(
    tmp_path: Path, no_umask: None
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    path = directory / "dead.bin"
    path.touch(mode=0o644)

    DeadLetterJournal(path, max_bytes=4096).append([inbound(1)])

    assert mode(path) == 0o600
    assert mode(directory) == 0o755


@pytest.fixture
def thespian_log_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private temp dir for the test, and Thespian's log settings restored afterwards."""
    import thespian.system.utilis as utilis

    for name in ("_thesplog_file", "_thesplog_old_file", "_thesplog_control_settings"):
        monkeypatch.setattr(utilis, name, getattr(utilis, name))
    monkeypatch.delenv("THESPLOG_FILE", raising=False)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_thespians_log_goes_to_a_private_directory_under_the_temp_dir(
    thespian_log_state: Path, no_umask: None
) -> None:
    import thespian.system.utilis as utilis

    path = private_thespian_log()

    directory = thespian_log_state / THESPIAN_LOG_DIR.format(uid=os.getuid())
    assert path == str(directory / "thespian.log")
    assert utilis._thesplog_file == path
    assert mode(directory) == 0o700
    assert mode(Path(path)) == 0o600
    assert not (thespian_log_state / "thespian.log").exists()


@pytest.mark.parametrize("planted", ["open directory", "symlink"])
def test_thespians_log_is_turned_off_when_its_directory_is_not_private(
    thespian_log_state: Path, planted: str
) -> None:
    import thespian.system.utilis as utilis

    directory = thespian_log_state / THESPIAN_LOG_DIR.format(uid=os.getuid())
    if planted == "symlink":
        elsewhere = thespian_log_state / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        directory.symlink_to(elsewhere)
    else:
        directory.mkdir()
        directory.chmod(0o777)

    assert private_thespian_log() is None

    assert utilis._thesplog_control_settings[2] == 0  # no file log
    assert list(directory.iterdir()) == []


ENGINE_RUN = """
import json, os, sys
from actors.config import EngineConfig
from actors.engine import Engine
from actors.logging import configure_logging
from protocols import InboundMessage, ProviderSpec

os.umask(0o022)  # the usual umask: what it lets through is what the engine must not rely on
journal, log = sys.argv[1], sys.argv[2]
configure_logging(level="INFO", sink=log)
config = EngineConfig(dead_letter_path=journal, drain_timeout_s=0.3, shutdown_timeout_s=3.0,
                      durability="off")  # no store: what cannot drain is journaled
engine = Engine(config, base="multiprocTCPBase", seed=1)
engine.start()
engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=10,
                                 options={"latency_s": 60.0}))
engine.add_account("acct-1")
engine.submit(InboundMessage(account_id="acct-1", customer_id="+15550000001",
                             message_id="wamid.1", text="hi"))
engine._sys.remember_pids()
def umask(pid):
    with open(f"/proc/{pid}/status") as fh:
        return next(line.split()[1] for line in fh if line.startswith("Umask:"))
umasks = {pid: umask(pid) for pid in engine.pids}
report = engine.shutdown()  # the message cannot drain in 0.3 s: it is journaled
print(json.dumps({"abandoned": list(report.abandoned), "umasks": umasks,
                  "own_umask": umask(os.getpid())}))
"""


def test_a_multiproc_engine_run_writes_only_private_files(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir(mode=0o755)
    journal = tmp_path / "data" / "dead.bin"
    log = tmp_path / "logs" / "engine.log"
    env = {k: v for k, v in os.environ.items() if k != "THESPLOG_FILE"}
    env |= {
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(temp),
        "THESPLOG_THRESHOLD": "DEBUG",  # so that Thespian surely writes its log
        "THESPLOG_FILE_MAXSIZE": str(64 * 1024 * 1024),
    }
    run = subprocess.run(
        [sys.executable, "-c", ENGINE_RUN, str(journal), str(log)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    result = json.loads(run.stdout)

    assert result["abandoned"] == ["wamid.1"]
    assert (mode(journal.parent), mode(journal)) == (0o700, 0o600)
    assert (mode(log.parent), mode(log)) == (0o700, 0o600)
    assert "engine started" in log.read_text()
    # Thespian's own log: not in the temp dir, but in a private directory, and written.
    assert not list(temp.glob("thespian.log*"))
    private = temp / THESPIAN_LOG_DIR.format(uid=os.getuid())
    assert mode(private) == 0o700
    assert {p.name: mode(p) for p in private.iterdir()} == {"thespian.log": 0o600}
    assert (private / "thespian.log").stat().st_size > 0
    # Files the actor processes create are private too; the embedder keeps its umask.
    assert len(result["umasks"]) >= 6
    assert set(result["umasks"].values()) == {"0077"}
    assert result["own_umask"] == "0022"
