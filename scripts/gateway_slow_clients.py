#!/usr/bin/env python3
"""Measure: do stalled connections delay valid signed webhooks? Latency with 0 and N stalled.

Starts ``python -m apps.gateway`` in its own process (``multiprocTCPBase``, the echo
provider, a loopback account, the default cap of 2,000 connections), then from this
process sends valid signed webhooks one at a time, each on a new connection (so each goes
through accept and admission), and times each from connect to the end of its answer:

1. with no other connection open;
2. with ``--stalled`` connections open that stalled (four in five mid-headers, one in
   five mid-body; their deadlines are set past the run so that none is closed);
3. with none again, after closing them.

Every answer must be 200, and ``/metrics`` must show the stalled connections still open
after phase 2 (``wae_gateway_connections``). Prints p50, p99 and max per phase.

Usage: ``python scripts/gateway_slow_clients.py [--stalled 1000] [--webhooks 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

if (_root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, _root)

from apps.gateway.signature import sign

HOST = "127.0.0.1"
PHONE_ID = "100200300"
HALF_HEADERS = b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def config_text(port: int, tmp: str) -> str:
    return f"""
[gateway]
host = "{HOST}"
port = {port}
verify_token_env = "SLOW_VERIFY"
app_secret_env = "SLOW_SECRET"
header_timeout_s = 3600
body_timeout_s = 3600
keepalive_timeout_s = 3600

[engine]
dead_letter_path = "{tmp}/dead-letters.bin"
intake_path = "{tmp}/intake/intake.db"

[[accounts]]
account_id = "acct-1"
phone_number_id = "{PHONE_ID}"
options = {{ latency_s = 0 }}

[[providers]]
name = "echo"
kind = "echo"
priority = 1
options = {{ latency_s = 0 }}
"""


class Webhooks:
    """Valid signed webhooks, one text message each, every one from a new customer."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.n = 0

    def request(self) -> bytes:
        self.n += 1
        message = {
            "from": f"1555{self.n:07d}",
            "id": f"wamid.slow.{self.n}",
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": "hi"},
        }
        value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_ID}}
        value["messages"] = [message]  # type: ignore[assignment]
        doc = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
        }
        body = json.dumps(doc).encode()
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: {sign(self.secret, body)}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body


async def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Connect, send ``request``, read the answer to EOF; the status and the body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def timed_webhooks(port: int, hooks: Webhooks, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        request = hooks.request()
        started = time.perf_counter()
        code, body = await exchange(port, request)
        latencies.append(time.perf_counter() - started)
        if code != 200:
            raise SystemExit(f"a valid signed webhook was answered {code}: {body[:200]!r}")
    return latencies


async def open_gauge(port: int) -> float:
    _, body = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for line in body.decode().splitlines():
        if line.startswith("wae_gateway_connections "):
            return float(line.split()[1])
    raise SystemExit("/metrics has no wae_gateway_connections")


@contextlib.asynccontextmanager
async def stalled(port: int, count: int, hooks: Webhooks) -> AsyncIterator[None]:
    """``count`` connections that sent part of a request (4/5 headers, 1/5 body) and stall."""
    mid_body = hooks.request()[:-40]
    writers: list[asyncio.StreamWriter] = []
    try:
        for i in range(count):
            _, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
            writer.write(HALF_HEADERS if i % 5 else mid_body)
        yield
    finally:
        for writer in writers:
            writer.transport.abort()


def summary(name: str, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"{name:<28} n={len(ms):<5} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {ms[-1]:7.2f} ms"


async def measure(port: int, hooks: Webhooks, count: int, n_stalled: int) -> list[str]:
    await timed_webhooks(port, hooks, 50)  # warm-up, not reported
    rows = [summary("0 stalled", await timed_webhooks(port, hooks, count))]
    async with stalled(port, n_stalled, hooks):
        deadline = time.monotonic() + 60
        while (seen := await open_gauge(port)) < n_stalled:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {seen:g} of {n_stalled} stalled connections open")
            await asyncio.sleep(0.1)
        latencies = await timed_webhooks(port, hooks, count)
        still = await open_gauge(port)
        if still < n_stalled:
            raise SystemExit(f"stalled connections were closed during the run: {still:g} left")
        rows.append(summary(f"{n_stalled} stalled (all open)", latencies))
    rows.append(summary("0 stalled, after", await timed_webhooks(port, hooks, count)))
    return rows


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.2)  # the gateway's start-up: poll until it answers
    raise SystemExit("the gateway did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stalled", type=int, default=1000)
    parser.add_argument("--webhooks", type=int, default=500)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.stalled + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    secret = secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, "SLOW_VERIFY": secrets.token_hex(8), "SLOW_SECRET": secret}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.toml"
        config.write_text(config_text(port, tmp))
        cmd = [
            sys.executable,
            "-m",
            "apps.gateway",
            "--config",
            str(config),
            "--log-level",
            "WARNING",
        ]
        proc = subprocess.Popen(cmd, cwd=_root, env=env)
        try:
            wait_healthy(port, proc)
            rows = asyncio.run(measure(port, Webhooks(secret), args.webhooks, args.stalled))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print("valid signed webhooks, one at a time, each on a new connection; all answered 200")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
