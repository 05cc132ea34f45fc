"""The data channel of a workload stream between machines: the bytes' own TCP connection.

Why: carried on the py-libp2p stream that opened it, a workload stream runs at py-libp2p's
ceiling (~65 MB/s one way on this 2-core host: Noise frames of 64 KiB, yamux windows, a copy
and an await per layer, all in Python). So the handshake (`handshake`) also agrees on a channel:

- `StreamOpen` carries the caller's fresh X25519 public key, `StreamAccept` the server's, a port
  and a 16-byte token; both messages are signed by the replicas' workload keys, so the session
  keys (libsodium `crypto_kx`, one per direction) are known only to those two replicas' work
  planes, and are new for every stream (forward secrecy).
- The caller connects to that port at the address of the libp2p connection and sends the token
  (which travelled inside Noise); the server's listener hands the connection to the stream
  that issued the token (once, within `handshake`'s deadline) and closes any other.
- Then each direction is a sequence of frames: a 4-byte big-endian length L
  (`TAG` ≤ L ≤ `MAX_FRAME` + `TAG`) and L bytes of AEAD ciphertext (OpenSSL's, through
  `cryptography`, imported with the first channel; sealed and opened in place),
  nonce = the frame's number in its direction.
  The cipher is AES-256-GCM when both machines' CPUs have AES instructions (3.4 GB/s here),
  else ChaCha20-Poly1305 (2 GB/s here; several times AES's speed on CPUs without them, such as
  the Raspberry Pi 4's): the caller says whether it has them, the server chooses. An empty
  frame ends the direction (half-close); a TCP end without it, a bad tag, or a length out of
  bounds breaks the stream (nothing is truncated, replayed, reordered or
  forged unnoticed).

When the port cannot be reached (a firewall, a relayed connection), the caller says so with one
byte on the libp2p stream and the bytes travel there, as before. Measured: `make bench`, group
`streams`; docs/architecture.md, "Workload networking".
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError
from nacl.bindings import (
    crypto_kx_client_session_keys,
    crypto_kx_keypair,
    crypto_kx_server_session_keys,
)

KEY_BYTES = 32
TOKEN_BYTES = 16
TAG = 16
MAX_FRAME = 1024 * 1024  # plaintext bytes per frame: one recv, one seal, one send
HEADER = struct.Struct(">I")
MAX_PENDING = 1024  # issued tokens not yet used
MAX_GREETING = 256  # connections at once that have not shown a token yet
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends a reset
CARRY_HERE = b"\x00"  # the caller's byte on the libp2p stream: "no channel, carry here"
CIPHERS = ("chacha20-poly1305", "aes-256-gcm")


class Broken(Exception):
    """The channel broke: a frame out of bounds, a bad tag, or an end without an end frame."""


@dataclass(frozen=True)
class Keys:
    send: bytes
    receive: bytes
    cipher: str = "chacha20-poly1305"


@functools.cache
def hardware_aes() -> bool:
    """Whether this CPU has AES instructions (x86 `aes` flag, Arm `aes` feature)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(line.split(":", 1)[0].strip() in ("flags", "Features")
               and "aes" in line.split(":", 1)[-1].split() for line in text.splitlines())


def choose_cipher(caller_aes: bool) -> str:
    return "aes-256-gcm" if caller_aes and hardware_aes() else "chacha20-poly1305"


@dataclass(frozen=True)
class Offer:
    """The caller's half of the exchange: its public key goes in `StreamOpen`."""

    public: bytes
    secret: bytes

    @classmethod
    def new(cls) -> Offer:
        public, secret = crypto_kx_keypair()
        return cls(public, secret)

    def keys(self, server_public: bytes, cipher: str) -> Keys:
        receive, send = crypto_kx_client_session_keys(self.public, self.secret, server_public)
        return Keys(send, receive, cipher)


def server_keys(caller_public: bytes, cipher: str) -> tuple[bytes, Keys]:
    """The server's public key (for `StreamAccept`) and its keys for the stream."""
    public, secret = crypto_kx_keypair()
    receive, send = crypto_kx_server_session_keys(public, secret, caller_public)
    return public, Keys(send, receive, cipher)


