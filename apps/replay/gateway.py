"""Replay to a running gateway: post the records as signed Cloud API webhooks (stdlib HTTP).

:class:`GatewayTarget` answers like ``Engine.submit_many``, so
:func:`~apps.replay.replay_journal` drives it as it drives an engine; the gateway's dedupe
absorbs repeats. Used by ``scripts/replay.py --gateway``: its error messages name that
script's options.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from actors.cores.retry_after import parse_retry_after
from apps.gateway.signature import HEADER, sign
from apps.replay.report import ReplayTargetError
from protocols import REJECT_REASONS, Accepted, InboundMessage, Rejected

__all__ = ["GatewayTarget", "webhook_payload"]

_REFUSALS = ("shutting_down", "capacity", "customer_backlog")  # the reasons of a 503
DEFAULT_RETRY_AFTER_S = 1.0
"""The pause after a 503 without a usable ``Retry-After`` (a proxy's, or a garbled one)."""
MAX_RETRY_AFTER_S = 3600.0
"""Longest ``Retry-After`` honoured; ``--timeout-s`` bounds the total wait to retry anyway."""


def webhook_payload(
    phone_number_id: str, messages: Iterable[InboundMessage], *, timestamp: int
) -> dict[str, Any]:
    """A Cloud API ``messages`` webhook carrying ``messages`` as text messages to one number."""
    items = [
        {
            # The gateway adds the '+' back: the customer id round-trips.
            "from": m.customer_id.removeprefix("+"),
            "id": m.message_id,
            "timestamp": str(timestamp),
            "type": "text",
            "text": {"body": m.text},
        }
        for m in messages
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "", "phone_number_id": phone_number_id},
        "messages": items,
    }
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "replay", "changes": [change]}]}


