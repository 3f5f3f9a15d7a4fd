"""Slow clients: read deadlines, the connection cap, and stalled sockets that keep no one out.

The gateway is served by :func:`apps.gateway.serve.serve` on 127.0.0.1 (as ``wae-gateway``
serves it); the clients are raw sockets that send part of a request and stall. Deadlines
are short (0.5 s) and every wait is on a condition (the socket's EOF, a counter) with a
generous overall deadline. The pure table under the guard is tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections.abc import AsyncIterator, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from actors.errors import ConfigError
from apps.gateway import Gateway, GatewayConfig, load_gateway_config
from apps.gateway.connections import FD_HEADROOM, ConnectionTable, fd_budget
from apps.gateway.serve import serve
from tests.conftest import EngineFactory
from tests.test_gateway_app import make_gateway, replied, until
from tests.test_gateway_webhook import change, payload, sign, text_message

HOST = "127.0.0.1"
WAIT_S = 20.0  # the overall deadline of every wait: generous, never the expected time
HALF_HEADERS = b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
_mids = count(1)

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# --- helpers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[int]:
    """Serve ``gateway`` with ``serve()`` on 127.0.0.1:<free port>; yield the port."""
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(gateway, HOST, 0, stop, on_listening=lambda _h, p: listening.set_result(p))
    )
    try:
        done, _ = await asyncio.wait(
            {listening, task}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if listening not in done:
            raise AssertionError("the gateway did not start listening")
        yield listening.result()
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def sockets() -> AsyncIterator[list[Conn]]:
    """A list to open raw connections into; every one is closed at the end."""
    opened: list[Conn] = []
    try:
        yield opened
    finally:
        for _, writer in opened:
            writer.transport.abort()


async def stall(opened: list[Conn], port: int, data: bytes) -> Conn:
    """Connect, send ``data`` (part of a request) and send nothing more."""
    reader, writer = await asyncio.open_connection(HOST, port)
    opened.append((reader, writer))
    writer.write(data)
    await writer.drain()
    return reader, writer


async def closed(reader: asyncio.StreamReader, what: str) -> bytes:
    """Wait until the server closes the connection; return what it sent before."""
    data = b""
    try:
        async with asyncio.timeout(WAIT_S):
            with contextlib.suppress(ConnectionResetError):
                while chunk := await reader.read(65536):
                    data += chunk
    except TimeoutError:
        raise AssertionError(f"{what}: still open after {WAIT_S} s") from None
    return data


def webhook_body() -> bytes:
    n = next(_mids)  # a customer of its own: no customer's backlog refuses it
    message = text_message(f"wamid.slow-{n}", sender=f"1555{n:07d}")
    return json.dumps(payload(change(messages=[message]))).encode()


def signed_request(body: bytes) -> bytes:
    head = (
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: {sign(body)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response off a raw connection; return its status."""
    async with asyncio.timeout(WAIT_S):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        await reader.readexactly(length)
    return int(lines[0].split()[1])


