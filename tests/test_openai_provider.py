"""Provider kind ``openai``: pure policy without sockets, then HTTP against a fake on loopback."""

from __future__ import annotations

import email.utils
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from loguru import logger

from actors.pool import (
    InFlightLimitError,
    PoolCore,
    PoolResult,
    ProviderClosedError,
    make_provider,
)
from actors.pool.openai import (
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_SYSTEM_PROMPT,
    MAX_RETRY_AFTER_S,
    ContextWindow,
    Mapped,
    OpenAIProvider,
    RawResponse,
    build_payload,
    map_exception,
    map_response,
    parse_options,
)
from protocols import MAX_TEXT_LEN, AIFailure, AIReply, AIRequest, ProviderSpec, Scalar
from tests.engine_helpers import wait_for
from tests.fakes.openai_api import FakeOpenAI

KEY = "sk-SECRET-7f3a9c1e5b2d4068aa"  # searched for in every log line, result and error
ENV = "WA_TEST_OPENAI_KEY"
T0 = 1_700_000_000.0
ALICE, BOB = "+15550000001", "+15550000002"


def spec(
    base_url: str, name: str = "oa", priority: int = 10, options: dict[str, Scalar] | None = None
) -> ProviderSpec:
    opts: dict[str, Scalar] = {"base_url": base_url, "model": "gpt-test", "api_key_env": ENV}
    return ProviderSpec(
        name=name, kind="openai", priority=priority, options={**opts, **(options or {})}
    )


def req(mid: str, customer: str = ALICE, text: str = "hello", deadline: float = 0.0) -> AIRequest:
    deadline = deadline or time.time() + 30
    return AIRequest(
        message_id=mid, account_id="acct-1", customer_id=customer, text=text, deadline=deadline
    )


def results(provider: OpenAIProvider, n: int = 1, *, deadline_s: float = 10.0) -> list[Mapped]:
    got: list[Mapped] = []

    def enough() -> bool:
        got.extend(provider.poll_mapped(time.time()))
        return len(got) >= n

    wait_for(enough, deadline_s=deadline_s, what=f"{n} provider results")
    return got


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    before = set(threading.enumerate())
    with FakeOpenAI(api_key=KEY) as server:
        yield server
    # Providers close first (their fixture depends on this one): nothing may be left.
    wait_for(
        lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
        deadline_s=5,
        what="every thread started by the test to end",
    )


@pytest.fixture
def build(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., OpenAIProvider]]:
    monkeypatch.setenv(ENV, KEY)
    made: list[OpenAIProvider] = []

    def make(base_url: str = "", max_in_flight: int = 100, **options: Scalar) -> OpenAIProvider:
        s = spec(base_url or fake.base_url, options=options)
        made.append(OpenAIProvider(s, random.Random(1), max_in_flight=max_in_flight))
        return made[-1]

    yield make
    for provider in made:
        provider.close()


# -- options ---------------------------------------------------------------------------


