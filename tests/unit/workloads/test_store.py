"""WorkloadStore: newest signed apply per workload, Deletes (for their TTL), kept on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from store_testlib import (
    OPERATOR,
    STRANGER,
    T0,
    WID,
    add_apply,
    add_delete,
    apply_blob,
    delete_blob,
    env_of,
    make_store,
    spec,
)

from beemesh import wire
from beemesh.manifest import parse_manifests
from beemesh.workloads.messages import SERVICE, WORKLOAD
from beemesh.workloads.store import DELETE_TTL_S, WorkloadStore, _file_name


def workload_file(tmp_path: Path, wid: str) -> Path:
    return tmp_path / "workloads" / _file_name(wid)


def delete_file(tmp_path: Path, wid: str) -> Path:
    return tmp_path / "deleted" / _file_name(wid)


def all_files(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())


# --- applies --------------------------------------------------------------------------------


def test_first_apply_is_kept_and_written(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    blob = apply_blob(spec(), T0)
    stored = store.add_workload(blob, env_of(blob))
    assert stored is not None
    assert stored.workload_id == WID
    assert stored.ts == T0
    assert stored.generation == int(T0 * 1000)
    assert stored.blob == blob
    assert store.workload(WID) == stored
    assert store.workloads() == [stored]
    assert not workload_file(tmp_path, WID).exists()  # in memory first, written behind
    store.files.flush()
    assert workload_file(tmp_path, WID).read_bytes() == blob


def test_newest_apply_wins(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, spec(replicas=2), T0)
    newer = add_apply(store, spec(replicas=5), T0 + 10)
    assert newer is not None
    assert store.workload(WID).spec.replicas == 5  # type: ignore[union-attr]
    assert workload_file(tmp_path, WID).read_bytes() == newer.blob


def test_older_apply_ignored(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    newer = add_apply(store, spec(replicas=5), T0 + 10)
    assert add_apply(store, spec(replicas=2), T0) is None
    assert store.workload(WID) == newer
    assert workload_file(tmp_path, WID).read_bytes() == newer.blob


def test_same_apply_again_returns_current(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    blob = apply_blob(spec(), T0)
    first = store.add_workload(blob, env_of(blob))
    assert store.add_workload(blob, env_of(blob)) == first


def test_workloads_sorted_by_id(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    for name in ("zeta", "alpha", "mid"):
        add_apply(store, spec(name), T0)
    assert [w.spec.name for w in store.workloads()] == ["alpha", "mid", "zeta"]


# --- deletes --------------------------------------------------------------------------------


def test_delete_shadows_applies_up_to_it_and_removes_file(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, spec(), T0)
    assert add_delete(store, WID, T0 + 5) is True
    assert store.workload(WID) is None
    assert store.workloads() == []
    assert not workload_file(tmp_path, WID).exists()
    assert delete_file(tmp_path, WID).exists()
    tomb = store.delete_of(WID)
    assert tomb is not None and tomb.ts == T0 + 5
    assert store.is_deleted(WID, T0) is True
    assert store.is_deleted(WID, T0 + 5) is True  # signed at the same time: still deleted
    assert store.is_deleted(WID, T0 + 6) is False
    # Applies signed up to the Delete (late copies of old applies) stay shadowed.
    assert add_apply(store, spec(), T0 + 1) is None
    assert add_apply(store, spec(), T0 + 5) is None
    assert store.workload(WID) is None
    assert not workload_file(tmp_path, WID).exists()


def test_delete_of_unknown_workload_is_kept(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert add_delete(store, WID, T0) is True
    assert store.deletes()[0].workload_id == WID
    assert add_apply(store, spec(), T0 - 1) is None


def test_later_apply_lifts_delete(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, spec(), T0)
    add_delete(store, WID, T0 + 5)
    again = add_apply(store, spec(replicas=3), T0 + 6)
    assert again is not None and store.workload(WID) == again
    assert store.delete_of(WID) is None
    assert store.deletes() == []
    assert not delete_file(tmp_path, WID).exists()
    assert workload_file(tmp_path, WID).read_bytes() == again.blob


def test_delete_older_than_newer_apply_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    kept = add_apply(store, spec(), T0 + 10)
    assert add_delete(store, WID, T0 + 5) is False
    assert store.workload(WID) == kept
    assert store.delete_of(WID) is None
    assert not delete_file(tmp_path, WID).exists()
    assert workload_file(tmp_path, WID).exists()


def test_older_or_same_delete_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert add_delete(store, WID, T0 + 5) is True
    first = store.delete_of(WID)
    assert add_delete(store, WID, T0 + 5) is False
    assert add_delete(store, WID, T0 + 1) is False
    assert store.delete_of(WID) == first
    assert add_delete(store, WID, T0 + 9) is True
    assert store.delete_of(WID).ts == T0 + 9  # type: ignore[union-attr]


def test_delete_only_affects_its_workload(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, spec("web"), T0)
    other = add_apply(store, spec("db"), T0)
    add_delete(store, WID, T0 + 1)
    assert store.workloads() == [other]
    assert workload_file(tmp_path, other.workload_id).exists()


def test_expired_delete_not_kept(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert add_delete(store, WID, T0, now=T0 + DELETE_TTL_S) is False
    assert store.delete_of(WID) is None
    assert add_delete(store, WID, T0, now=T0 + DELETE_TTL_S - 1) is True


def test_delete_expires_after_ttl(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_delete(store, WID, T0)
    add_delete(store, "deployment/default/later", T0 + 100)
    assert store.expire(T0 + DELETE_TTL_S - 1) == []
    assert store.delete_of(WID) is not None
    assert store.expire(T0 + DELETE_TTL_S) == [WID]
    assert store.delete_of(WID) is None
    store.files.flush()
    assert not delete_file(tmp_path, WID).exists()
    assert [d.workload_id for d in store.deletes()] == ["deployment/default/later"]
    assert store.expire(T0 + DELETE_TTL_S) == []
    # Once forgotten, the Delete no longer shadows an old apply.
    assert add_apply(store, spec(), T0 - 1) is not None


# --- disk -----------------------------------------------------------------------------------


def test_load_round_trip(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    web = add_apply(store, spec("web", 3), T0)
    db = add_apply(store, spec("db"), T0 + 1)
    add_delete(store, "deployment/default/gone", T0 + 2)

    again = make_store(tmp_path)
    assert again.load(T0 + 10) == []
    assert again.workloads() == sorted([web, db], key=lambda w: w.workload_id)
    assert again.workload(web.workload_id).spec == web.spec  # type: ignore[union-attr]
    assert [(d.workload_id, d.ts, d.blob) for d in again.deletes()] == [
        (t.workload_id, t.ts, t.blob) for t in store.deletes()]
    assert again.is_deleted("deployment/default/gone", T0 + 2)
    assert not list(tmp_path.rglob("*.bad"))


def test_load_of_empty_directory(tmp_path: Path) -> None:
    store = make_store(tmp_path / "nothing-yet")
    assert store.load(T0) == []
    assert store.workloads() == [] and store.deletes() == []


def test_load_drops_expired_deletes(tmp_path: Path) -> None:
    add_delete(make_store(tmp_path), WID, T0)
    again = make_store(tmp_path)
    assert again.load(T0 + DELETE_TTL_S) == []
    assert again.deletes() == []
    assert not delete_file(tmp_path, WID).exists()
    assert not list(tmp_path.rglob("*.bad"))


def test_load_drops_apply_shadowed_by_stored_delete(tmp_path: Path) -> None:
    """An apply and a later Delete both on disk (e.g. a crash between write and unlink)."""
    store = make_store(tmp_path)
    blob = apply_blob(spec(), T0)
    add_delete(store, WID, T0 + 5)
    workload_file(tmp_path, WID).parent.mkdir(parents=True, exist_ok=True)
    workload_file(tmp_path, WID).write_bytes(blob)

    again = make_store(tmp_path)
    assert again.load(T0 + 10) == []
    assert again.workload(WID) is None
    assert again.delete_of(WID) is not None
    assert not workload_file(tmp_path, WID).exists()


def test_load_apply_newer_than_stored_delete_lifts_it(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_delete(store, WID, T0)
    blob = apply_blob(spec(), T0 + 5)
    workload_file(tmp_path, WID).parent.mkdir(parents=True, exist_ok=True)
    workload_file(tmp_path, WID).write_bytes(blob)

    again = make_store(tmp_path)
    assert again.load(T0 + 10) == []
    assert again.workload(WID) is not None
    assert again.delete_of(WID) is None
    again.files.flush()
    assert not delete_file(tmp_path, WID).exists()


def _three(tmp_path: Path) -> tuple[WorkloadStore, list[Any]]:
    store = make_store(tmp_path)
    stored = [add_apply(store, spec(n), T0) for n in ("aaa", "bbb", "ccc")]
    return store, stored


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _check_set_aside(tmp_path: Path, victim: Path, problems: list[str], again: WorkloadStore,
                     survivors: list[Any], reason: str) -> None:
    assert len(problems) == 1
    assert victim.name in problems[0]
    assert reason in problems[0]
    assert victim.with_suffix(".bad").name in problems[0]
    assert victim.with_suffix(".bad").exists()
    assert not victim.exists()
    assert again.workloads() == sorted(survivors, key=lambda w: w.workload_id)
    for w in survivors:
        assert workload_file(tmp_path, w.workload_id).exists()


def test_load_sets_aside_altered_file(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    _flip(victim, victim.read_bytes().index(b"busybox"))  # body changed: signature fails
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "bad_signature")


def test_load_sets_aside_file_with_flipped_byte_anywhere(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    _flip(victim, len(victim.read_bytes()) // 3)
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "")


def test_load_sets_aside_file_signed_by_untrusted_key(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    victim.write_bytes(apply_blob(b.spec, T0 + 50, key=STRANGER))
    again = make_store(tmp_path)
    problems = again.load(T0 + 100)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "untrusted")


def test_load_sets_aside_truncated_file(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    victim.write_bytes(victim.read_bytes()[:40])
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "malformed")


def test_load_sets_aside_empty_file(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    victim.write_bytes(b"")
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "malformed")


def test_load_sets_aside_file_renamed_to_another_workload(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, "deployment/default/elsewhere")
    workload_file(tmp_path, b.workload_id).rename(victim)
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "does not match")
    assert again.workload("deployment/default/elsewhere") is None
    assert again.workload(b.workload_id) is None  # its real file is gone


def test_load_sets_aside_file_copied_over_another_workload(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, c.workload_id)
    victim.write_bytes(b.blob)  # c's file now holds b
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, b], "does not match")


def test_load_sets_aside_misfiled_delete(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_delete(store, WID, T0)
    add_delete(store, "deployment/default/other", T0)
    victim = delete_file(tmp_path, "deployment/default/third")
    delete_file(tmp_path, WID).rename(victim)
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    assert len(problems) == 1 and victim.name in problems[0]
    assert victim.with_suffix(".bad").exists()
    assert [d.workload_id for d in again.deletes()] == ["deployment/default/other"]


def test_load_sets_aside_delete_in_workload_dir(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    victim.write_bytes(delete_blob(b.workload_id, T0))
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "unknown_kind")


def test_load_sets_aside_signed_but_invalid_spec(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    victim = workload_file(tmp_path, b.workload_id)
    bogus = b.spec.to_dict()
    bogus["replicas"] = "many"
    victim.write_bytes(wire.seal(OPERATOR, WORKLOAD.name, {"spec": bogus}, T0))
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    _check_set_aside(tmp_path, victim, problems, again, [a, c], "replicas")


def test_load_with_several_bad_files_reports_each(tmp_path: Path) -> None:
    _, (a, b, c) = _three(tmp_path)
    wb, wc = workload_file(tmp_path, b.workload_id), workload_file(tmp_path, c.workload_id)
    wb.write_bytes(b"\xff\x00garbage")
    wc.write_bytes(apply_blob(c.spec, T0, key=STRANGER))
    again = make_store(tmp_path)
    problems = again.load(T0 + 1)
    assert len(problems) == 2
    assert sorted(p.split(":")[0] for p in problems) == sorted([str(wb), str(wc)])
    assert again.workloads() == [a]
    # A second load finds nothing new to complain about: the bad files stay set aside.
    assert make_store(tmp_path).load(T0 + 2) == []


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, spec(), T0)
    add_apply(store, spec(replicas=4), T0 + 1)
    add_apply(store, spec("db"), T0 + 1)
    add_delete(store, "deployment/default/db", T0 + 2)
    add_apply(store, spec("db"), T0 + 3)
    add_delete(store, "deployment/default/gone", T0 + 4)
    make_store(tmp_path).load(T0 + 5)
    names = all_files(tmp_path)
    assert not [n for n in names if n.endswith(".tmp")]
    assert names == sorted([
        f"workloads/{_file_name(WID)}",
        f"workloads/{_file_name('deployment/default/db')}",
        f"deleted/{_file_name('deployment/default/gone')}",
    ])


def test_write_replaces_file_by_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new content reaches the final name only through a rename of a finished file."""
    store = make_store(tmp_path)
    add_apply(store, spec(), T0)
    seen: list[tuple[str, str, bytes]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        seen.append((Path(src).name, Path(dst).name, Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    newer = add_apply(store, spec(replicas=7), T0 + 1)
    assert len(seen) == 1
    src, dst, content = seen[0]
    assert src != dst and src.endswith(".tmp")
    assert dst == _file_name(WID)
    assert content == newer.blob


@pytest.mark.parametrize("ts_ms", [int(T0 * 1000) + 1, 2_151_032_662_785, 1_085_096_095_340])
def test_generation_is_the_signed_ts_ms(tmp_path: Path, ts_ms: int) -> None:
    """Heal task ids use `generation`; receivers recompute them from the envelope's ts_ms, so
    the two must agree exactly (int() of a float product can land one millisecond short)."""
    store = make_store(tmp_path)
    blob = apply_blob(spec(), (ts_ms + 0.5) / 1000)
    env = env_of(blob)
    assert env.ts_ms == ts_ms
    stored = store.add_workload(blob, env)
    assert stored is not None and stored.generation == env.ts_ms


def test_a_full_disk_loses_nothing_and_is_retried(tmp_path: Path) -> None:
    """The store acts in memory; writes the disk refuses wait and are written later."""
    store = make_store(tmp_path)
    (tmp_path / "workloads").write_text("a file where the directory should be")
    blob = apply_blob(spec(), T0)
    assert store.add_workload(blob, env_of(blob)) is not None
    assert add_delete(store, "deployment/default/other", T0)  # flushes: the write fails
    assert store.workload(WID) is not None  # memory is right whatever the disk says
    assert store.files.error is not None and "workloads" in store.files.error
    assert store.files.pending == 1  # the workload waits; the delete was written
    assert delete_file(tmp_path, "deployment/default/other").exists()
    (tmp_path / "workloads").unlink()  # space again
    store.files.flush()
    assert store.files.error is None and store.files.pending == 0
    assert workload_file(tmp_path, WID).read_bytes() == blob


def test_an_older_apply_than_the_one_held_is_superseded(tmp_path: Path) -> None:
    """A replayed old manifest (say, with an older image) must never start again."""
    store = make_store(tmp_path)
    add_apply(store, spec(), T0)
    assert store.is_superseded(WID, T0 - 30 * 86400)
    assert not store.is_superseded(WID, T0)  # the same apply again
    assert not store.is_superseded(WID, T0 + 1)  # a newer one
    assert not store.is_superseded("deployment/default/unknown", T0)


# --- revisions ------------------------------------------------------------------------------


def templated(replicas: int, color: str) -> Any:
    """`spec()` with one env value: each color is another pod template."""
    import dataclasses

    base = spec(replicas=replicas)
    c = base.containers[0]
    return dataclasses.replace(base, containers=(
        dataclasses.replace(c, env=(("COLOR", color),)),))


def test_revisions_keep_the_newest_apply_of_each_template_across_a_restart(
        tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, templated(2, "red"), T0)
    add_apply(store, templated(2, "blue"), T0 + 1)
    add_apply(store, templated(3, "blue"), T0 + 2)  # a scale: the same template
    revs = store.revisions(WID)
    assert [(r.spec.containers[0].env, r.spec.replicas) for r in revs] == [
        ((("COLOR", "red"),), 2), ((("COLOR", "blue"),), 3)]
    assert revs[-1] == store.workload(WID)  # the last one is the current template
    store.files.flush()
    assert len(list((tmp_path / "revisions").iterdir())) == 1  # past templates only
    again = make_store(tmp_path)
    assert again.load(T0 + 3) == []
    assert [r.blob for r in again.revisions(WID)] == [r.blob for r in revs]


def test_revisions_are_bounded_and_go_with_a_delete(tmp_path: Path) -> None:
    from beemesh.workloads.store import REVISIONS_KEPT

    store = make_store(tmp_path)
    for i in range(REVISIONS_KEPT + 3):
        add_apply(store, templated(1, f"c{i}"), T0 + i)
    assert len(store.revisions(WID)) == REVISIONS_KEPT
    store.files.flush()
    assert len(list((tmp_path / "revisions").iterdir())) == REVISIONS_KEPT - 1
    assert add_delete(store, WID, T0 + 100, now=T0 + 100)
    store.files.flush()
    assert store.revisions(WID) == [] and not list((tmp_path / "revisions").iterdir())


def test_a_misfiled_revision_is_set_aside(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    add_apply(store, templated(1, "red"), T0)
    add_apply(store, templated(1, "blue"), T0 + 1)
    store.files.flush()
    (path,) = list((tmp_path / "revisions").iterdir())
    path.rename(path.with_name("0" * 32 + "-0123456789.cbor"))
    again = make_store(tmp_path)
    problems = again.load(T0 + 2)
    assert len(problems) == 1 and "does not match" in problems[0]
    assert len(again.revisions(WID)) == 1


# ---- Services -------------------------------------------------------------------------------

SERVICE_YAML = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: %d}]
"""


def service_blob(port: int, ts: float) -> tuple[bytes, wire.Envelope]:
    (svc,) = parse_manifests(SERVICE_YAML % port, "svc.yaml")
    blob = wire.seal(OPERATOR, SERVICE.name, {"spec": svc.to_dict()}, ts)
    return blob, wire.decode(blob)


def test_a_service_is_kept_newest_first_deleted_by_its_id_and_reloaded(tmp_path: Path) -> None:
    """A Service is kept like a workload (the newest signed apply, on disk), a Delete naming
    `service/NS/NAME` removes it, and a later apply lifts that Delete."""
    store = make_store(tmp_path)
    first = store.add_object(*service_blob(80, T0))
    assert first is not None and first.object_id == "service/default/web"
    assert store.add_object(*service_blob(81, T0 - 1)) is None  # older: ignored
    assert store.add_object(*service_blob(82, T0 + 1)).spec.ports[0].port == 82
    assert store.workload(first.object_id) is None  # a Service is not a workload
    store.files.flush()
    again = make_store(tmp_path)
    assert again.load(T0 + 2) == []
    assert [s.spec.ports[0].port for s in again.services()] == [82]
    assert add_delete(again, "service/default/web", T0 + 3, T0 + 3)
    assert again.services() == [] and not list((tmp_path / "objects").glob("*.cbor"))
    assert again.add_object(*service_blob(83, T0 + 2)) is None  # shadowed by the Delete
    assert again.add_object(*service_blob(84, T0 + 4)) is not None  # lifts it
    assert not again.deleted("service/default/web")


def test_a_misfiled_or_altered_service_file_is_set_aside(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.add_object(*service_blob(80, T0))
    store.files.flush()
    (path,) = (tmp_path / "objects").glob("*.cbor")
    path.rename(path.with_name(_file_name("service/default/other")))
    problems = make_store(tmp_path).load(T0)
    assert len(problems) == 1 and "does not match the object" in problems[0]
    blob, _ = service_blob(80, T0)
    bad = tmp_path / "objects" / _file_name("service/default/web")
    bad.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    problems = make_store(tmp_path).load(T0)
    assert any(str(bad) in p for p in problems), problems
