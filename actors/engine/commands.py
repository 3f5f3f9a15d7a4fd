"""The engine's management commands: asking the supervisor, and what an answer means.

``Engine`` holds the lock and the actor system; these functions hold the rest of a
command's round trip: which ``CommandResult`` answers which command (a late answer to an
earlier command must not be taken for this one), turning a refused ``add_account`` into
the exception the API promises, and re-admitting the messages the intake store recovered
for an account once that account runs again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from actors.engine.intake_book import MessageBook
from actors.errors import EngineError, InstanceLimitError
from protocols import CommandResult, SubmitBatch, SubmitResults

__all__ = ["Ask", "ask_command", "raise_if_refused", "readmit"]


class Ask(Protocol):
    """``Engine._ask``: one ask of an actor, taking only the replies ``accept`` accepts."""

    def __call__(
        self,
        target: Any,
        msg: Any,
        timeout: float | None = None,
        accept: Callable[[Any], bool] = ...,
    ) -> Any: ...


_COMMANDS = {
    "AddAccount": "add_account",
    "RemoveAccount": "remove_account",
    "AddProvider": "add_provider",
    "RemoveProvider": "remove_provider",
}


def _is_answer(reply: CommandResult, command: str) -> bool:
    return reply.command == _COMMANDS.get(command)


def ask_command(ask: Ask, supervisor: Any, msg: Any) -> CommandResult:
    """Ask the supervisor to carry out one management command.

    Args:
        ask: the engine's ask (the caller holds the engine's lock).
        supervisor: the supervisor's address.
        msg: an ``AddAccount``, ``RemoveAccount``, ``AddProvider`` or ``RemoveProvider``.

    Returns:
        The supervisor's ``CommandResult`` for this command.

    Raises:
        EngineError: the supervisor gave no answer to it within the ask timeout.
    """
    command = type(msg).__name__
    reply = ask(
        supervisor,
        msg,
        accept=lambda r: isinstance(r, CommandResult) and _is_answer(r, command),
    )
    if not isinstance(reply, CommandResult):
        raise EngineError(f"no answer to {command} (got {reply!r})")
    return reply


def raise_if_refused(result: CommandResult) -> None:
    """Turn a refused ``add_account`` into the exception ``Engine.add_account`` promises.

    Raises:
        InstanceLimitError: ``max_instances`` accounts already run.
        EngineError: any other refusal (the id is taken, a bad transport or options).
    """
    if not result.ok:
        if result.error == "instance_limit":
            raise InstanceLimitError(result.detail)
        raise EngineError(result.detail or result.error)


def readmit(
    book: MessageBook,
    ask_router: Callable[[SubmitBatch], Any],
    counters: Counter[str],
    account_id: str,
) -> None:
    """Admit again what the intake store recovered for ``account_id``, if anything.

    Args:
        book: the engine's message book (ledger and intake store).
        ask_router: the engine's router ask (it resolves refused and set-aside answers).
        counters: the engine's counters (``intake.readmitted``).
        account_id: the account that has just started.
    """
    batch = book.readmission(account_id)
    if batch is not None:
        reply = ask_router(batch)
        # No answer: the ledger's deadlines end them, or a new router gets them.
        if isinstance(reply, SubmitResults):
            counters["intake.readmitted"] += len(batch.messages)
            book.readmitted(reply)
