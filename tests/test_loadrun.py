"""The load runner in-process with tiny numbers: its books must balance on both bases."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from protocols import Accepted, Outcome, Rejected
from tests.conftest import BASES

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def loadrun() -> Iterator[ModuleType]:
    """``scripts/loadrun.py`` imported the way ``python scripts/loadrun.py`` sees it."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module("loadrun")
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.mark.parametrize("base", BASES)
def test_every_accepted_message_of_a_small_run_gets_exactly_one_outcome(
    loadrun: ModuleType, base: str, tmp_path: Path
) -> None:
    json_path = tmp_path / "report.json"
    argv = [
        f"--base={base}",
        "--accounts=2",
        "--customers=50",
        "--messages=500",
        "--duplicates=0.1",
        "--batch=50",  # redeliveries repeat accepted messages: an auto batch takes all 500
        "--quiet",
        f"--json={json_path}",
        # 50 customers write ~10 messages each: a 1 s rate window keeps rate waits short.
        "--set=recipient_rate_window_s=1",
        f"--set=dead_letter_path={tmp_path / 'dead-letters.bin'}",
        f"--set=intake_path={tmp_path / 'intake' / 'intake.db'}",
    ]
    if base == "multiprocTCPBase":
        argv += ["--baseline", "--baseline-messages=200"]
    report = loadrun.run(loadrun.parse_args(argv))
    loadrun.write_json(report, str(json_path))

    c = report["counts"]
    assert report["exactly_once"]["ok"], report["exactly_once"]
    assert c["offered"] == 500
    assert c["offered"] == c["accepted"] + c["rejected"]
    assert sum(report["outcomes_by_status"].values()) == c["accepted"] == c["outcomes"]
    assert c["duplicates_offered"] > 0
    assert c["duplicates_rejected"] == c["duplicates_offered"]
    assert report["rejections"].get("duplicate", 0) == c["duplicates_offered"]
    assert report["leftover_processes"] == []
    assert [s["name"] for s in report["shutdown"]["stages"]][-1] == "actor_system"
    assert loadrun.render(report).splitlines()[-1] == (
        f"exactly-once: OK ({c['accepted']:,} accepted, {c['accepted']:,} outcomes)"
    )
    written = json.loads(json_path.read_text())
    assert written["counts"] == c
    assert written["exactly_once"]["ok"] is True
    if base == "multiprocTCPBase":
        assert written["baseline"]["tell_per_s"] > 0
        assert written["baseline"]["transport_auth"] == "on"
        assert written["baseline"]["without_auth"]["tell_per_s"] > 0
        text = loadrun.render(report)
        assert "raw Thespian on multiprocTCPBase (same machine, same run) and the engine " in text
        assert "against it, transport authentication on" in text
        assert "raw Thespian without transport authentication: " in text
        assert written["ratios"]["completed_vs_raw_tell"] > 0
        assert written["rss_kb"]["router"]["peak"] > 0


def test_a_run_against_the_fake_servers_sends_every_reply_over_http(
    loadrun: ModuleType, tmp_path: Path
) -> None:
    argv = [
        "--base=multiprocTCPBase",
        "--edges=fake",
        "--accounts=2",
        "--customers=1000",
        "--messages=100",
        "--provider-latency=0.05",
        "--transport-latency=0.02",
        "--quiet",
        f"--set=dead_letter_path={tmp_path / 'dead-letters.bin'}",
        f"--set=intake_path={tmp_path / 'intake' / 'intake.db'}",
    ]
    report = loadrun.run(loadrun.parse_args(argv))

    c = report["counts"]
    assert report["exactly_once"]["ok"], report["exactly_once"]
    assert c["offered"] == c["accepted"] == c["outcomes"] == 100
    assert report["outcomes_by_status"] == {"replied": 100}
    e = report["edges"]
    assert e["kind"] == "fake"
    # Every message: one LLM call, one Graph send, with the run's secrets and digit recipients.
    assert e["llm"]["requests"] == e["graph"]["requests"] == 100
    assert e["llm"]["peak_in_flight"] > 0
    assert e["graph"]["peak_in_flight"] > 0
    assert e["llm"]["bearer_ok"]
    assert e["llm"]["model_ok"]
    assert e["graph"]["bearer_ok"]
    assert e["graph"]["to_digits"]
    assert e["graph"]["phone_number_ids"] == 2
    (llm_stats,) = e["pool"]["provider_stats"].values()
    assert llm_stats["calls"] == llm_stats["ok"] == 100
    accounts = e["accounts"]
    assert accounts["sent"] == 100
    # One HTTP call per reply, each of them received by the fake (no call was retried).
    assert accounts["http_calls"] == e["graph"]["requests"]
    one = accounts["one"]["transport"]
    assert 0 < one["peak_http"] <= one["http_calls"]
    # An account holds a call from its start until its actor polls the answer: longer than
    # the fake handles it, so one account's peak may exceed the fake's. The other way round
    # holds at every instant: each request the fake was handling was a call an account held.
    assert 0 < e["graph"]["peak_in_flight"] <= accounts["peak_http_sum"]
    assert report["leftover_processes"] == []
    assert "fake Graph API saw" in loadrun.render(report)
    # The secrets lived in the environment for the run only.
    edges = importlib.import_module("apps.loadrun.edges")
    assert edges.GRAPH_TOKEN_ENV not in os.environ
    assert edges.OPENAI_KEY_ENV not in os.environ


