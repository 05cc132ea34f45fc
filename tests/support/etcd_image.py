"""A local etcd image for the real-workload tests: Debian's etcd-server and etcd-client
binaries (Go, linked against libc only) with their libc, the name service files and the lab's
busybox, imported with `podman import` (no registry)."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from pathlib import Path

from beemesh.files import write_atomic
from beemesh.lab.busybox import busybox_tarball, cache_dir, import_rootfs
from beemesh.lab.podman_service import PodmanService

ETCD_IMAGE = "localhost/beemesh/etcd:3.4"
BINARIES = (Path("/usr/bin/etcd"), Path("/usr/bin/etcdctl"))
INSTALL = "apt-get install -y etcd-server etcd-client (or: make install)"


def _libraries(binary: Path) -> list[Path]:
    """The shared objects `binary` loads, as ldd lists them (the loader included)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in re.findall(r"(/\S+\.so[.\d]*)", out)]


def etcd_tarball() -> Path:
    missing = [str(b) for b in BINARIES if not b.is_file()]
    if missing:
        raise AssertionError(f"{', '.join(missing)} missing; the etcd tests need them: {INSTALL}")
    files: dict[str, Path] = {str(b).lstrip("/"): b for b in BINARIES}
    for b in BINARIES:
        for lib in _libraries(b):
            files[str(lib).lstrip("/")] = lib.resolve()
    nss = next(Path("/lib").glob("*-linux-gnu/libnss_files.so.2"), None)
    if nss is not None:
        files[str(nss).lstrip("/")] = nss.resolve()
    digest = hashlib.sha256(b"".join(
        f"{name}={p.stat().st_size}:{p.stat().st_mtime_ns}".encode()
        for name, p in sorted(files.items()))).hexdigest()[:16]
    target = cache_dir() / f"etcd-rootfs-{digest}.tar"
    if target.is_file():
        return target
    buf = io.BytesIO()
    with tarfile.open(busybox_tarball()) as base, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in base.getmembers():
            tar.addfile(member, base.extractfile(member) if member.isfile() else None)
        dirs = sorted({str(Path(name).parents[i]) for name in [*files, "var/lib/etcd/x"]
                       for i in range(len(Path(name).parents) - 1)} - {"bin", "etc", "var"})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        extra = {name: p.read_bytes() for name, p in files.items()}
        extra["etc/nsswitch.conf"] = b"hosts: files dns\n"
        for name, data in sorted(extra.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    write_atomic(target, buf.getvalue())
    return target


def ensure_etcd_image(service: PodmanService | str) -> str:
    return import_rootfs(service, ETCD_IMAGE, etcd_tarball)
