"""Logging: loguru everywhere, Thespian's own log records routed into it.

Library code only binds context (``logger.bind(actor=..., account=...)``); entry points
call ``configure_logging`` once, before the engine starts, so that the sinks are inherited
by every actor process the engine forks. Tracebacks are logged without variable values
(``diagnose=False``): a secret in a local variable must never reach a log.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from loguru import logger

__all__ = ["LoguruHandler", "configure_logging", "thespian_log_defs"]


def configure_logging(
    *, level: str = "INFO", json: bool = False, sink: TextIO | str | None = None
) -> int:
    """Replace loguru's sinks with one: stderr by default, JSON lines with ``json=True``.

    Returns the sink id (``logger.remove(id)`` undoes it).
    """
    logger.remove()
    return logger.add(
        sink if sink is not None else sys.stderr,
        level=level,
        serialize=json,
        backtrace=False,
        diagnose=False,
    )


class LoguruHandler(logging.Handler):
    """A stdlib logging handler that hands every record to loguru (for Thespian's logs)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(actor="thespian", source=record.name).opt(exception=record.exc_info).log(
            level, record.getMessage()
        )


def thespian_log_defs(level: str = "WARNING") -> dict[str, Any]:
    """``logging.config.dictConfig`` for Thespian: its records go to loguru."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"loguru": {"class": "actors.logging.LoguruHandler", "level": level}},
        "root": {"handlers": ["loguru"], "level": level},
    }
