"""``wae-gateway --demo``: the gateway against a fake Graph API and a fake OpenAI server.

Everything runs on 127.0.0.1 in this process (the engine's actor processes aside), with
secrets made up for the run: the fake OpenAI server writes the replies (``reply to:
<text>``), the fake Graph API receives them and lists them at ``GET /received``. One
account, ``demo-shop``, phone_number_id :data:`PHONE_NUMBER_ID`. Nothing needs a Meta or
OpenAI account and nothing leaves the machine. :meth:`Demo.instructions` is what to paste
into another shell: a webhook body, its ``X-Hub-Signature-256`` made with openssl, curl.

Order matters, as in the load runner: the secrets go into the environment before the
engine starts (its actor processes inherit it), the fakes' threads start after it (no
thread is forked with the actor processes), the provider and the account are added once
the fakes' ports are known, and the fakes stop after the engine's shutdown.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import socket
import tempfile

from actors.config import EngineConfig
from actors.engine import Engine
from apps.environment import EnvOverlay
from apps.gateway.app import add_edges, start_engine
from apps.gateway.config import AccountEntry, GatewayConfig
from apps.loadrun.fakes import FakeGraphAPI, FakeOpenAI
from protocols import ProviderSpec, Scalar

__all__ = [
    "ACCOUNT_ID",
    "COMMANDS",
    "CUSTOMER",
    "DEFAULT_PORT",
    "PHONE_NUMBER_ID",
    "Demo",
    "pick_port",
    "webhook_body",
]

APP_SECRET_ENV = "DEMO_WHATSAPP_APP_SECRET"
VERIFY_TOKEN_ENV = "DEMO_WHATSAPP_VERIFY_TOKEN"
GRAPH_TOKEN_ENV = "DEMO_WHATSAPP_TOKEN"
OPENAI_KEY_ENV = "DEMO_OPENAI_API_KEY"
"""The variables the demo's made-up secrets live in (not ``WAE_*``: those are config keys)."""
ACCOUNT_ID = "demo-shop"
PHONE_NUMBER_ID = "100000000000001"
CUSTOMER = "15550001234"
DEFAULT_PORT = 8080
_MODEL = "demo-model"
_RECORDS = 100  # requests each fake keeps: plenty for pasting commands by hand


def pick_port(host: str, wanted: int | None) -> int:
    """``wanted`` if given; else :data:`DEFAULT_PORT` when it is free on ``host``, else 0 (any)."""
    if wanted is not None:
        return wanted
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As aiohttp binds: a port left in TIME_WAIT by a previous run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, DEFAULT_PORT))
        except OSError:
            return 0
    return DEFAULT_PORT