def test_options_have_documented_defaults_and_the_url_ends_in_chat_completions() -> None:
    opts = parse_options(
        "oa", {"base_url": "https://api.example/v1/", "model": "m", "no_auth": True}
    )
    assert opts.url == "https://api.example/v1/chat/completions"
    assert (opts.timeout_s, opts.max_tokens, opts.temperature) == (20.0, 256, None)
    assert (opts.context_turns, opts.context_customers) == (10, 10_000)
    assert (opts.max_response_bytes, opts.system_prompt) == (1 << 20, DEFAULT_SYSTEM_PROMPT)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "m", "api_key_env": "K"}, "option 'base_url' is required: an http(s) URL"),
        ({"base_url": "ftp://x", "model": "m", "api_key_env": "K"}, "must start with http://"),
        ({"base_url": "http://x", "api_key_env": "K"}, "option 'model' is required"),
        ({"base_url": "http://x", "model": "m"}, "option 'api_key_env' is required"),
        ({"base_url": "http://x", "model": "m", "api_key_env": "1X"}, "environment variable name"),
        ({"base_url": "http://x", "model": "m", "no_auth": True, "api_key_env": "K"}, "no_auth"),
        ({"base_url": "http://x", "model": "m", "no_auth": 1}, "'no_auth' must be true or false"),
        (
            {"base_url": "http://x", "model": "m", "no_auth": True, "key": "k"},
            "unknown option 'key'",
        ),
        ({"timeout_s": 0}, "'timeout_s' must be a finite number > 0, got 0"),
        ({"max_tokens": 0}, "'max_tokens' must be an int >= 1, got 0"),
        ({"max_tokens": True}, "'max_tokens' must be an int >= 1, got True"),
        ({"temperature": 2.5}, "'temperature' must be a finite number >= 0 and <= 2, got 2.5"),
        ({"context_turns": -1}, "'context_turns' must be an int >= 0, got -1"),
        ({"context_customers": 1.5}, "'context_customers' must be an int >= 0, got 1.5"),
        ({"max_response_bytes": 0}, "'max_response_bytes' must be an int >= 1, got 0"),
        ({"system_prompt": 3}, "'system_prompt' must be a string, got 3"),
    ],
)
def test_bad_options_are_refused_naming_provider_option_and_rule(
    options: dict[str, Scalar], message: str
) -> None:
    if "base_url" not in options and "model" not in options:
        options = {"base_url": "http://x", "model": "m", "no_auth": True, **options}
    with pytest.raises(ValueError, match=r"^provider 'oa': ") as info:
        parse_options("oa", options)
    assert message in str(info.value)


@pytest.mark.parametrize("environ", [{}, {ENV: "  "}])
def test_a_missing_or_empty_key_variable_is_refused_naming_the_variable(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match=rf"environment variable '{ENV}' .* not set or empty"):
        OpenAIProvider(spec("http://127.0.0.1:9/v1"), random.Random(1), environ=environ)


def test_make_provider_builds_the_openai_kind_and_no_auth_needs_no_variable() -> None:
    s = ProviderSpec(
        name="local",
        kind="openai",
        options={"base_url": "http://h/v1", "model": "m", "no_auth": True},
    )
    provider = make_provider(s, random.Random(1), max_in_flight=7)
    assert isinstance(provider, OpenAIProvider)
    assert provider.max_in_flight == 7
    assert repr(provider) == "OpenAIProvider(name='local', model='m', base_url='http://h/v1')"
    provider.close()


def test_the_kind_is_registered_without_importing_aiohttp() -> None:
    code = (
        "import sys; from actors.pool.kinds import PROVIDER_KINDS; import actors.engine; "
        "assert 'openai' in PROVIDER_KINDS; assert 'aiohttp' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- pure policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, DEFAULT_RETRY_AFTER_S),
        ("", DEFAULT_RETRY_AFTER_S),
        ("30", 30.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-1", DEFAULT_RETRY_AFTER_S),
        ("soon", DEFAULT_RETRY_AFTER_S),
        ("nan", DEFAULT_RETRY_AFTER_S),
        ("1e400", DEFAULT_RETRY_AFTER_S),
        ("99999999", MAX_RETRY_AFTER_S),
        (email.utils.formatdate(T0 + 30, usegmt=True), 30.0),
        (email.utils.formatdate(T0 - 30, usegmt=True), 0.0),
        ("Tue, 14 Nov 2023 22:13:50", DEFAULT_RETRY_AFTER_S),  # no zone: not an HTTP date
    ],
)
def test_a_429_benches_for_its_retry_after_capped_or_a_second_without_one(
    header: str | None, seconds: float
) -> None:
    mapped = map_response("m1", RawResponse(429, b"", header), T0)
    assert (mapped.result.error, mapped.result.retry_after) == ("rate_limited", seconds)


def completion(content: Any, usage: Any = None) -> bytes:
    doc: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    if usage is not None:
        doc["usage"] = usage
    return json.dumps(doc).encode()


