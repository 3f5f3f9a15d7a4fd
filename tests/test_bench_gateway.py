"""The gateway benchmark: one short run end to end, and its parts (no timing is asserted)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

from apps.bench.client import LevelResult, WebhookMaker
from apps.bench.profile import summarize
from apps.bench.report import Level, Report
from apps.bench.serve import bare_app, numbers
from apps.bench.servers import processes_with
from apps.gateway.signature import HEADER, sign, signature_problem
from apps.gateway.webhook import decode_payload, parse_payload

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-3f9a1c"


def test_a_short_run_answers_every_webhook_200_on_both_targets_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    run_tmp = tmp_path / "tmp"  # the run's private directory goes here; it must go away
    run_tmp.mkdir()
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAE_")}
    env["TMPDIR"] = str(run_tmp)
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_gateway.py")]
    cmd += ["--concurrency", "1,2", "--duration", "0.5", "--json", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "gateway wh/s" in line)
    assert lines[header].split()[:2] == ["concurrency", "gateway"]
    assert "gateway / bare" in lines[header]
    assert [lines[header + 2].split()[0], lines[header + 3].split()[0]] == ["1", "2"]
    assert lines[-1].startswith("OK: every answer 200")

    report = json.loads(out.read_text())
    assert [level["concurrency"] for level in report["levels"]] == [1, 2]
    for level in report["levels"]:
        for target in ("gateway", "bare"):
            answered = level[target]["answered_200"]
            assert answered > 0
            assert level[target]["answers"] == {"200": answered}  # nothing but 200s
        gateway = level["gateway"]
        assert gateway["accepted"] == gateway["answered_200"]  # one message per webhook
        assert sum(level["outcomes"].values()) == gateway["accepted"]
        assert level["drain_s"] is not None
        assert level["cpu_ms_per_webhook"]["gateway"] >= 0
    assert report["problems"] == []
    assert report["left"] == []
    assert report["exit_codes"] == {"gateway": 0, "bare": 0}
    # Every process the run started (the servers, the engine's actors) had TMPDIR in its
    # environment; none is left, and neither is anything in the temp directory.
    assert not processes_with(f"TMPDIR={run_tmp}".encode())
    assert list(run_tmp.iterdir()) == []


def test_the_bare_handler_answers_200_only_to_a_correctly_signed_webhook() -> None:
    maker = WebhookMaker(SECRET, numbers(), customers=10, run_id="t")

    async def scenario() -> list[int]:
        runner = web.AppRunner(bare_app(SECRET.encode()), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
            body, headers = maker.next()
            codes = []
            async with aiohttp.ClientSession() as session:
                for sent_headers in (
                    headers,
                    {**headers, HEADER: sign("another secret", body)},
                    {"Content-Type": "application/json"},
                ):
                    async with session.post(url, data=body, headers=sent_headers) as answer:
                        codes.append(answer.status)
            return codes
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == [200, 401, 401]


def test_each_webhook_is_signed_and_carries_one_new_message_from_the_next_customer() -> None:
    count, customers = 9, 4
    maker = WebhookMaker(SECRET, numbers(3), customers, run_id="r1")
    accounts = {phone: account for account, phone in numbers(3)}
    ids, senders, used = set(), Counter[str](), Counter[str]()
    for _ in range(count):
        body, headers = maker.next()
        assert signature_problem(SECRET, body, headers[HEADER]) is None
        batch = parse_payload(decode_payload(body), accounts)  # the gateway's own parser
        (message,) = batch.messages
        assert batch.counts["text"] == 1
        ids.add(message.message_id)
        senders[message.customer_id] += 1
        used[message.account_id] += 1
    assert len(ids) == count
    assert sorted(senders.values()) == [2, 2, 2, 3]  # 4 customers in turn over 9 webhooks
    assert used == {"bench-1": 3, "bench-2": 3, "bench-3": 3}


def test_a_non_200_answer_fails_the_run_and_is_listed() -> None:
    gateway = LevelResult("gateway", 10, answers=Counter({"200": 5, "503": 2}), accepted=5)
    gateway.seconds = 1.0
    bare = LevelResult("bare", 10, answers=Counter({"200": 50}), seconds=1.0)
    level = Level(10, gateway, bare, drain_s=0.1, outcomes={"replied": 5})
    report = Report(
        settings={
            "numbers": 3,
            "base": "multiprocTCPBase",
            "durability": "fsync",
            "duration_s": 1.0,
            "customers": 100,
        },
        levels=[level],
        exit_codes={"gateway": 0, "bare": 0},
    )
    assert report.problems() == ["gateway at concurrency 10: 2 x 503"]
    text = report.render()
    assert text.splitlines()[-1] == "FAILED: gateway at concurrency 10: 2 x 503"
    assert level.ratio == 0.1


def test_a_profile_gives_each_activity_and_stage_its_share_of_the_measured_cpu() -> None:
    loop = "run (asyncio/runners.py:190);BaseEventLoop._run_once (asyncio/base_events.py:1)"
    worker = "Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:83)"
    lines = [
        f"{loop};Gateway._webhook (apps/gateway/app.py:1);parse_payload "
        "(apps/gateway/webhook.py:2) 30",
        f"{worker};Engine.submit_many (actors/engine/facade.py:3);"
        "Database.execute (actors/engine/intake_db.py:4) 50",
        f"{loop};EpollSelector.select (selectors.py:468) 20",
        "not a sample line",
    ]
    out = summarize(lines, webhooks=10, cpu_ms=2.0)
    rows = {line.split("  ")[1].strip(): line.split()[-2:] for line in out[1:] if "  " in line}
    assert rows["event loop: webhook handler"] == ["30.00", "0.600"]
    assert rows["engine thread: submit_many"] == ["50.00", "1.00"]
    assert rows["event loop: itself"] == ["20.00", "0.400"]
    assert rows["intake store (SQLite)"] == ["50.00", "1.00"]
    assert rows["webhook parsing"] == ["30.00", "0.600"]
