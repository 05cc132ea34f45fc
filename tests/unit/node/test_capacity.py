"""Capacity probing against fixture cgroup trees, and reservation accounting."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from beemesh.node.capacity import Capacity, HostTotals, probe_capacity

GIB = 1024**3
HOST = HostTotals(cpu_count=8, memory_total=16 * GIB, memory_available=12 * GIB)
V1_UNLIMITED = 9223372036854771712

V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw\n"

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:7 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(root: Path, cg_path: str, *, controllers: str = "cpu memory io pids") -> Path:
    """A pure-v2 host with the process in ``cg_path``; returns the leaf cgroup directory."""
    write(root, "/proc/self/cgroup", f"0::{cg_path}\n")
    write(root, "/proc/self/mountinfo", V2_MOUNTINFO)
    write(root, "/sys/fs/cgroup/cgroup.controllers", controllers + "\n")
    leaf = root / "sys/fs/cgroup" / cg_path.lstrip("/")
    leaf.mkdir(parents=True, exist_ok=True)
    return leaf


def v1_tree(root: Path, cg_path: str, *, unified: bool = True) -> tuple[Path, Path]:
    """A hybrid/v1 host; returns the (cpu, memory) leaf cgroup directories."""
    lines = [
        "12:pids:/",
        f"4:memory:{cg_path}",
        f"2:cpu,cpuacct:{cg_path}",
        "1:name=systemd:/",
    ]
    mountinfo = HYBRID_MOUNTINFO
    if unified:
        lines.append("0::/")
        write(root, "/sys/fs/cgroup/unified/cgroup.controllers", "\n")
    else:
        mountinfo = "".join(ln + "\n" for ln in mountinfo.splitlines() if "cgroup2" not in ln)
    write(root, "/proc/self/cgroup", "\n".join(lines) + "\n")
    write(root, "/proc/self/mountinfo", mountinfo)
    cpu = root / "sys/fs/cgroup/cpu,cpuacct" / cg_path.lstrip("/")
    mem = root / "sys/fs/cgroup/memory" / cg_path.lstrip("/")
    cpu.mkdir(parents=True, exist_ok=True)
    mem.mkdir(parents=True, exist_ok=True)
    return cpu, mem


def put(directory: Path, **files: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text + "\n")


def host_only(cgroup: str = "none") -> Capacity:
    return Capacity(
        cpu_milli=8000,
        memory_bytes=16 * GIB,
        memory_available_bytes=12 * GIB,
        cgroup=cgroup,
        host_cpu_count=8,
        host_memory_bytes=16 * GIB,
    )


# --- cgroup v2 ----------------------------------------------------------------------------------


def test_v2_quota_and_memory_max(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/system.slice/beemesh.service")
    put(
        leaf,
        cpu__max="150000 100000",
        cpu__weight="200",
        memory__max=str(2 * GIB),
        memory__current=str(GIB // 2),
    )
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap.cgroup == "v2"
    assert cap.cpu_milli == 1500
    assert cap.memory_bytes == 2 * GIB
    assert cap.memory_available_bytes == 2 * GIB - GIB // 2
    assert cap.cpu_weight == 200
    assert cap.cpu_shares is None


def test_v2_unusual_period(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/a")
    put(leaf, cpu__max="25000 50000")
    assert probe_capacity(tmp_path, host=HOST).cpu_milli == 500


def test_v2_unlimited(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/user.slice/session")
    put(leaf, cpu__max="max 100000", memory__max="max", memory__current=str(GIB))
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap == host_only("v2")


def test_v2_nested_parent_tighter(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/kubepods/pod1/ctr")
    parent = leaf.parent
    put(leaf, cpu__max="400000 100000", memory__max=str(4 * GIB), memory__current=str(GIB))
    put(parent, cpu__max="100000 100000", memory__max=str(2 * GIB), memory__current=str(GIB + 1))
    put(leaf.parent.parent, cpu__max="max 100000", memory__max="max")
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap.cpu_milli == 1000
    assert cap.memory_bytes == 2 * GIB
    # The parent's usage includes siblings, so its headroom is what is left for us.
    assert cap.memory_available_bytes == GIB - 1


def test_v2_root_cgroup_has_no_limit_files(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/")
    assert probe_capacity(tmp_path, host=HOST) == host_only("v2")


def test_v2_container_mount_root_stripped(tmp_path: Path) -> None:
    """Without a cgroup namespace the mount root is our own cgroup, bind-mounted."""
    write(tmp_path, "/proc/self/cgroup", "0::/docker/abc\n")
    write(
        tmp_path,
        "/proc/self/mountinfo",
        "700 600 0:26 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n",
    )
    put(
        tmp_path / "sys/fs/cgroup",
        cgroup__controllers="cpu memory",
        cpu__max="50000 100000",
        memory__max=str(GIB),
    )
    cap = probe_capacity(tmp_path, host=HOST)
    assert (cap.cgroup, cap.cpu_milli, cap.memory_bytes) == ("v2", 500, GIB)


def test_v2_falls_back_to_sys_fs_cgroup_without_mountinfo(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/a")
    (tmp_path / "proc/self/mountinfo").unlink()
    put(leaf, cpu__max="200000 100000")
    assert probe_capacity(tmp_path, host=HOST).cpu_milli == 2000


def test_mount_point_honoured_from_mountinfo(tmp_path: Path) -> None:
    write(tmp_path, "/proc/self/cgroup", "0::/x\n")
    write(tmp_path, "/proc/self/mountinfo", "1 0 0:26 / /run/my\\040cg rw - cgroup2 none rw\n")
    leaf = tmp_path / "run/my cg/x"
    leaf.mkdir(parents=True)
    put(leaf, memory__max=str(3 * GIB))
    assert probe_capacity(tmp_path, host=HOST).memory_bytes == 3 * GIB


# --- cgroup v1 / hybrid -------------------------------------------------------------------------


def test_v1_quota_and_limit(tmp_path: Path) -> None:
    cpu, mem = v1_tree(tmp_path, "/docker/abc", unified=False)
    put(cpu, cpu__cfs_quota_us="250000", cpu__cfs_period_us="100000", cpu__shares="512")
    put(mem, memory__limit_in_bytes=str(3 * GIB), memory__usage_in_bytes=str(GIB))
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap.cgroup == "v1"
    assert cap.cpu_milli == 2500
    assert cap.cpu_shares == 512
    assert cap.memory_bytes == 3 * GIB
    assert cap.memory_available_bytes == 2 * GIB


@pytest.mark.parametrize("limit", [str(V1_UNLIMITED), str(16 * GIB), str(64 * GIB)])
def test_v1_unlimited(tmp_path: Path, limit: str) -> None:
    cpu, mem = v1_tree(tmp_path, "/", unified=False)
    put(cpu, cpu__cfs_quota_us="-1", cpu__cfs_period_us="100000", cpu__shares="1024")
    put(mem, memory__limit_in_bytes=limit, memory__usage_in_bytes=str(GIB))
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap.cpu_milli == 8000
    assert cap.memory_bytes == 16 * GIB
    assert cap.memory_available_bytes == 12 * GIB
    assert cap.cpu_shares == 1024


def test_v1_nested_parent_tighter(tmp_path: Path) -> None:
    cpu, mem = v1_tree(tmp_path, "/slice/job")
    put(cpu, cpu__cfs_quota_us="-1", cpu__cfs_period_us="100000")
    put(cpu.parent, cpu__cfs_quota_us="30000", cpu__cfs_period_us="20000")
    put(mem, memory__limit_in_bytes=str(V1_UNLIMITED))
    put(mem.parent, memory__limit_in_bytes=str(GIB), memory__usage_in_bytes=str(GIB // 4))
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap.cpu_milli == 1500
    assert cap.memory_bytes == GIB
    assert cap.memory_available_bytes == GIB - GIB // 4


def test_hybrid_uses_v1_controllers(tmp_path: Path) -> None:
    """The unified mount lists no cpu/memory controller, so its files must be ignored."""
    cpu, mem = v1_tree(tmp_path, "/job", unified=True)
    put(cpu, cpu__cfs_quota_us="50000", cpu__cfs_period_us="100000")
    put(mem, memory__limit_in_bytes=str(GIB))
    decoy = tmp_path / "sys/fs/cgroup/unified"
    put(decoy, cpu__max="10000 100000", memory__max="1000")
    cap = probe_capacity(tmp_path, host=HOST)
    assert (cap.cgroup, cap.cpu_milli, cap.memory_bytes) == ("v1", 500, GIB)


def test_v1_falls_back_to_sys_fs_cgroup_without_mountinfo(tmp_path: Path) -> None:
    cpu, mem = v1_tree(tmp_path, "/job", unified=True)
    (tmp_path / "proc/self/mountinfo").unlink()
    put(cpu, cpu__cfs_quota_us="300000", cpu__cfs_period_us="100000")
    put(mem, memory__limit_in_bytes=str(GIB))
    cap = probe_capacity(tmp_path, host=HOST)
    assert (cap.cgroup, cap.cpu_milli, cap.memory_bytes) == ("v1", 3000, GIB)


# --- fallbacks ----------------------------------------------------------------------------------


def test_no_cgroup_files_at_all(tmp_path: Path) -> None:
    assert probe_capacity(tmp_path, host=HOST) == host_only("none")


def test_missing_cgroup_directory_falls_back_to_mount(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/")
    write(tmp_path, "/proc/self/cgroup", "0::/gone/away\n")
    assert probe_capacity(tmp_path, host=HOST) == host_only("v2")


@pytest.mark.parametrize(
    "files",
    [
        {"cpu.max": "lots 100000", "memory.max": "12 GiB", "memory.current": "?"},
        {"cpu.max": "100000 0", "memory.max": "-5"},
        {"cpu.max": "", "memory.max": ""},
        {"cpu.max": "1 2 3", "memory.max": "max max"},
    ],
)
def test_v2_garbage_falls_back(tmp_path: Path, files: dict[str, str]) -> None:
    leaf = v2_tree(tmp_path, "/a")
    for name, text in files.items():
        (leaf / name).write_text(text)
    assert probe_capacity(tmp_path, host=HOST) == host_only("v2")


def test_v1_garbage_falls_back(tmp_path: Path) -> None:
    cpu, mem = v1_tree(tmp_path, "/a")
    put(cpu, cpu__cfs_quota_us="nope", cpu__cfs_period_us="100000", cpu__shares="x")
    put(mem, memory__limit_in_bytes="-", memory__usage_in_bytes="")
    assert probe_capacity(tmp_path, host=HOST) == host_only("v1")


def test_garbage_proc_files_and_binary(tmp_path: Path) -> None:
    write(tmp_path, "/proc/self/cgroup", "garbage\n::\n0:x\n")
    (tmp_path / "proc/self/mountinfo").write_bytes(b"\xff\xfe\x00 - cgroup2\n")
    assert probe_capacity(tmp_path, host=HOST) == host_only("none")


def test_unreadable_file_falls_back(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/a")
    (leaf / "memory.max").mkdir()  # a directory where a file should be: read fails with OSError
    put(leaf, cpu__max="100000 100000")
    cap = probe_capacity(tmp_path, host=HOST)
    assert (cap.cpu_milli, cap.memory_bytes) == (1000, 16 * GIB)


def test_limits_above_host_are_capped(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/big")
    put(leaf, cpu__max="3200000 100000", memory__max=str(64 * GIB), memory__current="0")
    cap = probe_capacity(tmp_path, host=HOST)
    assert cap.cpu_milli == 8000
    assert cap.memory_bytes == 16 * GIB
    assert cap.memory_available_bytes == 12 * GIB


def test_available_is_min_of_host_and_headroom(tmp_path: Path) -> None:
    leaf = v2_tree(tmp_path, "/a")
    put(leaf, memory__max=str(8 * GIB), memory__current=str(GIB))
    tight = HostTotals(cpu_count=8, memory_total=16 * GIB, memory_available=3 * GIB)
    assert probe_capacity(tmp_path, host=tight).memory_available_bytes == 3 * GIB


def test_to_dict_is_json_serialisable(tmp_path: Path) -> None:
    cap = probe_capacity(tmp_path, host=HOST)
    data = cap.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["cpu_milli"] == 8000 and data["cgroup"] == "none"


def test_real_machine_is_sane() -> None:
    cap = probe_capacity()
    assert cap.cpu_milli > 0
    assert 0 < cap.memory_bytes <= psutil.virtual_memory().total
    assert 0 <= cap.memory_available_bytes <= cap.memory_bytes
    assert cap.cgroup in {"v1", "v2", "none"}
