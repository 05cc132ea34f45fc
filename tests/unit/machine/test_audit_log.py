"""The audit trail on disk: written behind, read back into the event log after a restart,
and a damaged or unwritable file never stops the agent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from beemesh import wire
from beemesh.events import EventLog
from beemesh.files import WriteBehind
from beemesh.identity import KeyPair, fingerprint
from beemesh.machine.audit_log import FILE_NAME, AuditLog
from beemesh.workloads.messages import DELETE, DRAIN

T0 = 1_700_000_000.0
OPERATOR = KeyPair(b"\x31" * 32)
TRUST = {OPERATOR.public_key: "alice"}


def audit_log(state: Path) -> tuple[AuditLog, EventLog, WriteBehind]:
    events, files = EventLog(), WriteBehind()
    return AuditLog(state, files, events, lambda: TRUST, "12D3KooWme"), events, files


def delete(ts: float = T0) -> wire.Envelope:
    return wire.decode(wire.seal(OPERATOR, DELETE.name, {"workload_id": "deployment/d/web"},
                                 ts))


def test_accepted_requests_survive_a_restart(tmp_path: Path) -> None:
    log1, events1, files1 = audit_log(tmp_path)
    request = delete()
    log1.accepted(request, T0, "")
    log1.accepted(wire.decode(wire.seal(OPERATOR, DRAIN.name, {"machine": "m", "grace_s": 5},
                                        T0 + 1)), T0 + 1, "")
    [first, second] = events1.since(0)
    assert first.kind == "Audit" and first.signer == "alice" and first.ts == T0
    assert "delete" in first.text and fingerprint(OPERATOR.public_key) in first.text
    files1.flush()
    assert oct((tmp_path / FILE_NAME).stat().st_mode & 0o777) == "0o600"

    log2, events2, _ = audit_log(tmp_path)  # the next run
    log2.restore()
    assert [(e.kind, e.ts, e.signer, e.text) for e in events2.since(0)] == [
        (e.kind, e.ts, e.signer, e.text) for e in (first, second)]
    log2.accepted(request, T0 + 5, "")  # the same request again (e.g. relayed): no new entry
    assert len(events2.since(0)) == 2


def test_a_damaged_file_costs_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log1, _, files1 = audit_log(tmp_path)
    log1.accepted(delete(), T0, "")
    files1.flush()
    path = tmp_path / FILE_NAME
    path.write_bytes(path.read_bytes() + b"\x00garbage\xff\n{\"ts\": []}\n")
    log2, events2, files2 = audit_log(tmp_path)
    with caplog.at_level(logging.WARNING, "beemesh.audit"):
        log2.restore()
    assert len(events2.since(0)) == 1  # the good entry is kept
    assert len(caplog.records) == 1
    assert "damaged" in caplog.text and "2 entries skipped" in caplog.text
    assert (tmp_path / (FILE_NAME + ".bad")).exists()
    files2.flush()  # the good entries are written back
    log3, events3, _ = audit_log(tmp_path)
    log3.restore()
    assert len(events3.since(0)) == 1


def test_unreadable_file_and_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).mkdir()  # a directory where the file should be
    log, events, _ = audit_log(tmp_path)
    with caplog.at_level(logging.WARNING, "beemesh.audit"):
        log.restore()
    assert events.since(0) == [] and "cannot read the audit trail" in caplog.text
    audit_log(tmp_path / "missing")[0].restore()  # no file yet: nothing to say


def test_a_huge_file_is_read_only_in_part(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"x" * (3 * 1024 * 1024))
    log, events, _ = audit_log(tmp_path)
    log.restore()
    assert events.since(0) == []


def test_an_unwritable_disk_never_stops_a_handler(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_bytes(b"")  # a file where the state directory should be: every write fails
    log, events, files = audit_log(state)
    log.accepted(delete(), T0, "")  # does not raise: the write waits
    files.flush()
    assert files.error is not None and files.pending == 1
    assert len(events.since(0)) == 1
    state.unlink()
    state.mkdir()
    files.flush()
    assert files.error is None and (state / FILE_NAME).exists()


def test_each_entry_is_appended_and_the_file_is_cut_to_its_newest_when_doubled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An accepted request costs its own line on disk, not a rewrite of the whole trail;
    the file stays within twice the trail's bound and keeps the newest entries."""
    monkeypatch.setattr("beemesh.machine.audit_log.MAX_BYTES", 2_000)
    log, _, files = audit_log(tmp_path)
    path = tmp_path / FILE_NAME
    log.accepted(delete(T0), T0, "")
    files.flush()
    first = path.read_bytes()
    inode = path.stat().st_ino
    log.accepted(delete(T0 + 1), T0 + 1, "")
    files.flush()
    assert path.read_bytes().startswith(first) and path.stat().st_ino == inode  # appended
    for n in range(2, 40):
        log.accepted(delete(T0 + n), T0 + n, "")
        files.flush()
        assert path.stat().st_size <= 2 * 2_000 + len(first)
    log2, events2, _ = audit_log(tmp_path)
    log2.restore()
    assert events2.since(0)[-1].ts == T0 + 39 and len(events2.since(0)) < 20
