"""Reading a bundle off a stick without trusting it: a directory or a plain tar.

Nothing is extracted or followed. `names()` lists what the bundle holds (each entry's size, or
why it is not a regular file), bounded in count; `read_manifest()` reads MANIFEST.cbor alone,
bounded in size, so its signature is checked before any other byte is read; `open()` gives one
regular file for verify to copy (bounded by its listed size, bundle_format.copy_bounded).

In a directory every path is walked down one component at a time with O_NOFOLLOW from a
descriptor of the bundle directory, so no symlink is followed anywhere in a path and the file
read is the one that was looked at. In a tar only regular members (and directories) are
accepted; symlinks, hardlinks, devices, fifos and sparse members are refused, and a
compressed tar is refused before it is decompressed (a 200 KB .tar.gz can hold 200 MiB).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from beemesh.rollout.bundle_format import (
    MANIFEST,
    MAX_ENTRIES,
    MAX_MANIFEST_BYTES,
    REGULAR_ONLY,
    BundleRefused,
    show,
    unsafe_path,
)

_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOFOLLOW_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a fifo never blocks
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz",
               b"\x28\xb5\x2f\xfd": "zstd"}


@dataclass(frozen=True)
class Entry:
    """One file in the bundle: its size, or `problem` (why it is not a regular file)."""

    size: int = 0
    problem: str | None = None


class NotRegular(Exception):
    """`open` found no regular file at a path (a link, a device, a directory, ...)."""


def _kind(mode: int, nlink: int = 1) -> str | None:
    """Why a file of this mode may not be in a bundle, or None for a regular file."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "a fifo or socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return "a hardlink (one of several names of a file)" if nlink != 1 else None


def _too_many(where: str) -> BundleRefused:
    return BundleRefused([f"{where} holds more than {MAX_ENTRIES} entries, more than any bundle "
                          "`beemesh bundle create` writes; copy the bundle again"])


class DirSource:
    """A bundle directory (a mounted stick), read through descriptors, never through a link."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise BundleRefused([f"cannot open bundle directory {path} ({e.strerror}); pass the "
                                 "mounted bundle directory or a bundle .tar"]) from None

    def close(self) -> None:
        os.close(self._fd)

    def names(self) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        self._seen = 0  # directories too: a tree of empty directories is bounded as well
        self._scan(self._fd, "", out)
        return out

    def _scan(self, dir_fd: int, prefix: str, out: dict[str, Entry]) -> None:
        with os.scandir(dir_fd) as it:
            for e in it:
                self._seen += 1
                rel = prefix + e.name
                if self._seen > MAX_ENTRIES:
                    raise _too_many(str(self.path))
                if unsafe_path(rel):  # too long (deep) or not printable: nothing we wrote
                    out[rel] = Entry(0, "a name no bundle holds (too long or not printable)")
                    continue
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    sub = os.open(e.name, _NOFOLLOW_DIR, dir_fd=dir_fd)
                    try:
                        self._scan(sub, rel + "/", out)
                    finally:
                        os.close(sub)
                else:
                    out[rel] = Entry(st.st_size, _kind(st.st_mode, st.st_nlink))

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        """The regular file at `rel` (already checked by unsafe_path); NotRegular if a
        component is a symlink, or the file is a link, device, fifo or directory."""
        parts = rel.split("/")
        fds: list[int] = []
        try:
            dir_fd = self._fd
            for part in parts[:-1]:
                try:
                    dir_fd = os.open(part, _NOFOLLOW_DIR, dir_fd=dir_fd)
                except NotADirectoryError:  # also what O_NOFOLLOW|O_DIRECTORY says of a link
                    raise NotRegular(f"{'/'.join(parts[:len(fds) + 1])} is a symlink or not "
                                     "a directory") from None
                fds.append(dir_fd)
            try:
                fd = os.open(parts[-1], _NOFOLLOW_FILE, dir_fd=dir_fd)
            except OSError as e:
                if e.errno == 40:  # ELOOP: the last component is a symlink
                    raise NotRegular("a symlink") from None
                raise
            st = os.fstat(fd)
            why = _kind(st.st_mode, st.st_nlink)
            if why:
                os.close(fd)
                raise NotRegular(why)
            with os.fdopen(fd, "rb") as f:
                yield f
        finally:
            for fd in fds:
                os.close(fd)

    def read_manifest(self) -> bytes | None:
        """MANIFEST.cbor's bytes (at most MAX_MANIFEST_BYTES + 1), None if absent."""
        try:
            with self.open(MANIFEST) as f:
                return f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            return None
        except NotRegular as e:
            raise BundleRefused([f"{MANIFEST} is {e}; {REGULAR_ONLY}"]) from None