_USAGE = {"prompt_tokens": 12, "completion_tokens": 3}
_ERR = json.dumps({"error": {"message": f"bad key {KEY}", "type": "auth", "code": "k"}}).encode()


@pytest.mark.parametrize(
    ("raw", "error", "text", "tokens", "retry_after", "detail"),
    [
        (RawResponse(200, completion("hi", _USAGE)), "", "hi", (12, 3), None, ""),
        (RawResponse(200, completion("hi")), "", "hi", (0, 0), None, ""),
        (RawResponse(200, completion("hi", {"prompt_tokens": True})), "", "hi", (0, 0), None, ""),
        (RawResponse(200, completion("x" * 5000)), "", "x" * MAX_TEXT_LEN, (0, 0), None, ""),
        (
            RawResponse(200, b'{"choices":[{"message":{"content":"\\ud800!"}}]}'),
            "",
            "?!",
            (0, 0),
            None,
            "",
        ),
        (
            RawResponse(200, completion("  ")),
            "provider_error",
            "",
            (0, 0),
            None,
            "empty or missing",
        ),
        (
            RawResponse(200, completion(None)),
            "provider_error",
            "",
            (0, 0),
            None,
            "empty or missing",
        ),
        (
            RawResponse(200, b'{"choices":[1]}'),
            "provider_error",
            "",
            (0, 0),
            None,
            "empty or missing",
        ),
        (RawResponse(200, b'{"choices":[]}'), "provider_error", "", (0, 0), None, "no choices"),
        (RawResponse(200, b"[]"), "provider_error", "", (0, 0), None, "no choices"),
        (RawResponse(200, b"<html>"), "provider_error", "", (0, 0), None, "malformed JSON body"),
        (RawResponse(200, b'{"a":"\xff"}'), "provider_error", "", (0, 0), None, "malformed JSON"),
        (RawResponse(200, b"", over_limit=10), "provider_error", "", (0, 0), None, "bytes (10)"),
        (RawResponse(429, b"", "30"), "rate_limited", "", (0, 0), 30.0, "retry after 30 s"),
        (RawResponse(429, b"", None), "rate_limited", "", (0, 0), 1.0, "retry after 1 s"),
        (RawResponse(429, b"", "later"), "rate_limited", "", (0, 0), 1.0, "HTTP 429"),
        (RawResponse(500), "provider_error", "", (0, 0), None, "HTTP 500 server error"),
        (RawResponse(503, b"busy", "5"), "provider_error", "", (0, 0), None, "HTTP 503"),
        (RawResponse(302), "provider_error", "", (0, 0), None, "HTTP 302 unexpected status"),
        (RawResponse(401, _ERR), "api_error:401", "", (0, 0), None, "HTTP 401 (type=auth, code=k)"),
        (RawResponse(404, b"not found"), "api_error:404", "", (0, 0), None, "HTTP 404"),
    ],
)
def test_responses_map_to_results(
    raw: RawResponse,
    error: str,
    text: str,
    tokens: tuple[int, int],
    retry_after: float | None,
    detail: str,
) -> None:
    mapped = map_response("m1", raw, T0)
    r = mapped.result
    assert (r.ok, r.error, r.text, r.retry_after) == (not error, error, text, retry_after)
    assert (r.prompt_tokens, r.completion_tokens) == tokens
    assert detail in mapped.detail
    assert KEY not in mapped.detail  # an error body quoting the key is never copied


