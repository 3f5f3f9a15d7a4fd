"""Secrets never leave their variables: not in logs, reprs, stats, reports, metrics or errors.

One run of everything that handles a secret, on multiprocTCPBase with the real edges:
a gateway with a verify token and an app secret, two ``cloud_api`` numbers (one whose
token the Graph API refuses: code 190), two ``openai`` providers (one whose key the
endpoint refuses: a 401 that quotes the key, as OpenAI's does), 5xx, hangs, stats,
``/metrics``, ``/healthz`` and shutdown. A loguru file sink at DEBUG is added before the
engine starts, so every actor process writes to it. Afterwards every text the run
produced is searched for every secret it used.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from actors.account.cloud_api import CloudApiTransport
from actors.errors import ConfigError, EngineError
from actors.pool import ProviderClosedError
from actors.pool.openai import OpenAIProvider
from apps.gateway import AccountEntry, Gateway, GatewayConfig, resolve_secrets
from protocols import AIRequest, OutboundReply, ProviderSpec, StatsReply
from tests.conftest import EngineFactory
from tests.engine_helpers import wait_for
from tests.fakes.graph_api import Behaviour, FakeGraphAPI
from tests.fakes.openai_api import FakeOpenAI
from tests.test_gateway_app import post, served, until
from tests.test_gateway_webhook import change, payload, sign, text_message


def _hex(n: int = 16) -> str:
    return secrets.token_hex(n)  # fresh per run: no earlier log can hold these secrets


# Real shapes: several are valid environment variable names, which is what makes a
# secret pasted in place of its variable's name dangerous to echo.
SECRETS = {
    "graph token": f"EAAGm0PZ{_hex()}",  # Meta access tokens: letters and digits
    "refused graph token": f"EAAGrefused{_hex()}",
    "openai key": f"gsk_{_hex()}Zq",  # a Groq-style key of an OpenAI-compatible endpoint
    "refused openai key": f"sk-proj-{_hex(10)}-refused",  # OpenAI's own shape
    "app secret": f"f{_hex()[1:]}",  # Meta app secrets: 32 lowercase hex digits
    "verify token": f"verify_{_hex(6)}",  # chosen by the operator
}
ENV = {
    "SECRETS_GRAPH_TOKEN": SECRETS["graph token"],
    "SECRETS_GRAPH_REFUSED": SECRETS["refused graph token"],
    "SECRETS_OPENAI_KEY": SECRETS["openai key"],
    "SECRETS_OPENAI_REFUSED": SECRETS["refused openai key"],
    "SECRETS_APP_SECRET": SECRETS["app secret"],
    "SECRETS_VERIFY_TOKEN": SECRETS["verify token"],
}
PHONE_OK, PHONE_REFUSED = "100200300", "999888777"


def leaks(texts: dict[str, str]) -> list[str]:
    """``<secret> in <where>`` for every secret found in any text (also as bytes' repr)."""
    found = []
    for where, text in texts.items():
        for name, value in SECRETS.items():
            if value in text or value[8:] in text:  # a prefix cut off does not hide it
                found.append(f"{name} in {where}")
    return found


def test_no_secret_appears_in_logs_reprs_stats_reports_metrics_or_errors(
    make_engine: EngineFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for var, value in ENV.items():  # before the engine starts: actor processes inherit them
        monkeypatch.setenv(var, value)
    log_file = tmp_path / "run.log"
    # What an entry point's configure_logging(level="DEBUG", json=True) sets, as an extra
    # sink; added before start so that every forked actor process writes to it too.
    sink = logger.add(log_file, level="DEBUG", serialize=True, backtrace=False, diagnose=False)
    texts: dict[str, str] = {}
    try:
        engine = make_engine("multiprocTCPBase", provider_cooldown_s=0.2, processing_timeout_s=6.0)
        with (
            FakeGraphAPI(token=SECRETS["graph token"]) as graph,
            FakeOpenAI(api_key=SECRETS["openai key"]) as llm,
        ):
            _wire(engine, graph, llm)
            gateway, stats = _run_gateway(engine, graph, llm, texts)
            texts["shutdown report"] = repr(gateway.report)
            texts["report log"] = str(gateway.report)
            texts.update(_errors(engine, graph, llm))
            texts["graph requests"] = repr(graph.requests)  # headers kept minus Authorization
        texts["engine after shutdown"] = repr(vars(engine))
    finally:
        logger.remove(sink)
    texts["log file"] = log_file.read_text()
    texts["thespian log"] = _read(os.environ.get("THESPLOG_FILE", ""))
    captured = capfd.readouterr()
    texts["stdout"], texts["stderr"] = captured.out, captured.err

    # The run really met every failure it was meant to (else the search proves little).
    log = texts["log file"]
    # Lines written by the account and the pool processes: the sink reached them.
    assert "the Cloud API refused the access token" in log, "the refused Graph token was not met"
    assert "provider llm-refused call failed: api_error:401" in log, "the refused key was not met"
    pool = next(a for a in stats.actors if a.role == "ai_pool")
    llm_stats = pool.provider_stats["llm"]
    assert llm_stats["errors"] >= 6, llm_stats  # 3 x HTTP 500 and 3 hangs cut at timeout_s
    assert llm.peak >= 1
    assert graph.request_count > 0
    assert any(not r.bearer_ok for r in llm.requests)
    assert len(log.splitlines()) > 20
    assert not leaks(texts), leaks(texts)


def _wire(engine: Any, graph: FakeGraphAPI, llm: FakeOpenAI) -> None:
    """Two providers with keys (one refused), echo last; two numbers (one token refused)."""
    for name, priority, var in (
        ("llm-refused", 20, "SECRETS_OPENAI_REFUSED"),
        ("llm", 10, "SECRETS_OPENAI_KEY"),
    ):
        options = {"base_url": llm.base_url, "model": "m", "api_key_env": var, "timeout_s": 0.5}
        assert engine.add_provider(
            ProviderSpec(name=name, kind="openai", priority=priority, options=options)
        ).ok
    assert engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=1)).ok
    for account_id, phone, var in (
        ("acct-1", PHONE_OK, "SECRETS_GRAPH_TOKEN"),
        ("acct-2", PHONE_REFUSED, "SECRETS_GRAPH_REFUSED"),
    ):
        engine.add_account(
            account_id,
            transport="cloud_api",
            options={
                "phone_number_id": phone,
                "token_env": var,
                "api_base": graph.base_url,
                "backoff_min_s": 0.05,
                "backoff_max_s": 0.2,
            },
        )


