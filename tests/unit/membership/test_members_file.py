"""The member list kept across restarts: a restarted, cut-off agent is not a majority of one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from machine_records_testlib import KEY_A, entry

from beemesh.files import WriteBehind
from beemesh.membership import members_file
from beemesh.membership.members_file import Remembered
from beemesh.membership.quorum import Quorum
from beemesh.membership.view import MachineView

T0 = 1_700_000_000.0


def save(directory: Path, members: dict[str, float]) -> None:
    files = WriteBehind()
    members_file.save(files, directory, members)
    assert files.pending == 1  # nothing on disk until the persister flushes
    files.flush()


def test_round_trip_and_missing_file(tmp_path: Path) -> None:
    assert members_file.load(tmp_path) == Remembered({}, trusted=True)  # a first start
    save(tmp_path, {"a": T0 + 10, "b": T0 + 12.5})
    assert members_file.load(tmp_path) == Remembered({"a": T0 + 10, "b": T0 + 12.5})


def test_remembered_members_count_for_quorum() -> None:
    """Four machines were members; after a restart this agent sees only itself."""
    view = MachineView()
    view.remember({p: T0 + 10 for p in ("a", "b", "c", "d")})
    assert view.membership(T0 + 20, 600) == (0, 4)
    sample = Quorum(view, 600).sample(T0 + 20)
    assert not sample.majority and sample.outnumbered
    # Remembered members are forgotten like any other once quorum memory has passed.
    assert view.membership(T0 + 10 + 600, 600) == (0, 0)
    # An older remembered expiry never shortens what this run has seen since.
    view.remember({"a": T0 + 700})
    view.remember({"a": T0 + 5})
    assert view.members(T0 + 30) == {"a": T0 + 700}


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"a": "soon"}',
                                     b'{"a": true}', b'{"a": NaN}', b'{"a": Infinity}'])
def test_damaged_file_is_set_aside_and_not_trusted(tmp_path: Path, content: bytes,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / members_file.FILE_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert members_file.load(tmp_path) == Remembered({}, trusted=False)
    assert "damaged" in caplog.text and "members.bad" in caplog.text
    assert "no StatefulSet replica starts here" in caplog.text
    assert (tmp_path / "members.bad").read_bytes() == content
    assert not (tmp_path / members_file.FILE_NAME).exists()
    save(tmp_path, {"a": T0})  # and the next save starts a good file
    assert members_file.load(tmp_path) == Remembered({"a": T0})


def test_an_untrusted_list_claims_no_majority_until_it_is_rebuilt() -> None:
    """Fail closed: after a damaged member file, this machine alone in sight of itself is no
    majority (it may be the cut-off minority) until quorum memory has passed."""
    view = MachineView()
    view.apply(entry(KEY_A, T0), T0)  # one machine in sight, the only member
    quorum = Quorum(view, 600, unsure_until=T0 + 60)
    sample = quorum.sample(T0 + 1)
    assert (sample.visible, sample.majority, sample.majority_for) == (1, False, 0.0)
    assert Quorum(view, 600).sample(T0 + 1).majority  # a trusted list: a majority of one
    assert not quorum.sample(T0 + 59).majority
    assert quorum.sample(T0 + 60).majority
