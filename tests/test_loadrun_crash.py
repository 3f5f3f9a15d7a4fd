"""The load runner's durability modes: --crash-every, --durability-compare, the run's store.

The two runs are small (a couple of accounts, a few hundred messages/s) and judge only the
books, the processes and the files: never a speed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from actors import EngineConfig
from actors.engine.intake import IntakeStore
from actors.runtime import procs
from apps.loadrun import parse_args, render, run, write_json
from apps.loadrun.crashes import finished_in_store
from apps.loadrun.engine_host import HostSetup
from apps.loadrun.hosted import HostedEngine, HostGoneError
from apps.loadrun.options import COMPARE_DURATION_S, engine_config
from apps.loadrun.store import RunStore
from apps.loadrun.tracker import Tracker
from apps.loadrun.traffic import Traffic
from protocols import Accepted, InboundMessage, Outcome, ProviderSpec, Rejected
from tests.load_helpers import loadrun_refusal


def _ours_in_tmp() -> set[str]:
    """This process's load-run files and directories in the temp directory."""
    prefix = f"wae-loadrun-{os.getpid()}"
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith(prefix)}


def _small(*extra: str, tmp_path: Path) -> list[str]:
    return [
        "--accounts=2",
        "--customers=200",
        "--rate=200",
        "--quiet",
        # 200 customers write ~1 message/s each: a 1 s rate window keeps rate waits short.
        "--set=recipient_rate_window_s=1",
        # A message stuck in the engine times out in 30 s, not 120: the test judges the
        # books (a timeout is an outcome), and a stall must not hold the suite for minutes.
        "--set=processing_timeout_s=30",
        f"--set=dead_letter_path={tmp_path / 'dead-letters.bin'}",
        *extra,
    ]


def test_killing_the_whole_engine_every_two_seconds_keeps_every_message_exactly_once(
    tmp_path: Path,
) -> None:
    before = _ours_in_tmp()
    # A kill waits for a host that is up and has run a second; on a busy machine a
    # restart can take seconds, so the offer lasts long enough for two kills with room.
    report = run(parse_args(_small("--duration=10", "--crash-every=2", tmp_path=tmp_path)))

    assert report["exactly_once"]["ok"], report["exactly_once"]
    crashes = report["crashes"]
    assert crashes["kills"] >= 2
    assert crashes["unplanned"] == 0
    assert crashes["leftover_processes"] == []
    assert report["leftover_processes"] == []
    killed = [pid for row in crashes["rows"] for pid in row["pids"]]
    assert len(killed) >= 2 * 6  # a host, Thespian's admin and logger, 3 actors and more
    assert not [pid for pid in killed + crashes["last_engine_pids"] if procs.alive(pid)]
    owed = report["exactly_once"]["owed"]
    assert owed == report["counts"]["outcomes"] + report["exactly_once"]["settled_from_store"]
    assert report["exactly_once"]["duplicate_outcomes"] == 0
    lines = render(report).splitlines()
    assert any(line.startswith("crashes: the whole engine") for line in lines)
    assert lines[-1].startswith("exactly-once: OK (")
    assert lines[-1].endswith(" kills of the whole engine)")
    store = report["intake_store"]
    assert store["removed"] is True
    assert not os.path.exists(os.path.dirname(store["path"]))
    assert _ours_in_tmp() == before
    assert not (tmp_path / "dead-letters.bin").exists()


def test_the_durability_comparison_reports_fsync_os_and_off_side_by_side(tmp_path: Path) -> None:
    before = _ours_in_tmp()
    json_path = tmp_path / "compare.json"
    report = run(parse_args(_small("--durability-compare", "--duration=1", tmp_path=tmp_path)))
    write_json(report, str(json_path))

    assert report["exactly_once"]["ok"], report["exactly_once"]
    legs = report["durability_compare"]["legs"]
    assert [leg["durability"] for leg in legs] == ["fsync", "os", "off"]
    assert all(leg["completed_per_s"] > 0 and leg["exactly_once"] for leg in legs)
    assert legs[-1]["vs_off"] == 1.0
    assert report["durability_compare"]["fsync_vs_off"] == legs[0]["vs_off"]
    assert legs[0]["store_commits"] > 0  # the fsync run wrote to its own file
    assert all(leg["store"]["removed"] for leg in legs)
    assert len({leg["store"]["path"] for leg in legs}) == 3
    written = json.loads(json_path.read_text())
    assert set(written["runs"]) == {"fsync", "os", "off"}
    assert written["durability_compare"]["legs"][0]["completed_per_s"] > 0
    text = render(report)
    assert "fsync / off = " in text
    assert text.splitlines()[-1].endswith(" in 3 runs)")
    assert _ours_in_tmp() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--crash-every=2", "--base=simpleSystemBase"],
            "--crash-every needs a multiproc base (got simpleSystemBase)",
        ),
        (["--crash-every=2", "--set=durability=off"], "--crash-every needs a store that outlives"),
        (["--crash-every=2", "--soak"], "--crash-every and --soak: one or the other"),
        (
            ["--durability-compare", "--set=durability=os"],
            "--durability-compare sets durability and a fresh store per measurement itself: "
            "drop --set durability",
        ),
        (
            ["--durability-compare", "--crash-every=2"],
            "--durability-compare and --crash-every: one or the other",
        ),
        (["--durability-compare", "--plot=x.png"], "--durability-compare and --plot"),
        (["--crash-every=0"], "argument --crash-every: must be a number > 0, got '0'"),
    ],
)
def test_a_durability_mode_with_an_option_it_cannot_honour_is_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in loadrun_refusal(argv, capsys)


