"""files.write_atomic / atomic_file: the one way Beemesh replaces a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from beemesh.files import TMP_SUFFIX, WriteBehind, atomic_file, newest_lines, write_atomic


def test_replaces_content_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "state.cbor"
    target.write_bytes(b"old")
    old_umask = os.umask(0o077)  # the umask must not cut the mode asked for
    try:
        write_atomic(target, b"new", mode=0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.cbor"]


def test_makes_the_directory(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a" / "b" / "f", b"x", mode=0o600)
    assert (tmp_path / "a" / "b" / "f").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "a" / "b" / "f").stat().st_mode) == 0o600


def test_one_rename_of_a_finished_file_then_a_directory_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src: Any, dst: Any) -> None:
        calls.append(("replace", (Path(src).name, Path(dst).name, Path(src).read_bytes())))
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "f", b"data")
    assert calls[0] == ("fsync", False)  # the file's data, before it gets its name
    assert calls[1][0] == "replace"
    src, dst, content = calls[1][1]
    assert src.endswith(TMP_SUFFIX) and src.startswith(".") and dst == "f"
    assert content == b"data"
    assert calls[2] == ("fsync", True)  # then the directory entry


def test_an_error_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """A link at the temporary name (planted by whoever can write the directory) is replaced,
    not followed: the file it points to stays as it was."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "f"
    planted = target.with_name(f".f.{os.getpid()}{TMP_SUFFIX}")
    planted.symlink_to(victim)
    write_atomic(target, b"data")
    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == b"data" and not target.is_symlink()
    assert not planted.exists() and not planted.is_symlink()


def test_owner_is_set_before_the_rename(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test changes file owners: run the suite as root (make test does)")
    write_atomic(tmp_path / "f", b"x", owner=(4321, 4321))
    st = (tmp_path / "f").stat()
    assert (st.st_uid, st.st_gid) == (4321, 4321)


def test_write_behind_writes_and_removes_on_flush(tmp_path: Path) -> None:
    files = WriteBehind()
    (tmp_path / "old").write_bytes(b"x")
    files.write(tmp_path / "a", b"1")
    files.write(tmp_path / "a", b"2")  # newest wins
    files.remove(tmp_path / "old")
    assert files.pending == 2 and (tmp_path / "old").exists() and not (tmp_path / "a").exists()
    files.flush()
    assert (tmp_path / "a").read_bytes() == b"2" and not (tmp_path / "old").exists()
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert files.pending == 0 and files.error is None


def test_write_behind_keeps_what_the_disk_refuses(tmp_path: Path) -> None:
    files = WriteBehind()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory is needed")
    files.write(blocked / "state", b"1")
    files.write(tmp_path / "fine", b"ok")
    files.flush()
    assert (tmp_path / "fine").read_bytes() == b"ok"
    assert files.pending == 1 and files.error is not None and "blocked" in files.error
    files.write(blocked / "state", b"2")  # queued again meanwhile: the newer bytes win
    blocked.unlink()
    files.flush()
    assert (blocked / "state").read_bytes() == b"2"
    assert files.pending == 0 and files.error is None


def test_not_durable_writes_skip_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    write_atomic(tmp_path / "f", b"x", durable=False)
    assert (tmp_path / "f").read_bytes() == b"x" and calls == []


def test_newest_lines_keeps_whole_lines_and_always_the_last() -> None:
    data = b"aaaa\nbbbb\ncccc\n"
    assert newest_lines(data, 100) == data
    assert newest_lines(data, 10) == b"bbbb\ncccc\n"
    assert newest_lines(data, 9) == b"cccc\n"  # never half a line
    assert newest_lines(data, 0) == b"cccc\n"  # the newest one in any case


def test_appends_queue_in_order_and_a_replacing_write_drops_them(tmp_path: Path) -> None:
    files, path = WriteBehind(), tmp_path / "log"
    files.append(path, b"1\n", 0o600, 1000)
    files.append(path, b"2\n", 0o600, 1000)
    assert files.pending == 1
    files.flush()
    files.append(path, b"3\n", 0o600, 1000)
    files.flush()
    assert path.read_bytes() == b"1\n2\n3\n" and oct(path.stat().st_mode & 0o777) == "0o600"
    files.append(path, b"4\n", 0o600, 1000)
    files.write(path, b"new\n")
    files.flush()
    assert path.read_bytes() == b"new\n"


def test_an_append_that_fails_stays_queued_ahead_of_later_ones(tmp_path: Path) -> None:
    files, state = WriteBehind(), tmp_path / "state"
    state.write_bytes(b"")  # a file where the directory should be: every write fails
    files.append(state / "log", b"1\n", 0o600, 1000)
    files.flush()
    assert files.error is not None and files.pending == 1
    files.append(state / "log", b"2\n", 0o600, 1000)
    state.unlink()
    state.mkdir()
    files.flush()
    assert files.error is None and (state / "log").read_bytes() == b"1\n2\n"


def test_an_append_never_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    (tmp_path / "log").symlink_to(target)
    files = WriteBehind()
    files.append(tmp_path / "log", b"x\n", 0o600, 1000)
    files.flush()
    assert files.error is not None and target.read_bytes() == b""
