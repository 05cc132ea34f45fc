"""Yamux window updates once an eighth of the receive window is used, not after every read.

py-libp2p's Yamux (0.8.1) answers nearly every read with a WINDOW_UPDATE frame: its
`_auto_tune_and_send_window_update` credits the bytes just read whenever any are owed ("partial
slack", and `PY_YAMUX_RELEASE_ON_READ`, on by default), where go-yamux's `sendWindowUpdate`
waits until the sender has used half the window (`GrowTo`'s hysteresis). On a mesh of small
gossip messages that is one extra frame, each through the yamux lock, Noise, the private
network's cipher and a `send` system call, for every message received: measured with five hosts
in one process gossiping 200 messages of 1.2 KB, 3,200 data frames drew 3,200-16,300 window
updates (docs/architecture.md, Footprint: "Idle CPU"); tests/unit/test_yamux_window.py counts
them on a real stream.

`install()` replaces that method on py-libp2p's YamuxStream (once per process, as py-libp2p
calls it by name from its reads) with go-yamux's rule at a lower mark: once what the reader has
consumed reaches an eighth of the target window (go-yamux: half), grow the window back to the
target in one update, with py-libp2p's own auto-tuning of the target (doubling within 4 round
trips). An eighth, not half: py-libp2p's writer gives up after 5 s without window (and the
stream is reset then: `yamux_writes`), so a reader that is slow for a while (a burst on a
Raspberry Pi) must free window in small steps (32 KiB of the default 256 KiB). Still one
update per ~27 gossip messages instead of one per message.
"""

from __future__ import annotations

from typing import Any

from libp2p.stream_muxer.yamux.yamux import YamuxStream

CREDIT_AT = 8  # credit the sender once 1/CREDIT_AT of the target window is consumed


async def update_in_steps(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's sendWindowUpdate/GrowTo at 1/CREDIT_AT; `bytes_read` is only where
    py-libp2p passes it."""
    del bytes_read  # what was read already shows in the window and the buffer
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        owed = self.target_recv_window - (self.recv_window + buffered)
        if owed <= 0 or owed < self.target_recv_window // CREDIT_AT:
            return
        increment = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
    await self.send_window_update(increment, skip_lock=True)


def install() -> None:
    """Put `update_in_steps` in place of py-libp2p's per-read window update (idempotent)."""
    YamuxStream._auto_tune_and_send_window_update = update_in_steps  # type: ignore[method-assign]
