"""Tests for the AI pool's pure core and its providers, driven by a hand-moved epoch clock."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.pool import (
    EchoProvider,
    InFlightLimitError,
    PoolCore,
    PoolResult,
    ProviderClosedError,
    ProviderResult,
    UnknownKindError,
    make_provider,
)
from protocols import MAX_TEXT_LEN, AIFailure, AIReply, AIRequest, ProviderSpec, Scalar

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
MIDNIGHT = 1_700_006_400.0  # the next UTC midnight after T0


def echo(
    name: str, priority: int = 0, daily_limit: int | None = None, **options: float
) -> ProviderSpec:
    return ProviderSpec(
        name=name, kind="echo", priority=priority, daily_limit=daily_limit, options=dict(options)
    )


def fake(name: str, priority: int = 0, daily_limit: int | None = None) -> ProviderSpec:
    return ProviderSpec(name=name, kind="fake", priority=priority, daily_limit=daily_limit)


def req(mid: str, deadline: float = T0 + 120, text: str = "hi") -> AIRequest:
    return AIRequest(
        message_id=mid, account_id="acct-1", customer_id="+15550001", text=text, deadline=deadline
    )


def pool(
    *specs: ProviderSpec,
    capacity: int = 1000,
    max_providers: int = 50,
    allowed_fails: int = 1,
    factory: Fakes | None = None,
    now: float = T0,
) -> PoolCore:
    core = PoolCore(
        max_providers=max_providers,
        cooldown_s=5.0,
        allowed_fails=allowed_fails,
        capacity=capacity,
        rng=random.Random(7),
        provider_factory=factory if factory is not None else make_provider,
    )
    report = core.load(specs, now)
    assert report.refused == ()
    return core


def by_id(results: list[PoolResult]) -> dict[str, PoolResult]:
    return {r.message_id: r for r in results}


def replied_by(result: PoolResult) -> str:
    assert isinstance(result, AIReply), result
    return result.provider


def failed(result: PoolResult, reason: str) -> AIFailure:
    assert isinstance(result, AIFailure), result
    assert result.reason == reason, result
    return result


# -- a scripted provider ------------------------------------------------------------------

Behaviour = Callable[[AIRequest, float], tuple[float, ProviderResult]]


def ok(latency: float = 0.0, text: str | None = None) -> Behaviour:
    def run(request: AIRequest, now: float) -> tuple[float, ProviderResult]:
        reply = f"ok: {request.text}" if text is None else text
        return latency, ProviderResult(message_id=request.message_id, ok=True, text=reply)

    return run


def fail(latency: float = 0.0, retry_after: float | None = None) -> Behaviour:
    def run(request: AIRequest, now: float) -> tuple[float, ProviderResult]:
        result = ProviderResult(
            message_id=request.message_id, ok=False, error="provider_error", retry_after=retry_after
        )
        return latency, result

    return run


class FakeProvider:
    """A provider whose every call does what ``behaviour`` says; records its calls."""

    def __init__(self, name: str, behaviour: Behaviour, max_in_flight: int) -> None:
        self.name = name
        self.behaviour = behaviour
        self.max_in_flight = max_in_flight
        self.calls: dict[str, tuple[float, ProviderResult]] = {}
        self.started: list[tuple[str, float]] = []
        self.forget_on_cancel = True
        self.closed = False
        self.on_start: Callable[[FakeProvider, AIRequest, float], None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self.calls)

    def start(self, request: AIRequest, now: float) -> None:
        if len(self.calls) >= self.max_in_flight:
            raise InFlightLimitError(f"{self.name}: full")
        if self.on_start is not None:
            self.on_start(self, request, now)
        latency, result = self.behaviour(request, now)
        self.calls[request.message_id] = (now + latency, result)
        self.started.append((request.message_id, now))

    def poll(self, now: float) -> list[ProviderResult]:
        done = sorted((due, mid) for mid, (due, _) in self.calls.items() if due <= now)
        return [self.calls.pop(mid)[1] for _, mid in done]

    def next_due(self) -> float | None:
        return min((due for due, _ in self.calls.values()), default=None)

    def cancel(self, message_id: str) -> bool:
        if not self.forget_on_cancel:
            return False  # a call it cannot stop: its result still comes
        return self.calls.pop(message_id, None) is not None

    def close(self) -> None:
        self.closed = True
        self.calls.clear()


@dataclass
class Fakes:
    """Provider factory: builds a FakeProvider per spec, with the behaviour set by name."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    built: list[FakeProvider] = field(default_factory=list)
    on_start: Callable[[FakeProvider, AIRequest, float], None] | None = None

    def __call__(
        self, spec: ProviderSpec, rng: random.Random, *, max_in_flight: int = 10_000
    ) -> FakeProvider:
        provider = FakeProvider(spec.name, self.behaviours.get(spec.name, ok()), max_in_flight)
        provider.on_start = self.on_start
        self.built.append(provider)
        return provider

    def live(self, name: str) -> FakeProvider:
        return [p for p in self.built if p.name == name][-1]


