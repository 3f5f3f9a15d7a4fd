"""Hypothesis strategies producing valid instances of every protocol message."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import protocols as p
from protocols import Message

ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=p.MAX_ID_LEN
)
phones = st.from_regex(r"\A\+?[0-9]{6,20}\Z")
# Business-scoped user ids, both forms, up to their 128-alphanumeric bound.
bsuids = st.from_regex(r"\A[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}\Z")
customer_ids = phones | bsuids
kinds = st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z")
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)
details = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
slugs = st.from_regex(r"\A[a-z][a-z0-9_]{0,20}(:[A-Za-z0-9_.-]{1,10})?\Z")
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
counts = st.integers(min_value=0, max_value=2**40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    details,
)
options = st.dictionaries(ids, scalars, max_size=5)

provider_specs = st.builds(
    p.ProviderSpec,
    name=ids,
    kind=slugs,
    priority=st.integers(min_value=-1000, max_value=1000),
    daily_limit=st.none() | st.integers(min_value=1, max_value=10**9),
    active=st.booleans(),
    options=options,
)
account_specs = st.builds(p.AccountSpec, account_id=ids, transport=slugs, options=options)
stage_reports = st.builds(
    p.StageReport, name=slugs, seconds=times, drained=counts, abandoned=counts
)
numbers = st.integers(min_value=0, max_value=2**40) | st.floats(
    allow_nan=False, allow_infinity=False
)
actor_stats = st.builds(
    p.ActorStats,
    role=slugs,
    name=ids,
    pid=st.none() | st.integers(min_value=1, max_value=2**22),
    depth=counts,
    capacity=counts,
    restarts=counts,
    generation=counts,
    state=slugs,
    counters=st.dictionaries(slugs, counts, max_size=4),
    providers=st.lists(ids, max_size=3).map(tuple),
    provider_stats=st.dictionaries(ids, st.dictionaries(slugs, numbers, max_size=3), max_size=2),
    transport_failed=details,
)


@st.composite
def outcomes(draw: st.DrawFn) -> p.Outcome:
    status = draw(st.sampled_from(sorted(p.STATUSES)))
    if status == "replied":
        return p.Outcome(message_id=draw(ids), status=status, reply=draw(texts))
    return p.Outcome(message_id=draw(ids), status=status, reason=draw(slugs), detail=draw(details))


@st.composite
def deliveries(draw: st.DrawFn) -> p.DeliveryReport:
    if draw(st.booleans()):
        return p.DeliveryReport(message_id=draw(ids), ok=True)
    return p.DeliveryReport(message_id=draw(ids), ok=False, reason=draw(slugs))


@st.composite
def command_results(draw: st.DrawFn) -> p.CommandResult:
    if draw(st.booleans()):
        return p.CommandResult(command=draw(slugs), ok=True, detail=draw(details))
    return p.CommandResult(command=draw(slugs), ok=False, error=draw(slugs), detail=draw(details))


STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    p.InboundMessage: st.builds(
        p.InboundMessage,
        account_id=ids,
        customer_id=customer_ids,
        message_id=ids,
        text=texts,
        kind=kinds,
        context_id=st.just("") | ids,
        fixed_reply=st.just("") | texts,
    ),
    p.OutboundReply: st.builds(
        p.OutboundReply,
        account_id=ids,
        customer_id=customer_ids,
        message_id=ids,
        text=texts,
        deadline=times,
    ),
    p.Accepted: st.builds(p.Accepted, message_id=ids, deadline=st.none() | times),
    p.Rejected: st.builds(
        p.Rejected, message_id=ids, reason=st.sampled_from(sorted(p.REJECT_REASONS)), detail=details
    ),
    p.Outcome: outcomes(),
    p.DeliveryReport: deliveries(),
    p.ProviderSpec: provider_specs,
    p.AccountSpec: account_specs,
    p.AddAccount: st.builds(p.AddAccount, spec=account_specs),
    p.RemoveAccount: st.builds(p.RemoveAccount, account_id=ids),
    p.AddProvider: st.builds(p.AddProvider, spec=provider_specs),
    p.RemoveProvider: st.builds(p.RemoveProvider, name=ids),
    p.CommandResult: command_results(),
    p.AccountEvent: st.builds(
        p.AccountEvent,
        account_id=ids,
        kind=st.sampled_from(sorted(p.ACCOUNT_EVENTS)),
        at=times,
        detail=details,
    ),
    p.AIRequest: st.builds(
        p.AIRequest,
        message_id=ids,
        account_id=ids,
        customer_id=customer_ids,
        text=texts,
        deadline=times,
        context_id=st.just("") | ids,
    ),
    p.AIReply: st.builds(
        p.AIReply,
        message_id=ids,
        provider=ids,
        text=texts,
        prompt_tokens=counts,
        completion_tokens=counts,
    ),
    p.AIFailure: st.builds(
        p.AIFailure, message_id=ids, reason=slugs, provider=st.none() | ids, detail=details
    ),
    p.StatsRequest: st.just(p.StatsRequest()),
    p.ActorStats: actor_stats,
    p.StatsReply: st.builds(
        p.StatsReply,
        in_flight=counts,
        counters=st.dictionaries(slugs, counts, max_size=8),
        actors=st.lists(actor_stats, max_size=4).map(tuple),
        oldest_in_flight_s=st.none() | times,
        router_generation=counts,
        admin_pid=st.none() | st.integers(min_value=1, max_value=2**22),
        base=st.sampled_from(["", "simpleSystemBase", "multiprocTCPBase"]),
    ),
    p.ShutdownRequest: st.builds(p.ShutdownRequest, timeout_s=times, drain_timeout_s=times),
    p.StageReport: stage_reports,
    p.ShutdownReport: st.builds(
        p.ShutdownReport,
        stages=st.lists(stage_reports, max_size=4).map(tuple),
        total_s=times,
        abandoned=st.lists(ids, max_size=5).map(tuple),
    ),
}

inbound = STRATEGIES[p.InboundMessage]
gens = st.integers(min_value=0, max_value=2**31)
STRATEGIES |= {
    # deadlines: none, or one per message (a re-admission keeps each one's deadline).
    p.SubmitBatch: st.lists(inbound, max_size=4).flatmap(
        lambda msgs: st.builds(
            p.SubmitBatch,
            messages=st.just(tuple(msgs)),
            generation=gens,
            readmit=st.booleans(),
            request_id=gens,
            deadlines=st.just(())
            | st.lists(
                st.floats(min_value=0, max_value=4e9), min_size=len(msgs), max_size=len(msgs)
            ).map(tuple),
        )
    ),
    p.SubmitResults: st.builds(
        p.SubmitResults,
        results=st.lists(STRATEGIES[p.Accepted] | STRATEGIES[p.Rejected], max_size=4).map(tuple),
        generation=gens,
        request_id=gens,
    ),
    p.CollectOutcomes: st.builds(
        p.CollectOutcomes,
        max_items=st.integers(min_value=1, max_value=10**6),
        wait_s=times,
        generation=gens,
        request_id=gens,
    ),
    p.OutcomeBatch: st.builds(
        p.OutcomeBatch,
        outcomes=st.lists(outcomes(), max_size=4).map(tuple),
        events=st.lists(STRATEGIES[p.AccountEvent], max_size=2).map(tuple),
        generation=gens,
        request_id=gens,
    ),
    p.AIBatch: st.builds(
        p.AIBatch,
        requests=st.lists(STRATEGIES[p.AIRequest], max_size=3).map(tuple),
        generation=gens,
    ),
    p.AIResults: st.builds(
        p.AIResults,
        results=st.lists(STRATEGIES[p.AIReply] | STRATEGIES[p.AIFailure], max_size=4).map(tuple),
        generation=gens,
    ),
    p.CancelBatch: st.builds(
        p.CancelBatch, message_ids=st.lists(ids, max_size=4).map(tuple), generation=gens
    ),
    p.SendBatch: st.builds(
        p.SendBatch,
        replies=st.lists(STRATEGIES[p.OutboundReply], max_size=3).map(tuple),
        generation=gens,
    ),
    p.DeliveryBatch: st.builds(
        p.DeliveryBatch, reports=st.lists(deliveries(), max_size=4).map(tuple), generation=gens
    ),
}

any_message = st.one_of(*STRATEGIES.values())
