"""The load runner's log: warnings go to a file and the report's summary, errors to stderr too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from apps.loadrun.render import _log_lines
from apps.loadrun.runlog import RunLog, message_kind, summarize

ROOT = Path(__file__).resolve().parents[1]
OCCUPANCY = "N of N customers in processing (occupancy warning)"


@pytest.fixture
def loguru_restored() -> Iterator[None]:
    """RunLog replaces loguru's sinks; give the next tests loguru's default one back."""
    try:
        yield
    finally:
        logger.remove()
        logger.add(sys.stderr)


def test_a_message_kind_hides_the_numbers_and_counts_what_a_sampled_line_held_back() -> None:
    line = "900 of 1000 customers in processing (occupancy warning)"
    assert message_kind(line) == (OCCUPANCY, 1)
    assert message_kind(line + " (12 more like this in the last 10 s)") == (OCCUPANCY, 13)
    assert message_kind("journal over 67,108,864 bytes") == ("journal over N bytes", 1)


def test_warnings_go_to_the_file_and_errors_to_stderr_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loguru_restored: None
) -> None:
    log = RunLog("WARNING", directory=str(tmp_path))
    router = logger.bind(actor="router")
    router.info("not kept at WARNING")
    router.warning("950 of 1000 customers in processing (occupancy warning)")
    router.warning(
        "990 of 1000 customers in processing (occupancy warning) (4 more like "
        "this in the last 10 s)"
    )
    logger.bind(actor="account").error("handler failed on SendBatch")
    summary = log.close()

    err = capsys.readouterr().err
    assert "handler failed on SendBatch" in err
    assert "occupancy" not in err
    assert "WARNING" not in err
    assert summary["path"] == str(tmp_path / f"wae-loadrun-{os.getpid()}.log")
    text = Path(summary["path"]).read_text()
    assert "not kept" not in text
    assert text.count("| WARNING  |") == 2
    assert summary["records"] == {"WARNING": 6, "ERROR": 1}
    assert summary["kinds"] == [
        {"level": "WARNING", "who": "router", "kind": OCCUPANCY, "count": 6},
        {"level": "ERROR", "who": "account", "kind": "handler failed on SendBatch", "count": 1},
    ]
    assert summarize(summary["path"]) == {k: summary[k] for k in ("records", "kinds", "more_kinds")}


def test_a_run_without_warnings_keeps_no_log_file(tmp_path: Path, loguru_restored: None) -> None:
    log = RunLog("WARNING", directory=str(tmp_path))
    logger.info("below the file's level")
    summary = log.close()
    assert summary["path"] is None
    assert summary["records"] == {}
    assert list(tmp_path.iterdir()) == []


def test_the_report_sums_up_the_warnings_with_the_log_file() -> None:
    log = {
        "path": "/tmp/wae-loadrun-1.log",
        "level": "WARNING",
        "console_level": "ERROR",
        "records": {"WARNING": 14},
        "kinds": [{"level": "WARNING", "who": "router", "kind": OCCUPANCY, "count": 14}],
        "more_kinds": 0,
    }
    lines = _log_lines(log)
    assert lines[1] == (
        "warnings during the run: 14 WARNING (log: /tmp/wae-loadrun-1.log; "
        "stderr showed ERROR and above)"
    )
    assert lines[-1].split() == ["14", "WARNING", "router", *OCCUPANCY.split()]
    none = {**log, "path": None, "records": {}, "kinds": []}
    assert _log_lines(none) == [
        "",
        "warnings during the run: none at WARNING or above (no log file kept)",
    ]


# An engine on multiprocTCPBase with the load runner's sinks: the router (its own process)
# warns about occupancy, an account process crashes on a reply (an ERROR). Prints the summary.
_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from apps.loadrun.runlog import RunLog

    log = RunLog("WARNING", directory=sys.argv[1])  # before the engine: its processes inherit it
    from actors import Engine, EngineConfig
    from protocols import InboundMessage, ProviderSpec

    cfg = EngineConfig(max_concurrent_processing=10, dead_letter_path=sys.argv[1] + "/dl.bin",
                       intake_path=sys.argv[1] + "/intake/intake.db")
    engine = Engine(cfg, base="multiprocTCPBase").start()
    try:
        engine.add_provider(
            ProviderSpec(name="echo", kind="echo", priority=1, options={"latency_s": 0.2})
        )
        engine.add_account("a-1", transport="loopback", options={"crash_text": "BOOM"})
        texts = ["BOOM"] + ["hi"] * 9  # 10 customers of 10: past the 90 % warning
        engine.submit_many([
            InboundMessage(account_id="a-1", customer_id=f"+1555000{i:04d}",
                           message_id=f"m{i}", text=text)
            for i, text in enumerate(texts)
        ])
        done, until = 0, time.monotonic() + 60
        while done < 10 and time.monotonic() < until:
            done += len(engine.outcomes(timeout=1.0))
    finally:
        engine.shutdown()
    print(json.dumps(log.close()))
    """
)


def test_an_engine_s_warnings_stay_off_the_console_and_its_errors_reach_it(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAE_")}
    env["THESPLOG_FILE"] = str(tmp_path / "thespian.log")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # The ERROR was logged in the account's process and still reached the console.
    assert "handler failed on" in done.stderr
    assert "WARNING" not in done.stderr
    assert "occupancy" not in done.stderr
    kinds = {(k["level"], k["who"], k["kind"]) for k in summary["kinds"]}
    assert ("WARNING", "router", OCCUPANCY) in kinds
    assert any(level == "ERROR" and who == "account" for level, who, _ in kinds)
    assert summary["path"] == str(tmp_path / summary["path"].rsplit("/", 1)[-1])
