"""``Retry-After``: one reader for every edge, and the three edges answering alike."""

from __future__ import annotations

import email.utils
import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.account._cloud_policy import MAX_RETRY_AFTER_S as CLOUD_CAP_S
from actors.account._cloud_policy import Backoff, HttpOutcome, classify
from actors.cores.retry_after import parse_retry_after
from actors.pool._openai_core import DEFAULT_RETRY_AFTER_S as OPENAI_DEFAULT_S
from actors.pool._openai_core import MAX_RETRY_AFTER_S as OPENAI_CAP_S
from actors.pool._openai_core import RawResponse, map_response
from apps.replay.gateway import DEFAULT_RETRY_AFTER_S as REPLAY_DEFAULT_S
from apps.replay.gateway import MAX_RETRY_AFTER_S as REPLAY_CAP_S
from apps.replay.gateway import GatewayTarget
from protocols import InboundMessage, Rejected

NOW = 1_700_000_000.0
CAP = 600.0
GARBAGE = -1.0  # a default no parse can produce, so a test sees it was used


def date(epoch: float) -> str:
    """An IMF-fixdate, as RFC 9110 servers send it."""
    return email.utils.formatdate(epoch, usegmt=True)


def parse(value: str | None, default: float | None = GARBAGE) -> float | None:
    return parse_retry_after(value, now=NOW, cap_s=CAP, default=default)


# -- the reader --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("30", 30.0),
        (" 30 ", 30.0),  # optional whitespace around a field value
        ("007", 7.0),
        ("1.5", 1.5),  # decimals: a documented leniency
        ("600", 600.0),  # exactly the cap
    ],
)
def test_delay_seconds_are_read_as_seconds(value: str, seconds: float) -> None:
    assert parse(value) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (date(NOW + 30), 30.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),  # the same instant, written out
        ("Tue, 14 Nov 2023 22:13:50 UTC", 30.0),
        ("Tue, 14 Nov 2023 23:13:50 +0100", 30.0),  # any named zone is honoured
        ("Tuesday, 14-Nov-23 22:13:50 GMT", 30.0),  # the obsolete RFC 850 form
        (date(NOW), 0.0),
    ],
)
def test_an_http_date_is_read_as_the_seconds_until_it(value: str, seconds: float) -> None:
    assert parse(value) == seconds


def test_a_date_in_the_past_means_now() -> None:
    assert parse(date(NOW - 30)) == 0.0
    assert parse("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 14 Nov 2023 22:14:20",  # no zone
        "Tue, 14 Nov 2023 22:14:20 -0000",  # "zone unknown"
        "Tue Nov 14 22:14:20 2023",  # asctime: never names a zone
    ],
)
def test_a_date_without_a_zone_is_refused_not_guessed(value: str) -> None:
    assert parse(value) == GARBAGE


@pytest.mark.parametrize(
    "value",
    ["99999999", "9" * 400, date(NOW + 86_400 * 365), "Fri, 31 Dec 9999 23:59:59 GMT"],
)
def test_a_wait_longer_than_the_cap_is_cut_to_it(value: str) -> None:
    assert parse(value) == CAP


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "soon",
        "-1",
        "-0",
        "+5",
        "1e3",
        "1e400",
        "nan",
        "inf",
        "0x10",
        "1_000",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: float() takes it, HTTP does not
        "1.",
        ".5",
        "30 s",
        "Mon, 32 Nov 2023 22:14:20 GMT",  # no 32nd day
        "Thu, 01 Jan 99999 00:00:00 GMT",  # a year no date holds
    ],
)
def test_negative_or_garbled_values_give_the_default(value: str) -> None:
    assert parse(value) == GARBAGE
    assert parse(value, default=None) is None


def test_an_absent_header_gives_the_default_as_given() -> None:
    assert parse(None, default=None) is None
    assert parse(None, default=5000.0) == 5000.0  # the caller's default is not capped


@pytest.mark.parametrize("cap", [-1.0, float("nan"), float("inf")])
def test_a_cap_that_is_not_a_finite_number_of_seconds_is_refused(cap: float) -> None:
    with pytest.raises(ValueError, match="cap_s must be a finite number >= 0"):
        parse_retry_after("5", now=NOW, cap_s=cap)


@given(value=st.text(max_size=40))
def test_any_value_gives_the_default_or_a_wait_within_the_cap(value: str) -> None:
    seconds = parse(value)
    assert seconds == GARBAGE or (seconds is not None and 0.0 <= seconds <= CAP)


# -- the three edges ---------------------------------------------------------------------------


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A gateway that refuses every webhook with 503 and the server's ``Retry-After``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"accepted": 0, "rejected": {"capacity": 1}}).encode()
        self.send_response(503)
        retry_after = getattr(self.server, "retry_after", None)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def refusing() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def replay_wait(server: http.server.ThreadingHTTPServer, header: str | None) -> float | None:
    server.retry_after = header  # type: ignore[attr-defined]
    host, port = server.server_address[:2]
    target = GatewayTarget(f"http://{host!s}:{port}/webhook", b"s", {"a": "1"}, clock=lambda: NOW)
    try:
        message = InboundMessage(
            account_id="a", customer_id="+15550001111", message_id="m", text="hi"
        )
        (answer,) = target.submit_many([message])
    finally:
        target.close()
    assert isinstance(answer, Rejected)
    assert answer.reason == "capacity"
    return target.retry_after_s


def openai_wait(header: str | None) -> float | None:
    return map_response("m", RawResponse(429, b"", header), NOW).result.retry_after


BACKOFF_S = 0.001


def cloud_wait(header: str | None) -> float | None:
    backoff = Backoff(BACKOFF_S, BACKOFF_S)  # the shortest: the header decides
    outcome = HttpOutcome(status=429, retry_after=header)
    return classify(outcome, attempt=1, backoff=backoff, now=NOW).retry_after


def test_the_three_edges_cap_alike_and_the_two_with_a_default_default_alike() -> None:
    assert OPENAI_CAP_S == CLOUD_CAP_S == REPLAY_CAP_S
    assert OPENAI_DEFAULT_S == REPLAY_DEFAULT_S


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        (date(NOW + 90), 90.0),
        (date(NOW - 90), 0.0),
        ("99999999", OPENAI_CAP_S),
        (date(NOW + 86_400), OPENAI_CAP_S),
    ],
)
def test_the_three_edges_wait_alike_for_the_same_header(
    refusing: http.server.ThreadingHTTPServer, header: str, seconds: float
) -> None:
    assert openai_wait(header) == seconds
    assert replay_wait(refusing, header) == seconds
    # The transport never waits less than its backoff, which is set to almost nothing.
    assert cloud_wait(header) == max(seconds, BACKOFF_S)


@pytest.mark.parametrize("header", [None, "soon", "-5", "Tue, 14 Nov 2023 22:14:20"])
def test_without_a_usable_header_each_edge_falls_back_to_its_own_default(
    refusing: http.server.ThreadingHTTPServer, header: str | None
) -> None:
    assert openai_wait(header) == OPENAI_DEFAULT_S
    assert replay_wait(refusing, header) == REPLAY_DEFAULT_S
    assert cloud_wait(header) == BACKOFF_S
