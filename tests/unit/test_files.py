"""files.write_atomic / atomic_file: the one way Beemesh replaces a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from beemesh.files import TMP_SUFFIX, atomic_file, write_atomic


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
