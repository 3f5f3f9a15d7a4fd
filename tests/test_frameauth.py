"""Every Thespian frame authenticated: the wire format, the receive buffer, the key's life.

No actor system here: frames are sealed and opened in this process. The same refusals on
a running engine, over real sockets, are in tests/test_frameauth_engine.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import importlib
import inspect
import os
import pickle
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from thespian.actors import ActorAddress

from actors.account.actor import AccountActor
from actors.cores.replay import ReplayWindow
from actors.pool.actor import PoolActor
from actors.router.actor import RouterActor
from actors.runtime import actorguard, frameauth, netsafe, sealing
from actors.runtime.frameauth import AuthReceiveBuffer, FrameRefusedError
from actors.runtime.sealing import OVERHEAD
from actors.runtime.system import install_patches
from actors.runtime.thespian_fixes import tcp_module
from actors.supervisor.actor import SupervisorActor
from tests.engine_helpers import inbound

stream_buffer = importlib.import_module("thespian.system.transport.streamBuffer")
ipbase = importlib.import_module("thespian.system.transport.IPBase")
PORT = 1901  # the port the frames of these tests are sealed for


@pytest.fixture(autouse=True)
def _patched_and_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install the patches; give each test its own counters and replay memory."""
    install_patches()
    saved = frameauth._settings
    monkeypatch.setattr(netsafe, "REFUSALS", Counter())
    monkeypatch.setattr(sealing, "_replay", ReplayWindow())
    monkeypatch.setattr(frameauth, "_owners", type(frameauth._owners)())
    yield
    frameauth._install(saved)


def _message() -> tuple[Any, Any]:
    sender = ActorAddress(ipbase.TCPv4ActorAddress("127.0.0.1", 1900, external=True))
    return sender, inbound(1, text="hello")


def _payload(obj: Any = None, *, key: bytes | None = None) -> bytes:
    return sealing.seal(pickle.dumps(obj or _message()), dest_port=PORT, key=key)


def _refusal(data: bytes) -> str:
    with pytest.raises(FrameRefusedError) as info:
        frameauth.open_payload(data, ports={PORT})
    return info.value.reason


class _Reduces:
    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


# --- the wire format ---------------------------------------------------------------------


def test_a_sealed_payload_opens_to_what_was_pickled() -> None:
    payload = _payload()
    assert len(payload) == OVERHEAD + len(pickle.dumps(_message()))
    assert frameauth.open_payload(payload, ports={PORT}) == _message()


def test_the_macs_are_hmac_sha256_over_the_documented_bytes() -> None:
    key = frameauth.current().key
    payload = _payload()
    head, head_mac, body_mac = payload[:30], payload[30:62], payload[62:94]
    assert head[:4] == b"WAE\x01"
    length = len(payload).to_bytes(8, "big")
    assert head_mac == hmac.digest(key, b"H" + length + head, "sha256")
    assert body_mac == hmac.digest(key, b"B" + head_mac + payload[94:], "sha256")


def test_every_bit_flipped_anywhere_in_a_frame_is_refused_as_a_wrong_mac() -> None:
    payload = _payload()
    for i in range(len(payload)):
        for bit in (0, 7):
            damaged = bytearray(payload)
            damaged[i] ^= 1 << bit
            assert _refusal(bytes(damaged)) == "mac", f"byte {i} bit {bit}"
    assert netsafe.REFUSALS["mac"] == 2 * len(payload)


def test_a_truncated_or_extended_payload_is_refused() -> None:
    payload = _payload()
    assert _refusal(payload[:-1]) == "mac"
    assert _refusal(payload[: OVERHEAD - 1]) == "mac"
    assert _refusal(payload + b"\x00") == "mac"


def test_a_frame_without_a_mac_is_refused_before_anything_is_unpickled(tmp_path: Path) -> None:
    crafted = pickle.dumps(_Reduces(open, str(tmp_path / "owned"), "w"))
    unpickler_refused = netsafe.REFUSED["io.open"]
    assert _refusal(crafted) == "mac"
    assert _refusal(bytes(OVERHEAD) + crafted) == "mac"
    assert not (tmp_path / "owned").exists()
    assert netsafe.REFUSED["io.open"] == unpickler_refused  # the unpickler never saw it


