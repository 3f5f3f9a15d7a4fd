"""Delivery reports, number health and read receipts: the pure parts, and the read-receipt
sender against the fake Graph API. End to end (multiproc engine, fakes) is in
``test_gateway_delivery_e2e.py``, whose Meta-shaped fixtures are reused here."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import pytest

from actors.errors import ConfigError
from apps.gateway import AccountEntry, GatewayConfig, load_gateway_config, parse_payload
from apps.gateway.delivery import (
    CodeLabels,
    DeliveryBook,
    DeliveryStatus,
    NumberHealth,
)
from apps.gateway.health import health_report
from apps.gateway.metrics import GatewayCounters
from apps.gateway.notices import StatusUpdate, WebhookError, read_status
from apps.gateway.receipts import ReadReceipts
from protocols import ActorStats, DeliveryReport, Outcome, StatsReply
from protocols.codec import decode, encode
from tests.fakes.graph_api import Behaviour, FakeGraphAPI
from tests.test_gateway_delivery_e2e import (
    CUSTOMER,
    PHONE_ID,
    errors_webhook,
    failed_status,
    sent_status,
    text_webhook,
)
from tests.test_gateway_webhook import CONFIG, write

ACCOUNTS = {PHONE_ID: "acct-1", "555": "acct-2"}
TOKEN = "tok-secret-zz"


# --- the wamid on the wire ------------------------------------------------------------------


def test_the_wamid_travels_on_outcomes_and_reports_and_old_frames_decode_without_it() -> None:
    outcome = Outcome(message_id="in-1", status="replied", reply="hi", wamid="wamid.OUT1")
    report = DeliveryReport(message_id="in-1", ok=True, wamid="wamid.OUT1")
    assert decode(encode(outcome)) == outcome
    assert decode(encode(report)) == report
    # A frame from a writer before the field: [tag, version, fields] without "wamid".
    fields = {"message_id": "in-1", "status": "replied", "reason": "", "reply": "hi"}
    old = msgpack.packb(["outcome", 1, fields])
    assert decode(old) == Outcome(message_id="in-1", status="replied", reply="hi")


# --- the webhook's statuses and errors -------------------------------------------------------


def test_a_failed_status_is_read_with_its_wamid_recipient_time_and_error() -> None:
    batch = parse_payload(failed_status("wamid.OUT1"), ACCOUNTS)
    assert batch.statuses == {"failed": 1}
    [update] = batch.status_updates
    assert update == StatusUpdate(
        phone_number_id=PHONE_ID,
        wamid="wamid.OUT1",
        status="failed",
        timestamp=1750263775.0,
        recipient_id=CUSTOMER,
        errors=(
            WebhookError(
                code=131047,
                title="Re-engagement message",
                message="Re-engagement message",
                details="Message failed to send because more than 24 hours have passed since "
                "the customer last replied to this number.",
            ),
        ),
    )
    assert batch.messages == ()
    assert batch.errors == ()


def test_an_errors_notification_is_read_with_its_number() -> None:
    batch = parse_payload(errors_webhook(130429, "Rate limit hit", "too many"), ACCOUNTS)
    [notice] = batch.errors
    assert notice.phone_number_id == PHONE_ID
    assert notice.error == WebhookError(
        code=130429, title="Rate limit hit", message="Rate limit hit", details="too many"
    )
    assert batch.status_updates == ()


def test_a_sent_status_with_conversation_and_pricing_reads_like_any_other() -> None:
    [update] = parse_payload(sent_status("wamid.OUT1"), ACCOUNTS).status_updates
    assert (update.status, update.timestamp, update.errors) == ("sent", 1750263773.0, ())


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"status": "sent"}, None),  # no id: counted as a status, nothing to report
        ({"id": 5, "status": "sent"}, None),
        ({"id": "w" * 300, "status": "sent"}, None),
        ({"id": "w", "status": ["read"]}, ("other", None, "", ())),
        ({"id": "w", "status": "read", "timestamp": "soon"}, ("read", None, "", ())),
        (
            {"id": "w", "status": "failed", "recipient_id": 7, "errors": [{"code": "x"}, 3]},
            ("failed", None, "", (WebhookError(code=None),)),
        ),
    ],
)
def test_odd_statuses_are_read_without_raising(
    status: dict[str, Any], expected: tuple[Any, ...] | None
) -> None:
    update = read_status(status, PHONE_ID)
    if expected is None:
        assert update is None
    else:
        assert update is not None
        assert (update.status, update.timestamp, update.recipient_id, update.errors) == expected


def test_a_long_error_text_is_cut_and_a_lone_surrogate_replaced() -> None:
    [error] = read_status(
        {"id": "w", "status": "failed", "errors": [{"code": 1, "title": "t\ud800" + "x" * 999}]},
        None,
    ).errors  # type: ignore[union-attr]
    assert len(error.title) == 300
    assert error.title.startswith("t?")
    assert error.title.endswith("...")


def test_a_status_and_a_message_in_one_webhook_are_both_taken() -> None:
    doc = text_webhook("wamid.in-1", "hi")
    doc["entry"].append(failed_status("wamid.OUT1")["entry"][0])
    batch = parse_payload(doc, ACCOUNTS)
    assert [m.message_id for m in batch.messages] == ["wamid.in-1"]
    assert [u.wamid for u in batch.status_updates] == ["wamid.OUT1"]


# --- the delivery book -------------------------------------------------------------------------


def update(wamid: str, status: str, at: float = 1.0, code: int | None = None) -> StatusUpdate:
    errors = (WebhookError(code=code, title=f"title {code}"),) if code is not None else ()
    return StatusUpdate(
        phone_number_id=PHONE_ID,
        wamid=wamid,
        status=status,
        timestamp=at,
        recipient_id=CUSTOMER,
        errors=errors,
    )


def test_a_status_names_the_message_the_reply_answered() -> None:
    book = DeliveryBook()
    book.sent("wamid.OUT1", "wamid.in-1")
    status = book.update(update("wamid.OUT1", "failed", code=131047), "acct-1")
    assert status == DeliveryStatus(
        message_id="wamid.in-1",
        account_id="acct-1",
        phone_number_id=PHONE_ID,
        wamid="wamid.OUT1",
        customer_id=f"+{CUSTOMER}",
        status="failed",
        at=1.0,
        error_code=131047,
        error_title="title 131047",
    )
    assert book.latest("wamid.in-1") == status


def test_a_status_never_moves_a_reply_back_and_a_redelivery_adds_nothing() -> None:
    book = DeliveryBook()
    book.sent("wamid.OUT1", "wamid.in-1")
    seen = [book.update(update("wamid.OUT1", s), "acct-1") for s in ("read", "delivered", "read")]
    assert [s.status if s else None for s in seen] == ["read", None, None]
    assert book.latest("wamid.in-1").status == "read"  # type: ignore[union-attr]
    assert book.update(update("wamid.OUT1", "deleted"), "acct-1") is not None  # unranked


def test_a_status_of_an_unknown_wamid_is_reported_without_a_message_id() -> None:
    status = DeliveryBook().update(update("wamid.ELSEWHERE", "delivered"), "acct-1")
    assert status is not None
    assert (status.message_id, status.wamid) == ("", "wamid.ELSEWHERE")


def test_the_book_forgets_its_oldest_reply_past_its_bound() -> None:
    book = DeliveryBook(max_replies=2)
    for i in range(3):
        book.sent(f"wamid.OUT{i}", f"in-{i}")
    assert (len(book), book.forgotten) == (2, 1)
    assert book.update(update("wamid.OUT0", "sent"), "a").message_id == ""  # type: ignore[union-attr]
    assert book.update(update("wamid.OUT2", "sent"), "a").message_id == "in-2"  # type: ignore[union-attr]


# --- number health -----------------------------------------------------------------------------


def test_only_account_level_codes_mark_a_number() -> None:
    health = NumberHealth()
    assert health.note_error(PHONE_ID, WebhookError(code=130429), 10.0, "errors webhook") is None
    assert health.note_error(PHONE_ID, WebhookError(code=None), 10.0, "errors webhook") is None
    assert health.problem(PHONE_ID) is None
    for code, state in ((190, "auth_failed"), (131042, "degraded"), (131031, "degraded")):
        problem = health.note_error(PHONE_ID, WebhookError(code=code, title="t"), 10.0, "x")
        assert problem is not None
        assert (problem.state, problem.code) == (state, code)
    assert health.note_error("1", WebhookError(code=368), 10.0, "x").state == "degraded"  # type: ignore[union-attr]


def test_an_auth_failure_ends_with_a_later_send_and_degraded_with_a_later_delivery() -> None:
    health = NumberHealth()
    health.note_error("a", WebhookError(code=190), 100.0, "errors webhook")
    health.note_error("d", WebhookError(code=131042), 100.0, "errors webhook")
    assert not health.note_status("a", "sent", 99.0)  # sent before the problem
    assert not health.note_status("a", "sent", None)
    assert not health.note_status("d", "sent", 101.0)  # accepted is not delivered
    assert not health.note_status("d", "failed", 101.0)
    assert health.note_status("a", "sent", 101.0)
    assert health.note_status("d", "read", 101.0)
    assert (health.problem("a"), health.problem("d")) == (None, None)


def test_error_codes_become_a_bounded_set_of_labels() -> None:
    labels = CodeLabels(limit=2)
    assert [labels(c) for c in (131047, 130429, 131047, 190, None, -5)] == [
        "131047",
        "130429",
        "131047",
        "other",
        "none",
        "other",
    ]


# --- /healthz ----------------------------------------------------------------------------------


def stats(*accounts: ActorStats) -> StatsReply:
    router = ActorStats(role="router", name="router", pid=1, depth=0, capacity=10)
    return StatsReply(in_flight=0, counters={}, actors=(router, *accounts), base="x")


def account(name: str, *, state: str = "up", failed: str = "", host: str = "") -> ActorStats:
    return ActorStats(
        role="account",
        name=name,
        pid=2,
        depth=0,
        capacity=10,
        state=state,
        host=host,
        transport_failed=failed,
    )


def test_health_is_503_when_the_engine_does_not_answer() -> None:
    assert health_report(None, ACCOUNTS, NumberHealth()) == (
        503,
        {"status": "down", "engine": "not running"},
    )


def test_health_is_ok_when_every_number_can_send() -> None:
    code, body = health_report(
        stats(account("acct-1"), account("acct-2")), ACCOUNTS, NumberHealth()
    )
    assert (code, body["status"], body["can_send"], body["not_up"]) == (
        200,
        "ok",
        ["acct-1", "acct-2"],
        [],
    )


def test_a_failed_transport_is_auth_failed_and_with_no_number_left_health_is_503() -> None:
    failed = "HTTP 401: Graph error 190 (OAuthException): expired"
    code, body = health_report(
        stats(account("acct-1", failed=failed)), {PHONE_ID: "acct-1"}, NumberHealth()
    )
    assert code == 503
    assert body["status"] == "down"
    assert body["accounts"]["acct-1"] == {
        "state": "auth_failed",
        "can_send": False,
        "depth": 0,
        "restarts": 0,
        "phone_number_id": PHONE_ID,
        "problem": {"source": "send", "detail": failed},
    }


def test_one_number_degraded_or_missing_leaves_health_200_degraded() -> None:
    numbers = NumberHealth()
    numbers.note_error(PHONE_ID, WebhookError(code=368, title="blocked"), 5.0, "errors webhook")
    accounts = {**ACCOUNTS, "777": "acct-3"}
    code, body = health_report(stats(account("acct-1"), account("acct-2")), accounts, numbers)
    assert (code, body["status"], body["can_send"]) == (200, "degraded", ["acct-2"])
    assert body["accounts"]["acct-1"]["state"] == "degraded"
    assert body["accounts"]["acct-1"]["problem"] == {
        "source": "errors webhook",
        "code": 368,
        "title": "blocked",
        "at": 5.0,
    }
    assert body["accounts"]["acct-3"]["state"] == "missing"  # configured, not in the engine
    assert body["not_up"] == ["account:acct-1", "account:acct-3"]


def test_health_is_503_when_the_last_number_that_could_send_stops() -> None:
    numbers = NumberHealth()
    numbers.note_error(PHONE_ID, WebhookError(code=368, title="blocked"), 5.0, "errors webhook")
    code, body = health_report(
        stats(account("acct-1"), account("acct-2", state="restarting")), ACCOUNTS, numbers
    )
    assert (code, body["status"], body["can_send"]) == (503, "down", [])
    assert body["not_up"] == ["account:acct-2", "account:acct-1"]


# --- config: read receipts, typing, the budget, quoting ---------------------------------------


def cloud(throughput: float | None = None, **options: Any) -> AccountEntry:
    if throughput is not None:
        options["throughput_per_s"] = throughput
    return AccountEntry(
        account_id="acct-1",
        phone_number_id=PHONE_ID,
        transport="cloud_api",
        options={"token_env": "T", **options},
    )


def test_read_receipts_take_their_share_of_the_numbers_throughput() -> None:
    config = GatewayConfig()
    assert (config.read_receipts, config.typing_indicator, config.quote_replies) == (
        True,
        True,
        False,
    )
    assert config.read_budget_per_s(cloud()) == pytest.approx(16.0)  # 20 % of Meta's 80
    assert config.account_options(cloud())["throughput_per_s"] == pytest.approx(64.0)
    half = GatewayConfig(read_receipt_share=0.5)
    assert half.account_options(cloud(10))["throughput_per_s"] == pytest.approx(5.0)
    off = GatewayConfig(read_receipts=False)
    assert off.read_budget_per_s(cloud()) == 0
    assert "throughput_per_s" not in off.account_options(cloud())
    loopback = AccountEntry(account_id="l", phone_number_id="1")
    assert (config.account_options(loopback), config.read_budget_per_s(loopback)) == ({}, 0)


def test_quote_replies_is_passed_to_cloud_api_numbers_that_say_nothing() -> None:
    config = GatewayConfig(quote_replies=True, read_receipts=False)
    assert config.account_options(cloud())["quote_replies"] is True
    assert config.account_options(cloud(quote_replies=False))["quote_replies"] is False


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("read_receipts = 1", r"read_receipts = 1: must be true or false"),
        ("typing_indicator = 'yes'", r"typing_indicator = 'yes': must be true or false"),
        ("quote_replies = 0", r"quote_replies = 0: must be true or false"),
        ("read_receipt_share = 0.6", r"read_receipt_share = 0.6: must be a number > 0 and <= 0.5"),
        ("read_receipt_share = 0", r"read_receipt_share = 0: must be a number > 0"),
    ],
)
def test_bad_read_receipt_keys_are_refused_naming_the_rule(
    tmp_path: Path, line: str, message: str
) -> None:
    text = CONFIG.replace("retry_after_s = 7", f"retry_after_s = 7\n{line}")
    with pytest.raises(ConfigError, match=message):
        load_gateway_config(write(tmp_path, text), env={})


def test_the_read_receipt_keys_load_from_the_file(tmp_path: Path) -> None:
    keys = "read_receipts = false\ntyping_indicator = false\nread_receipt_share = 0.1\n"
    text = CONFIG.replace("retry_after_s = 7", f"retry_after_s = 7\n{keys}quote_replies = true")
    config = load_gateway_config(write(tmp_path, text), env={})
    assert (config.read_receipts, config.typing_indicator) == (False, False)
    assert (config.read_receipt_share, config.quote_replies) == (0.1, True)


# --- the read-receipt sender -------------------------------------------------------------------


def receipts_for(
    graph: FakeGraphAPI, counters: GatewayCounters, warned: list[str], **config: Any
) -> ReadReceipts:
    entry = cloud(config.pop("throughput", None), api_base=graph.base_url)
    gateway = GatewayConfig(accounts=(entry,), **config)
    return ReadReceipts.for_config(
        gateway, counters, lambda key, text: warned.append(text), environ={"T": TOKEN}
    )


async def settle(receipts: ReadReceipts) -> None:
    for _ in range(500):  # each round yields to the loop; the requests finish on their own
        if not receipts.in_flight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("read requests still in flight after 5 s")


def test_a_read_request_past_the_numbers_read_budget_is_skipped_not_queued() -> None:
    counters, warned = GatewayCounters(), []
    with FakeGraphAPI(token=TOKEN) as graph:
        receipts = receipts_for(graph, counters, warned, throughput=2.0)  # reads: 0.4/s

        async def scenario() -> None:
            await receipts.open()
            try:
                receipts.mark(PHONE_ID, "wamid.in-1")  # the bucket's one token
                receipts.mark(PHONE_ID, "wamid.in-2")  # none left: skipped
                receipts.mark("999", "wamid.in-3")  # not a number of ours: nothing
                await settle(receipts)
            finally:
                await receipts.close()

        asyncio.run(scenario())
        reads = graph.requests
    assert [r.body["message_id"] for r in reads] == ["wamid.in-1"]
    assert counters.get("read_receipts", result="sent") == 1
    assert counters.get("read_receipts", result="throttled") == 1
    assert warned == []


def test_a_refused_read_request_is_counted_and_logged_without_the_token() -> None:
    counters, warned = GatewayCounters(), []
    with FakeGraphAPI(token=TOKEN) as graph:
        graph.program(Behaviour.graph_error(100, message=f"{TOKEN} is bad"), reads=True)
        receipts = receipts_for(graph, counters, warned, typing_indicator=False)

        async def scenario() -> None:
            await receipts.open()
            try:
                receipts.mark(PHONE_ID, "wamid.in-1")
                await settle(receipts)
            finally:
                await receipts.close()

        asyncio.run(scenario())
        [read] = graph.requests
    assert "typing_indicator" not in read.body
    assert counters.get("read_receipts", result="failed") == 1
    [line] = warned
    assert "Graph error 100" in line
    assert TOKEN not in line


def test_closing_ends_read_requests_in_flight() -> None:
    counters, warned = GatewayCounters(), []
    with FakeGraphAPI(token=TOKEN) as graph:
        graph.program(Behaviour(hang=True), reads=True)
        receipts = receipts_for(graph, counters, warned)

        async def scenario() -> int:
            await receipts.open()
            receipts.mark(PHONE_ID, "wamid.in-1")
            for _ in range(500):  # until the request reaches the fake (5 s at most)
                if graph.in_flight:
                    break
                await asyncio.sleep(0.01)
            assert graph.in_flight == 1
            await receipts.close()
            return receipts.in_flight

        assert asyncio.run(scenario()) == 0
    assert counters.total("read_receipts") == 0


def test_no_sender_without_read_receipts_or_for_a_number_without_its_token() -> None:
    counters = GatewayCounters()
    off = GatewayConfig(accounts=(cloud(),), read_receipts=False)
    env = {"T": TOKEN}
    assert ReadReceipts.for_config(off, counters, print, environ=env).numbers == frozenset()
    on = GatewayConfig(accounts=(cloud(),))
    assert ReadReceipts.for_config(on, counters, print, environ={}).numbers == frozenset()
    assert ReadReceipts.for_config(on, counters, print, environ=env).numbers == {PHONE_ID}
    assert TOKEN not in repr(ReadReceipts.for_config(on, counters, print, environ=env))
