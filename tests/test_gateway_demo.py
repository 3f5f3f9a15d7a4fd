"""``python -m apps.gateway --demo`` as a newcomer runs it: follow its printed instructions.

The demo is started as a command, its printed secret and body are used the way the printed
shell lines use them (the openssl line itself is run when openssl is installed), and the
AI reply must reach the fake Graph API. Then SIGINT (Ctrl-C) must stop it cleanly, with no
actor process left behind.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.runtime import procs
from apps.gateway.demo import COMMANDS, DEFAULT_PORT, pick_port
from apps.gateway.signature import HEADER, sign

ROOT = Path(__file__).resolve().parents[1]
_MARK = "GATEWAY_DEMO_TEST_MARK"  # not WAE_*: those are configuration keys


class Demo:
    """The demo command: its stdout lines as they come, and every process it started."""

    def __init__(self, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAE_")}
        env["TMPDIR"] = str(tmp_path)  # its dead-letter journal, were one written
        env["THESPLOG_FILE"] = str(tmp_path / "thespian.log")
        self.mark = uuid.uuid4().hex
        env[_MARK] = self.mark
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apps.gateway", "--demo", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a shell job would be
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        out, err = self.proc.stdout, self.proc.stderr
        self._readers = [
            threading.Thread(target=lambda: [self.lines.put(x) for x in out], daemon=True),
            threading.Thread(target=lambda: self.err.extend(err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def wait_line(self, pattern: str, deadline_s: float = 60.0) -> re.Match[str]:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=0.1))
                if match := re.match(pattern, self.seen[-1]):
                    return match
            if self.proc.poll() is not None and self.lines.empty():
                break
        raise AssertionError(f"no line matching {pattern!r} in {self.seen}; stderr {self.err}")

    def output_done(self) -> None:
        """Wait until both pipes were read to their end (the command has exited)."""
        for reader in self._readers:
            reader.join(timeout=10)
            assert not reader.is_alive()

    def processes(self) -> set[int]:
        """The live processes this demo started: it and the engine's actor processes.

        Thespian's admin forks twice and starts a session of its own, so the actor
        processes are neither the command's descendants nor in its process group; they
        are found by the marker every process of this demo inherits in its environment.
        """
        needle = f"{_MARK}={self.mark}".encode()
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                # A process gone meanwhile, or not ours to read, is not this demo's.
                with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0"):
                        found.add(int(entry))
        return {pid for pid in found if procs.alive(pid)}

    def stop(self) -> None:
        """Kill whatever is left of this demo (the test's own stop failed) and reap it."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert not procs.wait_gone(self.processes(), timeout_s=10.0)
        for reader in self._readers:
            reader.join(timeout=10)  # EOF once every holder of the pipes is gone
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        if not any(reader.is_alive() for reader in self._readers):
            self.proc.stdout.close()  # closing under a blocked reader would wait for it
            self.proc.stderr.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _request(url: str, method: str = "GET", body: bytes = b"", **headers: str) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _openssl_signature(secret: str, body: str) -> str:
    """Run the SIG= line the demo prints, as a shell would, and return the header value."""
    (sig_line,) = [c for c in COMMANDS if c.startswith("SIG=")]
    script = f'{sig_line}\nprintf "%s" "$SIG"\n'
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SECRET": secret, "BODY": body}
    done = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def test_the_demo_answers_a_webhook_signed_as_it_says_and_stops_cleanly_on_ctrl_c(
    demo: Demo, tmp_path: Path
) -> None:
    export = demo.wait_line(
        r"^export SECRET='(\w+)' VERIFY_TOKEN='(\w+)' GATEWAY='(\S+)' GRAPH='(\S+)'$"
    )
    secret, token, gateway, graph = export.groups()
    body = demo.wait_line(r"^BODY='(.+)'$").group(1)
    for command in COMMANDS[1:]:
        assert demo.wait_line(r"^(.*)$").group(1) == command  # printed as README shows it
    actor_pids = demo.processes() - {demo.proc.pid}
    assert len(actor_pids) >= 4, "the admin, supervisor, router, pool and account processes"

    signature = sign(secret, body.encode())  # HMAC-SHA256 of the exact bytes curl sends
    if shutil.which("openssl"):
        assert _openssl_signature(secret, body) == signature
    status, answer = _request(
        f"{gateway}/webhook",
        "POST",
        body.encode(),
        **{"Content-Type": "application/json", HEADER: signature},
    )
    assert (status, json.loads(answer)["accepted"]) == (200, 1)
    status, _ = _request(
        f"{gateway}/webhook", "POST", body.encode(), **{HEADER: sign("wrong", body.encode())}
    )
    assert status == 401

    received: list[dict[str, Any]] = []
    end = time.monotonic() + 30
    while not received and time.monotonic() < end:
        status, listing = _request(f"{graph}/received")
        assert status == 200
        received = json.loads(listing)["received"]
        if not received:
            threading.Event().wait(0.05)  # the poll interval of a condition wait
    assert [r["body"]["text"]["body"] for r in received] == ["reply to: hello"]
    assert received[0]["to"] == "15550001234"
    challenge = f"{gateway}/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"
    assert _request(challenge) == (200, b"42")

    os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the job's group
    assert demo.proc.wait(timeout=60) == 0
    demo.output_done()
    assert not procs.wait_gone(actor_pids, timeout_s=10.0), "an actor process outlived the demo"
    stderr = "".join(demo.err)
    assert "engine shut down in" in stderr
    assert "Traceback" not in stderr
    assert secret not in stderr  # the log never shows a secret; only the instructions do
    assert {p.name for p in tmp_path.iterdir()} <= {"thespian.log"}  # no journal left


def test_readme_shows_the_commands_the_demo_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Try it: the gateway in demo mode") :]
    section = section[: section.index("\n## ", 1)]
    for command in COMMANDS:
        assert f"\n{command}\n" in section
    assert "wae-gateway --demo" in section


def test_the_demo_takes_8080_when_free_and_any_port_when_it_is_taken() -> None:
    assert pick_port("127.0.0.1", 9999) == 9999  # --port wins
    holder = socket.socket()
    try:
        with contextlib.suppress(OSError):  # taken already: as good for this test
            holder.bind(("127.0.0.1", DEFAULT_PORT))
            holder.listen()
        assert pick_port("127.0.0.1", None) == 0
    finally:
        holder.close()