# -- the echo provider --------------------------------------------------------------------


def test_echo_replies_with_its_text_and_counts_words_as_tokens() -> None:
    e = EchoProvider(echo("e"), random.Random(1))
    e.start(req("m1", text="hello there"), T0)
    (result,) = e.poll(T0)
    assert result == ProviderResult(
        message_id="m1", ok=True, text="echo: hello there", prompt_tokens=2, completion_tokens=3
    )


def test_echo_truncates_its_reply_to_the_whatsapp_text_limit() -> None:
    e = EchoProvider(echo("e"), random.Random(1))
    e.start(req("m1", text="x" * MAX_TEXT_LEN), T0)
    (result,) = e.poll(T0)
    assert len(result.text) == MAX_TEXT_LEN
    assert result.text.startswith("echo: xxx")


def test_an_echo_call_completes_exactly_latency_seconds_after_it_started() -> None:
    e = EchoProvider(echo("e", latency_s=1.0), random.Random(1))
    e.start(req("m1"), T0)
    e.start(req("m2"), T0 + 0.5)
    assert (e.in_flight, e.next_due()) == (2, T0 + 1.0)
    assert e.poll(T0 + 0.999) == []
    assert [r.message_id for r in e.poll(T0 + 1.0)] == ["m1"]
    assert e.next_due() == T0 + 1.5
    assert [r.message_id for r in e.poll(T0 + 9)] == ["m2"]
    assert (e.in_flight, e.next_due()) == (0, None)


def test_echo_failures_are_drawn_from_the_injected_rng_when_the_call_starts() -> None:
    def outcomes(seed: int) -> list[bool]:
        e = EchoProvider(echo("e", failure_rate=0.5), random.Random(seed))
        for i in range(40):
            e.start(req(f"m{i}"), T0)
        return [r.ok for r in e.poll(T0)]

    assert outcomes(3) == outcomes(3)
    assert 0 < outcomes(3).count(False) < 40
    e = EchoProvider(echo("e", failure_rate=1.0), random.Random(3))
    e.start(req("m1"), T0)
    assert e.poll(T0) == [ProviderResult(message_id="m1", ok=False, error="provider_error")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"latency_s": -1},
            "provider 'e': option 'latency_s' must be a finite number >= 0, got -1",
        ),
        (
            {"latency_s": "1"},
            "provider 'e': option 'latency_s' must be a finite number >= 0, got '1'",
        ),
        (
            {"latency_s": None},
            "provider 'e': option 'latency_s' must be a finite number >= 0, got None",
        ),
        (
            {"failure_rate": 1.5},
            "provider 'e': option 'failure_rate' must be a finite number >= 0 and <= 1, got 1.5",
        ),
        (
            {"failure_rate": True},
            "provider 'e': option 'failure_rate' must be a finite number >= 0 and <= 1, got True",
        ),
        (
            {"latency": 1},
            "provider 'e': unknown option 'latency' = 1 for kind 'echo' "
            "(known: failure_rate, jitter_s, latency_s)",
        ),
    ],
)
def test_echo_refuses_bad_options_naming_provider_key_rule_and_value(
    options: dict[str, Scalar], message: str
) -> None:
    spec = ProviderSpec(name="e", kind="echo", options=options)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        EchoProvider(spec, random.Random(1))


