"""The gateway over real HTTP: an aiohttp client against the app on 127.0.0.1, a real engine.

pytest-asyncio is not used: each test drives its own loop with ``asyncio.run``. Engines
are started before that loop (and its threads) exist, as the gateway requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loguru import logger

from actors.config import EngineConfig
from actors.engine import Engine
from actors.runtime import procs as _procs
from apps.gateway import AccountEntry, Gateway, GatewayConfig, resolve_secrets, start_engine
from protocols import ProviderSpec
from tests.conftest import EngineFactory
from tests.test_gateway_metrics import families, parse_exposition
from tests.test_gateway_webhook import (
    PHONE_ID,
    SECRET,
    change,
    payload,
    sign,
    status,
    text_message,
)

VERIFY_TOKEN = "verify-token-5d1c9e"
ENV = {"T_VERIFY": VERIFY_TOKEN, "T_SECRET": SECRET.decode()}
REPLIED = {"status": "replied", "reason": ""}


def gateway_config(**kw: Any) -> GatewayConfig:
    kw.setdefault("accounts", (AccountEntry(account_id="acct-1", phone_number_id=PHONE_ID),))
    return GatewayConfig(verify_token_env="T_VERIFY", app_secret_env="T_SECRET", **kw)


def make_gateway(engine: Engine, **kw: Any) -> Gateway:
    config = gateway_config(base=engine.base, **kw)
    return Gateway(config, engine, resolve_secrets(config, ENV))


@contextlib.asynccontextmanager
async def served(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    """Serve the gateway on 127.0.0.1:<free port>; yield a client session bound to it."""
    runner = gateway.runner()
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(f"http://{host}:{port}", timeout=timeout) as session:
            yield session
    finally:
        await runner.cleanup()


async def post(
    session: aiohttp.ClientSession, doc: Any, *, signature: str | None = "sign"
) -> tuple[int, Any, aiohttp.ClientResponse]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "sign" else signature
    async with session.post("/webhook", data=body, headers=headers) as resp:
        text = await resp.text()
        answer = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, answer, resp


async def until(condition: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    """Wait on the loop until ``condition`` holds; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.02)  # the poll interval of a condition wait


def replied(gateway: Gateway) -> int:
    return gateway.counters.get("outcomes", **REPLIED)


# --- handshake ---------------------------------------------------------------------------------


def test_the_subscribe_handshake_echoes_the_challenge_only_for_the_token(
    make_engine: EngineFactory,
) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))

    async def scenario() -> None:
        async with served(gateway) as http:
            ok = {
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            }
            async with http.get("/webhook", params=ok) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/plain"
                assert await resp.text() == "1158201444"
            for bad in (
                {**ok, "hub.verify_token": "wrong"},
                {**ok, "hub.mode": "unsubscribe"},
                {"hub.challenge": "1"},
            ):
                async with http.get("/webhook", params=bad) as resp:
                    assert resp.status == 403
                    assert "1158201444" not in await resp.text()

    asyncio.run(scenario())
    assert gateway.counters.get("handshakes", result="ok") == 1
    assert gateway.counters.get("handshakes", result="forbidden") == 3


# --- POST /webhook -----------------------------------------------------------------------------


def test_a_signed_webhook_is_accepted_and_its_message_replied(make_engine: EngineFactory) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    doc = payload(
        change(messages=[text_message("wamid.1"), text_message("wamid.2", "15550002222")])
    )

    async def scenario() -> None:
        async with served(gateway) as http:
            code, answer, _ = await post(http, doc)
            assert code == 200
            assert answer["accepted"] == 2
            await until(lambda: replied(gateway) == 2, "two replied outcomes")

    asyncio.run(scenario())
    assert gateway.counters.get("messages", kind="text") == 2
    assert gateway.counters.get("submissions", result="accepted", reason="") == 2
    assert gateway.counters.get("webhooks", code="200") == 1


def test_an_unsigned_or_badly_signed_webhook_is_refused_401(make_engine: EngineFactory) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    doc = payload(change(messages=[text_message("wamid.1")]))
    body = json.dumps(doc).encode()

    async def scenario() -> None:
        async with served(gateway) as http:
            assert (await post(http, doc, signature=None))[0] == 401
            assert (await post(http, doc, signature="sha256=" + "0" * 64))[0] == 401
            assert (await post(http, doc, signature=sign(body, b"other")))[0] == 401
            assert (await post(http, doc, signature=sign(body).replace("sha256=", "md5=")))[
                0
            ] == 401

    asyncio.run(scenario())
    assert gateway.counters.total("signature_failures") == 4
    assert gateway.counters.get("signature_failures", why="mismatch") == 2
    assert gateway.counters.total("submissions") == 0  # nothing reached the engine


