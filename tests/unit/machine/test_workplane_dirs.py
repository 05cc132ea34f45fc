"""The work plane's directories, as a root agent makes them: nothing the work plane's user
can write is ever followed, and a planted link or file never stops the agent."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from beemesh.config import AgentConfig
from beemesh.errors import UserError
from beemesh.machine.workplane_dirs import WorkPlaneDirs

USER = (4321, 4321)


def dirs(tmp_path: Path, user: tuple[int, int] | None = USER) -> WorkPlaneDirs:
    if user is not None and os.geteuid() != 0:
        pytest.fail("these checks change owners: run the suite as root (make test does)")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return WorkPlaneDirs(AgentConfig(state_dir=state), user)


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_layout(tmp_path: Path) -> None:
    d = dirs(tmp_path)
    d.prepare()
    assert mode_owner(d.own) == (0o700, *USER)
    assert mode_owner(d.link) == (0o710, 0, USER[1])
    assert mode_owner(d.pods) == (0o755, 0, 0)
    assert stat.S_IMODE(d.state_dir.stat().st_mode) == 0o711  # traversable, not readable
    assert d.socket.parent == d.link
    pod = d.make("web-0")
    assert pod == d.pods / "web-0" and mode_owner(pod) == (0o755, *USER)
    d.prepare()  # again, as after a restart: same result
    assert mode_owner(d.own) == (0o700, *USER)


def test_a_link_in_place_of_a_directory_is_refused_not_followed(tmp_path: Path) -> None:
    d = dirs(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    d.own.symlink_to(victim)
    with pytest.raises(UserError, match="is not a directory"):
        d.prepare()
    assert mode_owner(victim) == (0o700, 0, 0)  # neither chmodded nor chowned


def test_a_pod_directory_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    d = dirs(tmp_path)
    d.prepare()
    (d.pods / "web-0").symlink_to(tmp_path)
    with pytest.raises(UserError, match="web-0 is not a directory"):
        d.make("web-0")
    assert mode_owner(tmp_path)[1] == 0


def test_clean_removes_what_is_gone_and_survives_links_and_files(tmp_path: Path) -> None:
    d = dirs(tmp_path, user=None)
    d.prepare()
    for name in ("old", "kept", "fresh"):
        d.make(name)
        (d.pods / name / "self.json").write_text("{}")
    (d.pods / "dangling").symlink_to(tmp_path / "nowhere")
    (d.pods / "outside").symlink_to(tmp_path / "state")
    (d.pods / "stray-file").write_text("x")
    old = time.time() - 3600
    for name in ("old", "kept", "dangling", "outside", "stray-file"):
        os.utime(d.pods / name, (old, old), follow_symlinks=False)
    gone = d.clean({"kept"}, time.time(), older_than_s=30)
    assert sorted(gone) == ["dangling", "old", "outside", "stray-file"]
    assert sorted(p.name for p in d.pods.iterdir()) == ["fresh", "kept"]
    assert (tmp_path / "state").is_dir()  # a link is removed, never what it points to
