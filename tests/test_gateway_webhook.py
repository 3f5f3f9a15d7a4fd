"""The gateway's pure parts: signatures, payload parsing, the answer policy, config.

Metrics are tested in ``test_gateway_metrics.py``. The payload builders here are shared
with ``test_gateway_app.py``.
"""

from __future__ import annotations

import hmac
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import ConfigError
from apps.gateway import (
    AccountEntry,
    GatewayConfig,
    PayloadError,
    decode_payload,
    load_gateway_config,
    parse_payload,
    resolve_secrets,
    signature_problem,
    summarize,
    verify_signature,
)
from apps.gateway.signature import sign as sign_with
from apps.gateway.webhook import KINDS
from protocols import Accepted, Rejected

SECRET = b"app-secret-for-tests"
PHONE_ID = "100200300"
ACCOUNTS = {PHONE_ID: "acct-1", "999888777": "acct-2"}


# --- payload builders ------------------------------------------------------------------------


def text_message(mid: str, sender: str = "15550001111", body: str = "hi") -> dict[str, Any]:
    return {
        "from": sender,
        "id": mid,
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": body},
    }


def change(
    *,
    phone_id: str = PHONE_ID,
    messages: list[Any] | None = None,
    statuses: list[Any] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_id},
    }
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def payload(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    """A Cloud API webhook: ``entries`` entries, the changes split across them."""
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(entries)]
    for i, c in enumerate(changes):
        buckets[i % entries].append(c)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": f"waba-{i}", "changes": b} for i, b in enumerate(buckets)],
    }


def status(mid: str, value: str = "delivered") -> dict[str, Any]:
    return {"id": mid, "status": value, "timestamp": "1700000001", "recipient_id": "15550001111"}


