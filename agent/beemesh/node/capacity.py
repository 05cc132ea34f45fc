"""Machine capacity as the agent may actually use it, cgroup-aware.

An agent inside a container or a systemd slice must advertise the cgroup limit, not the host
total: otherwise peers would schedule work onto it that the kernel then throttles or OOM-kills.
Everything here reads files below an injectable ``root`` so tests can point it at a fixture tree,
and nothing raises: a file that is missing, unreadable or malformed simply means "no limit known
here", and the host total is used for that value.
"""

from __future__ import annotations

import math
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "Capacity",
    "HostTotals",
    "machine_arch",
    "probe_capacity",
    "read_host_totals",
]

_CONTROLLERS = ("cpu", "memory")
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
_FALLBACK_MOUNT = "/sys/fs/cgroup"
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def machine_arch() -> str:
    """This machine's CPU architecture as manifests, records and .pyz names spell it."""
    arch = platform.machine().lower()
    return _ARCH_ALIASES.get(arch, arch)


@dataclass(frozen=True)
class HostTotals:
    """Host-wide numbers from psutil; injectable so tests do not depend on the machine."""

    cpu_count: int
    memory_total: int
    memory_available: int


@dataclass(frozen=True)
class Capacity:
    """What this agent can offer: effective limits after cgroups, capped at host totals."""

    cpu_milli: int
    memory_bytes: int
    memory_available_bytes: int
    cgroup: str  # "v1", "v2" or "none": which hierarchy supplied the cpu/memory controllers
    cpu_shares: int | None = None  # v1 cpu.shares: relative weight, informational only
    cpu_weight: int | None = None  # v2 cpu.weight: relative weight, informational only
    host_cpu_count: int = 0
    host_memory_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain ints/strings/None only, so it encodes as JSON or CBOR unchanged."""
        return asdict(self)


def read_host_totals() -> HostTotals:
    """Read host totals via psutil (imported lazily so tests with injected totals skip it)."""
    import psutil

    vm = psutil.virtual_memory()
    cpus = psutil.cpu_count(logical=True) or 1
    return HostTotals(
        cpu_count=cpus, memory_total=int(vm.total), memory_available=int(vm.available)
    )


# --- small, never-raising readers -------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _under(root: Path, absolute: str) -> Path:
    """Prepend ``root`` to an absolute in-system path (Path('/') / 'x' would discard root)."""
    return root / absolute.lstrip("/")


# --- /proc/self/cgroup and /proc/self/mountinfo -------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    mount_point: str  # where it is mounted, as seen by this process
    mount_root: str  # which cgroup of the hierarchy sits at the mount point
    version: int  # 1 or 2
    controllers: frozenset[str] = field(default_factory=frozenset)  # v1 only


def _parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """Map v1 controller -> cgroup path, plus the v2 unified path ("0::/path") if present."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier_id, controllers, path = parts
        path = path.strip().removesuffix(" (deleted)")
        if not path.startswith("/"):
            continue
        if hier_id == "0" and controllers == "":
            v2 = path
            continue
        for name in controllers.split(","):
            if name in _CONTROLLERS:
                v1[name] = path
    return v1, v2


