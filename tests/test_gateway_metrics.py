"""The gateway's metrics without a server: stats to families, the counters, the submit clock.

Expositions are read back with ``prometheus_client``'s own parsers, which refuse text
that breaks the format.
"""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from apps.gateway import GatewayCounters, GatewayMetrics
from apps.gateway.metrics import LATENCY_BUCKETS, SubmitTimes, engine_families
from protocols import ActorStats, StatsReply

STATS = StatsReply(
    in_flight=3,
    oldest_in_flight_s=1.5,
    router_generation=1,
    counters={
        "outcome.replied": 7,
        "outcome.failed.api_error:131047": 2,
        "reject.capacity": 4,
        "reject.customer_backlog": 1,
        "router.reject.duplicate": 1,
        "router.gate.processing": 2,
        "ai_pool.calls": 9,
        "supervisor.crashes.account": 1,
        "restarts": 1,
    },
    actors=(
        ActorStats(
            role="router", name="router", pid=None, depth=3, capacity=21000,
            generation=1, counters={"accepted": 10},
        ),
        ActorStats(
            role="account", name='ac"ct\\1', pid=None, depth=1, capacity=1000, restarts=2,
            generation=3, counters={"sent": 5, "pending": 1},
        ),
    ),
)  # fmt: skip


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def parse_exposition(text: str) -> dict[str, float]:
    """Every sample, parsed by ``prometheus_client``, as ``name{labels}`` -> value.

    Labels are sorted and escaped as in the text format, so a key reads like its line.
    """
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            assert key not in samples, f"sample {key} twice"
            samples[key] = sample.value
    return samples


def families(text: str) -> dict[str, str]:
    """Family name (as the parser names it: counters without ``_total``) -> its type."""
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def scrape(metrics: GatewayMetrics, stats: StatsReply | None) -> str:
    body, content_type = metrics.exposition(stats)
    assert content_type.startswith("text/plain; version=0.0.4")
    return body.decode()


def test_stats_become_prometheus_families_with_labels() -> None:
    metrics = GatewayMetrics()
    metrics.counters.inc("webhooks", code="200")
    metrics.counters.inc("messages", 3, kind="text")
    samples = parse_exposition(scrape(metrics, STATS))
    assert samples["wae_engine_up"] == 1
    assert samples["wae_in_flight"] == 3
    assert samples["wae_oldest_in_flight_seconds"] == 1.5
    assert samples['wae_outcomes_total{reason="",status="replied"}'] == 7
    assert samples['wae_outcomes_total{reason="api_error:131047",status="failed"}'] == 2
    assert samples['wae_actor_rejections_total{reason="duplicate",role="router"}'] == 1
    assert samples["wae_router_gate_processing"] == 2  # a level: a gauge, no _total
    assert samples["wae_ai_pool_calls_total"] == 9
    assert samples["wae_supervisor_crashes_account_total"] == 1
    assert samples['wae_actor_depth{name="router",role="router"}'] == 3
    assert samples['wae_actor_state{name="router",role="router",state="up"}'] == 1
    assert samples['wae_actor_restarts{name="ac\\"ct\\\\1",role="account"}'] == 2
    assert samples['wae_account_sent_total{account="ac\\"ct\\\\1"}'] == 5
    assert samples['wae_account_pending{account="ac\\"ct\\\\1"}'] == 1
    assert samples['wae_gateway_webhooks_total{code="200"}'] == 1
    assert samples['wae_gateway_messages_total{kind="text"}'] == 3


def test_each_rejection_reason_is_its_own_labelled_series() -> None:
    samples = parse_exposition(scrape(GatewayMetrics(), STATS))
    rejections = {k: v for k, v in samples.items() if k.startswith("wae_rejections_total")}
    assert rejections == {
        'wae_rejections_total{reason="capacity"}': 4,
        'wae_rejections_total{reason="customer_backlog"}': 1,
    }


def test_levels_are_gauges_and_counts_are_counters() -> None:
    kinds = families(scrape(GatewayMetrics(), STATS))
    assert kinds["wae_router_gate_processing"] == "gauge"
    assert kinds["wae_ai_pool_calls"] == "counter"
    assert kinds["wae_outcomes"] == "counter"
    assert kinds["wae_actor_depth"] == "gauge"


def test_without_stats_only_engine_up_has_a_sample() -> None:
    samples = parse_exposition(scrape(GatewayMetrics(), None))
    assert samples == {"wae_engine_up": 0}


def test_a_scrape_does_not_keep_the_stats_it_was_given() -> None:
    metrics = GatewayMetrics()
    scrape(metrics, STATS)
    assert parse_exposition(scrape(metrics, None)) == {"wae_engine_up": 0}