def webhook_body(text: str = "hello", message_id: str = "wamid.demo-1") -> str:
    """A Cloud API webhook with one text message from :data:`CUSTOMER`, as compact JSON."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": PHONE_NUMBER_ID},
        "messages": [
            {
                "from": CUSTOMER,
                "id": message_id,
                "timestamp": "1700000000",
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "0", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(doc, separators=(",", ":"))


COMMANDS = (
    f"BODY='{webhook_body()}'",
    'SIG="sha256=$(printf \'%s\' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" '
    "| sed 's/^.* //')\"",
    "curl -sS \"$GATEWAY/webhook\" -H 'Content-Type: application/json' "
    '-H "X-Hub-Signature-256: $SIG" --data-binary "$BODY"; echo',
    'sleep 1; curl -sS "$GRAPH/received"',
    'curl -sS "$GATEWAY/webhook?hub.mode=subscribe&hub.verify_token=$VERIFY_TOKEN'
    '&hub.challenge=42"; echo',
)
"""The commands :meth:`Demo.instructions` prints after the ``export`` line (README has them)."""


class Demo:
    """The demo's secrets, fakes and config; :meth:`start`, then :meth:`close` (idempotent).

    Args:
        host, port: where the gateway will listen (port 0: any free port).
    """

    def __init__(self, host: str, port: int) -> None:
        self.secrets = {
            APP_SECRET_ENV: secrets.token_hex(16),
            VERIFY_TOKEN_ENV: secrets.token_hex(8),
            GRAPH_TOKEN_ENV: secrets.token_urlsafe(24),
            OPENAI_KEY_ENV: "sk-demo-" + secrets.token_hex(16),
        }
        run = os.path.join(tempfile.gettempdir(), f"wae-demo-{os.getpid()}")
        # Never in the working directory; the store (created 0700 when the engine starts)
        # lives as long as the demo: close() deletes it.
        self._store_dir = run
        self.config = GatewayConfig(
            host=host,
            port=port,
            verify_token_env=VERIFY_TOKEN_ENV,
            app_secret_env=APP_SECRET_ENV,
            engine=EngineConfig(
                dead_letter_path=f"{run}-dead-letters.bin",
                intake_path=os.path.join(run, "intake.db"),
            ),
        )
        self.graph: FakeGraphAPI | None = None
        self.llm: FakeOpenAI | None = None
        self._env = EnvOverlay()

    def start(self) -> tuple[Engine, GatewayConfig]:
        """Put the secrets in the environment, start the engine, the fakes, the edges.

        Returns:
            The started engine and the gateway config with the account and the provider.

        Raises:
            EngineError: the engine did not start, or refused the provider or the account
                (what was started is stopped again; :meth:`close` restores the rest).
        """
        self._env.set(self.secrets)
        engine = start_engine(self.config)  # forks the actor processes: before any thread
        try:
            self.graph = FakeGraphAPI(
                token=self.secrets[GRAPH_TOKEN_ENV], max_requests=_RECORDS
            ).start()
            self.llm = FakeOpenAI(
                api_key=self.secrets[OPENAI_KEY_ENV], max_records=_RECORDS
            ).start()
            config = dataclasses.replace(
                self.config,
                accounts=(self._account(self.graph.base_url),),
                providers=(self._provider(self.llm.base_url),),
            )
            add_edges(engine, config)
        except BaseException:
            engine.shutdown()
            raise
        return engine, config

    def _account(self, graph_url: str) -> AccountEntry:
        return AccountEntry(
            account_id=ACCOUNT_ID,
            phone_number_id=PHONE_NUMBER_ID,
            transport="cloud_api",
            options={"api_base": graph_url, "token_env": GRAPH_TOKEN_ENV},
        )

    def _provider(self, llm_url: str) -> ProviderSpec:
        options: dict[str, Scalar] = {
            "base_url": llm_url,
            "model": _MODEL,
            "api_key_env": OPENAI_KEY_ENV,
        }
        return ProviderSpec(name="fake-openai", kind="openai", priority=10, options=options)

    def instructions(self, host: str, port: int) -> str:
        """What to paste into another shell to send a signed webhook and see the reply."""
        assert self.graph is not None, "start() first"
        assert self.llm is not None, "start() first"
        gateway = f"http://{host}:{port}"
        secret, token = self.secrets[APP_SECRET_ENV], self.secrets[VERIFY_TOKEN_ENV]
        return "\n".join(
            [
                "wa-actor-engine gateway demo: fake Graph and OpenAI servers, made-up secrets.",
                f"  gateway         {gateway}  account {ACCOUNT_ID}, "
                f"phone_number_id {PHONE_NUMBER_ID}",
                f"  fake Graph API  {self.graph.base_url}  receives the replies "
                "(GET /received lists them)",
                f"  fake OpenAI     {self.llm.base_url}  writes them: reply to: <text>",
                "Ctrl-C stops it all. In another shell, send a signed webhook and see the reply:",
                "",
                f"export SECRET='{secret}' VERIFY_TOKEN='{token}' "
                f"GATEWAY='{gateway}' GRAPH='{self.graph.base_url}'",
                *COMMANDS,
                "",
                "Each message id is taken once (WhatsApp redelivers; the engine drops repeats):",
                "change wamid.demo-1 in BODY to send another.",
            ]
        )

    def close(self) -> None:
        """Stop the fakes (after the engine's shutdown), delete the demo's intake store and
        restore the environment."""
        try:
            if self.llm is not None:
                self.llm.stop()
            if self.graph is not None:
                self.graph.close()
        finally:
            self.llm = self.graph = None
            shutil.rmtree(self._store_dir, ignore_errors=True)
            self._env.restore()
