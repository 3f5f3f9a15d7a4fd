"""Transport ``cloud_api``: its pure policy from tables, its HTTP path against a fake Graph API."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loguru import logger

from actors.account import TRANSPORTS, AccountCore, SendResult, make_transport
from actors.account._cloud_policy import (
    MAX_RETRY_AFTER_S,
    Backoff,
    HttpOutcome,
    TokenBucket,
    classify,
    clean_text,
)
from actors.account.cloud_api import CloudApiTransport
from protocols import DeliveryReport, OutboundReply, Scalar
from tests.engine_helpers import wait_for
from tests.fakes.graph_api import Behaviour, FakeGraphAPI

ACCOUNT = "acct-1"
SECRET = "EAAG-this-is-the-secret-token-42"
TOKEN_ENV = "WA_TEST_CLOUD_TOKEN"
BACKOFF = Backoff(0.5, 30.0)
Make = Callable[..., CloudApiTransport]  # the ``transports`` fixture: (base_url, **options)


def outbound(
    i: int, *, customer: int | None = None, deadline: float = 1e12, text: str = "hello"
) -> OutboundReply:
    return OutboundReply(
        account_id=ACCOUNT,
        customer_id=f"+1555{i if customer is None else customer:07d}",
        message_id=f"wamid.in{i}",
        text=text,
        deadline=deadline,
    )


def graph_body(code: int, **extra: object) -> bytes:
    return json.dumps(
        {"error": {"message": "m", "type": "OAuthException", "code": code, **extra}}
    ).encode()


OK_BODY = b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.X1"}]}'


# -- the error mapping, as a table ------------------------------------------------------------

MAPPING = [
    # (name, outcome, reason, retry_after or None)
    ("200 with a message id", HttpOutcome(status=200, body=OK_BODY), "", None),
    ("201 with a message id", HttpOutcome(status=201, body=OK_BODY), "", None),
    ("200 unparsable", HttpOutcome(status=200, body=b"<html>"), "transport_error", 0.5),
    ("200 no message id", HttpOutcome(status=200, body=b'{"messages":[]}'), "transport_error", 0.5),
    ("200 cut short", HttpOutcome(status=200, error="ClientPayloadError"), "transport_error", 0.5),
    ("131056 pair rate", HttpOutcome(status=400, body=graph_body(131056)), "rate_limited", 0.5),
    ("130429 throughput", HttpOutcome(status=400, body=graph_body(130429)), "rate_limited", 0.5),
    (
        "130429 with a longer Retry-After",
        HttpOutcome(status=400, body=graph_body(130429), retry_after="7"),
        "rate_limited",
        7.0,
    ),
    (
        "131056 with a shorter Retry-After",
        HttpOutcome(status=400, body=graph_body(131056), retry_after="0.1"),
        "rate_limited",
        0.5,
    ),
    (
        "131047 outside window",
        HttpOutcome(status=400, body=graph_body(131047)),
        "outside_window",
        None,
    ),
    (
        "190 token",
        HttpOutcome(status=401, body=graph_body(190, error_subcode=463)),
        "account_auth",
        None,
    ),
    ("500 empty", HttpOutcome(status=500), "transport_error", 0.5),
    ("503 Graph code 2", HttpOutcome(status=503, body=graph_body(2)), "transport_error", 0.5),
    ("503 Retry-After", HttpOutcome(status=503, retry_after="3"), "transport_error", 3.0),
    ("no response", HttpOutcome(status=None, error="ClientConnectorError"), "transport_error", 0.5),
    ("timeout", HttpOutcome(status=None, error="no complete answer"), "transport_error", 0.5),
    ("400 other code", HttpOutcome(status=400, body=graph_body(131009)), "api_error:131009", None),
    ("403 other code", HttpOutcome(status=403, body=graph_body(200)), "api_error:200", None),
    ("404 no Graph error", HttpOutcome(status=404, body=b"nope"), "api_error:http_404", None),
    ("429 no Graph error", HttpOutcome(status=429, retry_after="2"), "rate_limited", 2.0),
]


@pytest.mark.parametrize(
    ("name", "outcome", "reason", "retry_after"), MAPPING, ids=[m[0] for m in MAPPING]
)
def test_each_answer_maps_to_its_reason_and_retry(
    name: str, outcome: HttpOutcome, reason: str, retry_after: float | None
) -> None:
    verdict = classify(outcome, attempt=1, backoff=BACKOFF, now=0.0)
    assert (verdict.ok, verdict.reason, verdict.retry_after) == (not reason, reason, retry_after)
    assert verdict.auth_failed == (reason == "account_auth")
    if outcome.status is not None and 200 <= outcome.status < 300 and reason:
        assert "may or may not have been sent" in verdict.detail


_CODES = st.sampled_from([None, 1, 2, 4, 100, 131009, 131047, 131056, 130429, 190, 80007])


@given(
    status=st.one_of(st.none(), st.integers(100, 599)),
    code=_CODES,
    body=st.sampled_from([b"", b"{}", b"x\xff", OK_BODY, b'{"error":{"code":"190"}}']),
    retry_after=st.one_of(st.none(), st.sampled_from(["0", "5", "99", "-1", "soon", "nan"])),
    error=st.sampled_from(["", "ClientPayloadError: cut"]),
    attempt=st.integers(1, 100),
)
def test_every_answer_maps_to_a_reportable_verdict(
    status: int | None,
    code: int | None,
    body: bytes,
    retry_after: str | None,
    error: str,
    attempt: int,
) -> None:
    if code is not None:
        body = graph_body(code, message=f"bad {SECRET} \ud800")
    outcome = HttpOutcome(status=status, body=body, retry_after=retry_after, error=error)
    verdict = classify(outcome, attempt=attempt, backoff=BACKOFF, now=0.0, secret=SECRET)
    # What the core will turn it into must be a valid report, whatever came back.
    DeliveryReport(message_id="m", ok=verdict.ok, reason=verdict.reason, detail=verdict.detail)
    assert SECRET not in verdict.detail
    retryable = verdict.reason in ("transport_error", "rate_limited")
    assert (verdict.retry_after is not None) == retryable
    if verdict.retry_after is not None:
        assert verdict.retry_after >= BACKOFF.delay(attempt)
    if verdict.ok:
        assert (status or 0) // 100 == 2
        assert (body, error) == (OK_BODY, "")
    if code == 190 and status is not None and not error:
        assert verdict.reason == "account_auth"


def test_backoff_doubles_per_attempt_up_to_its_cap() -> None:
    assert [BACKOFF.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert BACKOFF.delay(10**9) == 30.0  # no overflow however many attempts
    with pytest.raises(ValueError, match="attempt must be an int >= 1"):
        BACKOFF.delay(0)
    with pytest.raises(ValueError, match="backoff_max_s must be a finite number >= 2"):
        Backoff(2.0, 1.0)


@pytest.mark.parametrize(
    ("header", "now", "wait"),
    [
        ("7", 0.0, 7.0),
        (" 1.5 ", 0.0, 1.5),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 90.0, 10.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 200.0, 0.5),  # past: 0 s, so the backoff
        ("99999999", 0.0, MAX_RETRY_AFTER_S),  # capped
        ("-3", 0.0, 0.5),  # garbage leaves the backoff alone
        ("soon", 0.0, 0.5),
        ("inf", 0.0, 0.5),
        ("", 0.0, 0.5),
        (None, 0.0, 0.5),
    ],
)
def test_a_retry_waits_for_the_longer_of_the_backoff_and_the_retry_after(
    header: str | None, now: float, wait: float
) -> None:
    verdict = classify(
        HttpOutcome(status=503, retry_after=header), attempt=1, backoff=BACKOFF, now=now
    )
    assert verdict.retry_after == wait


def test_clean_text_redacts_the_secret_shortens_and_stays_utf8() -> None:
    text = clean_text(f"token {SECRET} \ud800" + "x" * 1000, secret=SECRET)
    assert SECRET not in text
    assert "[redacted]" in text
    assert len(text) <= 400
    text.encode("utf-8")


# -- the token bucket -----------------------------------------------------------------------


def test_the_bucket_gives_a_burst_of_one_second_then_exactly_the_rate() -> None:
    bucket = TokenBucket(80, 80)
    assert all(bucket.take(0.0) for _ in range(80))
    assert not bucket.take(0.0)  # one past the burst
    assert bucket.next_available(0.0) == pytest.approx(1 / 80)
    for k in range(1, 801):  # ten seconds at exactly the rate: one token each 1/80 s
        now = k / 80
        assert bucket.take(now), f"token {k} missing at its time"
        assert not bucket.take(now), f"a token too many at {now}"
    assert not bucket.take(10.0 + 1 / 160)  # half a period later: still none


def test_the_bucket_saves_at_most_its_burst_and_ignores_a_clock_step_back() -> None:
    bucket = TokenBucket(5, 5)
    assert bucket.tokens(100.0) == 5  # starts full; idle time does not add more
    assert all(bucket.take(100.0) for _ in range(5))
    assert not bucket.take(50.0)  # an earlier clock mints nothing
    assert bucket.next_available(100.0) == pytest.approx(100.2)
    assert sum(bucket.take(101.0) for _ in range(10)) == 5


# -- options --------------------------------------------------------------------------------


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    return SECRET


def build(base_url: str = "http://127.0.0.1:9", /, **options: Scalar) -> CloudApiTransport:
    merged: dict[str, Scalar] = {
        "phone_number_id": "1234567",
        "token_env": TOKEN_ENV,
        "api_base": base_url,
    }
    merged.update(options)
    return CloudApiTransport(ACCOUNT, merged, random.Random(1))


@pytest.mark.usefixtures("token")
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"token": "x"},
            r"account 'acct-1': unknown cloud_api option 'token' .*environment variable",
        ),
        (
            {"phone_number_id": "+123"},
            r"cloud_api option phone_number_id must be digits, got '\+123'",
        ),
        (
            {"throughput_per_s": 0},
            r"cloud_api option throughput_per_s must be a finite number > 0, got 0",
        ),
        ({"max_in_flight": 0}, r"cloud_api option max_in_flight must be an int >= 1, got 0"),
        ({"timeout_s": -1}, r"cloud_api option timeout_s must be a finite number > 0"),
        ({"backoff_max_s": 0.1}, r"cloud_api option backoff_max_s must be a finite number >= 0.5"),
        ({"version": "21"}, r"cloud_api option version must be like 'v21.0', got '21'"),
        ({"api_base": "ftp://x"}, r"cloud_api option api_base must be an http:// or https:// URL"),
    ],
)
def test_bad_options_are_refused_naming_account_key_and_rule(
    options: dict[str, Scalar], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(**options)


def test_a_missing_token_variable_is_named_and_a_pasted_token_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ValueError, match=f"environment variable '{TOKEN_ENV}' .* not set or empty"):
        build()
    monkeypatch.setenv(TOKEN_ENV, "")
    with pytest.raises(ValueError, match=f"'{TOKEN_ENV}'"):
        build()
    pasted = "EAAG" + "x" * 190  # a token put where the variable's name belongs
    with pytest.raises(ValueError, match="token_env is required and must be the NAME") as err:
        build(token_env=pasted)
    assert pasted not in str(err.value)
    with pytest.raises(ValueError, match="phone_number_id is required"):
        CloudApiTransport(ACCOUNT, {"token_env": TOKEN_ENV}, random.Random(1))


def test_the_kind_is_registered_and_the_engine_does_not_import_aiohttp_for_it(token: str) -> None:
    transport = make_transport(
        "cloud_api", ACCOUNT, {"phone_number_id": "1", "token_env": TOKEN_ENV}, random.Random(1)
    )
    assert isinstance(transport, CloudApiTransport)
    assert "cloud_api" in TRANSPORTS
    assert SECRET not in repr(transport)
    transport.close()  # never sent: no thread was started
    code = "import sys, actors.engine, actors.account; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


# -- against the fake Graph API -------------------------------------------------------------


@pytest.fixture
def graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(token=SECRET) as fake:
        yield fake


@pytest.fixture
def transports(token: str) -> Iterator[Make]:
    made: list[CloudApiTransport] = []

    def make(base_url: str, **options: Scalar) -> CloudApiTransport:
        made.append(build(base_url, **options))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def results_of(
    transport: CloudApiTransport, n: int, *, now: float | None = None
) -> list[SendResult]:
    """Poll (at ``now``, or the wall clock) until ``n`` sends have ended."""
    got: list[SendResult] = []

    def done() -> bool:
        got.extend(transport.poll(time.time() if now is None else now))
        return len(got) >= n

    wait_for(done, deadline_s=20, what=f"{n} send results")
    return got


def test_a_send_posts_the_text_to_the_number_with_the_bearer(
    graph: FakeGraphAPI, transports: Make
) -> None:
    transport = transports(graph.base_url, version="v22.0")
    transport.start(outbound(1, text="héllo"), time.time())
    [result] = results_of(transport, 1)
    assert (result.ok, result.message_id, result.detail) == (
        True,
        "wamid.in1",
        "sent as wamid.FAKE1",
    )
    [request] = graph.requests
    assert request.path == "/v22.0/1234567/messages"
    assert request.bearer_ok
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550000001",
        "type": "text",
        "text": {"body": "héllo"},
    }


FAKE_MAPPING = [
    (Behaviour.graph_error(131056), "rate_limited", 0.5),
    (Behaviour.graph_error(130429, retry_after="4"), "rate_limited", 4.0),
    (Behaviour.graph_error(131047), "outside_window", None),
    (Behaviour.graph_error(131009), "api_error:131009", None),
    (Behaviour(status=404, body=b"not here"), "api_error:http_404", None),
    (Behaviour(status=502, body=b"bad gateway"), "transport_error", 0.5),
    (Behaviour.graph_error(2, status=503), "transport_error", 0.5),
    (Behaviour(body=b"{not json"), "transport_error", 0.5),
    (Behaviour(cut_body=True), "transport_error", 0.5),
]


@pytest.mark.parametrize(("behaviour", "reason", "retry_after"), FAKE_MAPPING)
def test_each_graph_answer_ends_the_send_as_mapped(
    graph: FakeGraphAPI,
    transports: Make,
    behaviour: Behaviour,
    reason: str,
    retry_after: float | None,
) -> None:
    graph.program(behaviour)
    transport = transports(graph.base_url)
    transport.start(outbound(1), time.time())
    [result] = results_of(transport, 1)
    assert (result.ok, result.reason, result.retry_after) == (False, reason, retry_after)
    assert not transport.failed


def test_a_refused_connection_and_a_hanging_server_are_transport_errors(
    graph: FakeGraphAPI, transports: Make
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = transports(f"http://127.0.0.1:{closed_port}")
    refused.start(outbound(1), time.time())
    [result] = results_of(refused, 1)
    assert (result.reason, result.retry_after) == ("transport_error", 0.5)
    assert "no HTTP response" in result.detail

    graph.program(Behaviour(hang=True))
    hung = transports(graph.base_url, timeout_s=0.3)
    hung.start(outbound(2), time.time())
    [result] = results_of(hung, 1)
    assert (result.reason, result.retry_after) == ("transport_error", 0.5)
    assert "timeout_s=0.3s" in result.detail


def core_for(transport: CloudApiTransport) -> AccountCore:
    return AccountCore(
        account_id=ACCOUNT,
        transport=transport,
        max_recipients=100,
        max_entries_per_recipient=100,
        rate_window_s=6.0,
        rate_allowance=50,  # retries pass the pair-rate log again: leave them room
        sweep_budget=10,
        capacity=1000,
    )


def reports_of(core: AccountCore, n: int) -> dict[str, DeliveryReport]:
    got: dict[str, DeliveryReport] = {}

    def done() -> bool:
        got.update((r.message_id, r) for r in core.poll(time.time()))
        return len(got) >= n

    wait_for(done, deadline_s=20, what=f"{n} delivery reports")
    return got


def reports_on_a_clock(
    core: AccountCore, transport: CloudApiTransport, n: int, now: float
) -> tuple[dict[str, DeliveryReport], float]:
    """Poll ``core`` on a fake clock until ``n`` reports; return them and the clock's time.

    The clock jumps to the core's next wakeup only while no HTTP call runs (the calls are
    real, awaited in real time), so what the core decides depends on the fake time alone,
    not on how long a busy machine took to answer.
    """
    got: dict[str, DeliveryReport] = {}

    def done() -> bool:
        nonlocal now
        got.update((r.message_id, r) for r in core.poll(now))
        if len(got) >= n:
            return True
        wakeup = core.next_wakeup()
        if transport.stats()["in_http"] == 0 and wakeup is not None:
            now = max(now, wakeup)
        return False

    wait_for(done, deadline_s=20, what=f"{n} delivery reports")
    return got, now


@pytest.mark.parametrize("behaviour", [Behaviour(status=503), Behaviour.graph_error(131056)])
def test_failures_for_a_while_then_recovery_within_the_deadline(
    graph: FakeGraphAPI, transports: Make, behaviour: Behaviour
) -> None:
    graph.program(behaviour, times=3)  # then the standing success
    core = core_for(transports(graph.base_url, backoff_min_s=0.02, backoff_max_s=0.1))
    assert core.submit([outbound(1, deadline=time.time() + 15)], time.time()) == []
    report = reports_of(core, 1)["wamid.in1"]
    assert report.ok
    assert core.stats()["transport_retries"] == 3
    assert graph.request_count == 4


def test_retries_that_would_pass_the_deadline_end_the_message(
    graph: FakeGraphAPI, transports: Make
) -> None:
    graph.program(Behaviour(status=500))
    transport = transports(graph.base_url, backoff_min_s=0.2, backoff_max_s=10)
    core = core_for(transport)
    # On the fake clock: sends at 0, 0.2 and 0.6 s; the next, at 1.4 s, would pass the
    # deadline, so the message ends at 0.6 s, before it.
    start = 1_000.0
    core.submit([outbound(1, deadline=start + 1.0)], start)
    reports, ended_at = reports_on_a_clock(core, transport, 1, start)
    report = reports["wamid.in1"]
    assert ended_at == pytest.approx(start + 0.6)  # when the next retry could not fit
    assert (report.ok, report.reason) == (False, "transport_error")
    assert "retry in" in report.detail
    assert graph.request_count == 3
    assert core.stats()["transport_retries"] == 2


def test_a_refused_token_fails_the_transport_without_leaking_it(
    graph: FakeGraphAPI, transports: Make
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m) + str(m.record["extra"])), level="DEBUG")
    try:
        graph.program(Behaviour.graph_error(190, status=401, message=f"token {SECRET} expired"))
        transport = transports(graph.base_url)
        core = core_for(transport)
        now = time.time()
        core.submit([outbound(1), outbound(2)], now)
        first = reports_of(core, 2)
        assert transport.failed
        calls = graph.request_count
        core.submit([outbound(3)], time.time())
        later = core.poll(time.time())  # ends at once: no HTTP call
        assert graph.request_count == calls
    finally:
        logger.remove(sink)
    reports = [*first.values(), *later]
    assert [(r.ok, r.reason) for r in reports] == [(False, "account_auth")] * 3
    assert "190" in transport.failure
    errors = [line for line in lines if "code 190" in line]
    assert len(errors) == 1
    assert ACCOUNT in errors[0]
    assert TOKEN_ENV in errors[0]
    texts = [*lines, transport.failure, repr(transport), *(r.detail for r in reports)]
    assert not [t for t in texts if SECRET in t]


def test_many_sends_are_in_flight_at_once_on_the_pool(
    graph: FakeGraphAPI, transports: Make
) -> None:
    # Each answer takes 2 s: 50 calls at once at the fake need only 25 calls a second to
    # leave the transport, a small fraction of its pace even on a busy machine.
    graph.program(Behaviour(latency_s=2.0))
    transport = transports(graph.base_url, throughput_per_s=1000)
    now = time.time()
    for i in range(200):
        transport.start(outbound(i), now)
    assert transport.in_flight == 200
    results = results_of(transport, 200)
    assert all(r.ok for r in results)
    assert graph.peak_in_flight > 50  # sequential sends would peak at 1
    assert transport.stats()["peak_http"] > 50


def test_sends_past_the_throughput_wait_for_a_token_in_order(
    graph: FakeGraphAPI, transports: Make
) -> None:
    transport = transports(graph.base_url, throughput_per_s=5, max_in_flight=8)
    t0 = 1_000.0  # the bucket runs on the injected clock, not the wall clock
    for i in range(7):
        transport.start(outbound(i), t0)
    assert results_of(transport, 5, now=t0)  # the burst: one second's worth
    assert transport.in_flight == 2
    assert transport.next_due() == pytest.approx(t0 + 0.2)
    assert [r.message_id for r in results_of(transport, 1, now=t0 + 0.2)] == ["wamid.in5"]
    assert [r.message_id for r in results_of(transport, 1, now=t0 + 0.4)] == ["wamid.in6"]
    assert transport.stats()["throttled"] == 2
    assert transport.next_due() is None


def test_a_full_token_queue_hands_the_send_back_with_a_wait(
    graph: FakeGraphAPI, transports: Make
) -> None:
    transport = transports(graph.base_url, throughput_per_s=1, max_in_flight=2)
    for i in range(4):
        transport.start(outbound(i), 0.0)  # 1 sent, 2 wait, 1 refused
    assert transport.cancel("wamid.in2")
    results = results_of(transport, 2, now=0.0)
    refused = next(r for r in results if r.message_id == "wamid.in3")
    assert (refused.reason, refused.retry_after) == ("rate_limited", 3.0)
    assert transport.in_flight == 1  # in1 still waits for the next token
    assert transport.stats()["queue_full"] == 1


def test_close_leaves_no_thread(graph: FakeGraphAPI, transports: Make) -> None:
    graph.program(Behaviour(hang=True), to="15550000002")
    before = set(threading.enumerate())
    # A host name, not an IP: aiohttp resolves it on executor threads, which must go too.
    transport = transports(graph.base_url.replace("127.0.0.1", "localhost"))
    transport.start(outbound(1), time.time())
    transport.start(outbound(2), time.time())
    assert results_of(transport, 1)[0].ok
    assert any(t.name == f"cloud_api:{ACCOUNT}" for t in threading.enumerate())
    transport.close()
    assert set(threading.enumerate()) <= before
    assert transport.poll(time.time()) == []
    assert transport.next_due() is None
    with pytest.raises(RuntimeError, match="closed"):
        transport.start(outbound(3), time.time())


def test_a_cancelled_send_in_flight_reports_nothing(graph: FakeGraphAPI, transports: Make) -> None:
    graph.program(Behaviour(hang=True))
    transport = transports(graph.base_url)
    transport.start(outbound(1), time.time())
    wait_for(lambda: graph.in_flight == 1, what="the call to reach the fake")
    assert transport.cancel("wamid.in1")
    assert not transport.cancel("wamid.in1")
    assert transport.in_flight == 0
    assert transport.poll(time.time()) == []
    assert transport.next_due() is None


def test_the_fake_picks_recipient_script_then_any_script_then_standing(
    graph: FakeGraphAPI, transports: Make
) -> None:
    graph.program(Behaviour.graph_error(131009), to="15550000001")
    graph.program(Behaviour.graph_error(131047), times=1)
    graph.program(Behaviour(status=500), times=1, to="15550000001")
    transport = transports(graph.base_url)
    reasons = []
    for i, customer in enumerate([1, 1, 1, 2]):
        transport.start(outbound(i, customer=customer), time.time())
        reasons += [r.reason for r in results_of(transport, 1)]
    assert reasons == ["transport_error", "outside_window", "api_error:131009", ""]


def test_the_fake_refuses_a_wrong_bearer_like_graph(
    graph: FakeGraphAPI, transports: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    transport = transports(graph.base_url)
    transport.start(outbound(1), time.time())
    [result] = results_of(transport, 1)
    assert (result.reason, transport.failed) == ("account_auth", True)
    assert not graph.requests[0].bearer_ok