def test_a_frame_sealed_with_another_key_is_refused() -> None:
    assert _refusal(_payload(key=os.urandom(32))) == "mac"


def test_a_frame_is_accepted_once_and_its_replay_is_refused() -> None:
    payload = _payload()
    assert frameauth.open_payload(payload, ports={PORT}) == _message()
    assert _refusal(payload) == "replay"
    assert dict(netsafe.REFUSALS) == {"replay": 1}


def test_a_frame_sealed_for_another_port_is_refused() -> None:
    assert _refusal(sealing.seal(pickle.dumps(_message()), dest_port=PORT + 1)) == "replay"


@pytest.mark.parametrize("skew_s", [-61.0, 61.0])
def test_a_frame_stamped_outside_the_clock_window_is_refused(skew_s: float) -> None:
    body, key = pickle.dumps(_message()), frameauth.current().key
    outside = int((time.time() + skew_s) * 1000)
    assert _refusal(sealing._sealed(body, key, b"s" * 8, 5, outside, PORT)) == "stale"
    inside = int((time.time() + skew_s / 2) * 1000)
    assert (
        frameauth.open_payload(sealing._sealed(body, key, b"s" * 8, 5, inside, PORT), ports={PORT})
        == _message()
    )


def test_the_acknowledgements_are_authenticated_frames() -> None:
    for sent, text in ((tcp_module.ackMsg, "ACK"), (tcp_module.ackDataErrMsg, "ACK+DATAERR")):
        payload = sent.split(b">", 1)[1]
        for _ in range(2):  # constant per key, accepted every time, for any port
            assert frameauth.open_payload(payload, ports=()) == text
    # Thespian's own unauthenticated ACK is refused, as is sequence 0 on anything else.
    assert _refusal(stream_buffer.ackMsg.split(b">", 1)[1]) == "mac"
    key = frameauth.current().key
    assert _refusal(sealing._sealed(pickle.dumps(_message()), key, bytes(8), 0, 0, 0)) == "mac"


def test_with_authentication_off_frames_are_thespians_own() -> None:
    frameauth._install(dataclasses.replace(frameauth.current(), auth=False))
    assert tcp_module.ackMsg == stream_buffer.ackMsg
    assert frameauth._dumps(_message()) == pickle.dumps(_message())
    assert frameauth.open_payload(pickle.dumps(_message())) == _message()


# --- the receive buffer ------------------------------------------------------------------


def _buffer() -> Any:
    return tcp_module.ReceiveBuffer(tcp_module.serializer.loads)


def test_the_transport_receives_through_the_checking_buffer() -> None:
    assert isinstance(_buffer(), AuthReceiveBuffer)
    assert tcp_module.serializer.loads is frameauth.open_payload


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (b"%d>" % (frameauth.current().max_frame_bytes + 1), "oversize"),
        (b"9" * 21, "oversize"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", "mac"),
        (b"-5>", "mac"),
        (b"1_0>", "mac"),
    ],
)
def test_a_bad_length_prefix_is_refused_before_more_is_read(start: bytes, reason: str) -> None:
    buf = _buffer()
    for i in range(0, len(start), 20):  # Thespian reads 20 bytes while the size is unknown
        buf.addMore(start[i : i + 20])
    assert buf.isDone()
    assert buf.completed() is None
    assert dict(netsafe.REFUSALS) == {reason: 1}
    buf.addMore(b"x" * 100_000)  # nothing more is kept
    assert len(buf._buf) == 0


def test_a_frame_without_a_mac_is_cut_off_after_its_head() -> None:
    plain = pickle.dumps(("x" * 50_000,))
    buf = _buffer()
    buf.addMore(b"%d>" % len(plain))
    buf.addMore(plain[:100])
    assert buf.isDone()  # refused with 50 kB still unread
    assert buf.completed() is None
    assert dict(netsafe.REFUSALS) == {"mac": 1}


def test_a_frame_with_a_forged_head_mac_is_cut_off_after_its_head() -> None:
    payload = bytearray(_payload(("x" * 50_000,)))
    payload[40] ^= 1
    buf = _buffer()
    buf.addMore(b"%d>" % len(payload) + bytes(payload[:70]))
    assert buf.isDone()
    assert buf.completed() is None
    assert dict(netsafe.REFUSALS) == {"mac": 1}


