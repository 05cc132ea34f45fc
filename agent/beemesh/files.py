"""Replacing a file atomically: the one helper every writer of state, bundles and caches uses.

A reader (or the next start after a power cut) finds either the old file or all of the new
one, never half of it: the data goes to a temporary file in the same directory, created
exclusively and never through a link (a root process must not follow a link another user
planted), with its final mode (and owner) before it gets a name anyone reads, is flushed to
disk, renamed over the target, and the directory entry is flushed too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"  # leftovers of a write cut short end like this: `.NAME.PID.tmp`


@contextmanager
def atomic_file(path: Path, mode: int = 0o644,
                owner: tuple[int, int] | None = None) -> Iterator[BinaryIO]:
    """A file object whose contents replace `path` when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a crashed run with the same pid
        tmp.unlink()
        fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # os.open's mode is cut by the umask
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o644,
                 owner: tuple[int, int] | None = None) -> None:
    """All of `data` at `path`, or the old file: never half a file after a crash."""
    with atomic_file(path, mode, owner) as f:
        f.write(data)


def fsync_dir(directory: Path) -> None:
    """Make a rename or an unlink in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
