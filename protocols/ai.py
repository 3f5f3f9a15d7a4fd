"""Messages between the router and the AI provider pool."""

from __future__ import annotations

from dataclasses import dataclass

from protocols._schema import (
    Message,
    check_customer_id,
    check_id,
    check_range,
    check_slug,
    check_text,
    message,
)

__all__ = ["AIFailure", "AIReply", "AIRequest"]


@message("ai_request")
@dataclass(frozen=True, slots=True, kw_only=True)
class AIRequest(Message):
    """Ask the pool for a reply to one customer message, before ``deadline``.

    ``deadline`` is wall-clock epoch seconds: the one deadline of the message, shared by
    every provider the pool tries (a fallback does not restart the budget).
    ``context_id`` is ``InboundMessage.context_id``: the message the customer replied to
    (empty when none); providers may tell the model about it.
    """

    message_id: str
    account_id: str
    customer_id: str
    text: str
    deadline: float
    context_id: str = ""

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)
        check_id(self, "account_id", self.account_id)
        check_customer_id(self, "customer_id", self.customer_id)
        check_text(self, "text", self.text)
        if self.context_id:
            check_id(self, "context_id", self.context_id)


@message("ai_reply")
@dataclass(frozen=True, slots=True, kw_only=True)
class AIReply(Message):
    """A provider's reply text for ``message_id``, with token usage when known."""

    message_id: str
    provider: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)
        check_id(self, "provider", self.provider)
        check_text(self, "text", self.text)
        check_range(self, "prompt_tokens", self.prompt_tokens, lo=0)
        check_range(self, "completion_tokens", self.completion_tokens, lo=0)


@message("ai_failure")
@dataclass(frozen=True, slots=True, kw_only=True)
class AIFailure(Message):
    """No reply for ``message_id``: why (a reason code), and the last provider tried."""

    message_id: str
    reason: str
    provider: str | None = None
    detail: str = ""

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)
        check_slug(self, "reason", self.reason)
        if self.provider is not None:
            check_id(self, "provider", self.provider)
        check_text(self, "detail", self.detail, allow_empty=True)