def test_a_valid_frame_read_in_pieces_loads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealing, "_ports", {PORT})
    data = sealing.frame(_message(), dest_port=PORT)
    buf, pos = _buffer(), 0
    while not buf.isDone():  # as Thespian reads: at most what the buffer still wants
        n = min(7, buf.remainingAmount())
        buf.addMore(data[pos : pos + n])
        pos += n
    assert pos == len(data)
    # Thespian asks twice for a frame that came where it expected an ACK: loaded once.
    assert buf.completed() == (_message(), b"")
    assert buf.completed() == (_message(), b"")
    assert netsafe.REFUSALS.total() == 0


# --- refusals: counted always, logged sampled --------------------------------------------


def test_refusals_are_all_counted_and_logged_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    try:
        for _ in range(100):
            netsafe.refuse("mac", "it carries no MAC", peer="127.0.0.1:9")
    finally:
        logger.remove(sink)
    counts = [line.rsplit("mac: ", 1)[1].rstrip(")\n") for line in lines]
    assert counts == ["1", "2", "4", "8", "16", "32", "64"]  # within one 10 s interval
    assert netsafe.counters()["refused_frames.mac"] == 100
    assert netsafe.counters()["refused_frames"] == 100
    assert set(netsafe.counters()) == {"refused_frames"} | {
        f"refused_frames.{r}" for r in netsafe.REASONS
    }


# --- the replay window -------------------------------------------------------------------


