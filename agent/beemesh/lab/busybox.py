"""The lab's one container image: a static busybox rootfs imported into each machine's Podman
as `localhost/beemesh/busybox:latest` (no registry: built from the host's busybox-static)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from beemesh.errors import UserError
from beemesh.files import write_atomic
from beemesh.lab.host_tools import BUSYBOX_PATH, is_static_elf
from beemesh.lab.podman_service import PodmanService

BUSYBOX_IMAGE = "localhost/beemesh/busybox:latest"


def cache_dir() -> Path:
    """$BEEMESH_CACHE, else $XDG_CACHE_HOME/beemesh, else ~/.cache/beemesh."""
    if os.environ.get("BEEMESH_CACHE"):
        return Path(os.environ["BEEMESH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "beemesh"


def busybox_tarball(cache: Path | None = None) -> Path:
    """A rootfs tar (busybox + one symlink per applet in /bin), built once and cached.

    Keyed by the busybox binary's hash; written atomically so parallel tests can share it.
    """
    if not is_static_elf(BUSYBOX_PATH):
        raise UserError(
            f"{BUSYBOX_PATH} is missing or not statically linked; the test image needs it: "
            "apt-get install -y busybox-static"
        )
    binary = BUSYBOX_PATH.read_bytes()
    digest = hashlib.sha256(binary).hexdigest()[:16]
    cache = cache or cache_dir()
    target = cache / f"busybox-rootfs-{digest}.tar"
    if target.is_file():
        return target
    listed = subprocess.run([str(BUSYBOX_PATH), "--list"], capture_output=True, text=True,
                            check=True).stdout.split()
    applets = sorted({a for a in listed if a and "/" not in a and a != "busybox"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, *, data: bytes | None = None, mode: int = 0o755,
                link: str | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "root", "var", "www"):
            add(d)
        add("tmp", mode=0o1777)
        add("bin/busybox", data=binary)
        for applet in applets:
            add(f"bin/{applet}", link="busybox")
        add("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644)
        add("etc/group", data=b"root:x:0:\n", mode=0o644)
        add("www/index.html", data=b"beemesh busybox\n", mode=0o644)
    write_atomic(target, buf.getvalue())
    return target


def ensure_busybox_image(service: PodmanService | str) -> str:
    """Import the busybox rootfs as BUSYBOX_IMAGE into that machine's storage (once); the ref."""
    return import_rootfs(service, BUSYBOX_IMAGE, busybox_tarball)


def import_rootfs(service: PodmanService | str, ref: str, tarball: Callable[[], Path]) -> str:
    """Import a rootfs tar as image `ref` into that machine's storage, unless it is there.

    Uses the REST API (POST /libpod/images/import): no registry, ~0.2 s per machine.
    """
    import podman  # heavy; only when a test or the demo needs it

    url = service.url if isinstance(service, PodmanService) else service
    client = podman.PodmanClient(base_url=url, version="4.0.0", timeout=60)
    try:
        exists = client.api.get(f"/images/{quote(ref, safe='')}/exists")
        if exists.status_code == 204:
            return ref
        # Podman adds no PATH to kube-played containers: the image must carry one.
        params: dict[str, Any] = {
            "reference": ref, "changes": ['CMD ["/bin/sh"]', "ENV PATH=/bin:/usr/bin"],
        }
        resp = client.api.post(
            "/images/import", params=params, data=tarball().read_bytes(),
            headers={"Content-Type": "application/x-tar"},
        )
        if resp.status_code >= 400:
            raise UserError(f"importing {ref} into {url} failed: {resp.text.strip()}")
    finally:
        client.close()
    return ref
