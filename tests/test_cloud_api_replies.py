"""Transport ``cloud_api``: what a send reports beyond ok/reason (the wamid WhatsApp gave it,
whether a failed one may have gone out) and the quote option, against the fake Graph API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from actors.account._cloud_policy import HttpOutcome, classify
from actors.account.cloud_api import CloudApiTransport
from protocols import Scalar
from tests.fakes.graph_api import Behaviour, FakeGraphAPI
from tests.test_cloud_api import (
    BACKOFF,
    MAPPING,
    SECRET,
    TOKEN_ENV,
    Make,
    build,
    outbound,
    results_of,
)


@pytest.fixture
def graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(token=SECRET) as fake:
        yield fake


@pytest.fixture
def transports(monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    made: list[CloudApiTransport] = []

    def make(base_url: str, **options: Scalar) -> CloudApiTransport:
        made.append(build(base_url, **options))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


# The answers after which the message may have reached WhatsApp: nothing came back, or a
# 2xx whose body broke off or could not be read. Every other failure is Graph refusing it.
MAYBE_SENT = {"200 unparsable", "200 no message id", "200 cut short", "no response", "timeout"}


@pytest.mark.parametrize(
    ("name", "outcome", "reason", "retry_after"), MAPPING, ids=[m[0] for m in MAPPING]
)
def test_a_failed_send_is_a_refusal_unless_it_may_have_gone_out(
    name: str, outcome: HttpOutcome, reason: str, retry_after: float | None
) -> None:
    verdict = classify(outcome, attempt=1, backoff=BACKOFF, now=0.0)
    if verdict.ok:
        assert verdict.wamid == "wamid.X1"
        return
    assert verdict.maybe_sent == (name in MAYBE_SENT), name
    assert verdict.wamid == ""


def test_a_wamid_too_long_for_a_report_is_left_out_but_the_send_is_ok() -> None:
    long_id = "wamid." + "A" * 200
    body = b'{"messages":[{"id":"' + long_id.encode() + b'"}]}'
    verdict = classify(HttpOutcome(status=200, body=body), attempt=1, backoff=BACKOFF, now=0.0)
    assert verdict.ok
    assert verdict.wamid == ""


def test_a_sent_reply_carries_the_wamid_graph_gave_it(
    graph: FakeGraphAPI, transports: Make
) -> None:
    transport = transports(graph.base_url)
    transport.start(outbound(1), time.time())
    [result] = results_of(transport, 1)
    assert (result.ok, result.wamid) == (True, "wamid.FAKE1")
    assert "context" not in graph.requests[0].body  # quoting is off by default


def test_a_refused_send_reports_it_never_went_out(graph: FakeGraphAPI, transports: Make) -> None:
    graph.program(Behaviour.graph_error(130429), times=1)
    transport = transports(graph.base_url)
    transport.start(outbound(1), time.time())
    [result] = results_of(transport, 1)
    assert (result.ok, result.reason, result.maybe_sent) == (False, "rate_limited", False)


def test_quote_replies_puts_the_customers_message_in_the_context(
    graph: FakeGraphAPI, transports: Make
) -> None:
    transport = transports(graph.base_url, quote_replies=True)
    transport.start(outbound(1), time.time())
    [result] = results_of(transport, 1)
    assert result.ok
    # Meta's send-message reference: a reply names the message it answers in context.
    assert graph.requests[0].body["context"] == {"message_id": "wamid.in1"}


def test_quote_replies_must_be_a_boolean(transports: Make) -> None:
    with pytest.raises(ValueError, match="cloud_api option quote_replies must be true or false"):
        transports("http://127.0.0.1:9", quote_replies="yes")
