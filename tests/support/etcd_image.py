"""A local etcd image for the real-workload tests and the bench: Debian's etcd-server and
etcd-client binaries (Go, linked against libc only) with their libc, the name service files
and the lab's busybox, imported with `podman import` (no registry); the 3-member StatefulSet
that runs it on Beemesh, and `etcdctl` in its members."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from healing_lib import machine_name

from beemesh.files import write_atomic
from beemesh.lab.busybox import busybox_tarball, cache_dir, import_rootfs
from beemesh.lab.localmesh import LocalMesh
from beemesh.lab.podman_service import PodmanService

ETCD_IMAGE = "localhost/beemesh/etcd:3.4"
BINARIES = (Path("/usr/bin/etcd"), Path("/usr/bin/etcdctl"))
INSTALL = "apt-get install -y etcd-server etcd-client (or: make install)"
MEMBERS = ("etcd-0", "etcd-1", "etcd-2")
CLUSTER = ",".join(f"{m}=http://{m}.etcd:2380" for m in MEMBERS)
RUN = ("exec etcd --name $HOSTNAME --data-dir /var/lib/etcd/data "
       "--listen-peer-urls http://0.0.0.0:2380 --listen-client-urls http://0.0.0.0:2379 "
       "--advertise-client-urls http://$HOSTNAME.etcd:2379 "
       "--initial-advertise-peer-urls http://$HOSTNAME.etcd:2380 "
       f"--initial-cluster {CLUSTER} --initial-cluster-state new "
       "--initial-cluster-token beemesh-test")
MANIFEST = f"""\
apiVersion: v1
kind: Service
metadata: {{name: etcd}}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {{app: etcd}}
  ports: [{{name: client, port: 2379}}, {{name: peer, port: 2380}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: etcd}}
spec:
  replicas: 3
  serviceName: etcd
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: etcd}}}}
  template:
    metadata: {{labels: {{app: etcd}}}}
    spec:
      containers:
      - name: etcd
        image: {ETCD_IMAGE}
        command: ["/bin/sh", "-c", {json.dumps(RUN)}]
        ports: [{{name: client, containerPort: 2379}}, {{name: peer, containerPort: 2380}}]
        volumeMounts: [{{name: data, mountPath: /var/lib/etcd}}]
        readinessProbe:
          exec: {{command: [etcdctl, --endpoints=http://127.0.0.1:2379, endpoint, health]}}
          periodSeconds: 2
          timeoutSeconds: 3
        resources: {{requests: {{cpu: 50m, memory: 128Mi}}, limits: {{memory: 256Mi}}}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 64Mi}}}}
"""




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


def placement(mesh: LocalMesh) -> dict[str, str]:
    """member -> machine name, of the running pods."""
    via = next(a for a in mesh.agents.values() if a.alive())
    return {p["pod"]: machine_name(mesh, p["machine"]) for p in via.get_json("get", "pods")
            if p["workload"] == "statefulset/default/etcd" and p["state"] == "running"}


def etcdctl(mesh: LocalMesh, member: str, *args: str) -> Any:
    machine = placement(mesh).get(member)
    if machine is None:
        return None
    done = mesh.podman(machine).run("exec", f"{member}-etcd", "etcdctl",
                                    "--endpoints=http://127.0.0.1:2379", "--command-timeout=5s",
                                    *args, timeout=30)
    return done.stdout if done.returncode == 0 else None


def members(mesh: LocalMesh, via: str) -> list[dict[str, Any]] | None:
    out = etcdctl(mesh, via, "member", "list", "-w", "json")
    return json.loads(out)["members"] if out else None


def healthy(mesh: LocalMesh, *names: str) -> bool:
    return all(etcdctl(mesh, m, "endpoint", "health") is not None for m in names)
