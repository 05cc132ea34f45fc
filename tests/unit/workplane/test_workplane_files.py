"""Work-plane files: workload key files and the discovery files a pod reads."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from beemesh.identity import KEY_PREFIX, KeyPair, load_key
from beemesh.workplane import discovery
from beemesh.workplane.keys import WorkloadKeys, load_or_create

WID = "deployment/default/web"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keys ---------------------------------------------------------------------------------------


def test_key_created_0600(tmp_path: Path) -> None:
    keys = WorkloadKeys(tmp_path / "keys")
    key = keys.key_for("web-0", "tabc")
    path = tmp_path / "keys" / "web-0.tabc.key"
    assert path.is_file()
    assert mode(path) == 0o600
    assert mode(tmp_path / "keys") & 0o077 == 0
    assert path.read_text().strip() == KEY_PREFIX + key.seed.hex()
    assert load_key(path, "k", "fix") == key


def test_key_reused_on_second_call(tmp_path: Path) -> None:
    keys = WorkloadKeys(tmp_path)
    first = keys.key_for("web-0", "tabc")
    assert keys.key_for("web-0", "tabc") == first
    assert WorkloadKeys(tmp_path).key_for("web-0", "tabc") == first  # after a restart


def test_keys_differ_per_replica_and_task(tmp_path: Path) -> None:
    keys = WorkloadKeys(tmp_path)
    a = keys.key_for("web-0", "t1")
    assert keys.key_for("web-1", "t1") != a
    assert keys.key_for("web-0", "t2") != a  # a replaced replica gets a new key


@pytest.mark.parametrize("damage", [b"", b"garbage\n", (KEY_PREFIX + "zz" * 32).encode(),
                                    (KEY_PREFIX + "ab" * 31).encode(), b"\xff\xfe\x00"])
def test_damaged_key_replaced(tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(damage)
    os.chmod(path, 0o600)
    key = load_or_create(path, "workload key")
    assert mode(path) == 0o600
    assert load_key(path, "k", "fix") == key
    assert load_or_create(path, "workload key") == key


def test_key_readable_by_others_replaced(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    old = KeyPair(b"\x07" * 32)
    path.write_text(KEY_PREFIX + old.seed.hex() + "\n")
    os.chmod(path, 0o644)  # possibly copied: not trusted
    key = load_or_create(path, "workload key")
    assert key != old
    assert mode(path) == 0o600


def test_keep_only_deletes_the_others(tmp_path: Path) -> None:
    keys = WorkloadKeys(tmp_path)
    keep = keys.key_for("web-0", "t1")
    keys.key_for("web-0", "t0")  # an earlier task of the same pod
    keys.key_for("web-1", "t5")
    (tmp_path / "notes.txt").write_text("not a key")
    removed = keys.keep_only({("web-0", "t1")})
    assert sorted(removed) == ["web-0.t0.key", "web-1.t5.key"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "web-0.t1.key"]
    assert keys.key_for("web-0", "t1") == keep
    assert keys.keep_only({("web-0", "t1")}) == []
    assert keys.keep_only(set()) == ["web-0.t1.key"]


def test_keep_only_without_directory(tmp_path: Path) -> None:
    assert WorkloadKeys(tmp_path / "absent").keep_only(set()) == []


# --- discovery ----------------------------------------------------------------------------------


def record(ordinal: int, peer: str, *, ready: bool = True, workload: str = WID,
           **extra: Any) -> dict[str, Any]:
    """What ServiceRecord.to_dict gives the work plane."""
    return {"workload": workload, "ordinal": ordinal, "peer_id": peer, "pod": f"web-{ordinal}",
            "task": f"t{ordinal}", "addrs": [f"10.0.0.{ordinal + 1}"],
            "ports": [{"name": "http", "port": 80, "host_port": 8000 + ordinal,
                       "protocol": "TCP"}],
            "ready": ready, "retiring": False, "version": 1, "machine": "m", "age_s": 1.0,
            "expires_in_s": 14.0, **extra}


FIELDS = {"ordinal", "pod", "name", "peer_id", "ready", "addrs", "ports"}


def read(directory: Path, name: str) -> Any:
    return json.loads((directory / name).read_text())


def test_discovery_files(tmp_path: Path) -> None:
    me = record(1, "p1")
    records = [record(2, "p2"), me, record(0, "p0"), record(3, "p3", ready=False),
               record(0, "px", workload="deployment/default/other")]
    assert discovery.write(tmp_path, WID, me, records) is True

    self_file = read(tmp_path, discovery.SELF_FILE)
    assert self_file == {"workload": WID, "ordinal": 1, "pod": "web-1", "name": "web-1",
                         "peer_id": "p1", "ready": True, "addrs": ["10.0.0.2"],
                         "ports": [{"name": "http", "port": 80, "host_port": 8001,
                                    "protocol": "TCP"}]}

    peers = read(tmp_path, discovery.PEERS_FILE)
    assert set(peers) == {"workload", "peers", "members"}
    assert peers["workload"] == WID
    # Only ready replicas of this workload, sorted by ordinal, this one marked.
    assert [(p["ordinal"], p["peer_id"], p["self"]) for p in peers["peers"]] == [
        (0, "p0", False), (1, "p1", True), (2, "p2", False)]
    for p in peers["peers"]:
        assert set(p) == FIELDS | {"self"}
        assert p["ready"] is True
    for name in (discovery.SELF_FILE, discovery.PEERS_FILE):
        assert mode(tmp_path / name) == 0o644
    # Every live replica is a member, ready or not (a Raft group's view of itself).
    assert [(m["ordinal"], m["ready"], m["self"]) for m in peers["members"]] == [
        (0, True, False), (1, True, True), (2, True, False), (3, False, False)]


def test_a_headless_service_gives_each_replica_its_stable_name(tmp_path: Path) -> None:
    me = record(1, "p1")
    discovery.write(tmp_path, WID, me, [record(0, "p0"), me], service="web")
    assert read(tmp_path, discovery.SELF_FILE)["name"] == "web-1.web"
    assert [m["name"] for m in read(tmp_path, discovery.PEERS_FILE)["members"]] == [
        "web-0.web", "web-1.web"]


def test_discovery_lists_duplicates_of_an_ordinal(tmp_path: Path) -> None:
    me = record(0, "pb")
    discovery.write(tmp_path, WID, me, [record(0, "pc"), me, record(0, "pa")])
    peers = read(tmp_path, discovery.PEERS_FILE)["peers"]
    assert [(p["peer_id"], p["self"]) for p in peers] == [("pa", False), ("pb", True),
                                                         ("pc", False)]


def test_discovery_self_not_ready_not_listed(tmp_path: Path) -> None:
    me = record(0, "p0", ready=False)
    discovery.write(tmp_path, WID, me, [me, record(1, "p1")])
    assert read(tmp_path, discovery.SELF_FILE)["ready"] is False
    assert [p["peer_id"] for p in read(tmp_path, discovery.PEERS_FILE)["peers"]] == ["p1"]


def test_discovery_no_change_returns_false(tmp_path: Path) -> None:
    me = record(0, "p0")
    assert discovery.write(tmp_path, WID, me, [me]) is True
    before = {n: (tmp_path / n).stat().st_mtime_ns for n in (discovery.SELF_FILE,
                                                             discovery.PEERS_FILE)}
    # Record fields an application does not see (age, version) change nothing.
    again = record(0, "p0", age_s=4.0, version=2, expires_in_s=11.0)
    assert discovery.write(tmp_path, WID, again, [again]) is False
    after = {n: (tmp_path / n).stat().st_mtime_ns for n in before}
    assert after == before


def test_discovery_change_in_one_file_reported(tmp_path: Path) -> None:
    me = record(0, "p0")
    discovery.write(tmp_path, WID, me, [me])
    assert discovery.write(tmp_path, WID, me, [me, record(1, "p1")]) is True  # peers only
    me2 = record(0, "p0", addrs=["10.9.9.9"], ready=False)
    assert discovery.write(tmp_path, WID, me2, [me2, record(1, "p1")]) is True
    assert read(tmp_path, discovery.SELF_FILE)["addrs"] == ["10.9.9.9"]


def test_discovery_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file reaches its name by one rename of a complete temporary file."""
    seen: list[tuple[str, str, Any]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        seen.append((Path(src).name, Path(dst).name, json.loads(Path(src).read_text())))
        assert Path(src).parent == Path(dst).parent  # same directory: rename is atomic
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    me = record(0, "p0")
    discovery.write(tmp_path, WID, me, [me])
    assert sorted(dst for _, dst, _ in seen) == [discovery.PEERS_FILE, discovery.SELF_FILE]
    for src, dst, content in seen:
        assert src != dst
        assert content == read(tmp_path, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == [discovery.PEERS_FILE,
                                                         discovery.SELF_FILE]


def test_discovery_skips_missing_directory(tmp_path: Path) -> None:
    me = record(0, "p0")
    assert discovery.write(tmp_path / "not-made-yet", WID, me, [me]) is False
    assert not (tmp_path / "not-made-yet").exists()
