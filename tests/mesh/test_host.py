"""MeshHost hardening on real TCP over loopback: kernel timeouts, redial after a failure, gate."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.abc import INetStream

from beemesh.identity import KeyPair
from beemesh.mesh import host as host_module
from beemesh.mesh import tcp_timeouts
from beemesh.mesh.host import HostSettings, MeshHost

pytestmark = pytest.mark.mesh

PSK = "ab" * 32
PROTO = "/beemesh/test/echo/1"
PARTITION_PROBE = Path(__file__).parents[1] / "support" / "partition_probe.py"


def make_host(
    key: KeyPair | None = None,
    port: int = 0,
    allow_peer: Callable[[str], bool] | None = None,
) -> MeshHost:
    return MeshHost(HostSettings(key or KeyPair.generate(), PSK, [f"/ip4/127.0.0.1/tcp/{port}"],
                                 "/beemesh/test", {}, allow_peer=allow_peer))


def run(test: Callable[[], Awaitable[None]]) -> None:
    """trio.run, re-raising a failed assertion bare rather than nested in nursery groups."""
    try:
        trio.run(lambda: _bounded(test))
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        raise exc from None


async def _bounded(test: Callable[[], Awaitable[None]]) -> None:
    with trio.fail_after(30):
        await test()


async def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.05)
    assert pred(), f"timed out after {timeout} s waiting for {what}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def echo(stream: INetStream) -> None:
    await stream.write(b"echo:" + await stream.read(100))
    await stream.close()


async def exchange(host: MeshHost, peer: MeshHost) -> bytes | None:
    """Send "hi" on PROTO; the reply, or None if the stream could not be used."""
    try:
        with trio.fail_after(5):
            stream = await host.open_stream(peer.peer_id.to_base58(), PROTO)
            await stream.write(b"hi")
            return await stream.read(100)
    except Exception:  # refused connection, reset stream, failed negotiation: all libp2p's own
        return None


def test_both_ends_of_a_connection_get_tcp_user_timeout_and_keepalive() -> None:
    async def main() -> None:
        a, b = make_host(), make_host()
        async with a.running(), b.running():
            await a.connect(b.addrs()[0])
            await wait_until(lambda: a.peer_id in b.connected(), 5, "b to see a")
            ends = [a.swarm.get_connections(b.peer_id), b.swarm.get_connections(a.peer_id)]
            for conns in ends:
                assert conns
                sock = tcp_timeouts.raw_socket(conns[0])
                assert sock is not None
                opt = sock.getsockopt
                assert opt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10_000
                assert opt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3

    run(main)


@pytest.mark.slow
def test_both_ends_drop_a_connection_whose_packets_vanish() -> None:
    """The outage the timeouts are for: no FIN, no RST, only silence (iptables DROP)."""
    missing = [t for t in ("unshare", "ip", "iptables") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"needs root and {', '.join(missing) or 'nothing else'} for a private network "
                    "namespace: run as root; apt-get install util-linux iproute2 iptables",
                    pytrace=False)
    limit_s = 30
    out = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         f'ip link set lo up && exec "{sys.executable}" "{PARTITION_PROBE}" {limit_s}'],
        capture_output=True, text=True, timeout=limit_s + 30)
    assert out.returncode == 0, out.stderr[-3000:]
    dropped = json.loads(out.stdout.strip().splitlines()[-1])
    # TCP_USER_TIMEOUT (10 s) and keepalive end both sides; without them neither host let go
    # within a minute.
    assert set(dropped) == {"a", "b"}, dropped
    assert max(dropped.values()) < 20, dropped


def test_connect_reaches_a_peer_that_starts_listening_after_a_failed_dial() -> None:
    async def main() -> None:
        key_b, port = KeyPair.generate(), free_port()
        addr_b = f"/ip4/127.0.0.1/tcp/{port}/p2p/{key_b.peer_id}"
        a = make_host()
        async with a.running():
            with pytest.raises(Exception):  # noqa: B017 - libp2p raises several dial errors
                await a.connect(addr_b)
            b = make_host(key_b, port)
            async with b.running():
                with trio.fail_after(5):
                    peer = await a.connect(addr_b)
                assert peer in a.connected()

    run(main)


def test_gate_refuses_connections_and_streams_of_a_denied_peer() -> None:
    async def main() -> None:
        d, e = make_host(), make_host()
        denied = {d.peer_id.to_base58()}
        c = make_host(allow_peer=lambda peer: peer not in denied)
        reached: list[str] = []

        async def handler(stream: INetStream) -> None:
            reached.append(stream.muxed_conn.peer_id.to_base58())
            await echo(stream)

        c.handle(PROTO, handler)
        async with c.running(), d.running(), e.running():
            # Refused during the dial or closed right after: both are fine.
            with contextlib.suppress(Exception):
                await d.connect(c.addrs()[0])
            await wait_until(lambda: c.peer_id not in d.connected(), 2, "d's connection to go")
            assert d.peer_id not in c.connected()
            assert c.gated >= 1
            refused = c.gated
            # c does not dial a refused peer itself, and closes what other code dials for it.
            with pytest.raises(PermissionError):
                await c.connect(d.addrs()[0])
            d_addr = multiaddr.Multiaddr(d.addrs()[0].split("/p2p/")[0])
            c.host.get_peerstore().add_addrs(d.peer_id, [d_addr], 60)
            d.handle(PROTO, echo)
            assert not await exchange(c, d)
            await wait_until(lambda: d.peer_id not in c.connected(), 2, "c's connection to go")
            assert c.peer_id not in d.connected()
            assert c.gated > refused
            assert not await exchange(d, c)

            await e.connect(c.addrs()[0])
            assert await exchange(e, c) == b"echo:hi"
            assert c.peer_id in e.connected()
            assert reached == [e.peer_id.to_base58()]

    run(main)


def test_gate_resets_streams_of_a_peer_refused_after_it_connected() -> None:
    async def main() -> None:
        d = make_host()
        denied: set[str] = set()
        c = make_host(allow_peer=lambda peer: peer not in denied)
        reached: list[str] = []

        async def handler(stream: INetStream) -> None:
            reached.append(stream.muxed_conn.peer_id.to_base58())
            await echo(stream)

        c.handle(PROTO, handler)
        async with c.running(), d.running():
            await d.connect(c.addrs()[0])
            denied.add(d.peer_id.to_base58())
            assert not await exchange(d, c)
            assert reached == []

    run(main)


def test_a_handler_that_raises_loses_its_stream_not_the_host() -> None:
    async def main() -> None:
        a, b = make_host(), make_host()

        async def broken(stream: INetStream) -> None:
            raise ValueError("handler bug")

        b.handle(PROTO, echo)
        b.handle("/beemesh/test/broken/1", broken)
        async with a.running(), b.running():
            await a.connect(b.addrs()[0])
            with contextlib.suppress(Exception):  # b resets the stream, maybe mid-negotiation
                stream = await a.open_stream(b.peer_id.to_base58(), "/beemesh/test/broken/1")
                await stream.write(b"hi")
                await stream.read(100)
            assert await exchange(a, b) == b"echo:hi"
            assert a.peer_id in b.connected()

    run(main)


def test_stalling_reconnection_with_black_hole_addresses() -> None:
    """A record listing 15 black holes (listening sockets that never accept: the TCP connect
    succeeds, the Noise handshake never answers) before the one good address connects within
    one dial budget: the addresses are dialed at once and the first to answer wins."""
    holes = []
    for _ in range(15):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        holes.append(sock)

    async def main() -> None:
        a, b = make_host(), make_host()
        async with a.running(), b.running():
            peer = b.peer_id.to_base58()
            addrs = [f"/ip4/127.0.0.1/tcp/{h.getsockname()[1]}" for h in holes]
            addrs.append(b.addrs()[0])
            start = trio.current_time()
            assert await a.dial_any(addrs, peer, budget_s=4.0)
            took = trio.current_time() - start
            assert took < 4.0, f"connected after {took:.1f} s"
            assert b.peer_id in a.connected()
            # Nothing but black holes: gives up within the budget, not 15 timeouts.
            start = trio.current_time()
            assert not await a.dial_any(addrs[:-1], make_host().peer_id.to_base58(), 1.0)
            assert trio.current_time() - start < 2.0

    try:
        run(main)
    finally:
        for h in holes:
            h.close()


def test_own_addresses_are_worked_out_at_most_once_per_freshness_period(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """py-libp2p asks for the host's addresses with every pub/sub RPC it sends; they are
    worked out again at most every ADDRS_FRESH_S (never kept while still empty)."""
    host = make_host()
    asked = []
    real = host._get_addrs
    monkeypatch.setattr(host, "_get_addrs", lambda: asked.append(1) or real())

    async def test() -> None:
        assert host.host.get_addrs() == []  # not listening yet: not kept
        async with host.running():
            first = host.addrs()
            for _ in range(50):
                assert host.addrs() == first and host.host.get_addrs()
            assert len(asked) == 2 and first[0].startswith("/ip4/127.0.0.1/tcp/")
            clock = host._addrs[0]
            host._addrs = (clock - host_module.ADDRS_FRESH_S, host._addrs[1])  # time passes
            assert host.addrs() == first and len(asked) == 3

    run(test)