@pytest.mark.parametrize(
    ("exc", "detail"),
    [
        (TimeoutError(), "no response within timeout_s (2.5 s)"),
        (aiohttp.ServerTimeoutError("read"), "no response within timeout_s"),
        (aiohttp.ClientPayloadError("short"), "cut short or malformed (ClientPayloadError)"),
        (aiohttp.ServerDisconnectedError(), "connection error (ServerDisconnectedError"),
        (aiohttp.ClientOSError(111, "refused"), "connection error (ClientOSError"),
        (aiohttp.InvalidURL("x"), "HTTP client error (InvalidURL"),
        (RuntimeError(KEY), "unexpected error (RuntimeError)"),
    ],
)
def test_call_failures_map_to_provider_error_naming_what_went_wrong(
    exc: BaseException, detail: str
) -> None:
    mapped = map_exception("m1", exc, timeout_s=2.5)
    assert (mapped.result.ok, mapped.result.error) == (False, "provider_error")
    assert detail in mapped.detail
    assert KEY not in mapped.detail


def test_the_context_keeps_the_last_turns_of_each_customer_at_the_bound_and_one_past() -> None:
    window = ContextWindow(turns=4, customers=2)
    window.record(ALICE, "u1", "a1")
    window.record(ALICE, "u2", "a2")  # exactly 4 turns: all kept
    assert window.history(ALICE) == (
        ("user", "u1"),
        ("assistant", "a1"),
        ("user", "u2"),
        ("assistant", "a2"),
    )
    window.record(ALICE, "u3", "a3")  # one exchange past: the oldest goes
    assert window.history(ALICE)[0] == ("user", "u2")
    assert len(window.history(ALICE)) == 4


def test_the_context_keeps_the_most_recently_used_customers_and_counts_evictions() -> None:
    window = ContextWindow(turns=2, customers=2)
    window.record(ALICE, "a", "b")
    window.record(BOB, "c", "d")  # at the bound: both kept
    assert (len(window), window.evictions) == (2, 0)
    window.history(ALICE)  # reading makes Alice the most recent
    window.record("+15550000003", "e", "f")  # one past: Bob, least recently used, goes
    assert (len(window), window.evictions) == (2, 1)
    assert window.history(BOB) == ()
    assert window.history(ALICE) == (("user", "a"), ("assistant", "b"))


def test_a_zero_context_keeps_nothing() -> None:
    for window in (ContextWindow(turns=0, customers=5), ContextWindow(turns=4, customers=0)):
        window.record(ALICE, "a", "b")
        assert (window.history(ALICE), len(window)) == ((), 0)


def test_the_payload_is_system_then_history_then_the_user_text() -> None:
    opts = parse_options("oa", {"base_url": "http://h", "model": "m", "no_auth": True})
    body = json.loads(build_payload(opts, [("user", "u1"), ("assistant", "a1")], "now"))
    assert body == {
        "model": "m",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "now"},
        ],
    }
    bare = parse_options(
        "oa",
        {
            "base_url": "http://h",
            "model": "m",
            "no_auth": True,
            "system_prompt": "",
            "temperature": 0,
        },
    )
    body = json.loads(build_payload(bare, [], "x"))
    assert (body["messages"], body["temperature"]) == ([{"role": "user", "content": "x"}], 0.0)


# -- against the fake server -------------------------------------------------------------


def test_a_call_sends_model_messages_max_tokens_and_the_bearer_and_counts_tokens(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider]
) -> None:
    provider = build(max_tokens=64, temperature=0.3, system_prompt="Be terse.")
    provider.start(req("m1", text="what time is it?"), time.time())
    assert provider.in_flight == 1
    assert provider.next_due() is not None
    (mapped,) = results(provider)
    assert mapped.result == mapped.result.__class__(
        message_id="m1",
        ok=True,
        text="reply to: what time is it?",
        prompt_tokens=6,
        completion_tokens=6,
    )
    (sent,) = fake.requests
    assert (sent.model, sent.max_tokens, sent.temperature, sent.bearer_ok) == (
        "gpt-test",
        64,
        0.3,
        True,
    )
    assert sent.messages == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "what time is it?"},
    ]
    stats = provider.stats()
    assert (stats["calls"], stats["ok"], stats["errors"]) == (1, 1, 0)
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (6, 6)
    assert (provider.in_flight, provider.next_due()) == (0, None)


