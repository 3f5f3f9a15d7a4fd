"""End to end over real HTTP: a signed webhook in, the LLM asked with the customer's context,
the reply sent to the right number and recipient through the Graph API, outcome replied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors.config import EngineConfig
from actors.engine import Engine
from actors.runtime import procs as _procs
from apps.gateway import AccountEntry, Gateway, resolve_secrets
from protocols import ProviderSpec
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_api import FakeOpenAI
from tests.test_gateway_app import ENV, gateway_config, post, replied, served, until
from tests.test_gateway_webhook import PHONE_ID, change, payload, text_message

GRAPH_TOKEN = "graph-token-e2e-7f3a"
OPENAI_KEY = "sk-e2e-key-91b2"


def test_a_signed_webhook_is_answered_by_the_llm_and_sent_through_the_graph_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Actor processes inherit the environment when they are forked: set secrets first.
    monkeypatch.setenv("E2E_GRAPH_TOKEN", GRAPH_TOKEN)
    monkeypatch.setenv("E2E_OPENAI_KEY", OPENAI_KEY)
    engine = Engine(
        EngineConfig(
            dead_letter_path=str(tmp_path / "dead.bin"),
            intake_path=str(tmp_path / "intake" / "intake.db"),
        ),
        base="multiprocTCPBase",
        seed=3,
    ).start()  # before the fake servers' threads exist
    pids = engine.pids
    try:
        with (
            FakeGraphAPI(token=GRAPH_TOKEN) as graph,
            FakeOpenAI(api_key=OPENAI_KEY, reply=lambda msgs: f"bot: {msgs[-1]['content']}") as llm,
        ):
            assert engine.add_provider(
                ProviderSpec(
                    name="llm",
                    kind="openai",
                    priority=10,
                    options={
                        "base_url": llm.base_url,
                        "model": "test-model",
                        "api_key_env": "E2E_OPENAI_KEY",
                    },
                )
            ).ok
            account = AccountEntry(
                account_id="acct-1",
                phone_number_id=PHONE_ID,
                transport="cloud_api",
                options={"api_base": graph.base_url, "token_env": "E2E_GRAPH_TOKEN"},
            )
            engine.add_account("acct-1", transport="cloud_api", options=account.engine_options)
            config = gateway_config(base=engine.base, accounts=(account,))
            gateway = Gateway(config, engine, resolve_secrets(config, ENV))

            async def scenario() -> None:
                async with served(gateway) as http:
                    first = payload(
                        change(messages=[text_message("wamid.e1", "15550001111", "hello")])
                    )
                    assert (await post(http, first))[0] == 200
                    await until(lambda: replied(gateway) == 1, "the first reply")
                    second = payload(
                        change(messages=[text_message("wamid.e2", "15550001111", "and now?")])
                    )
                    assert (await post(http, second))[0] == 200
                    await until(lambda: replied(gateway) == 2, "the second reply")

            asyncio.run(scenario())

            # The LLM got the customer's earlier turn as context on the second call.
            calls = llm.requests
            assert [m["content"] for m in calls[1].messages[1:]] == [
                "hello",
                "bot: hello",
                "and now?",
            ]
            assert all(c.bearer_ok and c.model == "test-model" for c in calls)
            # The Graph API got each reply for the right number and recipient.
            # (The gateway also marked each message read: those requests are kind "read".)
            sent = [r for r in graph.requests if r.kind == "message"]
            assert [r.path for r in sent] == [f"/v21.0/{PHONE_ID}/messages"] * 2
            assert [r.to for r in sent] == ["15550001111", "15550001111"]
            assert [r.body["text"]["body"] for r in sent] == ["bot: hello", "bot: and now?"]
            assert all(r.bearer_ok for r in sent)
            stats = engine.stats()
            assert stats.counters["outcome.replied"] == 2
    finally:
        engine.shutdown()
    assert not [p for p in pids if _procs.alive(p)]