def test_the_durability_comparison_runs_20_seconds_each_unless_told() -> None:
    assert parse_args(["--durability-compare"]).duration == COMPARE_DURATION_S
    assert parse_args(["--durability-compare", "--duration=5"]).duration == 5.0
    one = parse_args(["--durability-compare", "--messages=300"])
    assert (one.messages, one.duration) == (300, None)


def test_a_failed_runs_store_is_kept_and_a_good_runs_removed(tmp_path: Path) -> None:
    opts = parse_args([])
    cfg = engine_config(opts)
    good, good_cfg = RunStore.place(opts, cfg)
    bad, _ = RunStore.fresh(cfg, "-test")
    try:
        assert good_cfg.intake_path == good.path
        assert good.ours
        assert oct(os.stat(os.path.dirname(good.path)).st_mode & 0o777) == oct(0o700)
        for store in (good, bad):
            Path(store.path).write_bytes(b"")
            Path(store.path + "-wal").write_bytes(b"")
        assert good.finish(ok=True)["removed"] is True
        assert not os.path.exists(os.path.dirname(good.path))
        kept = bad.finish(ok=False)
        assert (kept["removed"], kept["note"]) == (False, "kept: the run failed")
        assert sorted(bad.files()) == [bad.path, bad.path + "-wal"]
    finally:
        bad.finish(ok=True)
    assert not os.path.exists(os.path.dirname(bad.path))
    named = parse_args([f"--set=intake_path={tmp_path / 'mine' / 'intake.db'}"])
    store, _ = RunStore.place(named, engine_config(named))
    assert (store.ours, store.finish(ok=True)["removed"]) == (False, False)


def _two() -> tuple[list[tuple[InboundMessage, bool]], str, str]:
    batch = Traffic(accounts=1, customers=5).batch(2)
    return batch, batch[0][0].message_id, batch[1][0].message_id


def test_a_lost_answer_is_offered_again_and_owes_an_outcome_if_the_engine_recorded_it() -> None:
    batch, a, b = _two()
    tracker = Tracker(across_restarts=True)
    tracker.lost(batch, 0.0)  # the engine died during submit_many
    assert set(tracker.unknown) == {a, b}
    again = tracker.take_redeliveries(10)
    assert [m.message_id for m, _ in again] == [a, b]
    # a: recorded before the crash (duplicate); b: never recorded (accepted now).
    tracker.submitted(
        again, [Rejected(message_id=a, reason="duplicate"), Accepted(message_id=b)], 1
    )
    assert tracker.owed == 2
    assert tracker.exactly_once()["problems"] == [f"2 accepted without an outcome, e.g. {a}"]
    tracker.resolved(
        [
            Outcome(message_id=a, status="replied", reply="x"),
            Outcome(message_id=b, status="replied", reply="y"),
        ],
        2.0,
    )
    verdict = tracker.exactly_once()
    assert verdict["ok"], verdict
    assert (verdict["lost_answers"], verdict["unknown_recorded"]) == (2, 1)


def test_a_second_outcome_for_one_id_across_restarts_fails_the_run() -> None:
    batch, a, b = _two()
    tracker = Tracker(across_restarts=True)
    tracker.submitted(batch, [Accepted(message_id=a), Accepted(message_id=b)], 0.0)
    done = [Outcome(message_id=a, status="replied", reply="x")]
    tracker.resolved([*done, Outcome(message_id=b, status="replied", reply="y")], 1.0)
    assert tracker.exactly_once()["ok"]
    tracker.resolved(done, 2.0)  # a restarted engine answers a again
    verdict = tracker.exactly_once()
    assert not verdict["ok"]
    assert verdict["duplicate_outcomes"] == 1
    assert verdict["problems"] == [f"1 duplicate outcomes (a second outcome for one id), e.g. {a}"]


