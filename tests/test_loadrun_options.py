"""The load runner's command line as a newcomer meets it: bad options named with their rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors import ConfigError
from apps.loadrun import parse_args, run
from apps.loadrun.cli import main

LOADRUN = Path(__file__).resolve().parents[1] / "scripts" / "loadrun.py"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "fast"], "argument --rate: must be a number >= 0, got 'fast'"),
        (["--rate=-1"], "argument --rate: must be a number >= 0, got '-1'"),
        (["--duration", "soon"], "argument --duration: must be a number > 0, got 'soon'"),
        (["--accounts", "many"], "argument --accounts: must be an integer >= 1, got 'many'"),
        (
            ["--provider-failure-rate", "2"],
            "argument --provider-failure-rate: must be a number between 0 and 1, got '2'",
        ),
        (["--set", "max_instances"], "argument --set: expected KEY=VALUE, got 'max_instances'"),
    ],
)
def test_a_bad_option_value_exits_2_naming_the_option_and_its_rule(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"loadrun: error: {message}\n" in err
    # argparse's default would name the converter: "invalid _non_negative value".
    assert "invalid" not in err
    assert "_non_negative" not in err


def test_a_misspelled_set_key_names_set_and_the_closest_key() -> None:
    with pytest.raises(ConfigError) as exc:
        run(parse_args(["--set", "max_instance=5", "--duration", "1"]))
    assert str(exc.value) == (
        "unknown config key 'max_instance' (from --set); did you mean 'max_instances'?"
    )


def test_a_bad_set_value_names_set_the_key_and_the_rule() -> None:
    with pytest.raises(ConfigError, match=r"--set max_instances='abc': must be an integer >= 1"):
        run(parse_args(["--set", "max_instances=abc", "--duration", "1"]))
    with pytest.raises(ConfigError, match=r"max_instances = 0 \(from --set\): must be an integer"):
        run(parse_args(["--set", "max_instances=0", "--duration", "1"]))


def _loadrun(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAE_")}
    env["TMPDIR"] = str(tmp_path)  # the run's log file, if one were left, would land here
    return subprocess.run(
        [sys.executable, str(LOADRUN), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_says_in_one_line_what_is_wrong_with_set_and_starts_nothing(
    tmp_path: Path,
) -> None:
    done = _loadrun(tmp_path, "--set", "max_instance=5", "--duration", "1")
    assert done.returncode == 2
    assert done.stderr == (
        "loadrun: error: unknown config key 'max_instance' (from --set); "
        "did you mean 'max_instances'?\n"
    )
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no log file, no journal: nothing ran


def test_the_command_refuses_a_word_for_a_rate_with_the_rule(tmp_path: Path) -> None:
    done = _loadrun(tmp_path, "--rate", "fast")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "loadrun: error: argument --rate: must be a number >= 0, got 'fast'"
    )


def test_batch_is_auto_by_default_and_takes_a_count_or_auto() -> None:
    from apps.loadrun.argtypes import batch_size

    assert parse_args([]).batch == 0
    assert parse_args(["--batch", "auto"]).batch == 0
    assert parse_args(["--batch", "25"]).batch == 25
    assert batch_size("AUTO") == 0
    with pytest.raises(SystemExit):
        parse_args(["--batch", "0"])


def test_an_auto_batch_never_offers_more_than_the_engine_has_room_for(tmp_path: Path) -> None:
    json_path = tmp_path / "r.json"
    report = run(
        parse_args(
            [
                "--base=simpleSystemBase",
                "--messages=3000",
                "--accounts=2",
                "--quiet",
                "--set=max_concurrent_processing=100",
                f"--json={json_path}",
            ]
        )
    )
    assert report["exactly_once"]["ok"]
    submit = report["hops"]["submit"]
    # More than one submission, none above the processing window (the mean would show it).
    assert submit["batches"] >= 3000 / 100
    assert submit["items_per_batch"] <= 100
    assert report["counts"]["rejected"] == 0  # it offered only what there was room for
