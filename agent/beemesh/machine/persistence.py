"""Writing the agent's state behind its back, and saying when the disk refuses.

Services change their state in memory and queue the bytes (`files.WriteBehind`): the store's
signed workloads and Deletes, the member list, cordon and drain. Twice a second this service
writes what is queued in a worker thread, so neither a slow disk nor a full one ever stops a
message handler. A write the disk refuses stays queued and is tried again; the agent keeps
running, shows the reason in `beemesh status` (`disk`) and logs and records it once
(`DiskError`), and once more when writes succeed again (`DiskOK`).
"""

from __future__ import annotations

import logging
import time

import trio

from beemesh.events import EventLog
from beemesh.files import WriteBehind

log = logging.getLogger("beemesh.persistence")

FLUSH_EVERY_S = 0.5


class Persister:
    def __init__(self, files: WriteBehind, events: EventLog, machine: str) -> None:
        self.files = files
        self.events = events
        self.machine = machine
        self._reported: str | None = None

    @property
    def status(self) -> str:
        """'ok', or why state cannot be written (and how many files wait)."""
        if self.files.error is None:
            return "ok"
        return f"{self.files.error} ({self.files.pending} file(s) waiting; free some space)"

    async def run(self) -> None:
        while True:
            await trio.sleep(FLUSH_EVERY_S)
            await self.flush()

    async def flush(self) -> None:
        if self.files.pending:
            await trio.to_thread.run_sync(self.files.flush)
        self._report()

    def _report(self) -> None:
        error = self.files.error
        if error == self._reported:
            return
        if error is not None:
            log.error("state not written: %s; the agent keeps running and tries again", error)
            self.events.add(time.time(), "DiskError", error, machine=self.machine)
        else:
            log.info("state written again")
            self.events.add(time.time(), "DiskOK", "state written again", machine=self.machine)
        self._reported = error
