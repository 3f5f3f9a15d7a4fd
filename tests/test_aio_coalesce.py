"""The coalescer's pure core (actors.engine.aio_coalesce): flights, bounds, answers.

No event loop and no engine: the waiters are plain strings, the "engine" is the test.
"""

from __future__ import annotations

import pytest

from actors.engine.aio_coalesce import Coalescer, refuse_waiting
from actors.errors import EngineError
from protocols import Accepted, Rejected
from tests.engine_helpers import inbound


def _ids(messages: object) -> list[str]:
    return [m.message_id for m in messages]  # type: ignore[attr-defined]


def _accept_all(flight: object) -> list[Accepted | Rejected]:
    return [Accepted(message_id=m) for m in _ids(flight.messages)]  # type: ignore[attr-defined]


def test_a_lone_submission_leaves_at_once_and_alone() -> None:
    core: Coalescer[str] = Coalescer(max_waiting_messages=100)
    assert core.add([inbound(1), inbound(2)], "a")
    flight = core.take()
    assert flight is not None
    assert _ids(flight.messages) == ["wamid.1", "wamid.2"]
    assert [w for w, _ in flight.parts] == ["a"]
    assert core.busy
    assert core.take() is None  # one flight at a time


def test_submissions_arriving_during_a_flight_share_the_next_and_get_their_own_answers() -> None:
    core: Coalescer[str] = Coalescer(max_waiting_messages=100)
    core.add([inbound(1)], "first")
    first = core.take()
    assert first is not None
    for i, name in ((2, "b"), (3, "c"), (4, "d")):
        assert core.add([inbound(i), inbound(i + 100)], name)
    assert core.take() is None  # the first is still in flight
    assert core.waiting_messages == 6
    core.landed(first)
    second = core.take()
    assert second is not None
    assert _ids(second.messages) == [
        "wamid.2",
        "wamid.102",
        "wamid.3",
        "wamid.103",
        "wamid.4",
        "wamid.104",
    ]
    answers = second.split(_accept_all(second))
    assert [(w, _ids(r)) for w, r in answers] == [
        ("b", ["wamid.2", "wamid.102"]),
        ("c", ["wamid.3", "wamid.103"]),
        ("d", ["wamid.4", "wamid.104"]),
    ]
    core.landed(second)
    assert not core.busy
    stats = core.stats
    assert (stats.calls, stats.submissions, stats.joined, stats.messages, stats.largest) == (
        2,
        4,
        2,
        7,
        6,
    )


def test_a_flight_carries_whole_submissions_up_to_its_bound_and_a_larger_one_alone() -> None:
    core: Coalescer[str] = Coalescer(max_flight_messages=3, max_waiting_messages=100)
    core.add([inbound(i) for i in range(1, 6)], "big")  # 5 > 3: flies alone, unsplit
    core.add([inbound(6), inbound(7)], "b")
    core.add([inbound(8), inbound(9)], "c")
    flights = []
    while (flight := core.take()) is not None:
        flights.append([w for w, _ in flight.parts])
        core.landed(flight)
    # 2 + 2 > 3: the third waits for its own flight rather than being split.
    assert flights == [["big"], ["b"], ["c"]]


def test_past_max_waiting_a_submission_is_refused_but_one_finding_none_waiting_is_taken() -> None:
    core: Coalescer[str] = Coalescer(max_waiting_messages=3)
    assert core.add([inbound(i) for i in range(1, 6)], "larger than the bound")
    assert not core.add([inbound(6)], "refused")
    assert core.waiting_messages == 5
    flight = core.take()
    assert flight is not None
    assert core.add([inbound(7), inbound(8)], "fits")
    assert not core.add([inbound(9), inbound(10)], "2 + 2 > 3")
    assert core.stats.refused == 2
    answers = refuse_waiting([inbound(9)], core.waiting_messages, core.max_waiting_messages)
    assert answers == [
        Rejected(
            message_id="wamid.9",
            reason="capacity",
            detail="2 messages wait to be submitted (max_waiting_messages=3)",
        )
    ]


def test_a_withdrawn_submission_never_flies_and_one_in_flight_cannot_be_withdrawn() -> None:
    core: Coalescer[str] = Coalescer(max_waiting_messages=100)
    core.add([inbound(1)], "a")
    flight = core.take()
    assert flight is not None
    core.add([inbound(2)], "b")
    core.add([inbound(3)], "c")
    assert not core.withdraw("a")  # already flying
    assert core.withdraw("b")
    assert not core.withdraw("b")
    assert core.waiting_messages == 1
    core.landed(flight)
    second = core.take()
    assert second is not None
    assert [w for w, _ in second.parts] == ["c"]


def test_an_answer_of_the_wrong_length_and_a_foreign_landing_are_errors() -> None:
    core: Coalescer[str] = Coalescer(max_waiting_messages=100)
    core.add([inbound(1), inbound(2)], "a")
    flight = core.take()
    assert flight is not None
    with pytest.raises(EngineError, match="answered 1 results for 2 messages"):
        flight.split([Accepted(message_id="wamid.1")])
    core.add([inbound(3)], "b")
    core.landed(flight)
    other = core.take()
    assert other is not None
    with pytest.raises(EngineError, match="not in flight"):
        core.landed(flight)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_flight_messages": 0, "max_waiting_messages": 1},
        {"max_waiting_messages": 0},
        {"max_waiting_messages": True},
    ],
)
def test_bounds_must_be_positive_ints(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be an int >= 1"):
        Coalescer(**kw)
