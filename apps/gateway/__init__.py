"""The reference webhook gateway: WhatsApp Cloud API webhooks in, an embedded engine behind.

``python -m apps.gateway --config gateway.toml`` (or the ``wae-gateway`` command) serves
``GET/POST /webhook``, ``GET /healthz`` and ``GET /metrics``. Needs the ``http`` extra
(aiohttp). The pure parts (:mod:`apps.gateway.webhook`, :mod:`apps.gateway.metrics`,
:mod:`apps.gateway.config`) are usable without a server.
"""

from apps.gateway.app import Gateway, start_engine
from apps.gateway.config import (
    AccountEntry,
    GatewayConfig,
    GatewaySecrets,
    load_gateway_config,
    resolve_secrets,
)
from apps.gateway.metrics import GatewayCounters, render
from apps.gateway.webhook import (
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
