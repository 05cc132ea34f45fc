"""configMap and secret volume files on a tmpfs (beemesh.podconfig.writing)."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from beemesh.errors import UserError
from beemesh.podconfig.writing import PodFiles, filesystem_of


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path("/dev/shm") / f"beemesh-test-{uuid.uuid4().hex[:8]}"
    yield path / "files"
    shutil.rmtree(path, ignore_errors=True)


def test_files_are_written_with_their_modes_and_removed(base: Path) -> None:
    files = PodFiles(base)
    dirs = files.write("web-0", {"sec": (("pw", b"s3cret", 0o400), ("conf/a.ini", b"x", 0o644))})
    root = dirs["sec"]
    assert (root / "pw").read_bytes() == b"s3cret"
    assert stat.S_IMODE((root / "pw").stat().st_mode) == 0o400
    assert (root / "conf" / "a.ini").read_bytes() == b"x"
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    again = files.write("web-0", {"sec": (("pw", b"new", 0o400),)})  # afresh each deploy
    assert sorted(p.name for p in again["sec"].iterdir()) == ["pw"]
    assert files.pods() == ["web-0"]
    files.remove("web-0")
    assert files.pods() == []


def test_a_link_planted_as_the_base_is_refused(base: Path) -> None:
    base.parent.mkdir()
    os.symlink("/etc", base)
    with pytest.raises(UserError, match="not a directory this agent owns"):
        PodFiles(base).write("web-0", {"v": (("a", b"x", 0o644),)})


def test_two_items_at_one_path_fail_the_deploy_and_leave_nothing(base: Path) -> None:
    files = PodFiles(base)
    with pytest.raises(UserError, match="cannot write the config files of web-0"):
        files.write("web-0", {"v": (("a", b"x", 0o644), ("a", b"y", 0o644))})
    assert files.pods() == []


def test_the_file_system_of_a_path_is_read_from_mountinfo(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    "23 22 0:5 / /run rw - tmpfs tmpfs rw\n"
                    "24 23 0:6 / /run/user rw - ext4 /dev/sdb rw\n")
    assert filesystem_of(Path("/run"), info) == "tmpfs"
    assert filesystem_of(Path("/"), info) == "ext4"
    assert filesystem_of(Path("/dev/shm"), Path("/proc/self/mountinfo")) == "tmpfs"
