"""The load runner's members: ``--members N``, ``--member-kill S``, ``--member-freeze S``.

One short run with two members (``python -m apps.member`` on 127.0.0.2 and 127.0.0.3) and
four accounts, one member SIGKILLed three seconds in: the books must balance, the report
must give the kill's detection and re-placement times (printed, never asserted as a
speed), and nothing of the members or the engine may outlive the run (every pid the
report names is checked, and no port listens on the members' addresses). A second run
freezes a member for 5 s: it is dropped, its accounts re-placed, it rejoins and its stale
account actors end. Then the combinations the runner refuses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from actors.runtime import procs
from apps.loadrun import parse_args, render, run
from apps.loadrun.members import SECRET_ENV, listening, member_capacity
from tests.load_helpers import loadrun_refusal

HOSTS = ("127.0.0.2", "127.0.0.3")


def _members_run(tmp_path: Path, *flags: str) -> dict[str, Any]:
    """A short paced run with two members of two accounts each, and ``flags``."""
    argv = [
        *("--members=2", "--accounts=4", *flags),
        *("--customers=200", "--rate=200", "--quiet"),
        "--set=recipient_rate_window_s=1",
        # A message stuck in the engine times out in 30 s, not 120: the books are judged.
        "--set=processing_timeout_s=30",
        f"--set=dead_letter_path={tmp_path / 'dead-letters.bin'}",
    ]
    report: dict[str, Any] = run(parse_args(argv))
    return report


def test_a_member_killed_during_a_run_is_detected_its_accounts_re_placed_and_books_balance(
    tmp_path: Path,
) -> None:
    assert SECRET_ENV not in os.environ
    report = _members_run(tmp_path, "--duration=6", "--member-kill=3")

    assert report["exactly_once"]["ok"], report["exactly_once"]
    m = report["members"]
    assert (m["count"], m["max_accounts"]) == (2, 2)
    assert m["accounts_at_start"] == {"m1": 2, "m2": 2}  # spread over both, none on the leader
    kills = m["member_kill"]["faults"]
    assert kills, m["member_kill"]
    first = kills[0]
    assert first["member"] == "m1"
    assert len(first["accounts"]) == 2
    assert first["detected_s"] is not None, first
    assert first["replaced_s"] is not None, first
    assert first["lost_event_s"] is not None, first  # the supervisor's own stamps
    assert first["up_event_s"] is not None, first
    assert set(first["placed_on"]) == set(first["accounts"])
    assert "m1" not in first["placed_on"].values()
    assert m["double_served"] == 0
    assert m["accepted"] == m["outcomes"] == report["exactly_once"]["owed"]
    # Nothing outlives the run: every member process, every engine process, no port.
    assert m["leftover_pids"] == []
    assert m["leftover_ports"] == []
    assert not m["failed"]
    assert report["leftover_processes"] == []
    assert len(m["pids"]) >= 3 * 3  # three members (one a replacement), several each
    assert not [pid for pid in [*m["pids"], *m["engine_pids"]] if procs.alive(pid)]
    assert m["ports"]  # the members' admins and actors listened: none of them still does
    assert not set(m["ports"]) & set(listening(HOSTS))  # other tests may use these addresses
    assert SECRET_ENV not in os.environ  # the run's secret went with it
    lines = render(report).splitlines()
    assert any(line.startswith("members: 2 on 127.0.0.2, 127.0.0.3") for line in lines)
    assert any("double-served: 0" in line for line in lines)
    assert lines[-1].startswith("exactly-once: OK (")
    print(
        f"\nmember SIGKILL at {first['t']:.1f} s -> its accounts lost after "
        f"{first['lost_event_s']:.2f} s, up on {sorted(set(first['placed_on'].values()))} "
        f"after {first['up_event_s']:.2f} s; "
        f"{m['accepted']} accepted, {m['outcomes']} outcomes"
    )


def test_a_member_frozen_during_a_run_is_dropped_rejoins_and_its_stale_accounts_end(
    tmp_path: Path,
) -> None:
    """``--member-freeze``: SIGSTOP for 5 s (past the ~3 s detection), then SIGCONT."""
    report = _members_run(
        tmp_path, "--duration=18", "--member-freeze=5", "--member-freeze-every=11"
    )

    assert report["exactly_once"]["ok"], report["exactly_once"]
    m = report["members"]
    assert m["member_kill"] is None
    freezes = m["member_freeze"]["faults"]
    assert len(freezes) == 1, m["member_freeze"]
    (freeze,) = freezes
    assert (freeze["kind"], freeze["member"], len(freeze["accounts"])) == ("freeze", "m1", 2)
    assert freeze["frozen_for_s"] >= 5.0
    assert freeze["detected_s"] is not None, freeze  # 5 s frozen: dropped (~3 s)
    assert freeze["replaced_s"] is not None, freeze
    assert freeze["rejoined_s"] is not None, freeze  # back as a member after the SIGCONT
    assert freeze["stale"] == 2, freeze
    assert freeze["stale_gone_s"] is not None, freeze
    assert freeze["others_before_per_s"] > 0, freeze
    assert freeze["others_during_per_s"] > 0, freeze
    assert m["started"] == ["m1", "m2"]  # a frozen member is not replaced: it comes back
    assert m["double_served"] == 0
    assert m["leftover_pids"] == []
    assert m["leftover_ports"] == []
    assert not m["failed"]
    assert report["leftover_processes"] == []
    lines = render(report).splitlines()
    assert any(line.startswith("  member freezes: SIGSTOP") for line in lines)
    assert lines[-1].startswith("exactly-once: OK (")
    print(
        f"\nmember SIGSTOP at {freeze['t']:.1f} s for {freeze['frozen_for_s']:.1f} s -> "
        f"lost after {freeze['lost_event_s']}, up again after {freeze['up_event_s']} s, "
        f"rejoined {freeze['rejoined_s']:.2f} s, stale actors gone {freeze['stale_gone_s']:.2f} "
        f"s; other accounts {freeze['others_before_per_s']:.0f}/s before, "
        f"{freeze['others_during_per_s']:.0f}/s during"
    )


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--base=simpleSystemBase"], "--members needs a multiproc base"),
        (["--crash-every=5"], "--members and --crash-every: one or the other"),
        (["--accounts-sweep=4,20"], "--members and --accounts-sweep: one or the other"),
        (["--durability-compare"], "--members and --durability-compare: one or the other"),
        (["--members=51"], "--members must be <= 50"),
        (["--member-kill=9", "--member-freeze=2"], "--member-kill and --member-freeze: one or"),
        (
            ["--member-freeze=5", "--member-freeze-every=10"],
            "--member-freeze-every (10) must exceed twice --member-freeze (5)",
        ),
        (["--member-freeze=10"], "--member-freeze-every (20) must exceed twice"),
        (["--member-freeze-every=30"], "--member-freeze-every needs --member-freeze"),
    ],
)
def test_members_with_a_mode_that_cannot_have_them_is_refused(
    extra: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert said in loadrun_refusal(["--members=2", *extra], capsys)


@pytest.mark.parametrize(
    "flag", ["--member-kill=3", "--member-max-accounts=2", "--member-freeze=2"]
)
def test_member_options_without_members_are_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "needs --members" in loadrun_refusal([flag], capsys)


def test_each_member_hosts_an_even_share_with_the_leader_by_default() -> None:
    assert member_capacity(4, 2) == 2
    assert member_capacity(20, 2) == 7
    assert member_capacity(1, 3) == 1
    opts = parse_args(["--members=2", "--member-kill=10", "--member-max-accounts=9"])
    assert (opts.members, opts.member_kill, opts.member_max_accounts) == (2, 10.0, 9)