def sign(body: bytes, secret: bytes = SECRET) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``: the tests sign as the replay tool does."""
    return sign_with(secret, body)


# --- signatures --------------------------------------------------------------------------------


def test_a_correct_signature_verifies() -> None:
    body = b'{"object": "whatsapp_business_account"}'
    assert verify_signature(SECRET, body, sign(body))
    assert signature_problem(SECRET, body, sign(body).upper().replace("SHA256=", "sha256=")) is None


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("sha1=" + "0" * 40, "malformed"),
        (sign(b"{}").removeprefix("sha256="), "malformed"),  # no prefix
        ("sha256=" + "0" * 64, "mismatch"),
        ("sha256=zz", "mismatch"),
        ("sha256=é", "mismatch"),  # non-ASCII: refused, not crashed
    ],
)
def test_a_bad_signature_says_why(header: str | None, why: str) -> None:
    assert signature_problem(SECRET, b"{}", header) == why
    assert not verify_signature(SECRET, b"{}", header)


def test_a_signature_over_other_bytes_or_with_another_secret_fails() -> None:
    body = b'{"a": 1}'
    assert signature_problem(SECRET, body + b" ", sign(body)) == "mismatch"
    assert signature_problem(SECRET, body, sign(body, b"other-secret")) == "mismatch"


def test_a_signature_is_the_hmac_sha256_of_the_body_in_lowercase_hex() -> None:
    # RFC 4231, test case 2: an answer known apart from the code under test.
    digest = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign_with(b"Jefe", b"what do ya want for nothing?") == "sha256=" + digest
    assert sign_with("Jefe", b"what do ya want for nothing?") == "sha256=" + digest
    assert verify_signature("Jefe", b"what do ya want for nothing?", "sha256=" + digest.upper())


def test_importing_the_pure_gateway_parts_loads_no_http_extra() -> None:
    code = (
        "import sys, apps.gateway.signature, apps.replay.gateway; from apps.gateway import "
        "parse_payload, sign; print(sorted({'aiohttp', 'prometheus_client'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_server_names_of_the_gateway_package_load_on_first_use() -> None:
    import apps.gateway
    from apps.gateway import app, metrics

    assert apps.gateway.Gateway is app.Gateway
    assert apps.gateway.start_engine is app.start_engine
    assert apps.gateway.GatewayMetrics is metrics.GatewayMetrics
    with pytest.raises(AttributeError, match="no attribute 'Gatway'"):
        _ = apps.gateway.Gatway


def test_the_digests_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_signature(SECRET, b"{}", sign(b"{}"))
    assert not verify_signature(SECRET, b"{}", "sha256=" + "0" * 64)
    assert len(calls) == 2


# --- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b"{}" + b" " * 10, ""),
    ],
)
def test_a_body_decodes_only_to_a_json_object(body: bytes, problem: str) -> None:
    if not problem:
        assert decode_payload(body) == {}
        return
    with pytest.raises(PayloadError, match=problem):
        decode_payload(body)


# --- parsing -------------------------------------------------------------------------------------


def test_one_text_message_becomes_an_inbound_message() -> None:
    batch = parse_payload(payload(change(messages=[text_message("wamid.1")])), ACCOUNTS)
    assert len(batch.messages) == 1
    msg = batch.messages[0]
    assert (msg.account_id, msg.customer_id, msg.message_id, msg.text) == (
        "acct-1",
        "+15550001111",
        "wamid.1",
        "hi",
    )
    assert batch.counts == dict.fromkeys(KINDS, 0) | {"text": 1}


def test_every_entry_change_and_message_is_collected_in_order() -> None:
    doc = payload(
        change(messages=[text_message("a.1"), text_message("a.2", sender="15550002222")]),
        change(phone_id="999888777", messages=[text_message("b.1")]),
        change(messages=[text_message("a.3")], statuses=[status("x")]),
        entries=2,
    )
    batch = parse_payload(doc, ACCOUNTS)
    assert sorted(m.message_id for m in batch.messages) == ["a.1", "a.2", "a.3", "b.1"]
    assert [m.account_id for m in batch.messages if m.message_id == "b.1"] == ["acct-2"]
    assert batch.counts["text"] == 4
    assert batch.counts["status"] == 1


def test_statuses_only_are_counted_by_status_and_submit_nothing() -> None:
    statuses = [status("w1", "sent"), status("w1", "delivered"), status("w1", "read")]
    statuses.append(status("w2", "brand_new_status"))
    batch = parse_payload(payload(change(statuses=statuses)), ACCOUNTS)
    assert batch.messages == ()
    assert batch.counts["status"] == 4
    assert batch.statuses == {"sent": 1, "delivered": 1, "read": 1, "other": 1}


def test_messages_the_ai_cannot_read_are_counted_by_kind_never_crashed_on() -> None:
    image = {"from": "15550001111", "id": "m.img", "type": "image", "image": {"id": "media-1"}}
    reaction = {"from": "15550001111", "id": "m.r", "type": "reaction", "reaction": {}}
    audio = {"from": "15550001111", "id": "m.a", "type": "audio"}
    novel = {"from": "15550001111", "id": "m.n", "type": "hologram"}
    doc = payload(change(messages=[image, reaction, audio, novel, text_message("m.t")]))
    batch = parse_payload(doc, ACCOUNTS)
    assert [m.message_id for m in batch.messages] == ["m.t"]
    counted = {kind: n for kind, n in batch.counts.items() if n}
    assert counted == {"image": 1, "reaction": 1, "audio": 1, "other": 1, "text": 1}


def test_a_message_that_breaks_a_protocol_rule_is_counted_invalid() -> None:
    messages = [
        text_message("too.long", body="x" * 4097),
        text_message("bad.phone", sender="12"),
        text_message("empty", body=""),
        {"from": "15550001111", "id": "no.body", "type": "text", "text": {}},
        {"from": "15550001111", "id": "no.type"},
        text_message("ok"),
    ]
    batch = parse_payload(payload(change(messages=messages)), ACCOUNTS)
    assert [m.message_id for m in batch.messages] == ["ok"]
    assert batch.counts["invalid"] == 5
    assert any("InboundMessage.text" in p and "4096" in p for p in batch.problems)
    assert any("messages[1]" in p and "customer_id" in p for p in batch.problems)
    assert not any("x" * 50 in p for p in batch.problems)  # the customer's text is not echoed


def test_a_phone_number_id_not_in_the_config_is_an_unknown_account() -> None:
    doc = payload(change(phone_id="555", messages=[text_message("u.1"), text_message("u.2")]))
    batch = parse_payload(doc, ACCOUNTS)
    assert batch.messages == ()
    assert batch.counts["unknown_account"] == 2
    assert batch.unknown_phone_ids == ("555",)


def test_a_sender_with_a_plus_keeps_one_plus() -> None:
    batch = parse_payload(payload(change(messages=[text_message("p", "+15550001111")])), ACCOUNTS)
    assert batch.messages[0].customer_id == "+15550001111"


@pytest.mark.parametrize(
    "doc",
    [
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account"},
        {"entry": "nope"},
        {"entry": [42]},
        {"entry": [{"changes": [{"field": "account_update", "value": {}}]}]},
        {"entry": [{"changes": [{"field": "messages"}]}]},
        {"entry": [{"changes": [{"field": "messages", "value": {"messages": "x"}}]}]},
        {"entry": [{"changes": [{"value": {"messages": [text_message("no.metadata")]}}]}]},
        {"entry": [{"changes": [{"value": {"messages": [7], "metadata": {}}}]}]},
        {"entry": [{"changes": [{"value": {"statuses": [None]}}]}]},
    ],
)
def test_unknown_shapes_are_counted_ignored(doc: dict[str, Any]) -> None:
    batch = parse_payload(doc, ACCOUNTS)
    assert batch.messages == ()
    assert batch.counts["ignored"] == 1
    assert len(batch.problems) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)
shaped_keys = st.sampled_from(
    ["object", "entry", "changes", "value", "field", "messages", "statuses", "metadata",
     "phone_number_id", "from", "id", "type", "text", "body", "status"]
)  # fmt: skip
shaped = st.recursive(
    st.none() | st.integers() | st.sampled_from(["text", "messages", PHONE_ID, "15550001111"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(shaped_keys, inner, max_size=4),
    max_leaves=30,
)


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4)
    | st.dictionaries(shaped_keys, shaped)
)
def test_any_json_object_parses_without_raising(doc: dict[str, Any]) -> None:
    batch = parse_payload(doc, ACCOUNTS)
    assert set(batch.counts) == set(KINDS)
    assert len(batch.problems) <= 20


# --- the answer policy ---------------------------------------------------------------------


def test_accepted_duplicate_invalid_and_unknown_account_answer_200() -> None:
    summary = summarize(
        [
            Accepted(message_id="a"),
            Rejected(message_id="b", reason="duplicate"),
            Rejected(message_id="c", reason="invalid"),
            Rejected(message_id="d", reason="unknown_account"),
        ]
    )
    assert summary.accepted == 1
    assert summary.rejected == {"duplicate": 1, "invalid": 1, "unknown_account": 1}
    assert (summary.retry, summary.http_status) == (False, 200)


@pytest.mark.parametrize("reason", ["capacity", "customer_backlog", "shutting_down"])
def test_a_refusal_a_redelivery_can_cure_answers_503(reason: str) -> None:
    summary = summarize([Accepted(message_id="a"), Rejected(message_id="b", reason=reason)])
    assert (summary.retry, summary.http_status) == (True, 503)


# --- config ----------------------------------------------------------------------------------

CONFIG = """
[gateway]
host = "0.0.0.0"
port = 9000
verify_token_env = "T_VERIFY"
app_secret_env = "T_SECRET"
max_body_bytes = 4096
retry_after_s = 7
base = "simpleSystemBase"