def _run_gateway(
    engine: Any, graph: FakeGraphAPI, llm: FakeOpenAI, texts: dict[str, str]
) -> tuple[Gateway, StatsReply]:
    config = GatewayConfig(
        verify_token_env="SECRETS_VERIFY_TOKEN",
        app_secret_env="SECRETS_APP_SECRET",
        base=engine.base,
        accounts=(
            AccountEntry(account_id="acct-1", phone_number_id=PHONE_OK, transport="cloud_api"),
            AccountEntry(account_id="acct-2", phone_number_id=PHONE_REFUSED, transport="cloud_api"),
        ),
    )
    gateway = Gateway(config, engine, resolve_secrets(config), shutdown_engine=True)
    app_secret = SECRETS["app secret"].encode()
    llm.fail(500, times=3)
    llm.hang(times=3)
    graph.program(Behaviour(status=500), times=5)
    stats: list[StatsReply] = []
    messages = [text_message(f"wamid.s{i}", f"1555000{i:04d}", f"hello {i}") for i in range(30)]
    refused = [text_message(f"wamid.r{i}", f"1555100{i:04d}", "hi") for i in range(5)]

    async def scenario() -> None:
        async with served(gateway) as http:
            for token in (SECRETS["verify token"], "a wrong guess"):
                params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "7"}
                async with http.get("/webhook", params=params) as resp:
                    texts[f"handshake {resp.status}"] = await resp.text()
            body = json.dumps(
                payload(change(messages=messages), change(phone_id=PHONE_REFUSED, messages=refused))
            ).encode()
            for signature in (sign(body, app_secret), None, sign(body, b"wrong")):
                code, answer, _ = await post(http, body, signature=signature)
                texts[f"webhook answer {code}"] = repr(answer)
            code, answer, _ = await post(
                http, b"{not json", signature=sign(b"{not json", app_secret)
            )
            texts["webhook answer bad json"] = repr(answer)
            await until(
                lambda: gateway.counters.total("outcomes") == 35, "35 outcomes", deadline_s=20
            )
            loop = asyncio.get_running_loop()
            stats.append(await loop.run_in_executor(None, engine.stats))
            texts["stats"] = repr(stats[0])
            for path in ("/healthz", "/metrics"):
                async with http.get(path) as resp:
                    texts[path] = await resp.text()
            # A key or a token pasted where its variable's NAME belongs, sent to the actors.
            pasted_key = ProviderSpec(
                name="pasted",
                kind="openai",
                options={
                    "base_url": llm.base_url,
                    "model": "m",
                    "api_key_env": SECRETS["openai key"],
                },
            )
            result = await loop.run_in_executor(None, engine.add_provider, pasted_key)
            assert not result.ok
            texts["add_provider with a pasted key"] = repr(result)
            pasted_token = {"phone_number_id": "1", "token_env": SECRETS["graph token"]}
            add = functools.partial(
                engine.add_account, "acct-x", transport="cloud_api", options=pasted_token
            )
            with pytest.raises(EngineError) as info:
                await loop.run_in_executor(None, add)
            texts["add_account with a pasted token"] = f"{info.value} {info.value!r}"
            texts["gateway"] = repr(vars(gateway))
            texts["gateway config"] = repr(config)
            texts["engine"] = repr(engine) + repr(vars(engine))

    asyncio.run(scenario())
    assert gateway.counters.get("outcomes", status="failed", reason="account_auth") == 5
    assert gateway.counters.get("outcomes", status="replied", reason="") == 30
    assert gateway.report is not None
    return gateway, stats[0]