def test_fake_edges_refuse_the_embedded_only_fault_options(loadrun: ModuleType) -> None:
    with pytest.raises(SystemExit) as exc:
        loadrun.parse_args(["--edges=fake", "--transport-failure-rate=0.1"])
    assert exc.value.code == 2


def test_a_bad_option_exits_with_status_2(loadrun: ModuleType) -> None:
    with pytest.raises(SystemExit) as exc:
        loadrun.main(["--kill-router"])
    assert exc.value.code == 2


def test_the_traffic_is_the_same_for_the_same_seed(loadrun: ModuleType) -> None:
    traffic = importlib.import_module("apps.loadrun.traffic")

    def ids(seed: int) -> list[tuple[str, str, str]]:
        t = traffic.Traffic(accounts=3, customers=1000, popularity="zipf", seed=seed)
        return [(m.account_id, m.customer_id, m.message_id) for m, _ in t.batch(50)]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_redeliveries_repeat_only_messages_that_were_accepted(loadrun: ModuleType) -> None:
    traffic = importlib.import_module("apps.loadrun.traffic")
    t = traffic.Traffic(accounts=2, customers=10, duplicates=0.5, seed=1)
    first = t.batch(10)
    assert not any(dup for _, dup in first)  # nothing accepted yet: nothing to redeliver
    t.accepted(first[0][0])
    redelivered = {m.message_id for m, dup in t.batch(40) if dup}
    assert redelivered == {first[0][0].message_id}


def test_a_missing_or_second_outcome_fails_the_exactly_once_check(loadrun: ModuleType) -> None:
    tracker_mod = importlib.import_module("apps.loadrun.tracker")
    msgs = importlib.import_module("apps.loadrun.traffic").Traffic(accounts=1, customers=5).batch(2)
    a, b = (m.message_id for m, _ in msgs)
    tracker = tracker_mod.Tracker()
    tracker.submitted(msgs, [Accepted(message_id=a), Accepted(message_id=b)], 0.0)
    tracker.resolved([Outcome(message_id=a, status="replied", reply="ok")], 0.1)
    assert tracker.exactly_once()["problems"] == [f"1 accepted without an outcome, e.g. {b}"]
    tracker.resolved([Outcome(message_id=b, status="replied", reply="ok")] * 2, 0.2)
    verdict = tracker.exactly_once()
    assert not verdict["ok"]
    assert verdict["unexpected"] == 1
    tracker2 = tracker_mod.Tracker()
    tracker2.submitted(msgs, [Accepted(message_id=a), Rejected(message_id=b, reason="capacity")], 0)
    tracker2.resolved([Outcome(message_id=a, status="replied", reply="ok")], 0.1)
    assert tracker2.exactly_once()["ok"]


def test_latency_percentiles_are_within_one_percent_in_constant_memory(loadrun: ModuleType) -> None:
    tracker_mod = importlib.import_module("apps.loadrun.tracker")
    values = [0.0005 * 1.003**i for i in range(3000)]  # 0.5 ms .. ~4 s
    histogram = tracker_mod.LatencyHistogram()
    for v in values:
        histogram.add(v)
    exact = tracker_mod.percentiles(values, (50, 90, 99, 100))
    approx = histogram.percentiles((50, 90, 99, 100))
    assert all(e <= a <= e * 1.01 for e, a in zip(exact, approx, strict=True))
    assert approx[-1] == max(values)
    assert len(histogram.counts) < 1000
