"""The load runner's --accounts-sweep and the report's tail section, with tiny numbers.

The runs judge the books, the table's rows and the files left behind: never a speed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from apps.loadrun import parse_args, render, run
from apps.loadrun.cli import main
from apps.loadrun.options import SWEEP_DURATION_S
from apps.loadrun.sampler import HOPS
from apps.loadrun.single import run_once
from apps.loadrun.tail import _predict
from tests.conftest import BASES
from tests.load_helpers import loadrun_refusal


def _ours_in_tmp() -> set[str]:
    """This process's load-run files and directories in the temp directory."""
    prefix = f"wae-loadrun-{os.getpid()}"
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith(prefix)}


def _sweep(base: str, tmp_path: Path, *extra: str) -> list[str]:
    return [
        f"--base={base}",
        "--accounts-sweep=1,2",
        "--messages=200",
        "--customers=50",
        "--baseline-messages=200",
        "--quiet",
        # 50 customers write ~4 messages each: a 1 s rate window keeps rate waits short.
        "--set=recipient_rate_window_s=1",
        f"--set=dead_letter_path={tmp_path / 'dead-letters.bin'}",
        *extra,
    ]


def _table_rows(text: str) -> dict[str, list[str]]:
    """The sweep table's rows by their first cell (the account count)."""
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.lstrip().startswith("accounts  msgs/s"))
    rows = {}
    for line in lines[start + 2 :]:
        cells = line.split()
        if not cells or not cells[0].isdigit():
            break
        rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("base", BASES)
def test_a_sweep_runs_one_engine_per_account_count_and_prints_a_row_for_each(
    base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _ours_in_tmp()
    json_path = tmp_path / "sweep.json"

    status = main(_sweep(base, tmp_path, f"--json={json_path}"))

    out = capsys.readouterr().out
    assert status == 0, out
    report = json.loads(json_path.read_text())
    assert report["mode"] == "accounts_sweep"
    assert report["baseline"]["tell_per_s"] > 0  # measured once, before the first step
    sweep = report["accounts_sweep"]
    assert sweep["order"] == [1, 2]
    assert sweep["reference_accounts"] == 1
    assert sweep["raw_tell_per_s"] == report["baseline"]["tell_per_s"]
    steps = sweep["steps"]
    assert [s["accounts"] for s in steps] == [1, 2]
    for step in steps:
        assert step["offered"] == 200
        assert step["accepted"] + step["rejected"] == step["offered"]
        assert step["outcomes"] == step["accepted"] > 0
        assert step["exactly_once"] is True
        assert step["vs_raw_tell"] is not None
        assert set(step["items_per_batch"]) == set(HOPS)
        assert step["rss_end_kb"]["gateway"] > 0  # this process
        assert step["store"]["removed"] is True
    # Each step ran on an engine of its own, with its own number of accounts.
    runs = report["runs"]
    assert [r["options"]["accounts"] for r in runs] == [1, 2]
    assert [r["counts"]["outcomes"] for r in runs] == [s["outcomes"] for s in steps]
    assert all("series" not in r and r["leftover_processes"] == [] for r in runs)
    assert runs[1]["baseline"] is None  # not measured again
    if base == "multiprocTCPBase":
        assert all(s["rss_end_kb"]["router"] and s["rss_end_kb"]["account_max"] for s in steps)
    else:  # every actor lives in this process: no column of its own
        assert all(s["rss_end_kb"]["router"] is None for s in steps)
    e = report["exactly_once"]
    assert e["ok"]
    assert e["runs"] == 2
    assert e["accepted"] == e["outcomes"] == sum(s["accepted"] for s in steps)

    rows = _table_rows(out)
    assert set(rows) == {"1", "2"}
    assert all(cells[-1] == "OK" for cells in rows.values())
    assert "accounts sweep: one run per account count, each on a fresh engine" in out
    assert out.splitlines()[-1] == (
        f"exactly-once: OK ({e['accepted']:,} accepted, {e['outcomes']:,} outcomes in 2 runs)"
    )
    if report["log"]["path"]:  # the raw measurement with authentication off warns
        os.remove(report["log"]["path"])
    assert _ours_in_tmp() == before


def test_a_step_that_loses_a_message_fails_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def second_step_loses_one(*args: Any, **kwargs: Any) -> dict[str, Any]:
        report = run_once(*args, **kwargs)
        if report["options"]["accounts"] == 2:  # as if one outcome had never arrived
            report["exactly_once"] = {
                **report["exactly_once"],
                "ok": False,
                "problems": ["1 accepted without an outcome, e.g. lr.7"],
            }
        return report

    monkeypatch.setattr("apps.loadrun.sweep.run_once", second_step_loses_one)

    status = main(_sweep("simpleSystemBase", tmp_path))

    out = capsys.readouterr().out
    assert status == 1
    assert _table_rows(out)["2"][-1] == "FAILED"
    assert _table_rows(out)["1"][-1] == "OK"
    assert out.splitlines()[-1] == (
        "exactly-once: FAILED (2 accounts: 1 accepted without an outcome, e.g. lr.7)"
    )


def test_each_step_runs_twenty_seconds_unless_told_otherwise() -> None:
    assert parse_args(["--accounts-sweep=4,20,100"]).duration == SWEEP_DURATION_S
    assert parse_args(["--accounts-sweep=4", "--duration=3"]).duration == 3.0
    opts = parse_args(["--accounts-sweep=4", "--messages=50"])
    assert (opts.messages, opts.duration, opts.accounts_sweep) == (50, None, (4,))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--accounts-sweep=4,x"],
            "argument --accounts-sweep: must be integers >= 1 separated by commas "
            "(e.g. 4,20,100), got '4,x'",
        ),
        (["--accounts-sweep=0"], "must be integers >= 1 separated by commas"),
        (["--accounts-sweep=" + ",".join(["1"] * 21)], "takes at most 20 values"),
        (
            ["--accounts-sweep=4", "--accounts=3"],
            "--accounts-sweep and --accounts: one or the other",
        ),
        (
            ["--accounts-sweep=4", "--durability-compare"],
            "--durability-compare and --accounts-sweep: one or the other",
        ),
        (["--accounts-sweep=4", "--crash-every=2"], "--accounts-sweep and --crash-every"),
        (["--accounts-sweep=4", "--soak"], "--accounts-sweep and --soak: one or the other"),
        (["--accounts-sweep=4", "--plot=x.png"], "--accounts-sweep and --plot: one or the other"),
        (
            ["--accounts-sweep=4", "--set=intake_path=x.db"],
            "--accounts-sweep sets a fresh store per measurement itself: drop --set intake_path",
        ),
    ],
)
def test_a_sweep_with_an_option_it_cannot_honour_is_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in loadrun_refusal(argv, capsys)