def _aead(cipher: str, key: bytes) -> tuple[Any, type[Exception]]:
    """`cryptography`'s AEAD for `cipher` and the error of a failed tag. Imported with the first
    channel, not at start: its Rust extension is 11 MB of RSS, and a work plane that carries
    no workload stream never needs it (its libp2p host runs Noise on libsodium)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    return {"chacha20-poly1305": ChaCha20Poly1305, "aes-256-gcm": AESGCM}[cipher](key), InvalidTag


class Sealer:
    """One direction's sending side (sans-IO)."""

    def __init__(self, key: bytes, cipher: str) -> None:
        self.aead, _ = _aead(cipher, key)
        self.sent = 0

    def seal(self, buf: memoryview, length: int) -> int:
        """Seal the `length` plaintext bytes at buf[HEADER.size:] in place (length 0: the
        end frame); the frame is buf[:returned]."""
        start = HEADER.size
        self.aead.encrypt_into(_nonce(self.sent), buf[start:start + length], None,
                               buf[start:start + length + TAG])
        self.sent += 1
        HEADER.pack_into(buf, 0, length + TAG)
        return start + length + TAG


class Opener:
    """One direction's receiving side (sans-IO)."""

    def __init__(self, key: bytes, cipher: str) -> None:
        self.aead, self.invalid_tag = _aead(cipher, key)
        self.received = 0

    @staticmethod
    def length(header: memoryview) -> int:
        (size,) = HEADER.unpack(header)
        if not TAG <= size <= MAX_FRAME + TAG:
            raise Broken(f"a frame of {size} bytes is out of bounds")
        return size

    def open(self, buf: memoryview, size: int) -> int:
        """Open the frame of `size` bytes at buf[:size] in place; the plaintext's length
        (0: the other side ended its direction)."""
        try:
            self.aead.decrypt_into(_nonce(self.received), buf[:size], None, buf[:size - TAG])
        except self.invalid_tag:
            raise Broken("a frame failed authentication") from None
        self.received += 1
        return size - TAG


def _nonce(n: int) -> bytes:
    return n.to_bytes(12, "big")


class Tokens:
    """Tokens issued in `StreamAccept`s, each waiting for its connection (sans-IO: `now` is
    passed in). Bounded: past `MAX_PENDING` the oldest go."""

    def __init__(self, cap: int = MAX_PENDING) -> None:
        self.cap = cap
        self.waiting: dict[bytes, tuple[float, Any]] = {}

    def issue(self, slot: Any, now: float, ttl: float) -> bytes:
        self.expire(now)
        while len(self.waiting) >= self.cap:
            del self.waiting[next(iter(self.waiting))]
        token = os.urandom(TOKEN_BYTES)
        self.waiting[token] = (now + ttl, slot)
        return token

    def take(self, token: bytes, now: float) -> Any:
        """The slot `token` was issued for, once; None if unknown, used or expired."""
        self.expire(now)
        entry = self.waiting.pop(token, None)
        return entry[1] if entry else None

    def withdraw(self, token: bytes) -> None:
        self.waiting.pop(token, None)

    def expire(self, now: float) -> None:
        for token in [t for t, (until, _) in self.waiting.items() if until <= now]:
            del self.waiting[token]


def listen_address(multiaddrs: list[str]) -> tuple[str, int] | None:
    """Where the channel listens: the work plane's first TCP listen address, the next port
    (0, any port, when libp2p's is 0)."""
    for addr in multiaddrs:
        parts = addr.split("/")
        if len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp":
            port = int(parts[4])
            return parts[2], port + 1 if 0 < port < 65535 else 0
    return None


# ---- the trio side ------------------------------------------------------------------------


async def _send_all(sock: trio.socket.SocketType, data: memoryview) -> None:
    while data:
        data = data[await sock.send(data):]


async def _exactly(sock: trio.socket.SocketType, buf: memoryview) -> bool:
    got = 0
    while got < len(buf):
        n = await sock.recv_into(buf[got:])
        if not n:
            return False
        got += n
    return True


async def seal_from(src: trio.socket.SocketType, dst: trio.socket.SocketType,
                    sealer: Sealer, count: Callable[[int], None]) -> None:
    """Plain bytes from `src` (the pod), sealed into frames on `dst` (the channel)."""
    buf = memoryview(bytearray(HEADER.size + MAX_FRAME + TAG))
    while True:
        got = await src.recv_into(buf[HEADER.size:HEADER.size + MAX_FRAME])
        await _send_all(dst, buf[:sealer.seal(buf, got)])
        if not got:
            dst.shutdown(socket.SHUT_WR)
            return
        count(got)