[engine]
max_concurrent_processing = 10

[[accounts]]
account_id = "acct-1"
phone_number_id = "100200300"
transport = "cloud_api"
options = { token_env = "T_TOKEN", api_base = "http://127.0.0.1:1" }

[[accounts]]
account_id = "acct-2"
phone_number_id = 999888777

[[providers]]
name = "echo"
kind = "echo"
priority = 5
daily_limit = 100
options = { latency_s = 0.0 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_a_config_file_gives_every_table(tmp_path: Path) -> None:
    cfg = load_gateway_config(write(tmp_path, CONFIG), env={})
    assert (cfg.host, cfg.port, cfg.max_body_bytes, cfg.retry_after_s) == ("0.0.0.0", 9000, 4096, 7)
    assert (cfg.verify_token_env, cfg.app_secret_env, cfg.base) == (
        "T_VERIFY",
        "T_SECRET",
        "simpleSystemBase",
    )
    assert cfg.engine.max_concurrent_processing == 10
    assert cfg.account_map == {"100200300": "acct-1", "999888777": "acct-2"}
    assert cfg.accounts[0].transport == "cloud_api"
    assert cfg.accounts[0].options == {"token_env": "T_TOKEN", "api_base": "http://127.0.0.1:1"}
    assert cfg.accounts[0].engine_options == {
        "token_env": "T_TOKEN",
        "api_base": "http://127.0.0.1:1",
        "phone_number_id": "100200300",  # cloud_api sends from the number it receives on
    }
    assert cfg.accounts[1].transport == "loopback"
    assert cfg.accounts[1].engine_options == {}
    assert (cfg.providers[0].name, cfg.providers[0].daily_limit) == ("echo", 100)


def test_the_defaults_are_the_documented_ones() -> None:
    cfg = GatewayConfig()
    assert (cfg.host, cfg.port, cfg.retry_after_s, cfg.base) == (
        "127.0.0.1",
        8080,
        5,
        "multiprocTCPBase",
    )
    assert cfg.max_body_bytes == 3 * 1024 * 1024


BAD_EDITS = [
    ("port = 9000", "port = 'x'", r"gateway.toml \[gateway\] port = 'x': must be an integer"),
    ("port = 9000", "prot = 1", r"unknown key 'prot'; did you mean 'port'\?"),
    ("T_SECRET", "s3cr3t value!", r"app_secret_env = .*: must be an environment variable"),
    ("retry_after_s = 7", "retry_after_s = 0", r"retry_after_s = 0: must be an integer from"),
    ("max_body_bytes = 4096", "max_body_bytes = 10", r"max_body_bytes = 10: must be .* >= 1024"),
    ('base = "simpleSystemBase"', 'base = "x"', r"base = 'x': must be one of"),
    ('transport = "cloud_api"', 'transport = "smoke"', r"\]\[0\] transport = 'smoke'"),
    ("999888777", "100200300", r"phone_number_id = '100200300': appears twice"),
    ('id = "100200300"', 'id = "12ab"', r"phone_number_id = '12ab': must be a string of digits"),
    ('token_env = "T_TOKEN"', 'phone_number_id = "1", token_env = "T"', r"options.phone_number_id"),
    ('kind = "echo"', 'kind = "Bad Kind"', r"\[\[providers\]\]\[0\]: .*ProviderSpec.kind"),
    ("max_concurrent_processing = 10", "max_concurent = 1", r"did you mean 'max_concurrent_pr"),
    ("[engine]", "[engin]", r"unknown key 'engin'; did you mean 'engine'\?"),
    ('account_id = "acct-2"\n', "", r"\[\[accounts\]\]\[1\]: account_id is required"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_EDITS)
def test_a_bad_config_names_the_file_the_key_and_the_rule(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in CONFIG
    path = write(tmp_path, CONFIG.replace(old, new))
    with pytest.raises(ConfigError, match=message) as info:
        load_gateway_config(path, env={})
    assert "s3cr3t" not in str(info.value)  # a secret pasted in place of a name is not echoed


def test_a_config_needs_an_account_and_a_provider(tmp_path: Path) -> None:
    no_providers = CONFIG[: CONFIG.index("[[providers]]")]
    with pytest.raises(ConfigError, match=r"gateway.toml: at least one \[\[providers\]\]"):
        load_gateway_config(write(tmp_path, no_providers), env={})


def test_a_config_object_is_checked_like_a_file() -> None:
    with pytest.raises(ConfigError, match=r"GatewayConfig port = 70000: must be an integer from 0"):
        GatewayConfig(port=70000)
    with pytest.raises(ConfigError, match="transport = 'smtp'"):
        AccountEntry(account_id="a", phone_number_id="1", transport="smtp")
    twice = (
        AccountEntry(account_id="a", phone_number_id="1"),
        AccountEntry(account_id="a", phone_number_id="2"),
    )
    with pytest.raises(ConfigError, match="account_id = 'a': appears twice"):
        GatewayConfig(accounts=twice)


def test_secrets_come_from_the_named_variables_and_never_show() -> None:
    cfg = GatewayConfig(verify_token_env="T_VERIFY", app_secret_env="T_SECRET")
    secrets = resolve_secrets(cfg, {"T_VERIFY": "tok-123456", "T_SECRET": "sec-abcdef"})
    assert (secrets.verify_token, secrets.app_secret) == ("tok-123456", b"sec-abcdef")
    assert "tok-123456" not in repr(secrets)
    assert "sec-abcdef" not in repr(secrets)


def test_a_missing_secret_variable_is_named() -> None:
    cfg = GatewayConfig(verify_token_env="T_VERIFY", app_secret_env="T_SECRET")
    with pytest.raises(
        ConfigError, match=r"'T_SECRET' \(named by \[gateway\] app_secret_env\) is not set"
    ):
        resolve_secrets(cfg, {"T_VERIFY": "tok-123456"})
