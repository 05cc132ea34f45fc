"""Kernel timeouts on libp2p's TCP sockets, so a peer that vanished silently gets dropped.

A peer that disappears without FIN/RST (cable cut, partition by DROP rules) otherwise keeps its
connection "up" forever: unacknowledged data fills the send buffer, writes block, and gossipsub
stalls for every peer of the host. TCP_USER_TIMEOUT makes the kernel abort a connection whose
sent data stays unacknowledged; keepalive probes catch the same on an idle connection. Linux only.
"""

from __future__ import annotations

import socket

import trio
from libp2p.abc import INetConn

USER_TIMEOUT_MS = 10_000
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 3

# Attributes that lead from one layer to the next, outermost first: SwarmConn.muxed_conn ->
# Yamux/Mplex.secured_conn -> SecureSession.conn -> NoiseTransportReadWriter.conn ->
# PskConn._conn -> RawConnection.stream -> TrioTCPStream.stream -> trio.SocketStream.socket.
# Walking by name rather than by type keeps pnet optional and survives a layer more or less.
_LAYER_ATTRS = ("muxed_conn", "secured_conn", "conn", "_conn", "stream", "socket")
_MAX_LAYERS = 12


def raw_socket(conn: INetConn) -> trio.socket.SocketType | None:
    """The TCP socket under a libp2p connection, or None (e.g. a QUIC connection)."""
    layer: object = conn
    for _ in range(_MAX_LAYERS):
        if isinstance(layer, trio.socket.SocketType):
            return layer
        layer = next((getattr(layer, a) for a in _LAYER_ATTRS if hasattr(layer, a)), None)
        if layer is None:
            return None
    return None


def apply(sock: trio.socket.SocketType) -> None:
    """Let the kernel kill the connection ~10 s after the peer stops acknowledging."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