def test_the_replay_window_accepts_each_number_once_even_out_of_order() -> None:
    w = ReplayWindow(senders=2, window=8)
    assert [w.accept(b"a", n) for n in (5, 3, 9, 4, 3, 9, 2)] == [
        True,
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    assert w.fresh(b"a", 1) is False  # 8 below the highest: outside the window
    assert w.accept(b"a", 1) is False
    assert w.fresh(b"a", 8) is True
    assert w.fresh(b"a", 8) is True  # a query changes nothing
    assert w.accept(b"a", 100)
    assert not w.accept(b"a", 9)  # a jump clears the old bits


def test_the_replay_window_remembers_a_bounded_number_of_senders() -> None:
    w = ReplayWindow(senders=2, window=8)
    for sender in (b"a", b"b", b"c"):
        assert w.accept(sender, 1)
    assert (len(w), w.evictions) == (2, 1)
    assert w.accept(b"a", 1)  # forgotten: why frames carry a timestamp too
    with pytest.raises(ValueError, match="senders must be an int >= 1, got 0"):
        ReplayWindow(senders=0)


# --- the admin's allowlist of actor classes ----------------------------------------------


def test_the_admin_creates_the_engines_actor_classes_and_nothing_else(tmp_path: Path) -> None:
    names = actorguard.creatable()
    for cls in (SupervisorActor, RouterActor, PoolActor, AccountActor):
        assert names[f"{cls.__module__}.{cls.__name__}"] is cls
        assert actorguard._allowed(f"{cls.__module__}.{cls.__name__}", None)
    assert not actorguard._allowed("actors.supervisor.actor.SupervisorActor", "a-source-hash")
    assert not actorguard._allowed(SupervisorActor, None)  # a class object, not a name
    module = f"wae_guard_probe_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Probe: pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        for name in ("http.server.test", f"{module}.Probe", "os.system", "Probe"):
            assert not actorguard._allowed(name, None)
    finally:
        sys.path.remove(str(tmp_path))
    assert module not in sys.modules
    assert not (tmp_path / "imported").exists()


# --- the pinned internals ----------------------------------------------------------------

# SHA-256 of the Thespian 4.0.1 files whose internals frameauth, netsafe and actorguard
# patch or rely on. A new Thespian changes them: re-check every patch before the pin moves.
PINNED_FILES = {
    "thespian.system.transport.streamBuffer": (
        "3aa2191109c9aec9b7c96a6617eb7799dbe63e866de0d403075eb11e8f53f850"
    ),
    "thespian.system.transport.TCPTransport": (
        "303b9a9b3871ca949f70c5f57654fc8147e44f8d0e9981c55902a1b0f16a2c59"
    ),
    "thespian.system.transport.IPBase": (
        "ff75cc8eb35019a3783b9ee3d8e8720c9fe4d6a6c3219fef7e1934b85c359a69"
    ),
    "thespian.system.transport.asyncTransportBase": (
        "67ed9591a1703beae2178b78034046858d91aef6d29172cb1a1b0b68b7054062"
    ),
    "thespian.system.transport": (
        "432692dd0d8969b91e738d3895dc736c860961d6185c338aee0b4235c0211f14"
    ),
    "thespian.system.admin.globalNames": (
        "2e970ad5ac6a7d89838761eae0d844c71d8df69d0748b2aa154f346ce7dcebcb"
    ),
    "thespian.system.admin.adminCore": (
        "7a805625903e45bbe29fc4891b6c1cef2e5f99fa08bd1ff5e04cb7b84057fb65"
    ),
    "thespian.system.messages.admin": (
        "162800d7d60e8ca58627f24b4946e85bba4a9bfff73e554119d6d2ecf7f89a36"
    ),
    "thespian.system.utilis": ("69b676a1b7c148f40f9365a600868b3db7783a639cd55528e78798d35b70b21b"),
}


@pytest.mark.parametrize("module", sorted(PINNED_FILES))
def test_the_thespian_files_the_patches_rely_on_are_the_pinned_ones(module: str) -> None:
    path = inspect.getsourcefile(importlib.import_module(module))
    assert path is not None
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert digest == PINNED_FILES[module], (
        f"{module} is not Thespian 4.0.1's: re-check actors/runtime/frameauth.py, netsafe.py "
        "and actorguard.py against it before changing the pin"
    )


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_the_patched_thespian_internals_have_the_shapes_the_patches_expect() -> None:
    tcp, originals = tcp_module, frameauth._originals
    # The framing and the acknowledgements.
    assert stream_buffer.toSendBuffer(b"x", lambda a: a) == b"1>x"
    assert (stream_buffer.ackPacket, stream_buffer.ackDataErrPacket) == ("ACK", "ACK+DATAERR")
    assert stream_buffer.ackMsg == stream_buffer.toSendBuffer("ACK")
    assert originals["ackMsg"] == stream_buffer.ackMsg
    assert _params(originals["ReceiveBuffer"].__init__) == ["self", "serializer"]
    for name in ("addMore", "isDone", "completed", "removeExtra", "remainingAmount"):
        assert callable(getattr(originals["ReceiveBuffer"], name)), name
    assert set(vars(originals["ReceiveBuffer"](pickle.loads))) == {
        "_buf",
        "_blen",
        "_size",
        "_extra",
        "_deserialize",
    }
    # Where TCPTransport serializes, buffers, seals and acknowledges.
    assert "serializer.dumps" in inspect.getsource(tcp.TCPTransport.serializer)
    assert "ReceiveBuffer(serializer.loads)" in inspect.getsource(tcp.TCPIncoming_Common)
    added = inspect.getsource(tcp.TCPTransport._addedDataToIncoming)
    assert "send(ackDataErrMsg)" in added
    assert "send(ackMsg)" in added
    assert _params(originals["_next_XMIT_2"]) == ["self", "intent"]
    assert "intent.serMsg[intent.amtSent:]" in inspect.getsource(originals["_next_XMIT_2"])
    assert _params(originals["__init__"]) == ["self", "initType", "args"]
    assert "self.socket.listen" in inspect.getsource(originals["__init__"])
    assert _params(originals["close"]) == ["self"]
    assert _params(netsafe._original_add_data) == ["self", "newData"]
    # The admin's creation of an actor from a class name.
    admin = importlib.import_module("thespian.system.messages.admin")
    assert _params(actorguard._original_h_pending_actor) == ["self", "envelope"]
    assert _params(admin.PendingActor.__init__) == [
        "self",
        "actorClassName",
        "forActor",
        "instanceNumForActor",
        "targetActorReq",
        "globalName",
        "sourceHash",
    ]
    assert admin.PendingActorResponse.ERROR_Invalid_ActorClass == 0xE04
    core = importlib.import_module("thespian.system.admin.adminCore").AdminCore
    assert _params(core._sendPendingActorResponse) == [
        "self",
        "requestEnvelope",
        "actualAddress",
        "errorCode",
        "errorStr",
    ]
    assert "self._startChildActor(" in inspect.getsource(core.h_PendingActor)