def test_echo_accepts_max_in_flight_calls_and_refuses_one_more() -> None:
    e = EchoProvider(echo("e", latency_s=1.0), random.Random(1), max_in_flight=3)
    for i in range(3):
        e.start(req(f"m{i}"), T0)
    with pytest.raises(InFlightLimitError, match=r"provider 'e': in-flight limit \(3\) reached"):
        e.start(req("m3"), T0)
    assert e.cancel("m0") is True
    e.start(req("m3"), T0)
    assert e.in_flight == 3


def test_a_cancelled_echo_call_is_never_returned_and_frees_its_slot() -> None:
    e = EchoProvider(echo("e", latency_s=1.0), random.Random(1))
    e.start(req("m1"), T0)
    e.start(req("m2"), T0 + 0.5)
    assert e.cancel("m1") is True
    assert e.cancel("m1") is False
    assert e.next_due() == T0 + 1.5
    e.start(req("m1"), T0 + 0.7)  # the same id again is a new call
    assert [r.message_id for r in e.poll(T0 + 2)] == ["m2", "m1"]


def test_cancelled_echo_calls_do_not_accumulate_in_its_timer_heap() -> None:
    e = EchoProvider(echo("e", latency_s=100.0), random.Random(1))
    for i in range(5000):
        e.start(req(f"m{i}"), T0)
        e.cancel(f"m{i}")
    assert len(e._due) <= 64  # private: the bound on memory is what is tested


def test_echo_refuses_a_second_call_for_an_id_in_flight_and_any_call_once_closed() -> None:
    e = EchoProvider(echo("e", latency_s=1.0), random.Random(1))
    e.start(req("m1"), T0)
    with pytest.raises(ValueError, match="'m1' is already in flight"):
        e.start(req("m1"), T0)
    e.close()
    assert (e.in_flight, e.next_due(), e.poll(T0 + 5)) == (0, None, [])
    with pytest.raises(ProviderClosedError, match="provider 'e' is closed"):
        e.start(req("m2"), T0)