async def post_signed(http: aiohttp.ClientSession, port: int) -> int:
    body = webhook_body()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    async with http.post(f"http://{HOST}:{port}/webhook", data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def echo_gateway(make_engine: EngineFactory, **config: Any) -> Gateway:
    engine = make_engine("simpleSystemBase", echo={}, accounts=("acct-1",))
    return make_gateway(engine, **config)


def closes(gateway: Gateway, reason: str) -> int:
    return gateway.counters.get("connections_closed", reason=reason)


@contextlib.contextmanager
def open_files(at_least: int) -> Iterator[None]:
    """Raise the soft open-file limit to ``at_least`` for the test (bounded by the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < at_least:
        if hard != resource.RLIM_INFINITY and hard < at_least:
            pytest.skip(f"the hard open-file limit {hard} is below the {at_least} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- deadlines ---------------------------------------------------------------------------------


def test_a_client_that_stalls_mid_headers_is_closed_after_the_header_deadline(
    make_engine: EngineFactory,
) -> None:
    gateway = echo_gateway(make_engine, header_timeout_s=0.5)

    async def scenario() -> float:
        async with serving(gateway) as port, sockets() as opened:
            started = time.monotonic()
            reader, _ = await stall(opened, port, HALF_HEADERS)
            assert await closed(reader, "a client stalled mid-headers") == b""
            elapsed = time.monotonic() - started
            await until(lambda: len(gateway.guard) == 0, "the table to forget it")
            return elapsed

    assert asyncio.run(scenario()) >= 0.5  # never before its deadline
    assert closes(gateway, "header_timeout") == 1
    assert gateway.counters.total("webhooks") == 0
    sample = gateway.metrics.registry.get_sample_value
    assert sample("wae_gateway_connections_closed_total", {"reason": "header_timeout"}) == 1


def test_a_client_that_trickles_its_headers_is_closed_at_the_same_deadline(
    make_engine: EngineFactory,
) -> None:
    gateway = echo_gateway(make_engine, header_timeout_s=0.5)
    request = HALF_HEADERS + b"ngth: 10\r\nX-Padding: " + b"p" * 4000  # 200 s at 20 bytes/s

    async def scenario() -> int:
        async with serving(gateway) as port, sockets() as opened:
            reader, writer = await stall(opened, port, request[:1])
            sent = 1

            async def trickle() -> None:
                nonlocal sent
                with contextlib.suppress(ConnectionError):
                    while sent < len(request):
                        await asyncio.sleep(0.05)  # the client's pace, not a wait for anything
                        writer.write(request[sent : sent + 1])
                        sent += 1
                        await writer.drain()

            trickling = asyncio.create_task(trickle())
            try:
                await closed(reader, "a client trickling its headers")
            finally:
                trickling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await trickling
            return sent

    sent = asyncio.run(scenario())
    assert sent < len(request)  # it was still sending: every byte did not buy it more time
    assert closes(gateway, "header_timeout") == 1


def test_a_client_that_stalls_mid_body_is_closed_after_the_body_deadline(
    make_engine: EngineFactory,
) -> None:
    gateway = echo_gateway(make_engine, header_timeout_s=30, body_timeout_s=0.5)
    body = webhook_body()

    async def scenario() -> None:
        async with serving(gateway) as port, sockets() as opened:
            reader, _ = await stall(opened, port, signed_request(body)[: -len(body) // 2])
            await until(lambda: gateway.guard.count("body") == 1, "the headers to be read")
            assert await closed(reader, "a client stalled mid-body") == b""
            await until(lambda: len(gateway.guard) == 0, "the table to forget it")

    asyncio.run(scenario())
    assert closes(gateway, "body_timeout") == 1
    assert closes(gateway, "header_timeout") == 0
    assert gateway.counters.total("webhooks") == 0  # nothing answered, nothing submitted
    assert gateway.counters.total("submissions") == 0


def test_a_later_request_on_a_kept_alive_connection_gets_the_header_deadline_from_its_first_byte(
    make_engine: EngineFactory,
) -> None:
    gateway = echo_gateway(make_engine, header_timeout_s=0.5, keepalive_timeout_s=60)

    async def scenario() -> None:
        async with serving(gateway) as port, sockets() as opened:
            reader, writer = await stall(opened, port, signed_request(webhook_body()))
            assert await read_response(reader) == 200
            await until(lambda: gateway.guard.count("idle") == 1, "the connection to go idle")
            writer.write(HALF_HEADERS)
            await closed(reader, "a kept-alive client stalled mid-headers")

    asyncio.run(scenario())
    assert closes(gateway, "header_timeout") == 1
    assert closes(gateway, "idle_timeout") == 0
    assert gateway.counters.get("webhooks", code="200") == 1


def test_an_idle_kept_alive_connection_counts_towards_the_cap_and_is_closed_after_the_keepalive(
    make_engine: EngineFactory,
) -> None:
    gateway = echo_gateway(make_engine, header_timeout_s=60, keepalive_timeout_s=0.5)
    sample = gateway.metrics.registry.get_sample_value

    async def scenario() -> None:
        async with serving(gateway) as port, sockets() as opened:
            reader, _ = await stall(opened, port, signed_request(webhook_body()))
            assert await read_response(reader) == 200
            await until(lambda: gateway.guard.count("idle") == 1, "the connection to go idle")
            assert sample("wae_gateway_connections", {}) == 1
            await closed(reader, "an idle kept-alive connection")
            await until(lambda: len(gateway.guard) == 0, "the table to forget it")
            assert sample("wae_gateway_connections", {}) == 0

    asyncio.run(scenario())
    assert closes(gateway, "idle_timeout") == 1


# --- the cap -----------------------------------------------------------------------------------


def test_a_thousand_stalled_connections_do_not_keep_valid_signed_webhooks_out(
    make_engine: EngineFactory,
) -> None:
    stalled_heads, stalled_bodies = 800, 200
    gateway = echo_gateway(
        make_engine, max_connections=1100, header_timeout_s=120, body_timeout_s=120
    )
    body = webhook_body()
    mid_body = signed_request(body)[: -len(body) // 2]

    async def scenario() -> list[int]:
        async with serving(gateway) as port, sockets() as opened:
            for i in range(0, stalled_heads + stalled_bodies, 100):
                data = HALF_HEADERS if i < stalled_heads else mid_body
                await asyncio.gather(*(stall(opened, port, data) for _ in range(100)))
            await until(
                lambda: (
                    (gateway.guard.count("head"), gateway.guard.count("body"))
                    == (stalled_heads, stalled_bodies)
                ),
                "1,000 stalled connections open",
            )
            connector = aiohttp.TCPConnector(limit=10)
            async with aiohttp.ClientSession(connector=connector) as http:
                codes = [await post_signed(http, port) for _ in range(20)]
                codes += await asyncio.gather(*(post_signed(http, port) for _ in range(40)))
            await until(lambda: replied(gateway) == 60, "60 replied outcomes")
            # They were open all along: the webhooks got in beside them, not after them.
            assert gateway.guard.count("head") == stalled_heads
            assert gateway.guard.count("body") == stalled_bodies
            return codes

    with open_files(2 * (stalled_heads + stalled_bodies) + FD_HEADROOM + 512):
        codes = asyncio.run(scenario())
    assert codes == [200] * 60
    assert gateway.counters.total("connections_closed") == 0


def test_at_the_cap_a_new_connection_sheds_the_one_that_waited_longest(
    make_engine: EngineFactory,
) -> None:
    cap = 10
    gateway = echo_gateway(make_engine, max_connections=cap, header_timeout_s=120)

    async def scenario() -> list[int]:
        async with serving(gateway) as port, sockets() as opened:
            stalled: list[Conn] = []
            for _ in range(cap):  # one by one: the order of arrival is known
                stalled.append(await stall(opened, port, HALF_HEADERS))
                await until(lambda: len(gateway.guard) == len(stalled), "the stalled one in")
            codes = []
            connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
            async with aiohttp.ClientSession(connector=connector) as http:
                for round_ in range(3):
                    codes.append(await post_signed(http, port))
                    await closed(stalled[round_][0], f"stalled connection {round_}")
                    await until(lambda: len(gateway.guard) == cap - 1, "the webhook's to close")
                    assert not stalled[round_ + 1][0].at_eof()
                    stalled.append(await stall(opened, port, HALF_HEADERS))  # full again
                    await until(lambda: len(gateway.guard) == cap, "the cap reached again")
            return codes

    assert asyncio.run(scenario()) == [200, 200, 200]
    assert closes(gateway, "shed") == 3
    assert closes(gateway, "refused") == 0


def test_when_every_connection_is_busy_a_new_one_is_refused_with_a_503(
    make_engine: EngineFactory,
) -> None:
    cap = 3
    gateway = echo_gateway(make_engine, max_connections=cap, retry_after_s=7)
    release = asyncio.Event()
    entered = 0

    async def hold(request: web.Request) -> web.Response:
        nonlocal entered
        entered += 1
        await release.wait()
        return web.Response(text="held")

    gateway.app.router.add_get("/test-hold", hold)  # a handler busy until released
    hold_request = b"GET /test-hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def scenario() -> tuple[bytes, list[int]]:
        async with serving(gateway) as port, sockets() as opened:
            busy = [await stall(opened, port, hold_request) for _ in range(cap)]
            await until(lambda: entered == cap, "every connection busy")
            assert gateway.guard.count("busy") == cap
            reader, writer = await asyncio.open_connection(HOST, port)
            opened.append((reader, writer))
            refusal = await closed(reader, "a connection over the cap")  # answered at once
            release.set()
            codes = [await read_response(r) for r, _ in busy]
            return refusal, codes

    refusal, codes = asyncio.run(scenario())
    assert refusal.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 7\r\n" in refusal
    assert codes == [200] * cap
    assert closes(gateway, "refused") == 1
    assert gateway.counters.total("connections_closed") == 1
    assert gateway.counters.total("webhooks") == 0  # the refused request was never read


# --- the config --------------------------------------------------------------------------------


def test_the_slow_client_defaults_are_the_documented_ones() -> None:
    cfg = GatewayConfig()
    assert (cfg.header_timeout_s, cfg.body_timeout_s, cfg.keepalive_timeout_s) == (10, 30, 15)
    assert cfg.max_connections == 2000


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("header_timeout_s", 0, "a number > 0 and <= 3600"),
        ("body_timeout_s", -1.5, "a number > 0 and <= 3600"),
        ("keepalive_timeout_s", 86400, "a number > 0 and <= 3600"),
        ("header_timeout_s", True, "a number > 0 and <= 3600"),
        ("max_connections", 0, "an integer from 1 to 1000000"),
        ("max_connections", 10.0, "an integer from 1 to 1000000"),
    ],
)
def test_a_bad_slow_client_key_is_a_config_error_naming_it_and_the_rule(
    tmp_path: Path, key: str, value: Any, rule: str
) -> None:
    with pytest.raises(ConfigError, match=rf"GatewayConfig {key} = .*: must be {rule}"):
        GatewayConfig(**{key: value})
    path = tmp_path / "gateway.toml"
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    path.write_text(
        f"[gateway]\n{key} = {shown}\n"
        '[[accounts]]\naccount_id = "a"\nphone_number_id = "1"\n'
        '[[providers]]\nname = "echo"\nkind = "echo"\n'
    )
    with pytest.raises(ConfigError, match=rf"gateway.toml \[gateway\] {key} = .*: must be {rule}"):
        load_gateway_config(path, env={})


def test_the_slow_client_keys_are_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        "[gateway]\nheader_timeout_s = 2.5\nbody_timeout_s = 12\nkeepalive_timeout_s = 5\n"
        "max_connections = 300\n"
        '[[accounts]]\naccount_id = "a"\nphone_number_id = "1"\n'
        '[[providers]]\nname = "echo"\nkind = "echo"\n'
    )
    cfg = load_gateway_config(path, env={})
    assert (cfg.header_timeout_s, cfg.body_timeout_s, cfg.keepalive_timeout_s) == (2.5, 12, 5)
    assert cfg.max_connections == 300


# --- the table (pure, a fake clock) ------------------------------------------------------------


def table(cap: int = 10) -> ConnectionTable[str]:
    return ConnectionTable(max_connections=cap, head_s=1.0, body_s=5.0, idle_s=3.0)


def test_each_phase_has_its_own_deadline_and_busy_has_none() -> None:
    t = table()
    for key in "abcd":
        assert t.admit(key, 0.0).admitted
    assert t.enter("b", "body", 0.5) == 5.5
    assert t.enter("c", "busy", 0.5) is None
    assert t.enter("d", "idle", 0.5) == 3.5
    assert t.next_deadline() == 1.0
    assert t.expired(0.99) == []
    assert t.expired(1.0) == [("a", "head")]
    assert t.next_deadline() == 3.5
    assert t.expired(100.0) == [("b", "body"), ("d", "idle")]  # the busy one stays
    assert (len(t), t.phase("c"), t.next_deadline()) == (1, "busy", None)


def test_a_later_request_restarts_the_clock_and_expiry_follows_entry_order() -> None:
    t = table()
    t.admit("a", 0.0)
    t.admit("b", 0.2)
    t.enter("a", "idle", 0.3)
    t.enter("a", "head", 0.4)  # its next request's first byte: 1 s from now
    assert t.expired(1.3) == [("b", "head")]
    assert t.expired(1.4) == [("a", "head")]


def test_at_the_cap_the_connection_that_waited_longest_is_shed_busy_ones_never() -> None:
    t = table(cap=3)
    t.admit("idle-early", 0.0)
    t.enter("idle-early", "idle", 0.1)
    t.admit("head", 0.2)
    t.admit("busy", 0.3)
    t.enter("busy", "busy", 0.3)
    assert t.admit("new-1", 1.0).shed == "idle-early"  # idle since 0.1, the longest wait
    assert t.admit("new-2", 1.0).shed == "head"
    assert t.admit("new-3", 1.0).shed == "new-1"
    assert "busy" in t
    assert len(t) == 3
    for key in ("new-2", "new-3"):
        t.enter(key, "busy", 1.0)
    refused = t.admit("new-4", 1.0)
    assert (refused.admitted, refused.shed, len(t)) == (False, None, 3)
    t.forget("busy")
    assert t.admit("new-4", 1.0).admitted


def test_the_table_refuses_bad_limits() -> None:
    with pytest.raises(ValueError, match="head limit"):
        ConnectionTable(max_connections=1, head_s=0.0, body_s=1.0, idle_s=1.0)
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionTable(max_connections=0, head_s=1.0, body_s=1.0, idle_s=1.0)


def test_the_open_file_limit_is_raised_for_the_cap_or_the_cap_lowered_to_fit() -> None:
    inf = -1
    assert fd_budget(2000, 1024, 524288, infinity=inf) == (2000 + FD_HEADROOM, 2000)
    assert fd_budget(2000, 1024, inf, infinity=inf) == (2000 + FD_HEADROOM, 2000)
    assert fd_budget(2000, 65536, 65536, infinity=inf) == (65536, 2000)  # enough already
    assert fd_budget(2000, 1024, 1024, infinity=inf) == (1024, 1024 - FD_HEADROOM)
    assert fd_budget(2000, inf, inf, infinity=inf) == (inf, 2000)
    assert fd_budget(2000, 100, 100, infinity=inf) == (100, 1)  # never below one
