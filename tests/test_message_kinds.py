"""Message kinds and username senders (issue 13): what each documented payload becomes.

Pure parts only, no actor system: the kind table (``apps.gateway.inbound``), the webhook
parser, the fallback config, the router's fixed replies, the Chat Completions request and
the Graph API recipient. The end-to-end test is ``test_gateway_kinds_e2e.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actors.account.cloud_api import recipient_fields
from actors.errors import ConfigError
from actors.pool._openai_core import build_payload, parse_options, user_content
from apps.gateway import GatewayConfig, load_gateway_config, parse_payload
from apps.gateway.inbound import AI_KINDS, FALLBACK_KINDS, MESSAGE_KINDS, read_message
from apps.gateway.webhook import KINDS
from protocols import MAX_TEXT_LEN, InboundMessage, OutboundReply, codec
from tests import wa_payloads as wa
from tests.test_router_core import ACCT, T0, accept, ai_ok, delivered, outcomes, router
from tests.test_router_core import msg as router_msg

PHONE_ID = "106540352242922"
ACCOUNTS = {PHONE_ID: "acct-1"}


def parse(*messages: dict[str, Any], **kw: Any) -> Any:
    fallbacks = kw.pop("fallbacks", None)
    return parse_payload(wa.webhook(PHONE_ID, *messages, **kw), ACCOUNTS, fallbacks)


def only(batch: Any) -> InboundMessage:
    assert len(batch.messages) == 1, batch.problems
    message: InboundMessage = batch.messages[0]
    return message


def counted(batch: Any) -> dict[str, int]:
    return {kind: n for kind, n in batch.counts.items() if n}


# --- what the AI reads, kind by kind ---------------------------------------------------------

AI_INPUT = [
    (wa.text("wamid.t", "Do you ship to Lisbon?"), "text", "Do you ship to Lisbon?", ""),
    (
        wa.button_reply("wamid.b", "confirm_yes", "Yes, confirm"),
        "button_reply",
        "[button reply] Yes, confirm (id: confirm_yes)",
        wa.OUR_MESSAGE,
    ),
    (
        wa.list_reply("wamid.l", "size_m", "Medium", "Fits 38-40"),
        "list_reply",
        "[list reply] Medium - Fits 38-40 (id: size_m)",
        wa.OUR_MESSAGE,
    ),
    (
        wa.quick_reply("wamid.q", "No", "No-Button-Payload"),
        "quick_reply",
        "[quick reply] No (payload: No-Button-Payload)",
        wa.OUR_MESSAGE,
    ),
    (
        wa.image("wamid.i", "Is this one in stock?"),
        "image",
        "[image caption] Is this one in stock?",
        "",
    ),
    (
        wa.video("wamid.v", "It rattles like this"),
        "video",
        "[video caption] It rattles like this",
        "",
    ),
    (
        wa.document("wamid.d", "My invoice", "invoice-0042.pdf"),
        "document",
        "[document caption] My invoice (file: invoice-0042.pdf)",
        "",
    ),
    (
        wa.product_inquiry("wamid.p", "Is this waterproof?", "SKU-0042"),
        "text",
        "[product inquiry: SKU-0042] Is this waterproof?",
        wa.OUR_MESSAGE,
    ),
    (
        wa.location("wamid.loc"),
        "location",
        "[location] Main Street Beach, 1 Hacker Way, Menlo Park, CA 94025 (37.483307, -122.148981)",
        "",
    ),
]


@pytest.mark.parametrize(("message", "kind", "text", "context_id"), AI_INPUT)
def test_each_documented_kind_the_ai_reads_is_submitted_marked_with_its_kind(
    message: dict[str, Any], kind: str, text: str, context_id: str
) -> None:
    batch = parse(message)
    inbound = only(batch)
    assert (inbound.kind, inbound.text, inbound.context_id) == (kind, text, context_id)
    assert (inbound.customer_id, inbound.message_id, inbound.fixed_reply) == (
        "+" + wa.CUSTOMER,
        message["id"],
        "",
    )
    assert counted(batch) == {kind: 1}
    assert codec.decode(codec.encode(inbound)) == inbound


ACKNOWLEDGED = [
    (wa.reaction("wamid.r"), "reaction", "[reaction] \U0001f600"),
    (wa.reaction("wamid.r0", emoji=None), "reaction", "[reaction removed]"),
    (wa.sticker("wamid.s"), "sticker", "[sticker]"),
    (wa.audio("wamid.a"), "audio", "[audio]"),
    (wa.contacts("wamid.c"), "contacts", "[contacts]"),
    (wa.system_changed_number("wamid.sys"), "system", "[system]"),
    (wa.unsupported("wamid.u"), "unsupported", "[unsupported]"),
    ({**wa.unsupported("wamid.old"), "type": "unknown"}, "unsupported", "[unsupported]"),
    (wa.image("wamid.i0", None), "image", "[image]"),
    ({**wa.text("wamid.h", "x"), "type": "hologram"}, "other", "[other]"),
]


@pytest.mark.parametrize(("message", "kind", "marker"), ACKNOWLEDGED)
def test_kinds_the_ai_cannot_read_are_counted_and_not_submitted_by_default(
    message: dict[str, Any], kind: str, marker: str
) -> None:
    batch = parse(message)
    assert batch.messages == ()
    assert counted(batch) == {kind: 1}
    read = read_message(message)
    assert (read.kind, read.text, read.for_ai) == (kind, marker, False)


@pytest.mark.parametrize(("message", "kind", "marker"), ACKNOWLEDGED)
def test_a_configured_fallback_answers_its_kind_with_no_ai_and_leaves_others_alone(
    message: dict[str, Any], kind: str, marker: str
) -> None:
    fallbacks = {kind: f"Sorry, I cannot read {kind} messages yet."}
    other = wa.audio("wamid.other") if kind != "audio" else wa.sticker("wamid.other")
    batch = parse(message, other, fallbacks=fallbacks)
    inbound = only(batch)
    assert (inbound.kind, inbound.text, inbound.fixed_reply) == (kind, marker, fallbacks[kind])
    assert inbound.message_id == message["id"]


def test_a_reaction_names_the_message_it_reacts_to_as_its_context() -> None:
    assert read_message(wa.reaction("wamid.r")).context_id == wa.OUR_MESSAGE


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (
            {**wa.button_reply("m", "id", "t"), "interactive": {"type": "button_reply"}},
            "button_reply needs non-empty string id and title",
        ),
        (
            {
                **wa.list_reply("m", "id", "t", "d"),
                "interactive": {"type": "list_reply", "list_reply": {"id": "x", "title": 5}},
            },
            "list_reply needs non-empty string id and title",
        ),
        ({**wa.quick_reply("m", "t", "p"), "button": {}}, "text or payload"),
        ({**wa.location("m"), "location": {"latitude": 91, "longitude": 0}}, "within +-90"),
        ({**wa.location("m"), "location": {"latitude": "north", "longitude": 0}}, "number lat"),
        ({**wa.location("m"), "location": {"latitude": True, "longitude": 0}}, "number lat"),
        ({**wa.image("m", "c"), "image": "a photo"}, "needs a image object"),
        ({**wa.text("m", "hi"), "text": {"body": ""}}, "text.body"),
    ],
)
def test_a_known_kind_without_its_fields_is_counted_invalid_with_the_reason(
    message: dict[str, Any], problem: str
) -> None:
    batch = parse(message)
    assert batch.messages == ()
    assert counted(batch) == {"invalid": 1}
    assert problem in batch.problems[0]
    assert batch.problems[0].startswith("$.entry[0].changes[0].value.messages[0]: ")


def test_an_interactive_reply_of_another_type_is_acknowledged_as_interactive() -> None:
    flow = {**wa.button_reply("wamid.f", "x", "y"), "interactive": {"type": "nfm_reply"}}
    assert counted(parse(flow)) == {"interactive": 1}


def test_a_location_without_a_name_shows_its_coordinates_and_string_numbers_are_read() -> None:
    bare = {**wa.location("m"), "location": {"latitude": "-33.8688", "longitude": 151.2093}}
    assert read_message(bare).text == "[location] (-33.8688, 151.2093)"


def test_a_list_reply_without_a_description_and_a_quick_reply_without_a_payload_read_well() -> None:
    row = wa.list_reply("m", "r1", "Tomorrow", "")
    assert read_message(row).text == "[list reply] Tomorrow (id: r1)"
    button = {**wa.quick_reply("m", "Stop promotions", ""), "button": {"text": "Stop promotions"}}
    assert read_message(button).text == "[quick reply] Stop promotions"


def test_a_marked_text_is_cut_to_the_text_limit_and_still_submitted() -> None:
    inbound = only(parse(wa.image("wamid.long", "c" * MAX_TEXT_LEN)))
    assert len(inbound.text) == MAX_TEXT_LEN
    assert inbound.text.startswith("[image caption] ccc")


def test_every_kind_is_counted_and_the_kind_sets_agree() -> None:
    assert set(MESSAGE_KINDS) == set(AI_KINDS) | set(FALLBACK_KINDS)
    assert set(MESSAGE_KINDS) <= set(KINDS)
    assert not {"text", "button_reply", "list_reply", "quick_reply"} & set(FALLBACK_KINDS)
    assert set(parse().counts) == set(KINDS)


# --- username senders (business-scoped user ids) ---------------------------------------------


def test_a_sender_known_only_by_a_bsuid_is_served_under_that_id() -> None:
    batch = parse(wa.bsuid_text("wamid.u1", "hello"), contacts=wa.bsuid_contacts())
    inbound = only(batch)
    assert (inbound.customer_id, inbound.text) == (wa.BSUID, "hello")


def test_the_bsuid_of_the_only_contact_names_a_sender_with_no_from_user_id() -> None:
    message = wa.bsuid_text("wamid.u2", "hi")
    del message["from_user_id"]
    inbound = only(parse(message, contacts=wa.bsuid_contacts(wa.PARENT_BSUID)))
    assert inbound.customer_id == wa.PARENT_BSUID


def test_a_phone_number_wins_over_a_bsuid_so_a_conversation_keeps_its_id() -> None:
    both = {**wa.text("wamid.u3", "hi"), "from_user_id": wa.BSUID}
    assert only(parse(both)).customer_id == "+" + wa.CUSTOMER


@pytest.mark.parametrize(
    ("sender", "contacts"),
    [
        ({"from_user_id": "us.1349"}, None),  # lower-case country code
        ({"from_user_id": "US." + "9" * 129}, None),  # past 128 alphanumerics
        ({"from": "US-1349"}, None),
        ({}, [{"user_id": wa.BSUID}, {"user_id": "GB.77"}]),  # whose is it?
        ({}, None),
    ],
)
def test_a_sender_that_is_no_phone_number_or_bsuid_is_counted_invalid(
    sender: dict[str, str], contacts: list[dict[str, Any]] | None
) -> None:
    message = {k: v for k, v in wa.text("wamid.bad", "hi").items() if k != "from"} | sender
    batch = parse(message, contacts=contacts if contacts is not None else [])
    assert batch.messages == ()
    assert counted(batch) == {"invalid": 1}


def test_a_bsuid_is_sent_as_recipient_and_a_phone_number_as_to() -> None:
    assert recipient_fields(wa.BSUID) == {"recipient": wa.BSUID}
    assert recipient_fields(wa.PARENT_BSUID) == {"recipient": wa.PARENT_BSUID}
    assert recipient_fields("+" + wa.CUSTOMER) == {"to": wa.CUSTOMER}
    assert recipient_fields(wa.CUSTOMER) == {"to": wa.CUSTOMER}


def test_replies_to_a_bsuid_and_its_rate_key_keep_the_id_the_webhook_gave() -> None:
    reply = OutboundReply(
        account_id="a", customer_id=wa.BSUID, message_id="m", text="t", deadline=1.0
    )
    assert codec.decode(codec.encode(reply)).customer_id == wa.BSUID


# --- the fallback config ---------------------------------------------------------------------


def test_fallback_replies_are_off_by_default_and_read_from_their_table(tmp_path: Path) -> None:
    assert GatewayConfig().fallback_replies == {}
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway.fallback_replies]\naudio = "Sorry, I cannot listen to voice notes yet."\n'
        'sticker = "Nice sticker!"\n'
        '[[accounts]]\naccount_id = "a"\nphone_number_id = "1"\n'
        '[[providers]]\nname = "e"\nkind = "echo"\n'
    )
    config = load_gateway_config(path, env={})
    assert config.fallback_replies == {
        "audio": "Sorry, I cannot listen to voice notes yet.",
        "sticker": "Nice sticker!",
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"voice": "x"}, r"'voice' is not a kind the AI cannot read .*"),
        ({"audi": "x"}, r"did you mean 'audio'\?"),
        ({"text": "x"}, r"'text' is not a kind the AI cannot read"),
        ({"button_reply": "x"}, r"'button_reply' is not a kind"),
        ({"audio": ""}, r"fallback_replies.audio = '': must be a non-empty string"),
        ({"audio": "   "}, r"fallback_replies.audio = '   ': must be a non-empty string"),
        ({"audio": 3}, r"fallback_replies.audio = 3: must be"),
        ({"audio": "x" * (MAX_TEXT_LEN + 1)}, r"at most 4096 characters"),
    ],
)
def test_a_bad_fallback_table_is_refused_naming_the_kind_and_the_rule(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        GatewayConfig(fallback_replies=table)


def test_a_fallback_table_that_is_no_table_is_refused_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\nfallback_replies = "Sorry"\n'
        '[[accounts]]\naccount_id = "a"\nphone_number_id = "1"\n'
        '[[providers]]\nname = "e"\nkind = "echo"\n'
    )
    with pytest.raises(ConfigError, match=r"gateway.toml \[gateway\] fallback_replies must be"):
        load_gateway_config(path, env={})


# --- the engine side: fixed replies skip the AI, the context reaches the provider -----------


def test_a_fixed_reply_goes_to_its_account_with_no_ai_request_and_ends_replied() -> None:
    core = router()
    fixed = InboundMessage(
        account_id=ACCT,
        customer_id=wa.BSUID,
        message_id="m.audio",
        text="[audio]",
        kind="audio",
        fixed_reply="Sorry, I cannot listen to voice notes yet.",
    )
    accept(core, fixed)
    to_pool, to_accounts, _ = core.take_outbox()
    assert to_pool == []
    [reply] = to_accounts[ACCT]
    assert (reply.customer_id, reply.text) == (wa.BSUID, fixed.fixed_reply)
    core.on_deliveries([delivered("m.audio")], T0 + 1)
    outcome = outcomes(core)["m.audio"]
    assert (outcome.status, outcome.reply) == ("replied", fixed.fixed_reply)
    assert core.counters()["fixed_replies"] == 1


def test_a_fixed_reply_waits_its_turn_behind_the_customers_message_in_processing() -> None:
    core = router()
    accept(core, router_msg("m1"))
    accept(core, replace(router_msg("m2"), fixed_reply="Thanks!"))
    to_pool, to_accounts, _ = core.take_outbox()
    assert ([r.message_id for r in to_pool], to_accounts) == (["m1"], {})
    core.on_ai_results([ai_ok("m1")], T0)
    core.on_deliveries([delivered("m1")], T0)
    _, to_accounts, _ = core.take_outbox()
    assert [(r.message_id, r.text) for r in to_accounts[ACCT]] == [
        ("m1", "re m1"),
        ("m2", "Thanks!"),
    ]


def test_the_ai_request_carries_the_message_it_replies_to() -> None:
    core = router()
    accept(core, replace(router_msg("m1"), context_id="wamid.ctx", kind="button_reply"))
    to_pool, _, _ = core.take_outbox()
    assert [r.context_id for r in to_pool] == ["wamid.ctx"]


def test_the_chat_request_marks_a_reply_to_an_earlier_message_on_a_first_line() -> None:
    opts = parse_options("p", {"base_url": "http://127.0.0.1:1/v1", "model": "m", "no_auth": True})
    body = json.loads(
        build_payload(
            opts,
            [("user", "hi"), ("assistant", "hello")],
            "[button reply] Yes (id: y)",
            context_id="wamid.ctx",
        )
    )
    assert body["messages"][-1] == {
        "role": "user",
        "content": "[in reply to message wamid.ctx]\n[button reply] Yes (id: y)",
    }
    assert [m["content"] for m in body["messages"][1:3]] == ["hi", "hello"]
    assert user_content("plain") == "plain"
