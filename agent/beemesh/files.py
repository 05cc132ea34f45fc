"""Replacing a file atomically: the one helper every writer of state, bundles and caches uses.

A reader (or the next start after a power cut) finds either the old file or all of the new
one, never half of it: the data goes to a temporary file in the same directory, created
exclusively and never through a link (a root process must not follow a link another user
planted), with its final mode (and owner) before it gets a name anyone reads, is flushed to
disk, renamed over the target, and the directory entry is flushed too.

`WriteBehind` is how the agent keeps state on disk without letting the disk slow or stop it:
services change their state in memory and queue the bytes; a flush in a worker thread writes
them, and a write that fails (a full or read-only disk) stays queued and is tried again while
the agent keeps running and says why in its status. A log of lines (the audit trail) is
appended to instead (`append`), and cut to its newest lines when it has doubled: each entry
costs its own bytes on disk, not a rewrite of the whole file, and the lines need not be kept
in memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"  # leftovers of a write cut short end like this: `.NAME.PID.tmp`


@contextmanager
def atomic_file(path: Path, mode: int = 0o644, owner: tuple[int, int] | None = None,
                durable: bool = True) -> Iterator[BinaryIO]:
    """A file object whose contents replace `path` when the block ends without an error.
    `durable=False` skips the fsyncs: for files rewritten every few seconds anyway, where a
    power cut may lose the newest version but never leaves half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = create_new(tmp, mode, owner)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def create_new(path: Path, mode: int, owner: tuple[int, int] | None = None) -> int:
    """A write descriptor for a new file at `path` that has `mode` (and `owner`) before it
    holds a byte; created exclusively and never through a link. A leftover file there (a
    crashed earlier run's) is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        path.unlink()
        fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # os.open's mode is cut by the umask
        if owner is not None:
            os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def write_atomic(path: Path, data: bytes, mode: int = 0o644,
                 owner: tuple[int, int] | None = None, durable: bool = True) -> None:
    """All of `data` at `path`, or the old file: never half a file after a crash."""
    with atomic_file(path, mode, owner, durable) as f:
        f.write(data)


@dataclass
class _Appended:
    data: bytes
    mode: int
    max_bytes: int


class WriteBehind:
    """Files to write (or remove) later, newest wins per path, and lines to append; `flush`
    does the IO (it blocks: run it in a worker thread). Thread-safe: the event loop queues
    while a thread flushes."""

    def __init__(self) -> None:
        self._pending: dict[Path, tuple[bytes | None, int]] = {}  # path -> (data | None, mode)
        self._appends: dict[Path, _Appended] = {}
        self._lock = threading.Lock()
        self.error: str | None = None  # why the last flush could not write everything

    def write(self, path: Path, data: bytes, mode: int = 0o600) -> None:
        """Replace the file (and drop what was queued to append to it)."""
        with self._lock:
            self._pending[path] = (data, mode)
            self._appends.pop(path, None)

    def remove(self, path: Path) -> None:
        with self._lock:
            self._pending[path] = (None, 0)
            self._appends.pop(path, None)

    def append(self, path: Path, data: bytes, mode: int, max_bytes: int) -> None:
        """Add lines to a log file; once it holds more than twice `max_bytes` it is cut to
        its newest lines within `max_bytes` (`newest_lines`)."""
        with self._lock:
            queued = self._appends.get(path)
            self._appends[path] = _Appended((queued.data if queued else b"") + data, mode,
                                            max_bytes)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._appends)

    def flush(self) -> None:
        """Write what is queued; what fails stays queued (unless queued again meanwhile)."""
        with self._lock:
            work, self._pending = self._pending, {}
            appends, self._appends = self._appends, {}
        failed: dict[Path, tuple[bytes | None, int]] = {}
        failed_appends: dict[Path, _Appended] = {}
        error: str | None = None
        for path, (data, mode) in work.items():
            try:
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    write_atomic(path, data, mode)
            except OSError as e:
                failed[path] = (data, mode)
                error = f"cannot write {path}: {e.strerror or e}"
        for path, item in appends.items():
            try:
                append_lines(path, item.data, item.mode, item.max_bytes)
            except OSError as e:
                failed_appends[path] = item
                error = f"cannot write {path}: {e.strerror or e}"
        with self._lock:
            for path, old in failed.items():
                self._pending.setdefault(path, old)
            for path, item in failed_appends.items():
                if path in self._pending:
                    continue  # replaced meanwhile
                newer = self._appends.get(path)
                self._appends[path] = _Appended(item.data + (newer.data if newer else b""),
                                                item.mode, item.max_bytes)
            self.error = error


def append_lines(path: Path, data: bytes, mode: int, max_bytes: int) -> None:
    """Append `data` (whole lines) durably, never through a link; a failed write leaves the
    file as it was. Past twice `max_bytes`, keep only its newest lines within `max_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, before)  # no half line for the next reader
            raise
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > 2 * max_bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            write_atomic(path, newest_lines(f.read(), max_bytes), mode)


def newest_lines(data: bytes, max_bytes: int) -> bytes:
    """The last whole lines of `data` that fit in `max_bytes` (the newest one in any case)."""
    last = data.rfind(b"\n", 0, len(data) - 1) + 1  # where the newest line starts
    start = max(0, len(data) - max_bytes)
    if start and data[start - 1:start] != b"\n":
        start = data.find(b"\n", start) + 1 or len(data)
    return data[min(start, last):]


def fsync_dir(directory: Path) -> None:
    """Make a rename or an unlink in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
