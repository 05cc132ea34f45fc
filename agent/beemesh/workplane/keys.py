"""Workload keys: one Ed25519 key per replica, made on the machine that runs it, kept there.

Files live under the work plane's own directory (0700, the work plane's user), one per
replica instance: `keys/<pod>.<task>.key`, mode 0600, the same format as a machine key. A
replica that is replaced (new task) gets a new key; a key whose replica is gone is deleted,
so a workload Peer ID never outlives its replica or moves to another machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from beemesh.errors import UserError
from beemesh.identity import KeyPair, load_key, save_key

FIX = "delete it; the work plane makes a new key and asks its machine to certify it"


def load_or_create(path: Path, what: str) -> KeyPair:
    """The key at `path`, created (0600) if missing; a damaged key is replaced, not fatal,
    because a workload key only matters while its replica runs and is certified anew."""
    if path.exists():
        try:
            return load_key(path, what, FIX)
        except UserError:
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = KeyPair.generate()
    save_key(path, key)
    return key


class WorkloadKeys:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, pod: str, task: str) -> Path:
        return self.directory / f"{pod}.{task}.key"

    def key_for(self, pod: str, task: str) -> KeyPair:
        return load_or_create(self.path(pod, task), f"workload key of {pod}")

    def keep_only(self, live: set[tuple[str, str]]) -> list[str]:
        """Delete the keys of replicas that are gone; returns the file names removed."""
        removed = []
        if not self.directory.is_dir():
            return removed
        wanted = {self.path(pod, task).name for pod, task in live}
        for path in self.directory.glob("*.key"):
            if path.name not in wanted:
                os.unlink(path)
                removed.append(path.name)
        return removed