class GatewayTarget:
    """Posts messages to a gateway as signed webhooks; answers like ``Engine.submit_many``.

    One webhook per account per call (a 413 splits it in halves). The gateway answers
    with counts, not ids, so: a 503 refuses the whole webhook (its ``Retry-After`` becomes
    :attr:`retry_after_s`, and the repost's duplicates are counted as accepted by the
    earlier post); a 200 whose messages were all taken or all refused for one reason is
    exact; any other 200 is resolved by posting its messages one by one (dedupe absorbs
    what was taken). The connection is kept alive; a broken one is retried once.

    Raises (from ``submit_many``):
        ReplayTargetError: the gateway is unreachable or answers something else (401, 5xx).
    """

    def __init__(
        self,
        url: str,
        app_secret: bytes,
        phone_number_ids: Mapping[str, str],
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--gateway must be an http(s) URL, got {url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._parts = parts
        self._target = (parts.path or "/webhook") + (f"?{parts.query}" if parts.query else "")
        self._secret = app_secret
        self._phone_ids = dict(phone_number_ids)
        self._timeout_s = timeout_s
        self._clock = clock
        self._conn: http.client.HTTPConnection | None = None
        self._taken: dict[tuple[str, ...], int] = {}
        self.retry_after_s: float | None = None
        self.answers: Counter[int] = Counter()

    def __repr__(self) -> str:
        return f"GatewayTarget({self.origin!r})"  # never the secret

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
        batch = list(messages)
        self.retry_after_s = None
        groups: dict[str, list[int]] = {}
        for i, msg in enumerate(batch):
            groups.setdefault(msg.account_id, []).append(i)
        results: dict[int, Accepted | Rejected] = {}
        for account_id, indexes in groups.items():
            group = [batch[i] for i in indexes]
            phone_id = self._phone_ids.get(account_id)
            if phone_id is None:
                detail = f"account {account_id!r} is not in --phone-number-id-map"
                answers: list[Accepted | Rejected] = [
                    _rejected(m, "unknown_account", detail) for m in group
                ]
            else:
                answers = self._deliver(phone_id, group)
            results.update(zip(indexes, answers, strict=True))
        return [results[i] for i in range(len(batch))]

    def _deliver(self, phone_id: str, msgs: list[InboundMessage]) -> list[Accepted | Rejected]:
        status, answer, retry_after = self._post(phone_id, msgs)
        n = len(msgs)
        if status == 413 and n > 1:
            return self._deliver(phone_id, msgs[: n // 2]) + self._deliver(phone_id, msgs[n // 2 :])
        if status != 503 and (status != 200 or answer is None):
            raise ReplayTargetError(
                f"the gateway at {self.origin} answered {status} to {n} messages"
            )
        key = tuple(m.message_id for m in msgs)
        answer = answer or {}  # a proxy's 503 (the gateway restarting) has no JSON body
        accepted = _count(answer.get("accepted"))
        if status == 503:
            self._taken[key] = self._taken.get(key, 0) + accepted
            self.retry_after_s = max(self.retry_after_s or 0.0, retry_after)
            rejected = answer.get("rejected")
            reason = next(
                (r for r in _REFUSALS if isinstance(rejected, dict) and rejected.get(r)), "capacity"
            )
            detail = f"the gateway answered 503, Retry-After {retry_after:g} s"
            return [_rejected(m, reason, detail) for m in msgs]
        taken = accepted + self._taken.pop(key, 0)
        counts = _unsettled(answer)
        if accepted + counts.pop("duplicate", 0) == n:
            return [
                Accepted(message_id=m.message_id) if i < taken else _rejected(m, "duplicate", "")
                for i, m in enumerate(msgs)
            ]
        reasons = [r for r, c in counts.items() if c]
        if len(reasons) == 1 and (n == 1 or counts[reasons[0]] == n):
            return [_rejected(m, reasons[0], "answered by the gateway") for m in msgs]
        if n == 1:
            raise ReplayTargetError(f"the gateway's answer does not account for {key[0]!r}")
        singles = [self._deliver(phone_id, [m])[0] for m in msgs]
        for i, result in enumerate(singles):  # reposts of what the batch post took
            if taken and isinstance(result, Rejected) and result.reason == "duplicate":
                singles[i], taken = Accepted(message_id=result.message_id), taken - 1
        return singles

    def _post(
        self, phone_id: str, msgs: list[InboundMessage]
    ) -> tuple[int, dict[str, Any] | None, float]:
        doc = webhook_payload(phone_id, msgs, timestamp=int(self._clock()))
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", HEADER: sign(self._secret, body)}
        for attempt in (1, 2):
            try:
                conn = self._connection()
                conn.request("POST", self._target, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    raise ReplayTargetError(
                        f"cannot post to the gateway at {self.origin}: {exc}"
                    ) from None
        self.answers[resp.status] += 1
        answer: dict[str, Any] | None = None
        with contextlib.suppress(ValueError):
            doc = json.loads(data)
            answer = doc if isinstance(doc, dict) else None
        retry_after = parse_retry_after(
            resp.getheader("Retry-After"),
            now=self._clock(),
            cap_s=MAX_RETRY_AFTER_S,
            default=DEFAULT_RETRY_AFTER_S,
        )
        return resp.status, answer, retry_after

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = (
                http.client.HTTPSConnection
                if self._parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = kind(self._parts.hostname or "", self._parts.port, timeout=self._timeout_s)
        return self._conn


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _unsettled(answer: Mapping[str, Any]) -> Counter[str]:
    """The gateway's rejections by reason plus its items that never reached the engine."""
    counts: Counter[str] = Counter()
    rejected, items = answer.get("rejected"), answer.get("items")
    for source in (
        rejected,
        {k: items.get(k) for k in ("invalid", "unknown_account")}
        if isinstance(items, dict)
        else None,
    ):
        if isinstance(source, dict):
            for reason, n in source.items():
                if reason not in REJECT_REASONS:
                    raise ReplayTargetError(f"the gateway answered an unknown reason {reason!r}")
                counts[reason] += _count(n)
    return counts


def _rejected(msg: InboundMessage, reason: str, detail: str) -> Rejected:
    return Rejected(message_id=msg.message_id, reason=reason, detail=detail)
