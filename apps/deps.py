"""What an entry point needs installed, checked first: one line saying what to run, no traceback.

A script started with a Python that lacks the dependencies (the system Python next to a
checkout, a venv made without the ``http`` extra) would otherwise die on an ``ImportError``
deep in an import chain. Entry points call :func:`require` before importing what needs them.
Standard library only, so that it can always be imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

__all__ = ["CORE", "CORE_INSTALL", "HTTP", "HTTP_INSTALL", "missing", "require"]

CORE = ("thespian", "msgpack", "loguru")
"""The package's own dependencies (``install_requires``)."""
CORE_INSTALL = "scripts/run (it makes .venv and installs them), or pip install -e . in the checkout"
HTTP = ("aiohttp", "prometheus_client")
"""The ``http`` extra: the gateway (and its ``/metrics``), the HTTP edges, the fake servers."""
HTTP_INSTALL = "pip install -e '.[http]' in the checkout"


def missing(modules: Iterable[str]) -> list[str]:
    """Return the names in ``modules`` that cannot be imported, in their order.

    Each is really imported (a module that is found but fails to import is missing too).
    """
    gone = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            gone.append(name)
    return gone


def require(prog: str, modules: Iterable[str], install: str) -> None:
    """Exit with status 2 and one line on stderr when one of ``modules`` cannot be imported.

    Args:
        prog: the command's name, to start the line with.
        modules: the top-level modules the command needs.
        install: what to run to get them (shown as is).

    Raises:
        SystemExit: status 2, after the line naming the missing modules, the Python that
            lacks them and ``install``.
    """
    gone = missing(modules)
    if gone:
        names = ", ".join(gone)
        verb = "is" if len(gone) == 1 else "are"
        print(
            f"{prog}: {names} {verb} not installed for {sys.executable}; run {install}",
            file=sys.stderr,
        )
        raise SystemExit(2)