def test_an_engine_without_actors_or_counters_still_names_its_levels() -> None:
    names = {m.name for m in engine_families(StatsReply(in_flight=0))}
    assert names == {
        "wae_engine_up",
        "wae_in_flight",
        "wae_oldest_in_flight_seconds",
        "wae_router_generation",
    }


def test_each_gateway_has_its_own_registry() -> None:
    one, two = GatewayMetrics(), GatewayMetrics()  # the global registry would refuse a twin
    one.counters.inc("webhooks", code="200")
    one.observe("replied", 0.2)
    assert one.counters.get("webhooks", code="200") == 1
    assert two.counters.get("webhooks", code="200") == 0
    assert "wae_gateway_outcome_latency_seconds_count" not in scrape(two, None)


def test_the_latency_histogram_counts_each_observation_in_its_buckets() -> None:
    metrics = GatewayMetrics()
    for seconds in (0.003, 0.2, 0.2, 90.0):
        metrics.observe("replied", seconds)
    metrics.observe("timeout", 121.0)
    samples = parse_exposition(scrape(metrics, None))
    h = "wae_gateway_outcome_latency_seconds"
    assert samples[f'{h}_count{{status="replied"}}'] == 4
    assert samples[f'{h}_sum{{status="replied"}}'] == pytest.approx(90.403)
    assert samples[f'{h}_bucket{{le="0.005",status="replied"}}'] == 1
    assert samples[f'{h}_bucket{{le="0.25",status="replied"}}'] == 3
    assert samples[f'{h}_bucket{{le="120.0",status="replied"}}'] == 4
    assert samples[f'{h}_bucket{{le="120.0",status="timeout"}}'] == 0
    assert samples[f'{h}_bucket{{le="+Inf",status="timeout"}}'] == 1
    assert (LATENCY_BUCKETS[0], LATENCY_BUCKETS[-1]) == (0.005, 120.0)


def test_a_scraper_that_asks_for_openmetrics_gets_it() -> None:
    metrics = GatewayMetrics()
    metrics.counters.inc("webhooks", code="200")
    metrics.observe("replied", 0.5)
    body, content_type = metrics.exposition(STATS, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    parsed = {f.name: f for f in openmetrics_families(body.decode())}
    assert parsed["wae_rejections"].type == "counter"
    assert parsed["wae_gateway_outcome_latency_seconds"].type == "histogram"


def test_gateway_counters_read_one_sample_or_a_total() -> None:
    counters = GatewayCounters()
    counters.inc("submissions", result="accepted", reason="")
    counters.inc("submissions", 2, result="rejected", reason="capacity")
    counters.inc("submissions", result="rejected", reason="duplicate")
    assert counters.get("submissions", result="rejected", reason="capacity") == 2
    assert counters.get("submissions", result="rejected", reason="unknown") == 0
    assert counters.total("submissions", result="rejected") == 3
    assert counters.total("submissions") == 4


def test_an_unknown_gateway_counter_is_a_bug() -> None:
    with pytest.raises(KeyError, match="webhook_typo"):
        GatewayCounters().inc("webhook_typo")


def test_a_gateway_counter_with_the_wrong_labels_is_a_bug() -> None:
    with pytest.raises(ValueError, match="label"):
        GatewayCounters().inc("webhooks", status="200")


# --- the submit clock ----------------------------------------------------------------------


def test_an_outcome_is_timed_from_its_submission() -> None:
    times = SubmitTimes(max_pending=10)
    assert times.start(["a", "b"], now=100.0) == {"a", "b"}
    assert times.finish("a", now=100.25) == 0.25
    assert times.finish("a", now=101.0) is None  # one observation per outcome
    assert len(times) == 1


def test_a_redelivered_id_keeps_its_first_submit_time() -> None:
    times = SubmitTimes(max_pending=10)
    times.start(["a"], now=100.0)
    assert times.start(["a", "b"], now=105.0) == {"b"}
    times.cancel(["b"])  # "a" was refused as a duplicate: only the new id is forgotten
    assert times.finish("b", now=106.0) is None
    assert times.finish("a", now=106.0) == 6.0


def test_an_outcome_for_an_id_never_submitted_here_is_not_timed() -> None:
    assert SubmitTimes(max_pending=10).finish("elsewhere", now=1.0) is None


def test_past_its_bound_the_submit_clock_forgets_the_oldest() -> None:
    times = SubmitTimes(max_pending=2)
    times.start(["a", "b", "c"], now=1.0)
    assert len(times) == 2
    assert times.forgotten == 1
    assert times.finish("a", now=2.0) is None
    assert times.finish("c", now=2.0) == 1.0