def test_a_flood_of_bad_requests_logs_a_few_lines_and_never_a_secret(
    make_engine: EngineFactory,
) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    doc = payload(change(messages=[text_message("wamid.1")]))
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG", format="{message} | {extra}")

    async def scenario() -> None:
        async with served(gateway) as http:
            for _ in range(30):
                assert (await post(http, doc, signature=None))[0] == 401
            params = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
            for _ in range(30):
                async with http.get("/webhook", params=params) as resp:
                    assert resp.status == 403
            assert (await post(http, doc))[0] == 200

    try:
        asyncio.run(scenario())
    finally:
        logger.remove(sink)
    assert sum("webhook signature missing" in line for line in logs) == 10
    assert sum("handshake refused" in line for line in logs) == 10
    assert gateway.counters.get("signature_failures", why="missing") == 30
    text = "\n".join(logs)
    assert VERIFY_TOKEN not in text
    assert SECRET.decode() not in text


def test_a_body_over_the_limit_is_refused_413_with_or_without_a_length(
    make_engine: EngineFactory,
) -> None:
    gateway = make_gateway(
        make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)), max_body_bytes=4096
    )
    big = b'{"pad": "' + b"x" * 8192 + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async def scenario() -> None:
        async with served(gateway) as http:
            assert (await post(http, big))[0] == 413  # Content-Length says it all
            headers = {"X-Hub-Signature-256": sign(big)}
            async with http.post("/webhook", data=chunks(), headers=headers) as resp:
                assert resp.status == 413  # chunked: refused once the limit is passed
            small = payload(change(messages=[text_message("fits")]))
            assert (await post(http, small))[0] == 200

    asyncio.run(scenario())
    assert gateway.counters.get("webhooks", code="413") == 2


def test_a_signed_body_that_is_not_a_json_object_is_refused_400(make_engine: EngineFactory) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))

    async def scenario() -> None:
        async with served(gateway) as http:
            for body in (b"\xff\xfe", b"{nope", b"[]"):
                assert (await post(http, body))[0] == 400

    asyncio.run(scenario())
    assert gateway.counters.get("webhooks", code="400") == 3


def test_statuses_unreadable_invalid_and_unknown_numbers_are_acknowledged_and_counted(
    make_engine: EngineFactory,
) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    image = {"from": "15550001111", "id": "wamid.img", "type": "image", "image": {}}
    doc = payload(
        change(statuses=[status("wamid.0", "delivered"), status("wamid.0", "read")]),
        change(messages=[image, text_message("wamid.long", body="y" * 5000)]),
        change(phone_id="424242", messages=[text_message("wamid.elsewhere")]),
        {"field": "account_update", "value": {}},
        entries=2,
    )

    async def scenario() -> None:
        async with served(gateway) as http:
            code, answer, _ = await post(http, doc)
            assert code == 200
            assert answer["accepted"] == 0
            assert answer["items"]["status"] == 2

    asyncio.run(scenario())
    c = gateway.counters
    assert c.get("messages", kind="status") == 2
    assert c.get("statuses", status="read") == 1
    assert c.get("messages", kind="image") == 1  # no caption: acknowledged, not submitted
    assert c.get("messages", kind="invalid") == 1
    assert c.get("messages", kind="unknown_account") == 1
    assert c.get("messages", kind="ignored") == 1