def test_a_customers_earlier_turns_go_with_the_next_request_and_no_one_elses(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider]
) -> None:
    provider = build()
    provider.start(req("m1", ALICE, "my name is Alice"), time.time())
    provider.start(req("m2", BOB, "my name is Bob"), time.time())
    results(provider, 2)
    provider.start(req("m3", ALICE, "what is my name?"), time.time())
    results(provider)
    last = fake.requests[-1].messages
    assert [m["content"] for m in last[1:]] == [
        "my name is Alice",
        "reply to: my name is Alice",
        "what is my name?",
    ]
    assert provider.history(ALICE)[-1] == ("assistant", "reply to: what is my name?")
    assert len(provider.history(BOB)) == 2


def test_usage_left_out_by_the_server_counts_no_tokens(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider]
) -> None:
    fake.usage = False
    provider = build()
    provider.start(req("m1"), time.time())
    (mapped,) = results(provider)
    assert mapped.result.ok
    assert (mapped.result.prompt_tokens, provider.stats()["prompt_tokens"]) == (0, 0)


@pytest.mark.parametrize(
    ("program", "error", "detail"),
    [
        (lambda f: f.fail(429, retry_after="7"), "rate_limited", "HTTP 429: retry after 7 s"),
        (lambda f: f.fail(500), "provider_error", "HTTP 500 server error"),
        (lambda f: f.fail(503), "provider_error", "HTTP 503 server error"),
        (lambda f: f.fail(400), "api_error:400", "HTTP 400 (type=fake_error, code=fake)"),
        (lambda f: f.fail(404), "api_error:404", "HTTP 404"),
        (lambda f: setattr(f, "api_key", "sk-other"), "api_error:401", "code=invalid_api_key"),
        (lambda f: f.hang(), "provider_error", "no response within timeout_s (0.3 s)"),
        (lambda f: f.truncate(), "provider_error", "cut short"),
        (lambda f: f.not_json(), "provider_error", "malformed JSON body"),
        (lambda f: f.empty_choices(), "provider_error", "no choices in the response"),
        (lambda f: f.null_content(), "provider_error", "empty or missing"),
        (lambda f: f.huge(100_000), "provider_error", "over max_response_bytes (4096)"),
        (lambda f: f.huge(100_000, chunked=True), "provider_error", "max_response_bytes (4096)"),
    ],
)
def test_each_server_failure_maps_to_its_result_and_keeps_no_context(
    fake: FakeOpenAI,
    build: Callable[..., OpenAIProvider],
    program: Callable[[FakeOpenAI], None],
    error: str,
    detail: str,
) -> None:
    provider = build(timeout_s=0.3, max_response_bytes=4096)
    program(fake)
    provider.start(req("m1"), time.time())
    (mapped,) = results(provider)
    assert (mapped.result.ok, mapped.result.error) == (False, error)
    assert detail in mapped.detail
    assert (mapped.result.retry_after is not None) == (error == "rate_limited")
    assert provider.history(ALICE) == ()
    stats = provider.stats()
    assert (stats["errors"], stats["rate_limited"]) == (1, int(error == "rate_limited"))


def test_a_refused_connection_is_a_provider_error(build: Callable[..., OpenAIProvider]) -> None:
    provider = build(base_url=f"http://127.0.0.1:{free_port()}/v1")
    provider.start(req("m1"), time.time())
    (mapped,) = results(provider)
    assert mapped.result.error == "provider_error"
    assert "connection error" in mapped.detail


