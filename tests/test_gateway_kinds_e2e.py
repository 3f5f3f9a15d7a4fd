"""Issue 13 end to end: each documented message kind through the real gateway.

Signed webhooks shaped as Meta's reference shows them (``tests.wa_payloads``) go to the
gateway over HTTP, on an engine on ``multiprocTCPBase``, with the fake OpenAI and Graph
servers behind it. Asserted: what the model was asked (the kind-marked text, the reply
context), what the Graph API was asked to send and to whom (``to`` for a phone number,
``recipient`` for a business-scoped user id), fallback replies sent with no model call,
a kind without a fallback acknowledged and counted but never answered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.config import EngineConfig
from actors.engine import Engine
from actors.runtime import procs as _procs
from apps.gateway import AccountEntry, Gateway, resolve_secrets
from protocols import ProviderSpec
from tests import wa_payloads as wa
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_api import FakeOpenAI
from tests.test_gateway_app import ENV, gateway_config, post, replied, served, until
from tests.test_gateway_webhook import PHONE_ID

GRAPH_TOKEN = "graph-token-kinds-51c0"
OPENAI_KEY = "sk-kinds-key-7e22"
AUDIO_FALLBACK = "Sorry, I can't listen to voice notes yet. Could you type it?"
STICKER_FALLBACK = "Thanks for the sticker!"


def sent_by(message: dict[str, Any], sender: str) -> dict[str, Any]:
    """The documented message with another sender (one customer per kind: no shared context)."""
    return {**message, "from": sender}


# (webhook message, the customer id, what the model must read as the last user turn)
AI_CASES = [
    (
        sent_by(wa.button_reply("wamid.k1", "confirm_yes", "Yes, confirm"), "15550000001"),
        "15550000001",
        f"[in reply to message {wa.OUR_MESSAGE}]\n[button reply] Yes, confirm (id: confirm_yes)",
    ),
    (
        sent_by(
            wa.list_reply("wamid.k2", "slot_2", "Tomorrow 10:00", "Store pickup"), "15550000002"
        ),
        "15550000002",
        f"[in reply to message {wa.OUR_MESSAGE}]\n"
        "[list reply] Tomorrow 10:00 - Store pickup (id: slot_2)",
    ),
    (
        sent_by(wa.quick_reply("wamid.k3", "Stop promotions", "unsubscribe"), "15550000003"),
        "15550000003",
        f"[in reply to message {wa.OUR_MESSAGE}]\n"
        "[quick reply] Stop promotions (payload: unsubscribe)",
    ),
    (
        sent_by(wa.image("wamid.k4", "Do you have this in blue?"), "15550000004"),
        "15550000004",
        "[image caption] Do you have this in blue?",
    ),
    (
        sent_by(wa.location("wamid.k5"), "15550000005"),
        "15550000005",
        "[location] Main Street Beach, 1 Hacker Way, Menlo Park, CA 94025 (37.483307, -122.148981)",
    ),
    (wa.bsuid_text("wamid.k6", "Hi, no number shared"), wa.BSUID, "Hi, no number shared"),
]


def test_each_kind_reaches_the_model_marked_and_fallbacks_answer_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINDS_GRAPH_TOKEN", GRAPH_TOKEN)  # before the actor processes fork
    monkeypatch.setenv("KINDS_OPENAI_KEY", OPENAI_KEY)
    engine = Engine(
        EngineConfig(
            dead_letter_path=str(tmp_path / "dead.bin"),
            intake_path=str(tmp_path / "intake" / "intake.db"),
        ),
        base="multiprocTCPBase",
        seed=13,
    ).start()  # before the fake servers' threads exist
    pids = engine.pids
    try:
        with (
            FakeGraphAPI(token=GRAPH_TOKEN) as graph,
            FakeOpenAI(api_key=OPENAI_KEY, reply=lambda msgs: f"bot: {msgs[-1]['content']}") as llm,
        ):
            options = {
                "base_url": llm.base_url,
                "model": "m",
                "api_key_env": "KINDS_OPENAI_KEY",
            }
            spec = ProviderSpec(name="llm", kind="openai", priority=10, options=options)
            assert engine.add_provider(spec).ok
            account = AccountEntry(
                account_id="acct-1",
                phone_number_id=PHONE_ID,
                transport="cloud_api",
                options={"api_base": graph.base_url, "token_env": "KINDS_GRAPH_TOKEN"},
            )
            engine.add_account("acct-1", transport="cloud_api", options=account.engine_options)
            config = gateway_config(
                base=engine.base,
                accounts=(account,),
                fallback_replies={"audio": AUDIO_FALLBACK, "sticker": STICKER_FALLBACK},
            )
            gateway = Gateway(config, engine, resolve_secrets(config, ENV))
            unanswered = [
                sent_by(wa.audio("wamid.k7"), "15550000007"),
                sent_by(wa.sticker("wamid.k8"), "15550000008"),
                sent_by(wa.reaction("wamid.k9"), "15550000009"),  # no fallback configured
            ]
            bsuid_doc = wa.webhook(PHONE_ID, AI_CASES[-1][0], contacts=wa.bsuid_contacts())
            phone_doc = wa.webhook(PHONE_ID, *[c[0] for c in AI_CASES[:-1]], *unanswered)

            async def scenario() -> None:
                async with served(gateway) as http:
                    code, answer, _ = await post(http, phone_doc)
                    assert (code, answer["accepted"]) == (200, 7)  # 5 for the model, 2 fallbacks
                    code, answer, _ = await post(http, bsuid_doc)
                    assert (code, answer["accepted"]) == (200, 1)
                    await until(lambda: replied(gateway) == 8, "eight replies")

            asyncio.run(scenario())

            # The model was asked once per readable message, with the kind-marked text.
            asked = sorted(r.messages[-1]["content"] for r in llm.requests)
            assert asked == sorted(c[2] for c in AI_CASES)
            # Every reply went to its sender: digits in `to`, the BSUID in `recipient`.
            # (Read receipts go to the same endpoint: only text sends are replies.)
            replies = [r for r in graph.requests if r.body.get("type") == "text"]
            sent = {(r.to or r.body.get("recipient")): r.body for r in replies}
            assert len(replies) == len(sent) == 8
            for _, customer, text in AI_CASES:
                assert sent[customer]["text"]["body"] == f"bot: {text}"
            bsuid_body = sent[wa.BSUID]
            assert "to" not in bsuid_body
            assert bsuid_body["recipient"] == wa.BSUID
            assert bsuid_body["recipient_type"] == "individual"
            # Fallback kinds were answered with their text and no model call; the reaction
            # was acknowledged and counted only.
            assert sent["15550000007"]["text"]["body"] == AUDIO_FALLBACK
            assert sent["15550000008"]["text"]["body"] == STICKER_FALLBACK
            assert "15550000009" not in sent
            assert len(llm.requests) == len(AI_CASES)
            counters = gateway.counters
            for kind in (
                "button_reply",
                "list_reply",
                "quick_reply",
                "image",
                "location",
                "audio",
                "sticker",
                "reaction",
            ):
                assert counters.get("messages", kind=kind) == 1, kind
            assert counters.get("messages", kind="text") == 1  # the BSUID sender's
            stats = engine.stats()
            assert stats.counters["outcome.replied"] == 8
            assert stats.counters["router.fixed_replies"] == 2
    finally:
        engine.shutdown()
    assert not [p for p in pids if _procs.alive(p)]