def _errors(engine: Any, graph: FakeGraphAPI, llm: FakeOpenAI) -> dict[str, str]:
    """Every error a secret could ride on: pasted secrets, refused credentials, closed ends."""
    texts: dict[str, str] = {}

    def keep(where: str, exc: BaseException) -> None:
        texts[where] = f"{exc} {exc!r} {exc.args!r}"

    # A secret pasted where the NAME of its variable belongs.
    for key in ("verify_token_env", "app_secret_env"):
        value = SECRETS["verify token" if key == "verify_token_env" else "app secret"]
        with pytest.raises(ConfigError) as info:
            resolve_secrets(GatewayConfig(**{key: value}))  # a valid name, but never set
        keep(f"gateway {key} holding the secret itself", info.value)
    options: dict[str, Any] = {"phone_number_id": PHONE_OK, "api_base": graph.base_url}
    for where, token_env in (("pasted", SECRETS["graph token"]), ("unset", "SECRETS_UNSET")):
        try:
            CloudApiTransport("acct-x", {**options, "token_env": token_env}, random.Random(1))
        except ValueError as exc:
            keep(f"cloud_api with a {where} token variable", exc)
    key_options = {"base_url": llm.base_url, "model": "m"}
    for where, key_env in (("pasted", SECRETS["openai key"]), ("unset", "SECRETS_UNSET")):
        spec = ProviderSpec(
            name="x", kind="openai", options={**key_options, "api_key_env": key_env}
        )
        try:
            OpenAIProvider(spec, random.Random(1))
        except ValueError as exc:
            keep(f"openai with a {where} key variable", exc)

    # Refused credentials, on objects built here (their results and reprs).
    transport = CloudApiTransport(
        "acct-2", {**options, "token_env": "SECRETS_GRAPH_REFUSED"}, random.Random(1)
    )
    bad_key = ProviderSpec(
        name="refused",
        kind="openai",
        options={**key_options, "api_key_env": "SECRETS_OPENAI_REFUSED"},
    )
    provider = OpenAIProvider(bad_key, random.Random(1))
    try:
        now = time.time()
        reply = OutboundReply(
            account_id="acct-2",
            customer_id="+15550001",
            message_id="w1",
            text="t",
            deadline=now + 9,
        )
        transport.start(reply, now)
        request = AIRequest(
            message_id="m1",
            account_id="acct-2",
            customer_id="+15550001",
            text="t",
            deadline=now + 9,
        )
        provider.start(request, now)
        sent: list[Any] = []
        answered: list[Any] = []
        wait_for(
            lambda: bool(
                sent.extend(transport.poll(time.time()))
                or answered.extend(provider.poll(time.time()))
                or (sent and answered)
            ),
            deadline_s=10,
            what="the refused calls",
        )
        texts["refused send"] = repr(sent) + repr(transport) + repr(transport.stats())
        texts["refused call"] = repr(answered) + repr(provider) + repr(provider.options)
        assert "account_auth" in texts["refused send"]
        assert "api_error:401" in texts["refused call"]
    finally:
        transport.close()
        provider.close()
    try:
        provider.start(request, time.time())
    except ProviderClosedError as exc:
        keep("closed provider", exc)

    # The engine after shutdown.
    with pytest.raises(EngineError) as info:
        engine.stats()
    keep("stats after shutdown", info.value)
    return texts


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