def test_an_outcome_that_arrives_before_a_lost_answer_is_offered_again_settles_it() -> None:
    batch, a, _b = _two()
    tracker = Tracker(across_restarts=True)
    tracker.lost(batch[:1], 0.0)
    tracker.resolved([Outcome(message_id=a, status="replied", reply="x")], 1.0)  # recovered
    again = tracker.take_redeliveries(10)
    tracker.submitted(again, [Rejected(message_id=a, reason="duplicate")], 2.0)
    verdict = tracker.exactly_once()
    assert verdict["ok"], verdict
    assert (verdict["owed"], verdict["outcomes"], verdict["accepted_again"]) == (1, 1, 0)
    # Accepted again after its outcome: the engine forgot it across a restart.
    tracker.submitted(again, [Accepted(message_id=a)], 3.0)
    problems = tracker.exactly_once()["problems"]
    assert any(p.startswith("1 ids accepted again after their outcome") for p in problems)


def _wait_for(outcomes: Callable[[], list[Outcome]], n: int) -> list[Outcome]:
    got: list[Outcome] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got += outcomes()
    return got


def test_a_hosted_engine_answers_like_an_embedded_one_and_remembers_ids_across_a_kill(
    tmp_path: Path,
) -> None:
    cfg = EngineConfig(
        intake_path=str(tmp_path / "store" / "intake.db"),
        dead_letter_path=str(tmp_path / "dead-letters.bin"),
    )
    setup = HostSetup(
        config=cfg,
        base="multiprocTCPBase",
        providers=(ProviderSpec(name="echo", kind="echo", priority=1),),
        accounts=(("acct-000", "loopback", {}),),
    )
    msgs = [
        InboundMessage(
            account_id="acct-000", customer_id=f"+1555000000{i}", message_id=f"h.{i}", text="hi"
        )
        for i in range(5)
    ]
    host = HostedEngine(setup).start()
    seen: set[int] = set()
    try:
        assert all(isinstance(r, Accepted) for r in host.submit_many(msgs))
        done = _wait_for(lambda: host.outcomes(timeout=0.5), 5)
        assert sorted(o.message_id for o in done) == [m.message_id for m in msgs]
        assert {o.status for o in done} == {"replied"}
        assert {a.role for a in host.stats().actors} >= {"router", "ai_pool", "account"}
        first = set(host.pids)
        seen |= first
        assert host.kill()
        with pytest.raises(HostGoneError):
            host.outcomes(timeout=0.5)
        restart = host.restart()
        assert restart.planned
        assert restart.leftovers == ()
        assert not [pid for pid in first if procs.alive(pid)]
        # The new engine opened the same store: every id is a duplicate now.
        again = host.submit_many(msgs[:2])
        assert [getattr(r, "reason", None) for r in again] == ["duplicate", "duplicate"]
        host.shutdown()
    finally:
        seen |= host.pids
        left = host.close()
    assert left == set()
    assert not [pid for pid in seen if procs.alive(pid)]


def test_an_engine_host_whose_runner_went_away_shuts_its_engine_down(tmp_path: Path) -> None:
    cfg = EngineConfig(
        intake_path=str(tmp_path / "store" / "intake.db"),
        dead_letter_path=str(tmp_path / "dead-letters.bin"),
    )
    host = HostedEngine(HostSetup(config=cfg, base="multiprocTCPBase")).start()
    pids = set(host.pids)
    host._host.sock.close()  # what the runner's death does to the host's channel
    host._host.proc.wait(timeout=60)
    assert procs.wait_gone(pids, timeout_s=10.0) == set()
    assert host._host.proc.returncode == 0


def test_the_store_lookup_finds_what_a_dead_engine_finished_and_nothing_after(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "store" / "intake.db")
    batch, a, b = _two()
    store = IntakeStore.open(path, durability="os", retention_s=3600, max_records=100)
    try:
        store.record_accepted([(m, 1e10) for m, _ in batch], now=100.0)
        store.record_outcomes([Outcome(message_id=a, status="replied", reply="x")], now=200.0)
        # Read beside the engine that has the store open, as after a restart.
        assert finished_in_store(path, [a, b, "nobody"]) == {a: "replied"}
        assert finished_in_store(path, [a, b], before=150.0) == {}
        assert finished_in_store(path, [a, b], before=250.0) == {a: "replied"}
    finally:
        store.close()
    assert finished_in_store(str(tmp_path / "missing.db"), [a]) == {}