class TarSource:
    """A plain (uncompressed) bundle tar: headers read once, members read only when asked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as f:
            magic = f.read(6)
        for prefix, name in _COMPRESSED.items():
            if magic.startswith(prefix):
                raise BundleRefused([f"bundle tar {path} is {name}-compressed; a bundle is a "
                                     "plain tar as `beemesh bundle create --tar` writes it "
                                     "(decompress it first, checking it fits on the disk)"])
        try:
            self._tf = tarfile.open(path, "r:")  # noqa: SIM115 (closed by close())
        except tarfile.TarError as e:
            raise BundleRefused([f"bundle tar {path} is not a tar ({e}); copy it again"]) from None
        self._members: dict[str, tarfile.TarInfo] = {}  # by name, without a leading './'
        self._entries: dict[str, Entry] = {}
        try:
            self._index()
        except BaseException:
            self._tf.close()
            raise

    def _index(self) -> None:
        count = 0
        while True:
            try:
                member = self._tf.next()
            except Exception as e:  # any header tarfile cannot parse: refused, one line
                raise BundleRefused([f"bundle tar {self.path} is damaged ({e}); copy it "
                                     "again"]) from None
            if member is None:
                return
            count += 1
            if count > MAX_ENTRIES:
                raise _too_many(str(self.path))
            self._tf.members = []  # tarfile keeps every header it read: keep none
            if member.name in ("", ".") and member.isdir():  # the bundle directory itself
                continue
            name = member.name.removeprefix("./")  # as `tar -C bundle .` writes names
            why = unsafe_path(name)
            if why:
                raise BundleRefused([f"unsafe path in bundle tar {self.path}: {show(name)} "
                                     f"({why}); copy the bundle again"])
            if name in self._members or name in self._entries:
                raise BundleRefused([f"bundle tar {self.path} holds {show(name)} twice; copy "
                                     "the bundle again"])
            if member.isdir():
                continue
            if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and member.sparse is None:
                self._members[name] = member
                self._entries[name] = Entry(member.size)
            else:
                self._entries[name] = Entry(0, _tar_kind(member))

    def close(self) -> None:
        self._tf.close()

    def names(self) -> dict[str, Entry]:
        return dict(self._entries)

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        member = self._members.get(rel)
        if member is None:
            if rel in self._entries:
                raise NotRegular(self._entries[rel].problem or "not a regular file")
            raise FileNotFoundError(rel)
        f = self._tf.extractfile(member)
        assert f is not None
        with f:
            yield f  # type: ignore[misc]

    def read_manifest(self) -> bytes | None:
        entry = self._entries.get(MANIFEST)
        if entry is None:
            return None
        if entry.problem:
            raise BundleRefused([f"{MANIFEST} is {entry.problem}; {REGULAR_ONLY}"])
        with self.open(MANIFEST) as f:
            return f.read(MAX_MANIFEST_BYTES + 1)


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symlink"
    if member.islnk():
        return "a hardlink"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a fifo"
    if member.issparse() or member.sparse is not None:
        return "a sparse file"
    return "not a regular file"


Source = DirSource | TarSource


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """The bundle at `path`: a directory, or a plain tar file."""
    if path.is_dir():
        src: Source = DirSource(path)
    elif path.is_file():
        src = TarSource(path)
    else:
        raise BundleRefused([f"bundle {path} not found; pass the mounted bundle directory or a "
                             "bundle .tar"])
    try:
        yield src
    finally:
        src.close()
