"""The gateway's delivery desk: what becomes of replies after ``replied``, and of numbers.

:class:`DeliveryDesk` takes the replied outcomes (their wamids) and each webhook's status
updates and error notifications, and

- hands every new :class:`~apps.gateway.delivery.DeliveryStatus` to the application's
  delivery listeners (``Gateway.subscribe_deliveries``), and keeps the latest per reply;
- counts failed statuses and error notifications by code (``/metrics``) and logs them,
  sampled by code;
- marks a number ``auth_failed`` or ``degraded`` on an account-level code
  (:data:`~apps.gateway.delivery.ACCOUNT_CODES`) until a later status shows it working,
  for ``/healthz``.

It runs on the gateway's event loop and never calls the engine: a status reaches the
application as soon as WhatsApp sends it. Listeners are called in subscription order on
that loop, so each must return quickly (hand work to a queue or a task); one that raises
is logged and counted, and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from actors.errors import ListenerLimitError
from apps.gateway.delivery import CodeLabels, DeliveryBook, DeliveryStatus, NumberHealth
from apps.gateway.metrics import GatewayCounters
from apps.gateway.notices import StatusUpdate, WebhookError
from apps.gateway.webhook import WebhookBatch
from protocols import Outcome

__all__ = ["DeliveryDesk", "DeliveryListener", "DeliverySubscription"]

DeliveryListener = Callable[[DeliveryStatus], object]
"""A delivery callback; its return value is ignored."""

MAX_LISTENERS = 50  # like the engine's max_listeners per account


class _Log(Protocol):
    def __call__(self, key: str, level: str, text: str, /, *args: object) -> None: ...


class DeliverySubscription:
    """One delivery listener; :meth:`cancel` ends it (safe to call twice, or from itself)."""

    __slots__ = ("_desk", "callback")

    def __init__(self, desk: DeliveryDesk, callback: DeliveryListener) -> None:
        self._desk: DeliveryDesk | None = desk
        self.callback = callback

    @property
    def active(self) -> bool:
        """True until :meth:`cancel`."""
        return self._desk is not None

    def cancel(self) -> bool:
        """Stop calling the callback; return whether it was active."""
        desk, self._desk = self._desk, None
        if desk is None:
            return False
        desk._listeners.remove(self)
        return True


class DeliveryDesk:
    """The wamid book, the number health and the listeners of one gateway.

    Args:
        accounts: phone_number_id -> account id, as configured.
        counters: the gateway's counters.
        log: ``(key, level, text, *args)``: log a line, sampled by ``key``.
        max_replies: replies whose wamid is remembered (see ``DeliveryBook``).
    """

    def __init__(
        self,
        accounts: Mapping[str, str],
        counters: GatewayCounters,
        log: _Log,
        *,
        max_replies: int = 50_000,
    ) -> None:
        self.accounts = dict(accounts)
        self.book = DeliveryBook(max_replies)
        self.numbers = NumberHealth()
        self._counters = counters
        self._log = log
        self._codes = CodeLabels()
        self._listeners: list[DeliverySubscription] = []

    def subscribe(self, callback: DeliveryListener) -> DeliverySubscription:
        """Call ``callback`` with each new delivery status, on the gateway's event loop.

        Raises:
            ListenerLimitError: ``MAX_LISTENERS`` listeners are subscribed already.
        """
        if len(self._listeners) >= MAX_LISTENERS:
            raise ListenerLimitError(
                f"the gateway already has {MAX_LISTENERS} delivery listeners (the limit)"
            )
        subscription = DeliverySubscription(self, callback)
        self._listeners.append(subscription)
        return subscription

    def replied(self, outcomes: Iterable[Outcome]) -> None:
        """Remember the wamid of each replied outcome."""
        for outcome in outcomes:
            if outcome.wamid:
                self.book.sent(outcome.wamid, outcome.message_id)

    def take(self, batch: WebhookBatch, now: float) -> None:
        """Handle a webhook's status updates and error notifications, received at ``now``."""
        for notice in batch.errors:
            code = self._codes(notice.error.code)
            self._counters.inc("error_notifications", code=code)
            self._log(
                f"errors {code}",
                "warning",
                "WhatsApp error notification {} ({}) for number {}: {}",
                notice.error.code,
                notice.error.title or notice.error.message,
                notice.phone_number_id,
                notice.error.details,
            )
            self._account_level(notice.phone_number_id, notice.error, now, "errors webhook")
        for update in batch.status_updates:
            phone = update.phone_number_id
            if phone is not None and phone in self.accounts:
                self.numbers.note_status(phone, update.status, update.timestamp)
            status = self.book.update(update, self.accounts.get(phone or "", ""))
            if status is None:
                continue
            if not status.message_id:
                self._counters.inc("deliveries_unmatched", status=status.status)
            if status.status == "failed":
                self._failed(status, update, now)
            self._tell(status)

    def _failed(self, status: DeliveryStatus, update: StatusUpdate, now: float) -> None:
        code = self._codes(status.error_code)
        self._counters.inc("delivery_failures", code=code)
        self._log(
            f"failed {code}",
            "warning",
            "reply {} to message {} failed: WhatsApp error {} ({}): {}",
            status.wamid,
            status.message_id or "?",
            status.error_code,
            status.error_title,
            status.error_detail,
        )
        at = status.at if status.at is not None else now
        for error in update.errors:
            self._account_level(status.phone_number_id, error, at, "failed status")

    def _account_level(
        self, phone: str | None, error: WebhookError, at: float, source: str
    ) -> None:
        if phone is None or phone not in self.accounts:
            return
        problem = self.numbers.note_error(phone, error, at, source)
        if problem is not None:
            self._log(
                f"number {phone} {problem.state}",
                "error",
                "number {} (account {}) is {}: WhatsApp error {} ({}) in a {}",
                phone,
                self.accounts[phone],
                problem.state,
                problem.code,
                problem.title,
                source,
            )

    def _tell(self, status: DeliveryStatus) -> None:
        for subscription in list(self._listeners):
            if not subscription.active:
                continue
            try:
                subscription.callback(status)
            except Exception as exc:  # an application bug must not stop the webhook
                self._counters.inc("listener_errors", kind="delivery")
                self._log("listener raised", "error", "a delivery listener raised: {!r}", exc)
