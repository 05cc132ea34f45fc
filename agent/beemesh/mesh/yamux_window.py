"""Yamux window updates as go-yamux sends them: once half the receive window is used.

py-libp2p's Yamux (0.8.1) answers nearly every read with a WINDOW_UPDATE frame: its
`_auto_tune_and_send_window_update` credits the bytes just read whenever any are owed ("partial
slack", and `PY_YAMUX_RELEASE_ON_READ`, on by default), where go-yamux's `sendWindowUpdate`
waits until the sender has used half the window (`GrowTo`'s hysteresis). On a mesh of small
gossip messages that is one extra frame, each through the yamux lock, Noise, the private
network's cipher and a `send` system call, for every message received: measured with five hosts
in one process gossiping 200 messages of 1.2 KB, 3,200 data frames drew 3,200-16,300 window
updates (tests/bench: `gossip_cost` in docs/architecture.md, Footprint).

`install()` replaces that method on py-libp2p's YamuxStream (once per process, as py-libp2p
calls it by name from its reads) with go-yamux's rule: when the window's unused part plus what
is buffered falls below half the target, grow it back to the target in one update, with
py-libp2p's own auto-tuning of the target (doubling within 4 round trips). A sender that has
used up its window is always credited once the reader catches up, as before.
"""

from __future__ import annotations

from typing import Any

from libp2p.stream_muxer.yamux.yamux import YamuxStream


async def update_at_half(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's sendWindowUpdate/GrowTo; `bytes_read` is only where py-libp2p passes it."""
    del bytes_read  # what was read already shows in the window and the buffer
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        owed = self.target_recv_window - (self.recv_window + buffered)
        if owed <= 0 or owed < self.target_recv_window // 2:
            return
        increment = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
    await self.send_window_update(increment, skip_lock=True)


def install() -> None:
    """Put `update_at_half` in place of py-libp2p's per-read window update (idempotent)."""
    YamuxStream._auto_tune_and_send_window_update = update_at_half  # type: ignore[method-assign]
