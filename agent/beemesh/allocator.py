"""Handing the C heap's free pages back to the system, in both processes.

glibc's malloc returns memory to the kernel only from the top of its heap; pages freed in the
middle stay resident. Start-up (imports, the first connections) frees a lot in the middle: a
work plane measured 1.15 MB free inside a 9 MB heap after start, of which `malloc_trim(0)`
gave back 0.7 MB (an agent 0.2 MB), and churn leaves more. `give_back_loop` trims shortly
after start and then once a minute (a walk of the free chunks: well under a millisecond for a
heap this size). Where the C library has no `malloc_trim` (musl), it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import trio

log = logging.getLogger(__name__)

FIRST_S = 10.0  # after start: imports done, the first peers connected
EVERY_S = 60.0


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


async def give_back_loop() -> None:
    trim = _malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: freed heap pages stay resident")
        return
    trim.argtypes = [ctypes.c_size_t]
    await trio.sleep(FIRST_S)
    while True:
        trim(0)
        await trio.sleep(EVERY_S)
