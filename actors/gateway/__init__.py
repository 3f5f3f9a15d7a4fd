"""The reference webhook gateway: WhatsApp Cloud API webhooks in, an embedded engine behind.

``python -m actors.gateway --config gateway.toml`` (or the ``wae-gateway`` command) serves
``GET/POST /webhook``, ``GET /healthz`` and ``GET /metrics``. Needs the ``http`` extra
(aiohttp). The pure parts (:mod:`actors.gateway.webhook`, :mod:`actors.gateway.metrics`,
:mod:`actors.gateway.config`) are usable without a server.
"""

from actors.gateway.app import Gateway, start_engine
from actors.gateway.config import (
    AccountEntry,
    GatewayConfig,
    GatewaySecrets,
    load_gateway_config,
    resolve_secrets,
)
from actors.gateway.metrics import GatewayCounters, render
from actors.gateway.webhook import (
    PayloadError,
    SubmitSummary,
    WebhookBatch,
    decode_payload,
    parse_payload,
    signature_problem,
    summarize,
    verify_signature,
)

__all__ = [
    "AccountEntry",
    "Gateway",
    "GatewayConfig",
    "GatewayCounters",
    "GatewaySecrets",
    "PayloadError",
    "SubmitSummary",
    "WebhookBatch",
    "decode_payload",
    "load_gateway_config",
    "parse_payload",
    "render",
    "resolve_secrets",
    "signature_problem",
    "start_engine",
    "summarize",
    "verify_signature",
]