def _unescape(field_text: str) -> str:
    """mountinfo octal-escapes spaces, tabs, newlines and backslashes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field_text)


def _parse_mountinfo(text: str) -> list[_Mount]:
    """Extract cgroup/cgroup2 mounts; the optional fields end at a lone "-"."""
    mounts: list[_Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        fstype = fields[sep + 1]
        mount_root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2":
            mounts.append(_Mount(mount_point, mount_root, 2))
        elif fstype == "cgroup":
            ctrls = frozenset(set(fields[sep + 3].split(",")) & set(_CONTROLLERS))
            if ctrls:
                mounts.append(_Mount(mount_point, mount_root, 1, ctrls))
    return mounts


def _fallback_mounts(root: Path) -> list[_Mount]:
    """Guess the conventional /sys/fs/cgroup layout when mountinfo is unavailable."""
    base = _under(root, _FALLBACK_MOUNT)
    mounts: list[_Mount] = []
    if (base / "cgroup.controllers").is_file():
        return [_Mount(_FALLBACK_MOUNT, "/", 2)]
    for ctrl in _CONTROLLERS:
        for name in (ctrl, "cpu,cpuacct", "cpuacct,cpu"):
            if ctrl in name.split(",") and (base / name).is_dir():
                mounts.append(_Mount(f"{_FALLBACK_MOUNT}/{name}", "/", 1, frozenset({ctrl})))
                break
    if (base / "unified" / "cgroup.controllers").is_file():
        mounts.append(_Mount(f"{_FALLBACK_MOUNT}/unified", "/", 2))
    return mounts


def _cgroup_dirs(root: Path, mount: _Mount, cgroup_path: str) -> list[Path]:
    """Directories from the process's cgroup up to the mount point, leaf first.

    Without a cgroup namespace a container sees its own cgroup as the mount root (e.g. /docker/x)
    while /proc/self/cgroup shows the full path, so the mount root is stripped first.
    """
    base = _under(root, mount.mount_point)
    cg = PurePosixPath(cgroup_path)
    mroot = PurePosixPath(mount.mount_root)
    if mroot != PurePosixPath("/") and (cg == mroot or mroot in cg.parents):
        rel = cg.relative_to(mroot)
    else:
        rel = cg.relative_to("/") if cg.is_absolute() else cg
    if ".." in rel.parts:
        rel = PurePosixPath()
    leaf = base.joinpath(*rel.parts)
    if not leaf.is_dir():
        leaf = base
    dirs = [leaf]
    current = leaf
    while current != base and base in current.parents:
        current = current.parent
        dirs.append(current)
    return dirs


# --- per-version limit readers ------------------------------------------------------------------


@dataclass
class _Limits:
    cpu_milli: int | None = None
    memory_limit: int | None = None
    memory_headroom: int | None = None  # min over levels of (limit - usage)
    cpu_shares: int | None = None
    cpu_weight: int | None = None


def _min_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _quota_to_milli(quota: int, period: int) -> int | None:
    """CPU time per period -> milli-CPUs, rounded up so a tiny quota is never reported as 0."""
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota * 1000 / period))


def _v2_cpu_max(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    parts = text.split()
    if len(parts) not in (1, 2) or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) == 2 else 100_000
    except ValueError:
        return None
    return _quota_to_milli(quota, period)


def _v2_memory_max(path: Path) -> int | None:
    text = _read_text(path)
    if text is None or text.strip() == "max":
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _memory_level(
    limit: int | None, usage: int | None, host: HostTotals
) -> tuple[int | None, int | None]:
    """(limit, headroom) for one level; limits at or above host memory count as unlimited."""
    if limit is None or limit >= host.memory_total:
        return None, None
    headroom = limit - usage if usage is not None and usage >= 0 else limit
    return limit, max(0, headroom)


def _read_v2_cpu(dirs: list[Path], out: _Limits) -> None:
    for d in dirs:
        out.cpu_milli = _min_opt(out.cpu_milli, _v2_cpu_max(d / "cpu.max"))
        if out.cpu_weight is None:
            out.cpu_weight = _read_int(d / "cpu.weight")


def _read_v2_memory(dirs: list[Path], out: _Limits, host: HostTotals) -> None:
    for d in dirs:
        limit, headroom = _memory_level(
            _v2_memory_max(d / "memory.max"), _read_int(d / "memory.current"), host
        )
        out.memory_limit = _min_opt(out.memory_limit, limit)
        out.memory_headroom = _min_opt(out.memory_headroom, headroom)


def _read_v1_cpu(dirs: list[Path], out: _Limits) -> None:
    for d in dirs:
        quota, period = _read_int(d / "cpu.cfs_quota_us"), _read_int(d / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            out.cpu_milli = _min_opt(out.cpu_milli, _quota_to_milli(quota, period))
        if out.cpu_shares is None:
            out.cpu_shares = _read_int(d / "cpu.shares")


def _read_v1_memory(dirs: list[Path], out: _Limits, host: HostTotals) -> None:
    for d in dirs:
        raw = _read_int(d / "memory.limit_in_bytes")
        limit, headroom = _memory_level(
            raw if raw is not None and raw >= 0 else None,
            _read_int(d / "memory.usage_in_bytes"),
            host,
        )
        out.memory_limit = _min_opt(out.memory_limit, limit)
        out.memory_headroom = _min_opt(out.memory_headroom, headroom)


def _v2_has(root: Path, mount: _Mount, controller: str) -> bool:
    """A v2 mount serves a controller only if its root lists it (hybrid mounts list none)."""
    text = _read_text(_under(root, mount.mount_point) / "cgroup.controllers")
    return True if text is None else controller in text.split()


def _pick_v1(mounts: list[_Mount], controller: str, path: str) -> _Mount | None:
    """Prefer the v1 mount whose root contains our cgroup (containers bind-mount subtrees)."""
    candidates = [m for m in mounts if m.version == 1 and controller in m.controllers]
    cg = PurePosixPath(path)
    for m in candidates:
        mroot = PurePosixPath(m.mount_root)
        if mroot != PurePosixPath("/") and (mroot == cg or mroot in cg.parents):
            return m
    for m in candidates:
        if m.mount_root == "/":
            return m
    return candidates[0] if candidates else None


def _probe_cgroups(root: Path, host: HostTotals) -> tuple[_Limits, str]:
    limits = _Limits()
    text = _read_text(_under(root, "/proc/self/cgroup"))
    if text is None:
        return limits, "none"
    v1_paths, v2_path = _parse_proc_cgroup(text)
    info = _read_text(_under(root, "/proc/self/mountinfo"))
    mounts = _parse_mountinfo(info) if info is not None else []
    if not mounts:
        mounts = _fallback_mounts(root)
    v2_mount = next((m for m in mounts if m.version == 2), None)

    used: set[int] = set()
    for ctrl in _CONTROLLERS:
        v1_mount = _pick_v1(mounts, ctrl, v1_paths[ctrl]) if ctrl in v1_paths else None
        if v1_mount is not None:
            dirs = _cgroup_dirs(root, v1_mount, v1_paths[ctrl])
            if ctrl == "cpu":
                _read_v1_cpu(dirs, limits)
            else:
                _read_v1_memory(dirs, limits, host)
            used.add(1)
        elif v2_mount is not None and v2_path is not None and _v2_has(root, v2_mount, ctrl):
            dirs = _cgroup_dirs(root, v2_mount, v2_path)
            if ctrl == "cpu":
                _read_v2_cpu(dirs, limits)
            else:
                _read_v2_memory(dirs, limits, host)
            used.add(2)
    kind = "v1" if 1 in used else "v2" if 2 in used else "none"
    return limits, kind


def probe_capacity(root: Path = Path("/"), *, host: HostTotals | None = None) -> Capacity:
    """Effective capacity of this process's cgroup (tightest limit on the path to the root).

    Never raises: whatever cannot be read falls back to the host total, because an agent that
    under-reports nothing is better than an agent that does not start.
    """
    if host is None:
        host = read_host_totals()
    host_milli = max(1, host.cpu_count) * 1000
    try:
        limits, kind = _probe_cgroups(Path(root), host)
    except Exception:  # defensive: a surprise in /proc must not take the agent down
        limits, kind = _Limits(), "none"

    cpu_milli = host_milli if limits.cpu_milli is None else min(host_milli, limits.cpu_milli)
    memory = host.memory_total
    if limits.memory_limit is not None:
        memory = min(memory, limits.memory_limit)
    available = min(host.memory_available, memory)
    if limits.memory_headroom is not None:
        available = min(available, limits.memory_headroom)
    return Capacity(
        cpu_milli=cpu_milli,
        memory_bytes=memory,
        memory_available_bytes=max(0, available),
        cgroup=kind,
        cpu_shares=limits.cpu_shares,
        cpu_weight=limits.cpu_weight,
        host_cpu_count=host.cpu_count,
        host_memory_bytes=host.memory_total,
    )
