"""Protocol messages: shape, validation at every bound, and clear errors."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

import protocols as p
from protocols import ValidationError
from protocols.chat import is_bsuid
from tests.strategies import STRATEGIES

INBOUND: dict[str, Any] = {
    "account_id": "acct-1",
    "customer_id": "+15550001",
    "message_id": "wamid.1",
    "text": "hi",
}


def inbound(**changes: Any) -> p.InboundMessage:
    return p.InboundMessage(**{**INBOUND, **changes})


@pytest.mark.parametrize("cls", sorted(STRATEGIES, key=lambda c: c.__name__))
def test_every_message_is_a_frozen_slotted_keyword_only_dataclass(cls: type[p.Message]) -> None:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert all(f.kw_only for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    assert "__slots__" in cls.__dict__
    assert cls.TAG in p.registry()
    assert cls.VERSION >= 1


def test_messages_cannot_be_changed_or_given_new_attributes() -> None:
    msg = inbound()
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.text = "changed"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        msg.extra = 1  # type: ignore[attr-defined]


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        p.Accepted("wamid.1")  # type: ignore[misc]


def test_an_id_of_exactly_128_characters_is_accepted_and_129_is_refused() -> None:
    assert inbound(message_id="m" * 128).message_id == "m" * 128
    with pytest.raises(
        ValidationError, match=r"1-128 characters, got 129 - at `InboundMessage.message_id`"
    ):
        inbound(message_id="m" * 129)


def test_an_empty_id_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"got 0 - at `InboundMessage.account_id`"):
        inbound(account_id="")


def test_ids_with_control_characters_are_refused() -> None:
    with pytest.raises(ValidationError, match="control characters"):
        inbound(message_id="wamid\n1")


def test_text_of_exactly_4096_characters_is_accepted_and_4097_is_refused() -> None:
    assert len(inbound(text="x" * 4096).text) == 4096
    with pytest.raises(
        ValidationError, match=r"at most 4096 characters, got 4097 - at `InboundMessage.text`"
    ):
        inbound(text="x" * 4097)


def test_the_text_limit_counts_characters_not_bytes() -> None:
    assert len(inbound(text="é" * 4096).text.encode()) == 8192


def test_empty_inbound_text_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not be empty"):
        inbound(text="")


def test_text_that_is_not_valid_utf8_is_refused() -> None:
    with pytest.raises(ValidationError, match="not valid UTF-8"):
        inbound(text="bad \udcff surrogate")


@pytest.mark.parametrize(
    "phone", ["123456", "+123456", "1" * 20, "+" + "1" * 20, "+15550001", "447700900123"]
)
def test_phone_numbers_of_6_to_20_digits_are_accepted(phone: str) -> None:
    assert inbound(customer_id=phone).customer_id == phone


@pytest.mark.parametrize(
    "phone",
    [
        "12345",
        "+12345",
        "1" * 21,
        "+" + "1" * 21,
        "++123456",
        "1234567+",
        "555-0001",
        " 1234567",
        "1234567 ",
        "",
        "+",
        "\uff11" * 7,  # fullwidth digits,
    ],
)
def test_customer_ids_that_are_not_6_to_20_digits_are_refused(phone: str) -> None:
    with pytest.raises(ValidationError, match=r"6-20 digits.* - at `InboundMessage.customer_id`"):
        inbound(customer_id=phone)


# The forms of Meta's "Business-scoped user IDs" page: a country code, a period, up to 128
# alphanumerics; the parent (enterprise) form has ENT. after the period.
@pytest.mark.parametrize(
    "bsuid",
    [
        "US.13491208655302741918",
        "BR.a1B2c3",
        "IN.x",
        "US." + "9" * 128,
        "US.ENT.11815799212886844830",
        "GB.ENT." + "Z" * 128,
        "US.ENT",  # "ENT" is alphanumerics too: the plain form
    ],
)
def test_business_scoped_user_ids_are_customer_ids(bsuid: str) -> None:
    assert inbound(customer_id=bsuid).customer_id == bsuid
    assert is_bsuid(bsuid)
    reply = p.OutboundReply(
        account_id="a", customer_id=bsuid, message_id="m", text="t", deadline=1.0
    )
    assert reply.customer_id == bsuid


@pytest.mark.parametrize(
    "bad",
    [
        "US.",
        "us.1349",  # the country code is upper case
        "USA.1349",
        "U.1349",
        ".1349",
        "US1349",
        "US." + "9" * 129,  # past 128
        "US.ENT." + "9" * 129,
        "US.ENT.",
        "US.ENT.ENT.1",
        "US.13-49",
        "US.13_49",
        "US.1349 ",
        " US.1349",
        "US.1349\n",
        "US.\u0661\u0662",  # Arabic-Indic digits are not ASCII alphanumerics
        "\uff35\uff33.1349",  # fullwidth letters
        "+US.1349",
    ],
)
def test_ids_that_only_look_like_bsuids_are_refused_with_both_forms_named(bad: str) -> None:
    assert not is_bsuid(bad)
    with pytest.raises(ValidationError, match=r"phone number .* or a BSUID .* - at `Inbound"):
        inbound(customer_id=bad)


def test_an_inbound_message_is_text_replying_to_nothing_unless_told() -> None:
    msg = inbound()
    assert (msg.kind, msg.context_id, msg.fixed_reply) == ("text", "", "")
    told = inbound(kind="button_reply", context_id="wamid.ctx", fixed_reply="Thanks!")
    assert (told.kind, told.context_id, told.fixed_reply) == (
        "button_reply",
        "wamid.ctx",
        "Thanks!",
    )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"kind": ""}, "kind"),
        ({"kind": "Button"}, "kind"),
        ({"kind": "a" * 33}, "kind"),
        ({"kind": "image caption"}, "kind"),
        ({"context_id": "x" * 129}, "context_id"),
        ({"context_id": "wamid\x00"}, "context_id"),
        ({"fixed_reply": "y" * 4097}, "fixed_reply"),
    ],
)
def test_a_bad_kind_context_or_fixed_reply_is_refused_by_name(
    change: dict[str, str], where: str
) -> None:
    with pytest.raises(ValidationError, match=f"at `InboundMessage.{where}`"):
        inbound(**change)


def test_an_ai_request_carries_the_context_id_and_checks_it() -> None:
    request = p.AIRequest(
        message_id="m", account_id="a", customer_id="US.1", text="t", deadline=1.0
    )
    assert request.context_id == ""
    with pytest.raises(ValidationError, match=r"at `AIRequest\.context_id`"):
        p.AIRequest(
            message_id="m",
            account_id="a",
            customer_id="US.1",
            text="t",
            deadline=1.0,
            context_id="\x01",
        )


def test_a_wrong_type_is_named_with_the_class_and_field() -> None:
    with pytest.raises(
        ValidationError, match=r"Expected `str`, got `int` - at `InboundMessage.text`"
    ):
        inbound(text=5)
    with pytest.raises(ValidationError, match=r"Expected `int`, got `bool`"):
        p.StatsReply(in_flight=True)


def test_validation_errors_are_value_errors_and_protocol_errors() -> None:
    with pytest.raises(ValidationError) as info:
        inbound(customer_id="x")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, p.ProtocolError)
    assert info.value.path == "InboundMessage.customer_id"


def test_long_bad_values_are_shortened_in_errors() -> None:
    with pytest.raises(ValidationError) as info:
        inbound(customer_id="9" * 5000)
    assert len(str(info.value)) < 200


def test_rejected_only_takes_documented_reasons() -> None:
    for reason in p.REJECT_REASONS:
        assert p.Rejected(message_id="m", reason=reason).reason == reason
    with pytest.raises(ValidationError, match="must be one of"):
        p.Rejected(message_id="m", reason="because")


def test_the_contract_reasons_are_all_documented() -> None:
    contract = {
        "capacity",
        "customer_backlog",
        "duplicate",
        "unknown_account",
        "shutting_down",
        "invalid",
        "rate_limited",
        "no_provider",
        "account_failed",
        "timeout",
    }
    assert contract <= {r.value for r in p.Reason}


def test_an_outcome_status_must_be_one_of_the_five() -> None:
    assert {"replied", "rejected", "timeout", "failed", "abandoned"} == p.STATUSES
    with pytest.raises(ValidationError, match=r"must be one of .* - at `Outcome.status`"):
        p.Outcome(message_id="m", status="done", reason="x")


def test_a_replied_outcome_carries_the_reply_and_no_reason() -> None:
    ok = p.Outcome(message_id="m", status="replied", reply="echo: hi")
    assert (ok.reason, ok.reply) == ("", "echo: hi")
    with pytest.raises(ValidationError, match="must be set when status is 'replied'"):
        p.Outcome(message_id="m", status="replied")
    with pytest.raises(ValidationError, match="must be empty when status is 'replied'"):
        p.Outcome(message_id="m", status="replied", reply="r", reason="timeout")


def test_other_outcomes_carry_a_reason_code_and_no_reply() -> None:
    failed = p.Outcome(message_id="m", status="failed", reason="api_error:131000")
    assert failed.reason == "api_error:131000"
    with pytest.raises(ValidationError, match=r"lower_snake code .* - at `Outcome.reason`"):
        p.Outcome(message_id="m", status="failed", reason="")
    with pytest.raises(ValidationError, match="must be None when status is 'timeout'"):
        p.Outcome(message_id="m", status="timeout", reason="timeout", reply="late")


def test_status_enums_compare_equal_to_their_strings() -> None:
    out = p.Outcome(message_id="m", status=p.Status.TIMEOUT, reason=p.Reason.TIMEOUT)
    assert out.status == "timeout"
    assert out == p.Outcome(message_id="m", status="timeout", reason="timeout")


def test_provider_spec_defaults_and_option_rules() -> None:
    spec = p.ProviderSpec(
        name="echo", kind="echo", priority=10, options={"latency_s": 0.0, "failure_rate": 0.0}
    )
    assert (spec.daily_limit, spec.active) == (None, True)
    with pytest.raises(
        ValidationError, match=r"must be >= 1, got 0 - at `ProviderSpec.daily_limit`"
    ):
        p.ProviderSpec(name="x", kind="echo", daily_limit=0)
    with pytest.raises(
        ValidationError, match=r"Expected `str \| int \| float \| bool \| nil`, got `list`"
    ):
        p.ProviderSpec(name="x", kind="echo", options={"bad": [1]})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="at most 64 keys"):
        p.ProviderSpec(name="x", kind="echo", options={f"k{i}": i for i in range(65)})


def test_options_are_copied_so_the_caller_cannot_change_a_message() -> None:
    opts: dict[str, p.Scalar] = {"latency_s": 0.5}
    spec = p.AccountSpec(account_id="a", options=opts)
    opts["latency_s"] = 9.0
    assert spec.options == {"latency_s": 0.5}


def test_lists_are_normalised_to_tuples() -> None:
    report = p.ShutdownReport(
        stages=[p.StageReport(name="drain", seconds=0.5)],  # type: ignore[arg-type]
        total_s=0.5,
        abandoned=["m1"],  # type: ignore[arg-type]
    )
    assert report.abandoned == ("m1",)
    assert isinstance(report.stages, tuple)
    assert hash(p.Accepted(message_id="m")) == hash(p.Accepted(message_id="m"))


def test_non_finite_floats_are_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        p.StageReport(name="drain", seconds=float("nan"))
    with pytest.raises(ValidationError, match="finite"):
        p.AIRequest(
            message_id="m", account_id="a", customer_id="1234567", text="t", deadline=float("inf")
        )


def test_ints_are_accepted_for_float_fields_and_become_floats() -> None:
    stage = p.StageReport(name="drain", seconds=2)
    assert stage.seconds == 2.0
    assert type(stage.seconds) is float


def test_the_shutdown_report_lists_stages_in_order_and_abandoned_ids() -> None:
    report = p.ShutdownReport(
        stages=(
            p.StageReport(name="drain", seconds=1.0, drained=3),
            p.StageReport(name="accounts", seconds=0.5, abandoned=1),
        ),
        total_s=1.5,
        abandoned=("m9",),
    )
    assert [s.name for s in report.stages] == ["drain", "accounts"]
    with pytest.raises(ValidationError, match=r"ShutdownReport.abandoned\[0\]"):
        p.ShutdownReport(stages=(), total_s=0.0, abandoned=("",))


def test_unpickling_gives_an_equal_message_of_the_same_class() -> None:
    msg = inbound(text="héllo 👋")
    back = pickle.loads(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == msg
    assert type(back) is p.InboundMessage


def test_a_tag_cannot_be_registered_twice() -> None:
    from protocols._schema import message

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Other(p.Message):
        x: int = 0

    with pytest.raises(ValueError, match="tag 'inbound' is already used by InboundMessage"):
        message("inbound")(Other)
    with pytest.raises(ValueError, match="must be a frozen, slotted dataclass"):
        message("plain")(type("Plain", (p.Message,), {}))


# -- trusted construction: the engine's own messages, built from checked parts -------------


def test_trusted_builds_the_same_message_as_the_checked_constructor() -> None:
    from protocols import AccountSpec, OutboundReply, SendBatch

    fields = {
        "account_id": "acct-1",
        "customer_id": "+15550001",
        "message_id": "m1",
        "text": "hi",
        "deadline": 1.0,
    }
    reply = OutboundReply.trusted(**fields)
    assert reply == OutboundReply(**fields)
    assert SendBatch.trusted(replies=(reply,), generation=2) == SendBatch(
        replies=(reply,), generation=2
    )
    # A default factory gives each message its own value, as the constructor does.
    a, b = AccountSpec.trusted(account_id="a"), AccountSpec.trusted(account_id="a")
    assert a == AccountSpec(account_id="a")
    assert a.options is not b.options


def test_trusted_refuses_missing_and_unknown_fields_like_the_constructor() -> None:
    from protocols import OutboundReply

    with pytest.raises(TypeError, match="missing"):
        OutboundReply.trusted(account_id="acct-1")
    with pytest.raises(TypeError, match="unexpected keyword"):
        OutboundReply.trusted(
            account_id="a", customer_id="c", message_id="m", text="t", deadline=1.0, bogus=1
        )


def test_the_routers_outcomes_carry_plain_strings_not_enum_members() -> None:
    from actors.router.outcomes import OutcomeBook
    from protocols import Reason, Status

    book = OutcomeBook()
    book.record("m1", "acct-1", Status.FAILED, Reason.TIMEOUT, None, "late")
    (outcome,) = book.collect(1)
    assert type(outcome.status) is str
    assert type(outcome.reason) is str
    assert (outcome.status, outcome.reason) == ("failed", "timeout")