def test_limits_duplicates_cancel_and_close(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider]
) -> None:
    fake.hang(times=None)
    provider = build(max_in_flight=2)
    provider.start(req("m1"), time.time())
    with pytest.raises(ValueError, match="a call for 'm1' is already in flight"):
        provider.start(req("m1"), time.time())
    provider.start(req("m2"), time.time())
    with pytest.raises(
        InFlightLimitError, match=r"in-flight limit \(2\) reached; cannot start 'm3'"
    ):
        provider.start(req("m3"), time.time())
    assert provider.cancel("m1")
    assert not provider.cancel("m1")
    provider.start(req("m1"), time.time())  # the same id again, on a fresh call
    wait_for(lambda: fake.in_flight == 2, deadline_s=5, what="the cancelled request to end")
    assert provider.poll(time.time()) == []
    assert provider.stats()["cancelled"] == 1
    provider.close()
    assert provider.in_flight == 0
    with pytest.raises(ProviderClosedError, match="provider 'oa' is closed"):
        provider.start(req("m4"), time.time())


def test_close_leaves_no_thread_even_after_a_name_lookup(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider]
) -> None:
    before = set(threading.enumerate())
    provider = build(base_url=f"http://localhost:{fake.port}/v1")  # resolver threads too
    provider.start(req("m1"), time.time())
    assert results(provider)[0].result.ok
    assert [t.name for t in set(threading.enumerate()) - before if t.name == "openai-oa"]
    provider.close()
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_a_thousand_calls_against_one_second_latency_are_all_in_flight_together(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider]
) -> None:
    # Each answer takes 3 s: 500 calls at once at the fake need only ~170 calls a second to
    # leave the provider, a small fraction of its pace even on a busy machine.
    fake.latency_s = 3.0
    provider = build(max_in_flight=1000)
    now = time.time()
    for i in range(1000):
        provider.start(req(f"m{i}", customer=f"+1555{i:07d}", deadline=now + 60), now)
    done = results(provider, 1000, deadline_s=45)
    assert all(m.result.ok for m in done)
    assert fake.peak >= 500  # one pooled session held them at once, not one by one
    assert provider.stats()["context_customers"] == 1000