def test_make_provider_names_the_unknown_kind_and_the_known_ones() -> None:
    with pytest.raises(
        UnknownKindError, match=r"^unknown provider kind 'x' \(known: echo, openai\)$"
    ):
        make_provider(ProviderSpec(name="p", kind="x"), random.Random(1))
    assert isinstance(make_provider(echo("e"), random.Random(1)), EchoProvider)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ok": True, "error": "x"}, "is ok with error 'x'"),
        ({"ok": False}, "is not ok with error ''"),
        ({"ok": False, "error": "rate_limited", "retry_after": -1.0}, "retry_after must be"),
    ],
)
def test_a_provider_result_refuses_inconsistent_fields(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ProviderResult(message_id="m1", **fields)  # type: ignore[arg-type]


# -- choosing and failing over ------------------------------------------------------------


def test_the_highest_priority_provider_serves_first() -> None:
    core = pool(echo("low", 1), echo("high", 9), echo("mid", 5))
    assert core.loaded == ("high", "mid", "low")
    assert core.submit([req("m1")], T0) == []
    (reply,) = core.poll(T0)
    assert reply == AIReply(
        message_id="m1", provider="high", text="echo: hi", prompt_tokens=1, completion_tokens=2
    )
    assert core.stats()["calls"] == 1


def test_an_error_fails_over_to_the_next_provider_within_the_same_poll() -> None:
    core = pool(echo("a", 2, failure_rate=1.0), echo("b", 1))
    core.submit([req("m1")], T0)
    (reply,) = core.poll(T0)
    assert replied_by(reply) == "b"
    stats = core.stats()
    assert (stats["call_errors"], stats["failovers"], stats["replies"]) == (1, 1, 1)
    a, _ = core.providers(T0)
    assert (a.failures, a.cooldown_until) == (1, T0 + 5.0)


def test_one_message_never_tries_the_same_provider_twice() -> None:
    fakes = Fakes({"a": fail(), "b": fail(), "c": fail()})
    # allowed_fails=10: none cools down, so only the per-message tried set keeps them apart
    core = pool(fake("a", 3), fake("b", 2), fake("c", 1), allowed_fails=10, factory=fakes)
    core.submit([req("m1")], T0)
    (failure,) = core.poll(T0)
    f = failed(failure, "provider_error")
    assert (f.provider, f.detail) == ("c", "all 3 providers failed (last 'c': provider_error)")
    assert [p.started for p in fakes.built] == [[("m1", T0)]] * 3
    stats = core.stats()
    assert (stats["calls"], stats["failovers"], stats["provider_errors"]) == (3, 2, 1)


def test_a_fallback_keeps_the_first_deadline() -> None:
    fakes = Fakes({"a": fail(latency=1.0), "b": ok(latency=1.0)})
    core = pool(fake("a", 2), fake("b", 1), factory=fakes)
    core.submit([req("m1", deadline=T0 + 1.5)], T0)
    assert core.poll(T0 + 1.0) == []  # a failed; b started at T0 + 1, due T0 + 2
    assert core.next_wakeup() == T0 + 1.5
    (failure,) = core.poll(T0 + 1.5)
    assert failed(failure, "timeout").provider == "b"
    assert fakes.live("b").in_flight == 0  # the call was cancelled


def test_a_failed_provider_cools_down_then_serves_again() -> None:
    fakes = Fakes({"a": fail(), "b": ok()})
    core = pool(fake("a", 2), fake("b", 1), factory=fakes)
    core.submit([req("m1")], T0)
    assert replied_by(core.poll(T0)[0]) == "b"
    fakes.live("a").behaviour = ok()
    core.submit([req("m2")], T0 + 4.999)
    assert replied_by(core.poll(T0 + 4.999)[0]) == "b"
    core.submit([req("m3")], T0 + 5.0)
    assert replied_by(core.poll(T0 + 5.0)[0]) == "a"


def test_an_empty_reply_counts_as_a_failure_and_fails_over() -> None:
    fakes = Fakes({"a": ok(text=""), "b": ok()})
    core = pool(fake("a", 2), fake("b", 1), factory=fakes)
    core.submit([req("m1")], T0)
    assert replied_by(core.poll(T0)[0]) == "b"
    assert core.stats()["call_errors"] == 1


def test_a_used_up_quota_moves_on_then_waits_for_utc_midnight_if_the_deadline_allows() -> None:
    now = MIDNIGHT - 60
    core = pool(echo("a", 2, daily_limit=1), echo("b", 1, daily_limit=1), now=now)
    assert core.submit([req("m1", deadline=now + 10), req("m2", deadline=now + 10)], now) == []
    assert [replied_by(r) for r in core.poll(now)] == ["a", "b"]
    (failure,) = core.submit([req("short", deadline=MIDNIGHT)], now)
    assert failed(failure, "no_provider").detail == (
        "no provider available: 2 over daily limit; none frees up before the deadline"
    )
    assert core.submit([req("long", deadline=MIDNIGHT + 1)], now) == []
    assert (core.stats()["parked"], core.next_wakeup()) == (1, MIDNIGHT)
    assert core.poll(MIDNIGHT - 0.001) == []
    (reply,) = core.poll(MIDNIGHT)
    assert (reply.message_id, replied_by(reply)) == ("long", "a")
    assert core.stats()["parked"] == 0


def test_a_retry_after_longer_than_the_cooldown_is_honoured() -> None:
    fakes = Fakes({"a": fail(retry_after=30.0), "b": ok()})
    core = pool(fake("a", 2), fake("b", 1), factory=fakes)
    core.submit([req("m1")], T0)
    assert replied_by(core.poll(T0)[0]) == "b"
    fakes.live("a").behaviour = ok()
    core.submit([req("m2")], T0 + 10)  # past the 5 s cooldown, inside Retry-After
    assert replied_by(core.poll(T0 + 10)[0]) == "b"
    core.submit([req("m3")], T0 + 30)
    assert replied_by(core.poll(T0 + 30)[0]) == "a"


def test_a_request_waits_for_retry_after_only_when_it_ends_before_the_deadline() -> None:
    fakes = Fakes({"a": fail(retry_after=30.0)})
    core = pool(fake("a"), factory=fakes)
    core.submit([req("m1")], T0)
    assert failed(core.poll(T0)[0], "provider_error").provider == "a"
    fakes.live("a").behaviour = ok()
    (at_deadline,) = core.submit([req("m2", deadline=T0 + 30)], T0 + 1)
    assert failed(at_deadline, "no_provider").detail.startswith("no provider available: 1 cool")
    assert core.submit([req("m3", deadline=T0 + 30.001)], T0 + 1) == []
    assert core.next_wakeup() == T0 + 30
    assert replied_by(core.poll(T0 + 30)[0]) == "a"


def test_adding_a_provider_wakes_the_requests_waiting_for_one() -> None:
    fakes = Fakes({"a": fail(retry_after=30.0), "b": ok()})
    core = pool(fake("a"), factory=fakes)
    core.submit([req("m1")], T0)
    core.poll(T0)
    core.submit([req("m2")], T0 + 1)
    assert core.next_wakeup() == T0 + 30
    assert core.add_provider(fake("b"), T0 + 2).ok
    assert core.next_wakeup() == T0 + 2
    assert replied_by(core.poll(T0 + 2)[0]) == "b"


def test_no_loaded_provider_means_no_provider_at_once() -> None:
    core = pool()
    (failure,) = core.submit([req("m1")], T0)
    assert failed(failure, "no_provider").detail == "no providers loaded"
    assert (core.pending, core.next_wakeup()) == (0, None)


# -- loading and the provider limit -------------------------------------------------------


def test_sixty_specs_load_the_fifty_best_and_name_the_ten_left_out_unbuilt() -> None:
    fakes = Fakes()
    core = pool(factory=fakes)
    report = core.load([fake(f"p{i:02d}", priority=i) for i in range(60)], T0)
    assert len(report.loaded) == 50
    assert report.left_out == tuple(f"p{i:02d}" for i in range(9, -1, -1))
    assert (core.left_out, core.stats()["providers_left_out"]) == (report.left_out, 10)
    assert len(fakes.built) == 50
    assert {p.name for p in fakes.built} == set(report.loaded)


def test_a_load_refuses_unknown_kinds_bad_options_and_repeated_names_and_fills_their_place() -> (
    None
):
    core = pool(max_providers=2)
    report = core.load(
        [
            ProviderSpec(name="x", kind="nope", priority=9),
            ProviderSpec(name="bad", kind="echo", priority=8, options={"latency_s": -1}),
            echo("a", 5),
            echo("a", 4),
            echo("b", 3),
            echo("c", 2),
        ],
        T0,
    )
    assert (report.loaded, report.left_out) == (("a", "b"), ("c",))
    assert [(r.name, r.error) for r in report.refused] == [
        ("a", "duplicate_name"),
        ("x", "unknown_kind"),
        ("bad", "invalid_options"),
    ]
    assert report.refused[1].detail == "unknown provider kind 'nope' (known: echo, openai)"


def test_adding_past_the_limit_leaves_out_the_lower_ranked_and_names_it() -> None:
    fakes = Fakes()
    core = pool(fake("a", 5), fake("b", 3), max_providers=2, factory=fakes)
    result = core.add_provider(fake("low", 1), T0)
    assert (result.ok, result.error) == (False, "provider_limit")
    assert result.detail == (
        "provider 'low' (priority 1) left out: provider limit (2) reached and the lowest "
        "loaded is 'b' (priority 3)"
    )
    assert "low" not in [p.name for p in fakes.built]
    result = core.add_provider(fake("high", 9), T0)
    assert result.ok
    assert result.detail == "loaded provider 'high'; left out 'b': provider limit (2) reached"
    assert core.loaded == ("high", "a")
    assert core.left_out == ("low", "b")
    assert fakes.live("b").closed


def test_adding_an_unknown_kind_or_bad_options_changes_nothing() -> None:
    core = pool(echo("a"))
    result = core.add_provider(ProviderSpec(name="a", kind="nope"), T0)
    assert (result.command, result.ok, result.error) == ("add_provider", False, "unknown_kind")
    assert result.detail == "unknown provider kind 'nope' (known: echo, openai)"
    result = core.add_provider(echo("a", failure_rate=2.0), T0)
    assert (result.ok, result.error) == (False, "invalid_options")
    assert "option 'failure_rate' must be" in result.detail
    core.submit([req("m1")], T0)
    assert replied_by(core.poll(T0)[0]) == "a"


def test_replacing_a_provider_keeps_its_quota_and_lets_its_calls_in_flight_finish() -> None:
    core = pool(echo("a", daily_limit=2, latency_s=1.0))
    core.submit([req("m1")], T0)
    assert core.add_provider(echo("a", daily_limit=2), T0).detail == "replaced provider 'a'"
    assert core.stats()["providers_draining"] == 1
    core.submit([req("m2")], T0)
    replies = by_id(core.poll(T0))
    assert list(replies) == ["m2"]  # the new one has no latency
    (failure,) = core.submit([req("m3", deadline=T0 + 60)], T0)
    assert failed(failure, "no_provider").detail == (
        "no provider available: 1 over daily limit; none frees up before the deadline"
    )
    assert replied_by(core.poll(T0 + 1)[0]) == "a"  # m1, from the replaced provider
    assert core.stats()["providers_draining"] == 0


def test_an_inactive_spec_unloads_the_provider_of_that_name() -> None:
    core = pool(echo("a"), echo("b"))
    inactive = ProviderSpec(name="a", kind="echo", active=False)
    assert core.add_provider(inactive, T0).detail == "provider 'a' inactive: unloaded it"
    assert core.loaded == ("b",)
    assert core.add_provider(inactive, T0).detail == "provider 'a' inactive: not loaded"


def test_removing_a_provider_lets_its_calls_in_flight_finish() -> None:
    core = pool(echo("a", latency_s=1.0))
    core.submit([req("m1")], T0)
    result = core.remove_provider("a", T0)
    assert (result.ok, result.detail) == (
        True,
        "removed provider 'a'; 1 calls in flight finish first",
    )
    assert core.loaded == ()
    assert replied_by(core.poll(T0 + 1)[0]) == "a"
    result = core.remove_provider("a", T0 + 1)
    assert (result.command, result.ok, result.error) == (
        "remove_provider",
        False,
        "unknown_provider",
    )


# -- bounds, deadlines, late replies ------------------------------------------------------


def test_a_thousand_one_second_calls_all_end_in_one_poll_at_exactly_one_second() -> None:
    core = pool(echo("slow", latency_s=1.0))
    assert core.submit([req(f"m{i}") for i in range(1000)], T0) == []
    assert (core.pending, core.next_wakeup()) == (1000, T0 + 1.0)
    assert core.poll(T0 + 0.999) == []
    results = core.poll(T0 + 1.0)
    assert len(results) == 1000
    assert all(replied_by(r) == "slow" for r in results)
    assert (core.pending, core.next_wakeup()) == (0, None)


def test_capacity_holds_exactly_capacity_requests_and_refuses_one_more() -> None:
    fakes = Fakes({"a": ok(latency=1.0)})
    core = pool(fake("a"), capacity=3, factory=fakes)
    assert core.submit([req(f"m{i}") for i in range(3)], T0) == []
    provider = fakes.live("a")
    assert provider.in_flight == provider.max_in_flight == 3  # built with room for capacity
    (failure,) = core.submit([req("m3")], T0)
    assert failed(failure, "capacity").detail == "AI pool capacity (3) reached"
    assert core.stats()["over_capacity"] == 1
    assert len(core.poll(T0 + 1)) == 3
    assert core.submit([req("m4")], T0 + 1) == []


def test_a_deadline_already_passed_fails_with_timeout_at_once() -> None:
    core = pool(echo("a"))
    (failure,) = core.submit([req("m1", deadline=T0)], T0)
    assert failed(failure, "timeout").provider is None
    assert core.stats()["calls"] == 0


def test_a_reply_due_at_the_deadline_is_a_timeout_and_one_due_before_is_a_reply() -> None:
    core = pool(echo("a", latency_s=1.0))
    core.submit([req("late", deadline=T0 + 1.0), req("ok", deadline=T0 + 1.001)], T0)
    results = by_id(core.poll(T0 + 1.0))
    assert failed(results["late"], "timeout").provider == "a"
    assert replied_by(results["ok"]) == "a"
    stats = core.stats()
    assert (stats["timeouts"], stats["late_replies"]) == (1, 0)


def test_a_result_for_a_request_no_longer_pending_is_a_counted_late_reply() -> None:
    fakes = Fakes({"a": ok(latency=10.0)})
    core = pool(fake("a"), factory=fakes)
    fakes.live("a").forget_on_cancel = False
    core.submit([req("m1", deadline=T0 + 1)], T0)
    assert failed(core.poll(T0 + 1)[0], "timeout").provider == "a"
    assert core.next_wakeup() == T0 + 10  # the orphaned call is still collected
    assert core.poll(T0 + 10) == []
    assert core.stats()["late_replies"] == 1


def test_a_provider_full_of_calls_it_could_not_cancel_is_waited_for_not_overfilled() -> None:
    fakes = Fakes({"a": ok(latency=10.0)})
    core = pool(fake("a"), capacity=2, factory=fakes)
    a = fakes.live("a")
    a.forget_on_cancel = False
    core.submit([req("orphan", deadline=T0 + 1)], T0)
    core.poll(T0 + 1)
    core.submit([req("m1"), req("m2")], T0 + 1)  # m1 fills a; m2 must wait for the orphan
    assert (a.in_flight, core.stats()["parked"], core.next_wakeup()) == (2, 1, T0 + 10)
    assert core.poll(T0 + 10) == []
    assert a.started[-1] == ("m2", T0 + 10)
    assert set(by_id(core.poll(T0 + 20))) == {"m1", "m2"}


def test_a_duplicate_of_a_pending_request_is_ignored_and_counted() -> None:
    core = pool(echo("a", latency_s=1.0))
    assert core.submit([req("m1"), req("m1")], T0) == []
    assert core.submit([req("m1")], T0 + 0.5) == []
    assert core.stats()["duplicates"] == 2
    assert [r.message_id for r in core.poll(T0 + 1)] == ["m1"]


def test_cancelled_requests_end_without_a_result_and_their_calls_are_dropped() -> None:
    fakes = Fakes({"a": ok(latency=1.0)})
    core = pool(fake("a"), factory=fakes)
    core.submit([req("m1"), req("m2")], T0)
    assert core.cancel(["m1", "unknown"]) == 1
    assert fakes.live("a").in_flight == 1
    assert [r.message_id for r in core.poll(T0 + 1)] == ["m2"]
    stats = core.stats()
    assert (stats["cancelled"], stats["late_replies"], stats["pending"]) == (1, 0, 0)


def test_closing_returns_the_pending_ids_and_refuses_new_requests() -> None:
    fakes = Fakes({"a": ok(latency=1.0)})
    core = pool(fake("a"), factory=fakes)
    core.submit([req("m1")], T0)
    assert core.close() == ("m1",)
    assert fakes.live("a").closed
    assert (
        failed(core.submit([req("m2")], T0)[0], "shutting_down").detail == "the AI pool is closed"
    )
    assert (core.poll(T0 + 1), core.next_wakeup(), core.pending) == ([], None, 0)


def test_finished_requests_leave_no_unbounded_trail_of_timers() -> None:
    core = pool(echo("a"))
    for i in range(5000):
        core.submit([req(f"m{i}", deadline=T0 + 3600)], T0)
        core.poll(T0)
    assert len(core._deadlines) <= 64  # private: the bound on memory is what is tested
    assert core.next_wakeup() is None


def test_the_core_refuses_a_capacity_below_one() -> None:
    with pytest.raises(ValueError, match="capacity must be an int >= 1, got 0"):
        pool(capacity=0)


# -- the property: exactly one result per request, in time, from a usable provider ---------


@dataclass(frozen=True)
class Kind:
    latency: float
    failure_rate: float
    retry_after: float | None


kinds = st.builds(
    Kind,
    latency=st.sampled_from([0.0, 0.5, 2.0]),
    failure_rate=st.sampled_from([0.0, 0.5, 1.0]),
    retry_after=st.sampled_from([None, 3.0, 30.0]),
)
steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.25, 1.0, 7.0]),  # advance the clock by
        st.lists(st.sampled_from([0.0, 0.5, 3.0, 40.0]), max_size=4),  # deadlines from now
        st.booleans(),  # cancel the oldest pending request
    ),
    max_size=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    providers=st.lists(
        st.tuples(st.integers(0, 3), st.none() | st.integers(1, 3), kinds), min_size=1, max_size=4
    ),
    steps=steps,
    start=st.sampled_from([T0, MIDNIGHT - 20]),
    capacity=st.integers(1, 6),
    allowed_fails=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_every_request_ends_exactly_once_in_time_from_a_usable_provider(
    providers: list[tuple[int, int | None, Kind]],
    steps: list[tuple[float, list[float], bool]],
    start: float,
    capacity: int,
    allowed_fails: int,
    seed: int,
) -> None:
    rng = random.Random(seed)

    def behaviour(kind: Kind) -> Behaviour:
        def run(request: AIRequest, now: float) -> tuple[float, ProviderResult]:
            if rng.random() < kind.failure_rate:
                return fail(kind.latency, kind.retry_after)(request, now)
            return ok(kind.latency)(request, now)

        return run

    started: dict[str, set[str]] = {}

    def check_start(provider: FakeProvider, request: AIRequest, now: float) -> None:
        tried = started.setdefault(request.message_id, set())
        assert provider.name not in tried, "a provider tried twice for one message"
        tried.add(provider.name)
        (state,) = [s for s in core.providers(now) if s.name == provider.name]
        assert state.cooldown_until <= now, "a cooling provider was called"
        assert state.daily_limit is None or state.usage_today <= state.daily_limit
        assert now < request.deadline

    specs = [fake(f"p{i}", prio, limit) for i, (prio, limit, _) in enumerate(providers)]
    fakes = Fakes(
        {f"p{i}": behaviour(k) for i, (_, _, k) in enumerate(providers)}, on_start=check_start
    )
    core = PoolCore(
        max_providers=3,
        cooldown_s=5.0,
        allowed_fails=allowed_fails,
        capacity=capacity,
        rng=rng,
        provider_factory=fakes,
    )
    core.load(specs, start)

    now = start
    deadlines: dict[str, float] = {}
    ended: dict[str, tuple[float, PoolResult]] = {}
    cancelled: set[str] = set()

    def record(results: list[PoolResult], at: float) -> None:
        for r in results:
            mid = r.message_id
            assert mid not in ended, f"two results for {mid}"
            assert mid not in cancelled
            ended[mid] = (at, r)
            if isinstance(r, AIFailure) and r.reason == "timeout":
                assert at == deadlines[mid]  # driven through next_wakeup: exactly on time
            else:
                assert at < deadlines[mid], r

    def advance(to: float) -> None:
        nonlocal now
        for _ in range(1000):
            wake = core.next_wakeup()
            if wake is None or wake > to:
                break
            now = max(now, wake)
            record(core.poll(now), now)
        else:
            pytest.fail("next_wakeup never moved past " + repr(to))
        now = to

    n = 0
    for dt, offsets, cancel_one in steps:
        advance(now + dt)
        batch = []
        for off in offsets:
            n += 1
            deadlines[f"m{n}"] = now + off
            batch.append(req(f"m{n}", deadline=now + off))
        record(core.submit(batch, now), now)
        if cancel_one:
            open_ids = [m for m in deadlines if m not in ended and m not in cancelled]
            if open_ids and core.cancel(open_ids[:1]) == 1:
                cancelled.add(open_ids[0])
    advance(now + 100_000)
    assert (core.pending, core.next_wakeup()) == (0, None)
    assert set(ended) | cancelled == set(deadlines)
    stats = core.stats()
    assert stats["replies"] + stats["failures"] == len(ended)
    assert stats["late_replies"] == 0


def test_echo_jitter_spreads_completions_between_latency_and_latency_plus_jitter() -> None:
    spec = ProviderSpec(name="e", kind="echo", options={"latency_s": 1.0, "jitter_s": 0.5})
    provider = EchoProvider(spec, random.Random(7))
    for i in range(200):
        provider.start(
            AIRequest(
                message_id=f"m{i}", account_id="a", customer_id="1234567", text="t", deadline=100.0
            ),
            0.0,
        )
    assert provider.poll(0.999) == []
    done_early = len(provider.poll(1.25))
    done_late = len(provider.poll(1.5))
    assert 0 < done_early < 200  # spread, not all at once
    assert done_early + done_late == 200  # and all within latency + jitter
