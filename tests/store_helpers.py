"""A real process holding an intake store, for tests that SIGKILL the holder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HOLDER = textwrap.dedent(
    """
    import sys
    from actors.engine.intake import IntakeStore
    from protocols import InboundMessage
    store = IntakeStore.open(sys.argv[1], durability="os", retention_s=60.0, max_records=10)
    m = InboundMessage(account_id="acct-1", customer_id="+15550001", message_id="wamid.k",
                       text="acknowledged before the crash")
    store.record_accepted([(m, 4_000_000_000.0)])
    print("ready", flush=True)
    sys.stdin.read()
    """
)
"""Opens the store (``durability="os"``), commits message ``wamid.k``, says ready, waits."""


@contextmanager
def store_holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that holds the store at ``path`` with one committed message, ready.

    It is killed (if still alive) and reaped, and its pipes closed, on leaving.
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
