"""Delivery reports and number health, from the status and error webhooks (pure).

An ``Outcome`` of ``replied`` means the Graph API accepted the reply; whether it reached
the customer comes later, as status webhooks about the reply's wamid. The gateway keeps
the wamid of each replied outcome (``Outcome.wamid``) in a :class:`DeliveryBook`, turns
each status update into a :class:`DeliveryStatus` naming the inbound message the reply
answered, and hands it to the application's delivery listeners.

Error codes that concern the whole number (an expired token, a payment or eligibility
problem, a policy block) mark it in :class:`NumberHealth`; ``/healthz`` reports it.

Nothing here touches a socket, a clock or the engine: callers pass the time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from actors.cores._args import require_int
from apps.gateway.notices import StatusUpdate, WebhookError

__all__ = [
    "ACCOUNT_CODES",
    "AUTH_FAILED",
    "DEGRADED",
    "CodeLabels",
    "DeliveryBook",
    "DeliveryStatus",
    "NumberHealth",
    "NumberProblem",
]

AUTH_FAILED, DEGRADED = "auth_failed", "degraded"

ACCOUNT_CODES: Mapping[int, str] = {
    190: AUTH_FAILED,  # the access token expired or was revoked
    131031: DEGRADED,  # the business account is locked (or not eligible)
    131042: DEGRADED,  # a payment problem with the business account
    368: DEGRADED,  # temporarily blocked for policy violations
}
"""Error codes that concern the number rather than one message, and the state they set."""

# How far a reply got. A status never moves a reply back: webhooks arrive out of order
# (read before delivered) and are redelivered. Other values (deleted, warning) rank 0.
_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryStatus:
    """What WhatsApp reported about a reply: the record a delivery listener receives.

    Attributes:
        message_id: the inbound message the reply answered (its ``Outcome.message_id``);
            empty when the gateway does not know the wamid (a reply sent before it
            started, or one forgotten past its bound).
        account_id: our account of the number that sent it ("" if not configured).
        phone_number_id: the business number that sent it.
        wamid: the id the Graph API gave the reply (``Outcome.wamid``).
        customer_id: the recipient, as the engine names customers (``+`` and digits, or
            a business-scoped user id).
        status: ``sent``, ``delivered``, ``read`` or ``failed`` (also ``deleted``,
            ``warning``, ``other``).
        at: Meta's time of the event (epoch seconds), None when it sent none.
        error_code: for ``failed``, Meta's code (e.g. 131047), else None.
        error_title: for ``failed``, the error's title (e.g. ``Re-engagement message``).
        error_detail: for ``failed``, ``error_data.details``.
    """

    message_id: str
    account_id: str
    phone_number_id: str
    wamid: str
    customer_id: str
    status: str
    at: float | None = None
    error_code: int | None = None
    error_title: str = ""
    error_detail: str = ""


def _customer(recipient_id: str) -> str:
    return "+" + recipient_id if recipient_id.isascii() and recipient_id.isdigit() else recipient_id


class DeliveryBook:
    """The wamids of recent replies, and the furthest status each has reached.

    Bounded: at most ``max_replies`` replies are remembered (the oldest sent is
    forgotten first); a status for a forgotten one is reported with an empty
    ``message_id``.

    Args:
        max_replies: the most replies remembered.

    Raises:
        ValueError: ``max_replies`` is not an int >= 1.
    """

    def __init__(self, max_replies: int = 50_000) -> None:
        self.max_replies = require_int("max_replies", max_replies, minimum=1)
        self.forgotten = 0
        self._by_wamid: OrderedDict[str, tuple[str, DeliveryStatus | None]] = OrderedDict()
        self._by_message: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_wamid)

    def sent(self, wamid: str, message_id: str) -> None:
        """Remember that the reply to ``message_id`` went out as ``wamid``."""
        if not wamid or wamid in self._by_wamid:
            return
        while len(self._by_wamid) >= self.max_replies:
            old_wamid, (old_id, _) = self._by_wamid.popitem(last=False)
            if self._by_message.get(old_id) == old_wamid:
                del self._by_message[old_id]
            self.forgotten += 1
        self._by_wamid[wamid] = (message_id, None)
        self._by_message[message_id] = wamid

    def update(self, update: StatusUpdate, account_id: str) -> DeliveryStatus | None:
        """The :class:`DeliveryStatus` of ``update``, or None when it adds nothing.

        A status that does not move a known reply further (a redelivered webhook, or a
        ``delivered`` after ``read``) gives None; any status of an unknown wamid is
        reported, with an empty ``message_id``.
        """
        known = self._by_wamid.get(update.wamid)
        error = update.errors[0] if update.errors else WebhookError(code=None)
        status = DeliveryStatus(
            message_id=known[0] if known else "",
            account_id=account_id,
            phone_number_id=update.phone_number_id or "",
            wamid=update.wamid,
            customer_id=_customer(update.recipient_id),
            status=update.status,
            at=update.timestamp,
            error_code=error.code,
            error_title=error.title or error.message,
            error_detail=error.details,
        )
        if known is None:
            return status
        rank, before = _RANK.get(update.status, 0), known[1]
        before_rank = _RANK.get(before.status, 0) if before is not None else 0
        if rank and rank <= before_rank:
            return None
        if rank:
            self._by_wamid[update.wamid] = (known[0], status)
        return status

    def latest(self, message_id: str) -> DeliveryStatus | None:
        """The furthest status reported so far for the reply to ``message_id``, if any."""
        wamid = self._by_message.get(message_id)
        known = self._by_wamid.get(wamid) if wamid is not None else None
        return known[1] if known is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberProblem:
    """Why a number cannot send, as a webhook reported it.

    Attributes:
        state: ``auth_failed`` (190) or ``degraded`` (payment, eligibility, policy).
        code: the error code; title: its title.
        at: when it was reported (epoch seconds: Meta's status time, or the time the
            error notification arrived).
        source: ``errors webhook`` or ``failed status``.
    """

    state: str
    code: int
    title: str
    at: float
    source: str


class NumberHealth:
    """Account-level problems per phone_number_id, until evidence that they are over.

    A problem ends when a later status shows the number working again: for
    ``auth_failed``, a ``sent`` (or ``delivered``, ``read``) status of a later time (the
    Graph API accepted a send with the token); for ``degraded``, a ``delivered`` or
    ``read`` of a later time (a message reached a customer). The caller keeps the keys
    bounded: it notes only numbers it is configured for.
    """

    def __init__(self) -> None:
        self._problems: dict[str, NumberProblem] = {}

    def note_error(
        self, phone_number_id: str, error: WebhookError, at: float, source: str
    ) -> NumberProblem | None:
        """Note ``error``; return the problem it sets, or None when it is not account-level."""
        state = ACCOUNT_CODES.get(error.code) if error.code is not None else None
        if state is None:
            return None
        problem = NumberProblem(
            state=state,
            code=error.code or 0,
            title=error.title or error.message,
            at=at,
            source=source,
        )
        self._problems[phone_number_id] = problem
        return problem

    def note_status(self, phone_number_id: str, status: str, at: float | None) -> bool:
        """A status of the number's messages at ``at``; return whether it ended a problem."""
        problem = self._problems.get(phone_number_id)
        if problem is None or at is None or at <= problem.at:
            return False
        # A later send accepted proves a token again; a later delivery proves the rest.
        ends = ("delivered", "read") + (("sent",) if problem.state == AUTH_FAILED else ())
        if status in ends:
            del self._problems[phone_number_id]
            return True
        return False

    def problem(self, phone_number_id: str) -> NumberProblem | None:
        """The number's current problem, or None."""
        return self._problems.get(phone_number_id)


class CodeLabels:
    """Error codes as metric label values, at most ``limit`` distinct (then ``other``).

    The codes come from payloads: bounding them keeps a flood of odd codes from
    growing the metrics without end.
    """

    def __init__(self, limit: int = 100) -> None:
        self.limit = require_int("limit", limit, minimum=1)
        self._seen: set[str] = set()

    def __call__(self, code: int | None) -> str:
        if code is None:
            return "none"
        label = str(code) if 0 <= code < 10**9 else "other"
        if label in self._seen:
            return label
        if len(self._seen) >= self.limit:
            return "other"
        self._seen.add(label)
        return label
