"""The reference webhook gateway: WhatsApp Cloud API webhooks in, an embedded engine behind.

``python -m apps.gateway --config gateway.toml`` (or the ``wae-gateway`` command) serves
``GET/POST /webhook``, ``GET /healthz`` and ``GET /metrics``. Needs the ``http`` extra
(aiohttp, prometheus_client). The pure parts (:mod:`apps.gateway.webhook`,
:mod:`apps.gateway.signature`, :mod:`apps.gateway.config`) are usable without it:
importing this package loads neither and no Thespian, so the replay tool can sign
webhooks with the standard library alone. The names of :mod:`apps.gateway.app` and
:mod:`apps.gateway.metrics` are imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.gateway.config import (
    AccountEntry,
    GatewayConfig,
    GatewaySecrets,
    load_gateway_config,
    resolve_secrets,
)
from apps.gateway.signature import sign, signature_problem, verify_signature
from apps.gateway.webhook import (
    PayloadError,
    SubmitSummary,
    WebhookBatch,
    decode_payload,
    parse_payload,
    summarize,
)

if TYPE_CHECKING:
    from apps.gateway.app import Gateway, start_engine
    from apps.gateway.metrics import GatewayCounters, GatewayMetrics

__all__ = [
    "AccountEntry",
    "Gateway",
    "GatewayConfig",
    "GatewayCounters",
    "GatewayMetrics",
    "GatewaySecrets",
    "PayloadError",
    "SubmitSummary",
    "WebhookBatch",
    "decode_payload",
    "load_gateway_config",
    "parse_payload",
    "resolve_secrets",
    "sign",
    "signature_problem",
    "start_engine",
    "summarize",
    "verify_signature",
]


def __getattr__(name: str) -> Any:
    # PEP 562: the server side (aiohttp, prometheus_client, the engine facade) loads only
    # when one of its names is asked for.
    value: Any
    if name in ("Gateway", "start_engine"):
        from apps.gateway import app

        value = getattr(app, name)
    elif name in ("GatewayCounters", "GatewayMetrics"):
        from apps.gateway import metrics

        value = getattr(metrics, name)
    else:
        raise AttributeError(f"module 'apps.gateway' has no attribute {name!r}")
    globals()[name] = value
    return value