def test_a_sweep_past_max_instances_is_refused_before_any_engine_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["--accounts-sweep=1,3", "--set=max_instances=2", "--quiet"])

    assert status == 2
    err = capsys.readouterr().err
    assert "loadrun: error: --accounts-sweep 3: more than max_instances (2) accounts" in err


# --- the tail --------------------------------------------------------------------------------


def test_the_prediction_holds_a_send_over_the_allowance_until_the_window_frees_it() -> None:
    # Twelve messages at once, allowance 10 per 60 s: the 11th waits for the 1st to leave
    # the window, the 12th for the 2nd; a 13th a minute later goes at once.
    times, causes = _predict([0.0] * 12 + [61.0], allowance=10, window=60.0)

    assert times == [0.0] * 10 + [60.0, 60.0, 61.0]
    assert causes == ["other"] * 10 + ["allowance", "allowance", "other"]


def test_a_customer_s_sends_leave_in_order_and_only_the_ones_over_the_allowance_wait() -> None:
    # Allowance 2 per 10 s: the 3rd waits for the 1st to leave the window; the 4th, within
    # the allowance by the time it came (its window holds the 2nd and 3rd only from 15 s),
    # still waits for the 2nd.
    times, causes = _predict([0.0, 5.0, 6.0, 8.0], allowance=2, window=10.0)
    assert times == [0.0, 5.0, 10.0, 15.0]
    assert causes == ["other", "other", "allowance", "allowance"]
    # A message accepted after its slot freed goes at once.
    times, causes = _predict([0.0, 0.0, 0.0, 10.5], allowance=2, window=10.0)
    assert times == [0.0, 0.0, 10.0, 10.5]
    assert causes == ["other", "other", "allowance", "other"]


def _five_customers_run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    """Five customers write 30 messages each at once; ten per second each may be sent."""
    argv = [
        "--base=simpleSystemBase",
        "--accounts=1",
        "--customers=5",
        "--messages=150",
        *extra,
        "--quiet",
        "--set=recipient_rate_window_s=1",
        "--set=max_pending_per_customer=100",
        f"--set=dead_letter_path={tmp_path / 'dead-letters.bin'}",
    ]
    report: dict[str, Any] = run(parse_args(argv))
    return report


def test_the_tail_names_the_customers_over_their_allowance(tmp_path: Path) -> None:
    report = _five_customers_run(tmp_path)

    assert report["exactly_once"]["ok"], report["exactly_once"]
    tail = report["tail"]
    assert tail["account_counters"]["rate_waits"] > 0
    assert tail["slow"] > 0
    assert tail["kept"] == len(tail["rows"]) == tail["slow"]
    replay = tail["replay"]
    assert replay["done"], replay
    assert replay["causes"]["allowance"] > 0
    for row in tail["rows"]:
        assert row["customer"].startswith("+1555")
        assert row["account"] == "acct-000"
        if row["cause"] == "allowance":  # over the allowance of 10 sends per second
            assert row["nth"] > 10
            assert row["in_window"] > 10
    text = render(report)
    assert "tail: " in text
    assert "replayed from the seed: " in text


def test_the_tail_is_not_replayed_when_redeliveries_took_draws(tmp_path: Path) -> None:
    report = _five_customers_run(tmp_path, "--duplicates=0.1")

    assert report["exactly_once"]["ok"], report["exactly_once"]
    tail = report["tail"]
    assert tail["slow"] > 0
    assert tail["replay"] == {
        "done": False,
        "why_not": "redelivered webhooks (--duplicates) take draws of the seeded sequence",
    }
    assert "not replayed from the seed: redelivered webhooks" in render(report)