@pytest.mark.parametrize(
    ("limits", "senders", "reason"),
    [
        ({"max_concurrent_processing": 1}, ("15550001111", "15550002222"), "capacity"),
        ({"max_pending_per_customer": 0}, ("15550001111", "15550001111"), "customer_backlog"),
    ],
)
def test_a_refusal_answers_503_and_the_redelivery_is_absorbed_by_dedupe(
    make_engine: EngineFactory, limits: dict[str, int], senders: tuple[str, str], reason: str
) -> None:
    engine = make_engine(
        "simpleSystemBase", echo={"latency_s": 0.3}, accounts=("acct-1",), **limits
    )
    gateway = make_gateway(engine)
    doc = payload(
        change(messages=[text_message("wamid.a", senders[0]), text_message("wamid.b", senders[1])])
    )

    async def scenario() -> None:
        async with served(gateway) as http:
            code, answer, resp = await post(http, doc)
            assert code == 503
            assert resp.headers["Retry-After"] == "5"
            assert (answer["accepted"], answer["rejected"]) == (1, {reason: 1})
            await until(lambda: replied(gateway) == 1, "the accepted message replied")
            # WhatsApp redelivers the same payload later: the first is a duplicate now.
            code, answer, resp = await post(http, doc)
            assert code == 200
            assert "Retry-After" not in resp.headers
            assert (answer["accepted"], answer["rejected"]) == (1, {"duplicate": 1})
            await until(lambda: replied(gateway) == 2, "both messages replied")

    asyncio.run(scenario())
    assert gateway.counters.get("webhooks", code="503") == 1
    assert gateway.counters.get("submissions", result="rejected", reason="duplicate") == 1


def test_a_stopped_engine_answers_503_and_health_says_down(make_engine: EngineFactory) -> None:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    gateway = make_gateway(engine, retry_after_s=9)
    engine.shutdown()

    async def scenario() -> None:
        async with served(gateway) as http:
            code, answer, resp = await post(http, payload(change(messages=[text_message("late")])))
            assert (code, resp.headers["Retry-After"]) == (503, "9")
            assert answer["rejected"] == {"shutting_down": 1}
            async with http.get("/healthz") as health:
                assert health.status == 503
                assert (await health.json())["status"] == "down"
            async with http.get("/metrics") as metrics:
                assert metrics.status == 200
                assert parse_exposition(await metrics.text())["wae_engine_up"] == 0

    asyncio.run(scenario())


class BrokenEngine:
    """Stands for an engine whose every call raises (its actor system is gone)."""

    base = "simpleSystemBase"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _fail(self, name: str) -> Any:
        self.calls.append(name)
        raise RuntimeError(f"{name}: the actor system does not answer")

    def submit_many(self, messages: Any) -> Any:
        return self._fail("submit_many")

    def outcomes(self, timeout: float = 1.0) -> Any:
        return self._fail("outcomes")

    def stats(self) -> Any:
        return self._fail("stats")


def test_an_engine_that_raises_gets_503s_and_the_collector_keeps_going() -> None:
    engine = BrokenEngine()
    gateway = make_gateway(engine)  # type: ignore[arg-type]

    async def scenario() -> None:
        async with served(gateway) as http:
            code, _, resp = await post(http, payload(change(messages=[text_message("x.1")])))
            assert (code, resp.headers["Retry-After"]) == (503, "5")
            async with http.get("/healthz") as health:
                assert health.status == 503
            await until(lambda: engine.calls.count("outcomes") >= 3, "the collector retrying")

    asyncio.run(scenario())
    assert gateway.counters.get("engine_errors", call="submit_many") == 1
    assert gateway.counters.get("engine_errors", call="stats") == 1
    assert gateway.counters.get("engine_errors", call="outcomes") >= 3


# --- health and metrics ----------------------------------------------------------------------