async def open_into(src: trio.socket.SocketType, dst: trio.socket.SocketType,
                    opener: Opener, count: Callable[[int], None]) -> None:
    """Frames from `src` (the channel), opened and written plain to `dst` (the pod)."""
    buf = memoryview(bytearray(MAX_FRAME + TAG))
    while True:
        if not await _exactly(src, buf[:HEADER.size]):
            raise Broken("the channel ended without an end frame")
        size = opener.length(buf[:HEADER.size])
        if not await _exactly(src, buf[:size]):
            raise Broken("the channel ended inside a frame")
        n = opener.open(buf, size)
        if not n:
            dst.shutdown(socket.SHUT_WR)
            return
        await _send_all(dst, buf[:n])
        count(n)


class Channel:
    """An open channel: the TCP connection and this end's keys."""

    def __init__(self, stream: trio.SocketStream, keys: Keys) -> None:
        self.stream = stream
        self.keys = keys

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()

    async def carry(self, pod: trio.SocketStream, count: Callable[[str, int], None]) -> None:
        """Carry both ways between `pod` and the channel until both directions end; on any
        break (a reset, a bad frame) both end, and closing `pod` then resets it (the app sees
        a broken connection, never a clean end that did not happen)."""

        async def run(fn: Any, src: Any, dst: Any, side: Any, counter: str) -> None:
            try:
                await fn(src, dst, side, lambda n: count(counter, n))
            except (OSError, Broken, trio.ClosedResourceError):
                with contextlib.suppress(OSError):
                    pod.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, seal_from, pod.socket, self.stream.socket,
                               Sealer(self.keys.send, self.keys.cipher), "bytes_out")
            nursery.start_soon(run, open_into, self.stream.socket, pod.socket,
                               Opener(self.keys.receive, self.keys.cipher), "bytes_in")


class Listener:
    """The server side's TCP listener: each connection shows a token within `greet_s`, and
    goes to the stream that issued it (`Tokens`); every other one is closed and counted."""

    def __init__(self, tokens: Tokens, refused: Callable[[str], None], greet_s: float,
                 clock: Callable[[], float]) -> None:
        self.tokens = tokens
        self.refused = refused
        self.greet_s = greet_s
        self.clock = clock
        self.port = 0
        self._greeting = 0

    async def run(self, address: tuple[str, int], *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = address
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError:
            if not port:
                raise
            listeners = await trio.open_tcp_listeners(0, host=host)  # the port is taken
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    conn = await listener.accept()
                except OSError:  # EMFILE and the like: wait, never spin
                    await trio.sleep(1)
                    continue
                nursery.start_soon(self._greet, conn)

    async def _greet(self, conn: trio.SocketStream) -> None:
        if self._greeting >= MAX_GREETING:
            self.refused("busy")
            await conn.aclose()
            return
        self._greeting += 1
        token = memoryview(bytearray(TOKEN_BYTES))
        shown = False  # nothing in time, an error, or an early end: no token
        try:
            with trio.move_on_after(self.greet_s):
                shown = await _exactly(conn.socket, token)
        except OSError:
            pass
        finally:
            self._greeting -= 1
        slot = self.tokens.take(bytes(token), self.clock()) if shown else None
        if slot is None:
            self.refused("untrusted")
            await conn.aclose()
            return
        slot.deliver(conn)


class Arrival:
    """What a caller chose after a `StreamAccept` that offered a channel: the connection that
    showed the token (`deliver`, from `Listener`), or `CARRY_HERE` on the libp2p stream."""

    def __init__(self) -> None:
        self.conn: trio.SocketStream | None = None
        self.here = False
        self._chosen = trio.Event()

    def deliver(self, conn: trio.SocketStream) -> None:
        self.conn = conn
        self._chosen.set()

    async def wait(self, stream: INetStream, timeout: float) -> trio.SocketStream | None:
        """The channel's connection; None if the caller chose the libp2p stream (`here`), said
        something else, or nothing within `timeout`."""

        async def marker() -> None:
            try:
                said = await stream.read(1)
            except StreamError:
                said = b""
            if said:  # nothing (the caller closed the stream): its channel is on the way
                self.here = said == CARRY_HERE
                self._chosen.set()

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(marker)
                await self._chosen.wait()
                nursery.cancel_scope.cancel()
        if self.conn is not None and self.here:
            self.conn.socket.close()  # both came; the caller's word counts
            self.conn = None
        return self.conn
