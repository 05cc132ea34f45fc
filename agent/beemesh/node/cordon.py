"""Cordon and drain of this machine, as the operator asked: kept in files across restarts.

A cordoned machine does not bid (`STATE_DIR/cordoned`). A draining machine is cordoned and
moves every replica away (`STATE_DIR/draining` holds the stop grace, and `keep-data` when the
StatefulSet ordinals whose claim volumes are here stay with them: stopped, not moved, back when
the machine is uncordoned); `uncordon` ends both.
The operator took the machine out on purpose, so a restart must not put it back.
"""

from __future__ import annotations

import time
from pathlib import Path

from beemesh.events import EventLog
from beemesh.files import WriteBehind
from beemesh.node.local import Announcer

CORDON_FILE = "cordoned"
DRAIN_FILE = "draining"
DEFAULT_GRACE_S = 30
KEEP_DATA = "keep-data"


class Cordon:
    def __init__(self, state_dir: Path, machine: str, events: EventLog,
                 announcer: Announcer, files: WriteBehind) -> None:
        self.machine = machine
        self.files = files
        self.events = events
        self.announcer = announcer
        self.cordon_file = state_dir / CORDON_FILE
        self.drain_file = state_dir / DRAIN_FILE
        self.cordoned = self.cordon_file.exists()
        self.drain_grace_s, self.keep_data = read_drain(self.drain_file)

    @property
    def draining(self) -> bool:
        return self.drain_grace_s is not None

    def set_cordoned(self, cordoned: bool) -> None:
        if cordoned:
            self.files.write(self.cordon_file,
                             b"cordoned by an operator; `beemesh uncordon` undoes it\n")
        else:
            self.files.remove(self.cordon_file)
            self.files.remove(self.drain_file)  # uncordon also ends a drain
            self.drain_grace_s, self.keep_data = None, False
        self.cordoned = cordoned
        self.events.add(time.time(), "Cordoned" if cordoned else "Uncordoned",
                        "no new replicas will be placed here" if cordoned else
                        "this machine takes new replicas again", machine=self.machine)
        self.announcer.announce_soon()  # re-announce now: others show the new state at once

    def set_draining(self, grace_s: int, keep_data: bool = False) -> None:
        """Drain: cordon, then (`node.evictions`) replace every replica here and stop it
        (`keep_data`: an ordinal with claim volumes here is stopped, not replaced)."""
        self.files.write(self.drain_file,
                         f"{grace_s}{' ' + KEEP_DATA if keep_data else ''}\n".encode())
        self.drain_grace_s, self.keep_data = grace_s, keep_data
        self.events.add(time.time(), "Draining", f"moving every replica off this machine (stop "
                        f"grace {grace_s} s" + ("; ordinals with claim volumes here stay "
                                                "with their data" if keep_data else "") + ")",
                        machine=self.machine)
        if not self.cordoned:
            self.set_cordoned(True)
        self.announcer.announce_soon()


def read_drain(path: Path) -> tuple[int | None, bool]:
    """(stop grace, keep data) of a drain in progress (kept across restarts), or (None,
    False)."""
    try:
        words = path.read_text().split()
        return int(words[0]) if words else DEFAULT_GRACE_S, KEEP_DATA in words[1:]
    except FileNotFoundError:
        return None, False
    except (OSError, ValueError):
        return DEFAULT_GRACE_S, False  # a damaged marker still means "draining"