def test_health_and_metrics_show_the_engine_and_the_gateway(make_engine: EngineFactory) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))

    async def scenario() -> None:
        async with served(gateway) as http:
            await post(http, payload(change(messages=[text_message("m.1")])))
            await post(http, b"{}", signature=None)
            await until(lambda: replied(gateway) == 1, "one replied outcome")
            async with http.get("/healthz") as resp:
                assert resp.status == 200
                health = await resp.json()
            async with http.get("/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                samples = parse_exposition(await resp.text())
        assert health["status"] == "ok"
        assert health["engine"] == "running"
        assert health["accounts"] == {
            "acct-1": {
                "state": "up",
                "can_send": True,
                "depth": 0,
                "restarts": 0,
                "phone_number_id": PHONE_ID,
                "host": "leader",
            }
        }
        assert health["can_send"] == ["acct-1"]
        assert health["in_flight"] == 0
        assert samples["wae_engine_up"] == 1
        assert samples["wae_in_flight"] == 0
        assert samples['wae_outcomes_total{reason="",status="replied"}'] == 1
        assert samples['wae_actor_state{name="acct-1",role="account",state="up"}'] == 1
        assert samples['wae_actor_capacity{name="acct-1",role="account"}'] == 1000
        assert samples['wae_account_sent_total{account="acct-1"}'] == 1
        assert samples['wae_gateway_webhooks_total{code="200"}'] == 1
        assert samples['wae_gateway_webhooks_total{code="401"}'] == 1
        assert samples['wae_gateway_signature_failures_total{why="missing"}'] == 1
        assert samples['wae_gateway_outcomes_total{reason="",status="replied"}'] == 1

    asyncio.run(scenario())


LATENCY = "wae_gateway_outcome_latency_seconds"
TODAYS_FAMILIES = (
    "wae_engine_up",
    "wae_in_flight",
    "wae_oldest_in_flight_seconds",
    "wae_router_generation",
    "wae_outcomes",
    "wae_rejections",
    "wae_actor_depth",
    "wae_actor_capacity",
    "wae_actor_restarts",
    "wae_actor_generation",
    "wae_actor_state",
    "wae_account_sent",
    "wae_gateway_webhooks",
    "wae_gateway_messages",
    "wae_gateway_submissions",
    "wae_gateway_outcomes",
)


def latency_total(samples: dict[str, float], part: str) -> float:
    """``_count`` or ``_sum`` of the latency histogram, over every status."""
    return sum(v for k, v in samples.items() if k.startswith(f"{LATENCY}_{part}{{"))


def test_metrics_keep_todays_names_and_time_each_outcome_once(make_engine: EngineFactory) -> None:
    gateway = make_gateway(make_engine("simpleSystemBase", echo={}, accounts=("acct-1",)))
    messages = [text_message(f"wamid.t{i}", f"1555000{i:04d}") for i in range(5)]
    texts: list[str] = []
    elapsed: list[float] = []

    async def scenario() -> None:
        began = time.monotonic()
        async with served(gateway) as http:
            assert (await post(http, payload(change(messages=messages))))[0] == 200
            await until(lambda: replied(gateway) == 5, "five replied outcomes")
            # WhatsApp redelivers: duplicates, refused, never timed and no second outcome.
            _, answer, _ = await post(http, payload(change(messages=messages)))
            assert answer["rejected"] == {"duplicate": 5}
            async with http.get("/metrics") as resp:
                texts.append(await resp.text())
        elapsed.append(time.monotonic() - began)

    asyncio.run(scenario())
    kinds = families(texts[0])
    assert [name for name in TODAYS_FAMILIES if name not in kinds] == []
    assert kinds[LATENCY] == "histogram"
    samples = parse_exposition(texts[0])
    assert samples['wae_rejections_total{reason="duplicate"}'] == 5
    assert samples['wae_gateway_outcomes_total{reason="",status="replied"}'] == 5
    assert samples[f'{LATENCY}_count{{status="replied"}}'] == 5
    assert samples[f'{LATENCY}_bucket{{le="+Inf",status="replied"}}'] == 5
    assert latency_total(samples, "count") == 5  # one observation per outcome, no more
    # Each observation is a real duration inside the scenario: no timing is asserted.
    assert 0 < latency_total(samples, "sum") <= 5 * elapsed[0]


def test_a_refused_message_is_counted_by_its_reason_and_never_timed(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(
        "simpleSystemBase",
        echo={"latency_s": 0.3},
        accounts=("acct-1",),
        max_concurrent_processing=1,
    )
    gateway = make_gateway(engine)
    doc = payload(
        change(
            messages=[
                text_message("wamid.a", "15550001111"),
                text_message("wamid.b", "15550002222"),
            ]
        )
    )
    texts: list[str] = []

    async def scenario() -> None:
        async with served(gateway) as http:
            code, answer, _ = await post(http, doc)
            assert (code, answer["rejected"]) == (503, {"capacity": 1})
            await until(lambda: replied(gateway) == 1, "the accepted message replied")
            async with http.get("/metrics") as resp:
                texts.append(await resp.text())

    asyncio.run(scenario())
    samples = parse_exposition(texts[0])
    assert samples['wae_rejections_total{reason="capacity"}'] == 1
    assert samples['wae_gateway_submissions_total{reason="capacity",result="rejected"}'] == 1
    assert samples['wae_gateway_submissions_total{reason="",result="accepted"}'] == 1
    assert latency_total(samples, "count") == 1


# --- the engine the gateway owns, on real processes ---------------------------------------


def test_on_multiproc_the_gateway_serves_and_shuts_its_engine_down(tmp_path: Path) -> None:
    config = gateway_config(
        base="multiprocTCPBase",
        engine=EngineConfig(
            dead_letter_path=str(tmp_path / "dead.bin"),
            intake_path=str(tmp_path / "intake" / "intake.db"),
        ),
        providers=(ProviderSpec(name="echo", kind="echo", priority=1),),
    )
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG", format="{message} | {extra}")
    engine = start_engine(config, seed=7)  # before the loop and the worker thread
    try:
        gateway = Gateway(config, engine, resolve_secrets(config, ENV), shutdown_engine=True)
        doc = payload(
            change(messages=[text_message(f"mp.{i}", f"1555000{i:04d}") for i in range(20)])
        )

        async def scenario() -> None:
            async with served(gateway) as http:
                ok = {
                    "hub.mode": "subscribe",
                    "hub.verify_token": VERIFY_TOKEN,
                    "hub.challenge": "7",
                }
                async with http.get("/webhook", params=ok) as resp:
                    assert resp.status == 200
                assert (await post(http, doc))[0] == 200
                assert (await post(http, doc, signature="sha256=00"))[0] == 401
                await until(lambda: replied(gateway) == 20, "20 replied outcomes")
                async with http.get("/healthz") as resp:
                    assert (await resp.json())["accounts"]["acct-1"]["state"] == "up"

        pids = engine.pids
        asyncio.run(scenario())
        assert pids, "multiprocTCPBase runs actor processes"
        assert gateway.report is not None
        assert [s.name for s in gateway.report.stages][-1] == "actor_system"
        assert not [p for p in pids if _procs.alive(p)], "an actor process outlived the gateway"
    finally:
        engine.shutdown()
        logger.remove(sink)
    text = "\n".join(logs)
    assert "engine shut down in" in text
    assert VERIFY_TOKEN not in text
    assert SECRET.decode() not in text


# --- the command ---------------------------------------------------------------------------

MAIN_CONFIG = f"""
[gateway]
port = 0
verify_token_env = "T_VERIFY"
app_secret_env = "T_SECRET"
base = "simpleSystemBase"

[engine]
dead_letter_path = "{{dead}}"
intake_path = "{{intake}}"

[[accounts]]
account_id = "acct-1"
phone_number_id = "{PHONE_ID}"

[[providers]]
name = "echo"
kind = "echo"
"""


def test_the_command_serves_until_sigterm_then_shuts_the_engine_down(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        MAIN_CONFIG.replace("{dead}", str(tmp_path / "dead.bin")).replace(
            "{intake}", str(tmp_path / "intake" / "intake.db")
        )
    )
    env = {**os.environ, **ENV, "THESPLOG_FILE": str(tmp_path / "thespian.log")}
    env = {k: v for k, v in env.items() if not k.startswith("WAE_")}
    cmd = [sys.executable, "-m", "apps.gateway", "--config", str(path), "--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr or ()], daemon=True)
    reader.start()
    seen: list[str] = []

    def wait_line(pattern: str, deadline_s: float = 30.0) -> re.Match[str]:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.1))
                if match := re.search(pattern, seen[-1]):
                    return match
        raise AssertionError(f"no line matching {pattern!r} in {seen}")

    try:
        port = int(wait_line(r"gateway listening on 127\.0\.0\.1:(\d+)").group(1))

        async def scenario() -> None:
            url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=20)) as http:
                assert (await post(http, payload(change(messages=[text_message("cmd.1")]))))[
                    0
                ] == 200
                key = 'wae_gateway_outcomes_total{reason="",status="replied"}'
                samples: dict[str, float] = {}
                while samples.get(key) != 1:
                    await asyncio.sleep(0.02)  # the poll interval of a condition wait
                    async with http.get("/metrics") as resp:
                        samples = parse_exposition(await resp.text())

        asyncio.run(asyncio.wait_for(scenario(), 30))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_line(r"engine shut down in")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)
        proc.stderr.close()
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert VERIFY_TOKEN not in output
    assert SECRET.decode() not in output


def test_the_command_refuses_a_missing_secret_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        MAIN_CONFIG.replace("{dead}", str(tmp_path / "dead.bin")).replace(
            "{intake}", str(tmp_path / "intake" / "intake.db")
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAE_", "T_"))}
    env["T_VERIFY"] = VERIFY_TOKEN
    cmd = [sys.executable, "-m", "apps.gateway", "--config", str(path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "'T_SECRET' (named by [gateway] app_secret_env) is not set" in done.stderr
    assert VERIFY_TOKEN not in done.stderr
