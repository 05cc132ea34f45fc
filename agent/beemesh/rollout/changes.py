"""What `bundle install` changes under ROOT, undone if the install fails partway; and the record
of the bundle installed last, so an older one does not install over it.

`Changes` writes each file atomically (beemesh.files) after keeping the old one as a hardlink
next to it; `rollback` puts every old file, link and directory mode back and removes what was
new, `commit` drops the backups. Nothing is ever written through a link.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beemesh.files import atomic_file, write_atomic
from beemesh.rollout.bundle_format import CHUNK, BundleRefused

BACKUP_SUFFIX = ".bundle-old"


class Changes:
    """Files, links, directories and modes changed so far, and how to undo each."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._backups: list[Path] = []

    def mkdir(self, path: Path, mode: int = 0o755) -> None:
        """`path` and its missing parents, each with `mode` whatever the umask."""
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir(mode)
            os.chmod(p, mode)
            self._undo.append(lambda p=p: p.rmdir())  # type: ignore[misc]

    def chmod(self, path: Path, mode: int) -> None:
        old = stat.S_IMODE(os.lstat(path).st_mode)
        os.chmod(path, mode)
        self._undo.append(lambda: os.chmod(path, old))

    def _keep(self, path: Path) -> None:
        """Remember what is at `path` now (a file, a link, or nothing) to put back later."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._undo.append(lambda: path.unlink(missing_ok=True))
            return
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)

            def relink() -> None:
                path.unlink(missing_ok=True)
                path.symlink_to(target)
            self._undo.append(relink)
            return
        backup = path.with_name(f".{path.name}{BACKUP_SUFFIX}")
        backup.unlink(missing_ok=True)
        os.link(path, backup, follow_symlinks=False)
        self._backups.append(backup)
        self._undo.append(lambda: os.replace(backup, path))

    def write(self, path: Path, data: bytes, mode: int,
              owner: tuple[int, int] | None = None) -> None:
        self._keep(path)
        write_atomic(path, data, mode, owner)

    def copy(self, path: Path, src: Path, mode: int) -> None:
        self._keep(path)
        with src.open("rb") as f_in, atomic_file(path, mode) as f_out:
            shutil.copyfileobj(f_in, f_out, CHUNK)

    def created(self, path: Path) -> None:
        """`path` was just made by someone else (a new machine key): remove it on rollback."""
        self._undo.append(lambda: path.unlink(missing_ok=True))

    def symlink(self, path: Path, target: str) -> None:
        self._keep(path)
        path.unlink(missing_ok=True)
        path.symlink_to(target)

    def rollback(self) -> None:
        """Undo everything, newest first; one step that fails does not stop the others."""
        for undo in reversed(self._undo):
            with contextlib.suppress(OSError):
                undo()
        self._undo.clear()
        self._backups.clear()

    def commit(self) -> None:
        for backup in self._backups:
            backup.unlink(missing_ok=True)
        self._undo.clear()
        self._backups.clear()


INSTALLED = "bundle.installed"  # in /etc/beemesh: which bundle install wrote last


@dataclass(frozen=True)
class Installed:
    """Which bundle is installed: its version and when the operator signed it."""

    site: str
    version: str
    created_ms: int

    def key(self) -> tuple[tuple[int, ...], int]:
        return version_key(self.version), self.created_ms

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.created_ms / 1000))
        return f"beemesh {self.version} for site {self.site}, signed {when}"

    def encode(self) -> bytes:
        return json.dumps({"site": self.site, "version": self.version,
                           "created_ms": self.created_ms}).encode() + b"\n"


def version_key(version: str) -> tuple[int, ...]:
    """'1.2.3' (with any suffix) -> (1, 2, 3): releases compare by their numbers."""
    m = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(x) for x in m.group().split(".")) if m else ()


def read_installed(path: Path) -> Installed | None:
    """The record at `path`, None if there is none; a damaged one is refused (fail closed)."""
    try:
        raw: Any = json.loads(path.read_bytes()[:4096])
        return Installed(str(raw["site"]), str(raw["version"]), int(raw["created_ms"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BundleRefused([f"cannot read {path} (which bundle is installed: {e}); fix or "
                             "remove it, or pass --allow-downgrade to install this bundle "
                             "anyway"]) from None


def check_not_older(new: Installed, path: Path, allow_downgrade: bool) -> Installed | None:
    """Refuse `new` if the bundle installed before (recorded at `path`) is newer."""
    if allow_downgrade:
        return None
    old = read_installed(path)
    if old is not None and new.key() < old.key():
        raise BundleRefused([f"older bundle: this machine has {old.describe()}; this bundle is "
                             f"{new.describe()}; install the newer bundle, or pass "
                             "--allow-downgrade to go back on purpose"])
    return old