def test_the_key_appears_in_no_log_result_detail_or_error(
    fake: FakeOpenAI, build: Callable[..., OpenAIProvider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{level} {message} {extra} {exception}")
    seen: list[str] = []
    try:
        provider = build(timeout_s=0.3)
        dead = build(base_url=f"http://127.0.0.1:{free_port()}/v1")
        fake.fail(500)
        fake.hang()
        fake.truncate()
        for i in range(4):  # 500, hang, truncated, ok
            provider.start(req(f"m{i}"), time.time())
        seen += [repr(m) for m in results(provider, 4)]
        fake.api_key = "sk-other"  # the fake's 401 message quotes the key it was sent
        provider.start(req("m9"), time.time())
        dead.start(req("m10"), time.time())
        seen += [repr(m) for m in results(provider) + results(dead)]
        assert fake.requests[-1].bearer_ok is False
        seen += [repr(provider), repr(provider.options), str(provider.stats())]
        provider.close()
        with pytest.raises(ProviderClosedError) as info:
            provider.start(req("m11"), time.time())
        seen += [str(info.value), repr(info.value)]
    finally:
        logger.remove(sink)
    assert any("api_error:401" in s for s in seen)
    assert lines, "failures were logged"
    for text in [*seen, *lines, caplog.text]:
        assert KEY not in text


# -- through the pool core ---------------------------------------------------------------


@pytest.fixture
def pool(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., PoolCore]]:
    monkeypatch.setenv(ENV, KEY)
    cores: list[PoolCore] = []

    def make(echo_latency_s: float = 0.0, **options: Scalar) -> PoolCore:
        core = PoolCore(
            max_providers=5, cooldown_s=1.0, allowed_fails=1, capacity=100, rng=random.Random(1)
        )
        cores.append(core)
        now = time.time()
        assert core.add_provider(spec(fake.base_url, "openai", 10, options), now).ok
        echo = ProviderSpec(name="echo", kind="echo", options={"latency_s": echo_latency_s})
        assert core.add_provider(echo, now).ok
        return core

    yield make
    for core in cores:
        core.close()


def drive(core: PoolCore, mid: str, *, offset: float = 0.0, deadline_s: float = 10) -> PoolResult:
    """Poll ``core`` on the wall clock (shifted by ``offset``) until ``mid`` has a result."""
    got: dict[str, PoolResult] = {}

    def done() -> bool:
        got.update((r.message_id, r) for r in core.poll(time.time() + offset))
        return mid in got

    wait_for(done, deadline_s=deadline_s, what=f"the pool's result for {mid}")
    return got[mid]


def drive_on_a_clock(core: PoolCore, mid: str, now: float) -> tuple[PoolResult, float]:
    """Poll ``core`` on a fake clock until ``mid`` has a result; return it and the time.

    The clock jumps to the core's next wakeup only while no HTTP call is in flight (those
    are real, awaited in real time), so what the core decides depends on the fake time
    alone, not on how long a busy machine took to answer.
    """
    got: dict[str, PoolResult] = {}

    def done() -> bool:
        nonlocal now
        got.update((r.message_id, r) for r in core.poll(now))
        if mid in got:
            return True
        busy = any(s.get("in_flight", 0) for s in core.provider_stats().values())
        wakeup = core.next_wakeup()
        if not busy and wakeup is not None:
            now = max(now, wakeup)
        return False

    wait_for(done, deadline_s=10, what=f"the pool's result for {mid}")
    return got[mid], now


def test_a_429_fails_over_and_benches_the_provider_until_its_retry_after(
    fake: FakeOpenAI, pool: Callable[..., PoolCore]
) -> None:
    core = pool()
    fake.fail(429, retry_after="30")
    t = time.time()
    assert core.submit([req("m1", deadline=t + 15)], t) == []
    first = drive(core, "m1")
    assert isinstance(first, AIReply)  # a reply, so within the deadline (else a timeout)
    assert first.provider == "echo"
    state = {s.name: s for s in core.providers(time.time())}["openai"]
    assert t + 30 <= state.cooldown_until <= time.time() + 30
    # Before Retry-After passes the provider is skipped: the fake sees no second request.
    now = time.time()
    core.submit([req("m2", deadline=now + 15)], now)
    second = drive(core, "m2")
    assert isinstance(second, AIReply)
    assert second.provider == "echo"
    assert fake.request_count == 1
    # After it, the provider is chosen again (the pool's clock moved past the cooldown).
    later = time.time() + 31
    core.submit([req("m3", deadline=later + 5)], later)
    third = drive(core, "m3", offset=31)
    assert isinstance(third, AIReply)
    assert (third.provider, fake.request_count) == ("openai", 2)


def test_a_hanging_server_times_out_and_fails_over_within_the_one_deadline(
    fake: FakeOpenAI, pool: Callable[..., PoolCore]
) -> None:
    core = pool(timeout_s=0.5)
    fake.hang(times=None)
    t = time.time()
    core.submit([req("m1", deadline=t + 15)], t)
    reply = drive(core, "m1")
    assert isinstance(reply, AIReply)  # a reply, so within the deadline (else a timeout)
    assert reply.provider == "echo"
    assert t + 0.5 <= time.time()  # only after the provider's timeout
    state = {s.name: s for s in core.providers()}["openai"]
    assert (state.failures, state.calls) == (1, 1)


def test_the_fallback_does_not_restart_the_deadline(
    fake: FakeOpenAI, pool: Callable[..., PoolCore]
) -> None:
    core = pool(echo_latency_s=2.0, timeout_s=0.5)
    fake.hang(times=None)
    t = time.time()
    core.submit([req("m1", deadline=t + 1.5)], t)
    failure, ended_at = drive_on_a_clock(core, "m1", t)
    # On the pool's clock openai times out (after 0.5 s of real time) before any time
    # passed; echo would answer at t + 2; the one deadline is t + 1.5.
    assert isinstance(failure, AIFailure)
    assert (failure.reason, failure.provider) == ("timeout", "echo")
    assert ended_at == pytest.approx(t + 1.5)
