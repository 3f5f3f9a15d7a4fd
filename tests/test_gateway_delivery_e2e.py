"""Delivery reports, number health, read receipts and the 130429 fix, end to end.

The real gateway serves over HTTP, with its engine on ``multiprocTCPBase``, the fake
OpenAI server writing replies and the fake Graph API taking the sends (and the read
requests). Webhook payloads are shaped exactly as Meta's WhatsApp Cloud API docs show
them; each fixture names its page.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from loguru import logger

from actors.engine import Engine
from apps.gateway import AccountEntry, Gateway, resolve_secrets
from apps.gateway.delivery import DeliveryStatus
from protocols import ProviderSpec, Scalar
from tests.conftest import EngineFactory
from tests.fakes.graph_api import Behaviour, FakeGraphAPI
from tests.fakes.openai_api import FakeOpenAI, Messages
from tests.test_gateway_app import ENV, gateway_config, post, replied, served, until
from tests.test_gateway_metrics import parse_exposition

GRAPH_TOKEN = "graph-token-delivery-3c1d"
OPENAI_KEY = "sk-delivery-key-77a0"
WABA_ID = "102290129340398"  # the docs' example WhatsApp Business Account id
PHONE_ID = "106540352242922"  # the docs' example business phone number id
OTHER_PHONE_ID = "106540352242923"
CUSTOMER = "16505551234"  # the docs' example WhatsApp user


# --- fixtures from Meta's documentation ---------------------------------------------------


def _envelope(value: dict[str, Any], phone_id: str = PHONE_ID) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def text_webhook(mid: str, body: str, phone_id: str = PHONE_ID) -> dict[str, Any]:
    # Webhooks reference > messages > text ("Text messages" example).
    return _envelope(
        {
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER}],
            "messages": [
                {
                    "from": CUSTOMER,
                    "id": mid,
                    "timestamp": "1749416383",
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        },
        phone_id,
    )


def sent_status(wamid: str, timestamp: str = "1750263773", phone_id: str = PHONE_ID) -> Any:
    # Webhooks reference > messages > status ("Message sent" example).
    return _envelope(
        {
            "statuses": [
                {
                    "id": wamid,
                    "status": "sent",
                    "timestamp": timestamp,
                    "recipient_id": CUSTOMER,
                    "conversation": {
                        "id": "a75d17ad06104c51166f948319b03c6a",
                        "expiration_timestamp": "1750350173",
                        "origin": {"type": "service"},
                    },
                    "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
                }
            ]
        },
        phone_id,
    )


def failed_status(wamid: str) -> Any:
    # Webhooks reference > messages > status ("Message failed" example): 131047, the
    # customer service window closed.
    return _envelope(
        {
            "statuses": [
                {
                    "id": wamid,
                    "status": "failed",
                    "timestamp": "1750263775",
                    "recipient_id": CUSTOMER,
                    "errors": [
                        {
                            "code": 131047,
                            "title": "Re-engagement message",
                            "message": "Re-engagement message",
                            "error_data": {
                                "details": "Message failed to send because more than 24 hours "
                                "have passed since the customer last replied to this number."
                            },
                            "href": "/documentation/business-messaging/whatsapp/support/"
                            "error-codes",
                        }
                    ],
                }
            ]
        }
    )


def errors_webhook(code: int, title: str, details: str, phone_id: str = PHONE_ID) -> Any:
    # Webhooks reference > messages > errors (the example is 130429, "Rate limit hit").
    return _envelope(
        {
            "errors": [
                {
                    "code": code,
                    "title": title,
                    "message": title,
                    "error_data": {"details": details},
                    "href": "/documentation/business-messaging/whatsapp/support/error-codes",
                }
            ]
        },
        phone_id,
    )


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    engine: Engine
    gateway: Gateway
    graph: FakeGraphAPI
    llm: FakeOpenAI

    def sends(self) -> list[Any]:
        return [r for r in self.graph.requests if r.kind == "message"]

    def reads(self) -> list[Any]:
        return [r for r in self.graph.requests if r.kind == "read"]


@pytest.fixture
def stack(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Stack]]:
    """Build the stack: ``(phones=..., reply=..., options=..., engine=..., **gateway_kw)``."""
    # Actor processes inherit the environment when they are forked: secrets first.
    monkeypatch.setenv("DLV_GRAPH_TOKEN", GRAPH_TOKEN)
    monkeypatch.setenv("DLV_OPENAI_KEY", OPENAI_KEY)
    with contextlib.ExitStack() as fakes:

        def build(
            *,
            phones: tuple[str, ...] = (PHONE_ID,),
            reply: Callable[[Messages], str] = lambda msgs: f"bot: {msgs[-1]['content']}",
            options: dict[str, Scalar] | None = None,
            engine: dict[str, Any] | None = None,
            **gateway_kw: Any,
        ) -> Stack:
            started = make_engine("multiprocTCPBase", **(engine or {}))  # before any thread
            graph = fakes.enter_context(FakeGraphAPI(token=GRAPH_TOKEN))
            llm = fakes.enter_context(FakeOpenAI(api_key=OPENAI_KEY, reply=reply))
            assert started.add_provider(
                ProviderSpec(
                    name="llm",
                    kind="openai",
                    priority=10,
                    options={
                        "base_url": llm.base_url,
                        "model": "m",
                        "api_key_env": "DLV_OPENAI_KEY",
                    },
                )
            ).ok
            accounts = tuple(
                AccountEntry(
                    account_id=f"acct-{i + 1}",
                    phone_number_id=phone,
                    transport="cloud_api",
                    options={
                        "api_base": graph.base_url,
                        "token_env": "DLV_GRAPH_TOKEN",
                        **(options or {}),
                    },
                )
                for i, phone in enumerate(phones)
            )
            config = gateway_config(base=started.base, accounts=accounts, **gateway_kw)
            for account in accounts:
                started.add_account(
                    account.account_id,
                    transport="cloud_api",
                    options=config.account_options(account),
                )
            gateway = Gateway(config, started, resolve_secrets(config, ENV))
            return Stack(started, gateway, graph, llm)

        yield build


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


async def metrics(http: Any) -> dict[str, float]:
    async with http.get("/metrics") as resp:
        return parse_exposition(await resp.text())


async def health(http: Any) -> tuple[int, dict[str, Any]]:
    async with http.get("/healthz") as resp:
        return resp.status, await resp.json()


# --- delivery reports ---------------------------------------------------------------------


def test_a_failed_status_reaches_the_listener_with_its_code_and_title_and_the_metric(
    stack: Callable[..., Stack],
) -> None:
    s = stack()
    heard: list[DeliveryStatus] = []
    s.gateway.subscribe_deliveries(heard.append)

    async def scenario() -> dict[str, float]:
        async with served(s.gateway) as http:
            assert (await post(http, text_webhook("wamid.in-1", "hi")))[0] == 200
            await until(lambda: replied(s.gateway) == 1, "the reply")
            # The fake Graph API numbers its sends: the reply went out as wamid.FAKE1.
            assert (await post(http, sent_status("wamid.FAKE1")))[0] == 200
            assert (await post(http, failed_status("wamid.FAKE1")))[0] == 200
            assert (await post(http, failed_status("wamid.FAKE1")))[0] == 200  # redelivered
            return await metrics(http)

    samples = asyncio.run(scenario())

    assert [h.status for h in heard] == ["sent", "failed"]  # the redelivery adds nothing
    failed = heard[-1]
    assert (failed.message_id, failed.account_id, failed.customer_id) == (
        "wamid.in-1",
        "acct-1",
        f"+{CUSTOMER}",
    )
    assert (failed.error_code, failed.error_title) == (131047, "Re-engagement message")
    assert "24 hours" in failed.error_detail
    assert s.gateway.delivery_status("wamid.in-1") == failed
    assert samples['wae_gateway_delivery_failures_total{code="131047"}'] == 1
    assert samples['wae_gateway_statuses_total{status="failed"}'] == 2
    # 131047 concerns one conversation, not the number: health is untouched.
    assert s.gateway.deliveries.numbers.problem(PHONE_ID) is None


def test_an_errors_notification_is_counted_by_code_and_logged(
    stack: Callable[..., Stack],
) -> None:
    s = stack()
    rate = errors_webhook(
        130429,
        "Rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number in a short period of time",
    )

    async def scenario() -> tuple[dict[str, float], int]:
        async with served(s.gateway) as http:
            for _ in range(3):
                assert (await post(http, rate))[0] == 200
            return await metrics(http), (await health(http))[0]

    with captured_logs() as lines:
        samples, health_status = asyncio.run(scenario())

    assert samples['wae_gateway_error_notifications_total{code="130429"}'] == 3
    logged = [line for line in lines if "error notification 130429" in line]
    assert len(logged) == 3  # the first few of a code in full, then sampled
    assert "Rate limit hit" in logged[0]
    assert PHONE_ID in logged[0]
    assert health_status == 200  # throughput is not an account-level problem


# --- health -------------------------------------------------------------------------------


def test_a_token_graph_refuses_shows_on_healthz_and_503_when_it_was_the_only_number(
    stack: Callable[..., Stack],
) -> None:
    s = stack()
    s.graph.program(Behaviour.graph_error(190, status=401, message="Session has expired"))

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with served(s.gateway) as http:
            assert (await post(http, text_webhook("wamid.in-1", "hi")))[0] == 200
            await until(
                lambda: (
                    s.gateway.counters.get("outcomes", status="failed", reason="account_auth") == 1
                ),
                "the send to fail account_auth",
            )
            return await health(http)

    status, body = asyncio.run(scenario())

    assert status == 503
    assert body["status"] == "down"
    account = body["accounts"]["acct-1"]
    assert (account["state"], account["can_send"]) == ("auth_failed", False)
    assert account["problem"]["source"] == "send"
    assert "190" in account["problem"]["detail"]
    assert body["can_send"] == []


def test_an_account_level_error_webhook_degrades_one_number_until_it_sends_again(
    stack: Callable[..., Stack],
) -> None:
    s = stack(phones=(PHONE_ID, OTHER_PHONE_ID))
    expired = errors_webhook(
        190, "Access token has expired", "Error validating access token", OTHER_PHONE_ID
    )

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        async with served(s.gateway) as http:
            seen = [await health(http)]
            assert (await post(http, expired))[0] == 200
            seen.append(await health(http))
            later = str(int(time.time()) + 5)  # a send the Graph API accepted after it
            assert (await post(http, sent_status("wamid.X", later, OTHER_PHONE_ID)))[0] == 200
            seen.append(await health(http))
            return seen

    before, after, recovered = asyncio.run(scenario())

    assert before[0] == 200
    assert before[1]["status"] == "ok"
    assert after[0] == 200  # acct-1 can still send
    assert after[1]["status"] == "degraded"
    other = after[1]["accounts"]["acct-2"]
    assert (other["state"], other["can_send"]) == ("auth_failed", False)
    assert other["problem"]["code"] == 190
    assert other["problem"]["source"] == "errors webhook"
    assert after[1]["can_send"] == ["acct-1"]
    assert recovered[1]["status"] == "ok"
    assert recovered[1]["accounts"]["acct-2"]["can_send"]


# --- read receipts --------------------------------------------------------------------------


def test_the_read_receipt_with_typing_comes_before_the_reply_and_a_failing_one_is_harmless(
    stack: Callable[..., Stack],
) -> None:
    graph_box: list[FakeGraphAPI] = []

    def reply(msgs: Messages) -> str:
        # The AI answers only once Graph has the read request for the message it is
        # answering (or after 10 s): the typing indicator shows while the AI works.
        text = msgs[-1]["content"]
        mid = {"hi": "wamid.in-1", "again": "wamid.in-2"}[text]
        end = time.monotonic() + 10
        while time.monotonic() < end and not any(
            r.kind == "read" and r.body.get("message_id") == mid for r in graph_box[0].requests
        ):
            threading.Event().wait(0.01)  # the poll interval of a condition wait
        return f"bot: {text}"

    s = stack(reply=reply)
    graph_box.append(s.graph)

    async def scenario() -> None:
        async with served(s.gateway) as http:
            assert (await post(http, text_webhook("wamid.in-1", "hi")))[0] == 200
            await until(lambda: replied(s.gateway) == 1, "the first reply")
            s.graph.program(Behaviour.graph_error(131000, status=500), reads=True)
            assert (await post(http, text_webhook("wamid.in-2", "again")))[0] == 200
            await until(lambda: replied(s.gateway) == 2, "the second reply")
            await until(
                lambda: s.gateway.counters.get("read_receipts", result="failed") == 1,
                "the failed read request to be counted",
            )

    asyncio.run(scenario())

    requests = s.graph.requests
    kinds = [(r.kind, r.body.get("message_id") or r.body["text"]["body"]) for r in requests]
    assert kinds == [
        ("read", "wamid.in-1"),
        ("message", "bot: hi"),
        ("read", "wamid.in-2"),
        ("message", "bot: again"),
    ]
    # Typing-indicators page: mark as read and show the indicator in one request.
    first = requests[0]
    assert first.path == f"/v21.0/{PHONE_ID}/messages"
    assert first.bearer_ok
    assert first.body == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.in-1",
        "typing_indicator": {"type": "text"},
    }
    assert s.gateway.counters.get("read_receipts", result="sent") == 1
    assert "context" not in requests[1].body  # quoting is off by default


def test_quote_replies_quotes_the_customers_message(stack: Callable[..., Stack]) -> None:
    s = stack(quote_replies=True, read_receipts=False)

    async def scenario() -> None:
        async with served(s.gateway) as http:
            assert (await post(http, text_webhook("wamid.in-1", "hi")))[0] == 200
            await until(lambda: replied(s.gateway) == 1, "the reply")

    asyncio.run(scenario())

    assert s.reads() == []
    [send] = s.sends()
    assert send.body["context"] == {"message_id": "wamid.in-1"}


# --- the 130429 allowance bug -----------------------------------------------------------------


def test_130429_ten_times_then_200_the_next_message_is_replied_with_one_attempt(
    stack: Callable[..., Stack],
) -> None:
    # Engine defaults: 10 sends per customer per 60 s. Short backoffs keep the retries quick.
    s = stack(options={"backoff_min_s": 0.01, "backoff_max_s": 0.02})
    s.graph.program(Behaviour.graph_error(130429, message="Rate limit hit"), times=10)

    async def scenario() -> None:
        async with served(s.gateway) as http:
            assert (await post(http, text_webhook("wamid.in-1", "first")))[0] == 200
            await until(lambda: s.gateway.counters.total("outcomes") == 1, "the first outcome")
            assert replied(s.gateway) == 1, "the first message ends replied after 10 refusals"
            assert (await post(http, text_webhook("wamid.in-2", "second")))[0] == 200
            await until(lambda: replied(s.gateway) == 2, "the second reply")

    asyncio.run(scenario())

    texts = [r.body["text"]["body"] for r in s.sends()]
    assert texts.count("bot: first") == 11
    assert texts.count("bot: second") == 1
    account = next(a for a in s.engine.stats().of_role("account"))
    assert account.counters["allowance_returned"] == 10
