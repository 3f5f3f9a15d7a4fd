"""Sampling the gateway process with py-spy while the benchmark drives it: where its time goes.

py-spy (``pip install py-spy``; not a dependency of the package) attaches to the running
gateway process by pid, samples every thread's Python stack :data:`RATE_HZ` times a
second without changing the code it samples, and writes collapsed stacks (``--format
raw``: one line per distinct stack, ``frame;frame;... count``). With ``--gil`` only the
thread holding the GIL is sampled, so the samples show where the process's Python time
goes; C code that runs without the GIL (SQLite, system calls) is in the process's CPU
time, read from ``/proc``, but mostly not in the samples. So the summary gives each part
its share of the samples, and that share of the CPU the process was measured to spend per
webhook.

:func:`summarize` counts each stack twice: in :data:`ACTIVITIES` (what the process was
doing: which engine call, which handler) and in :data:`STAGES` (where the time went:
SQLite, Thespian, parsing...), each matched on the stack's frames from the innermost out.
The engine's own processes are not sampled: their CPU is in the benchmark's second table.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from apps.loadrun.tables import table

__all__ = ["ACTIVITIES", "STAGES", "Profiler", "py_spy", "summarize"]

RATE_HZ = 250
ACTIVITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("engine thread: submit_many", ("Engine.submit_many ",)),
    ("engine thread: outcomes poll", ("Engine.outcomes ",)),
    ("engine thread: stats (/metrics)", ("Engine.stats ",)),
    ("engine thread: other", ("concurrent/futures/thread.py",)),
    ("event loop: webhook handler", ("Gateway._webhook ",)),
    ("event loop: /metrics", ("Gateway._metrics ",)),
    ("event loop: outcome handling", ("apps/gateway/outcomes.py", "apps/gateway/desk.py")),
    ("event loop: engine face", ("actors/engine/aio_",)),
    ("event loop: HTTP (aiohttp)", ("aiohttp/", "apps/gateway/guard.py")),
    ("event loop: itself", ("asyncio/", "selectors.py")),
)
"""What a sample was doing, from the innermost frame that says: (name, substrings)."""
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("intake store (SQLite)", ("sqlite3", "actors/engine/intake")),
    ("frame auth (HMAC) and sealing", ("frameauth", "sealing", "netsafe")),
    ("pickling", ("pickle", "_reduce", "copyreg")),
    ("Thespian transport", ("thespian/system/transport",)),
    ("Thespian (other)", ("thespian/",)),
    ("message validation", ("protocols/",)),
    ("engine facade", ("actors/",)),
    ("JSON decode (webhook)", ("json/decoder",)),
    ("JSON encode (answer)", ("json/encoder",)),
    ("webhook parsing", ("apps/gateway/webhook.py", "apps/gateway/inbound.py")),
    ("signature", ("apps/gateway/signature.py", "hmac.py")),
    ("metrics", ("apps/gateway/metrics.py", "prometheus_client/")),
    ("gateway (other)", ("apps/gateway/",)),
    ("aiohttp", ("aiohttp/", "multidict/", "yarl/")),
    ("asyncio, selectors, sockets", ("asyncio/", "selectors.py", "socket.py")),
)
"""Where a sample's CPU went, from the innermost frame that says: (name, substrings)."""


def py_spy() -> str | None:
    """The py-spy executable: on PATH, or beside this Python (a venv's bin); else None."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return shutil.which("py-spy") or (beside if os.access(beside, os.X_OK) else None)


@dataclass
class Profiler:
    """One py-spy recording of one process; :meth:`start`, then :meth:`finish`."""

    proc: subprocess.Popen[bytes]
    path: str
    seconds: float

    @classmethod
    def start(cls, pid: int, seconds: float, directory: str, concurrency: int) -> Profiler:
        """Record ``pid`` for ``seconds`` into ``directory/gateway-c<concurrency>.txt``.

        Raises:
            RuntimeError: py-spy is not installed.
        """
        exe = py_spy()
        if exe is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"gateway-c{concurrency}.txt")
        cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw", "--gil"]
        cmd += ["--duration", str(max(1, math.floor(seconds))), "--output", path]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return cls(proc, path, seconds)

    def finish(self, webhooks: int, cpu_ms: float) -> list[str]:
        """Wait for the recording (bounded) and summarize it (``cpu_ms`` per webhook)."""
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if self.proc.returncode != 0 or not os.path.exists(self.path):
            why = err.decode(errors="replace")[-300:]
            return [f"py-spy failed ({self.proc.returncode}): {why}"]
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            return summarize(fh.read().splitlines(), webhooks, cpu_ms, self.path)


def _match(frames: Sequence[str], kinds: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    for frame in reversed(frames):  # innermost first
        for name, needles in kinds:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarize(lines: Sequence[str], webhooks: int, cpu_ms: float, source: str = "") -> list[str]:
    """Each activity's and stage's share of the samples, and of ``cpu_ms`` per webhook.

    Args:
        lines: py-spy's collapsed stacks.
        webhooks: the webhooks answered while it sampled.
        cpu_ms: the CPU milliseconds the process spent per webhook (from ``/proc``).
    """
    by_activity: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        by_activity[_match(frames, ACTIVITIES)] += int(count)
        by_stage[_match(frames, STAGES)] += int(count)
    out = [
        f"the gateway process while its traffic ran: {cpu_ms:.2f} ms CPU per webhook; its "
        f"Python time by py-spy, {total:,} samples of the thread holding the GIL at "
        f"{RATE_HZ} Hz ({total / RATE_HZ / max(1, webhooks) * 1000:.2f} ms per webhook)"
        + (f", {source}" if source else ""),
    ]
    for title, counts in (("doing", by_activity), ("in", by_stage)):
        rows = [
            [name, 100 * n / max(1, total), cpu_ms * n / max(1, total)]
            for name, n in counts.most_common()
        ]
        out += table([title, "% of samples", "CPU ms/webhook"], rows)
    return out
