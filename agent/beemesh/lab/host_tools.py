"""What the lab needs of this host (Podman, runc, CNI plugins, a static busybox, ...): one
error naming everything missing and the apt-get line that installs it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from beemesh.errors import UserError

BUSYBOX_PATH = Path("/bin/busybox")
APT_PACKAGES = (
    "podman runc catatonit conmon containernetworking-plugins iptables busybox-static "
    "iproute2 util-linux"
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def which(name: str, *extra: str) -> str | None:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SYSTEM_PATH)
    if found:
        return found
    return next((p for p in extra if Path(p).is_file()), None)


def is_static_elf(path: Path) -> bool:
    """True if path is an ELF binary without a program interpreter (runs in an empty rootfs)."""
    try:
        data = path.read_bytes()[:65536]
    except OSError:
        return False
    if data[:4] != b"\x7fELF":
        return False
    is64 = data[4] == 2
    order = "little" if data[5] == 1 else "big"

    def u(off: int, size: int) -> int:
        return int.from_bytes(data[off:off + size], order)

    phoff, phentsize, phnum = (u(32, 8), u(54, 2), u(56, 2)) if is64 else \
        (u(28, 4), u(42, 2), u(44, 2))
    pt_interp = 3
    return all(u(phoff + i * phentsize, 4) != pt_interp for i in range(phnum))


def require_host_tools(netns: bool = False) -> None:
    """Raise one UserError listing what is missing to run a machine's Podman here, and the fix."""
    missing: list[str] = []
    checks = [
        ("podman", which("podman"), "podman"),
        ("runc", which("runc"), "runc"),
        ("conmon", which("conmon", "/usr/libexec/podman/conmon"), "conmon"),
        ("catatonit (Podman's pod infra process)",
         which("catatonit", "/usr/libexec/podman/catatonit"), "catatonit"),
        ("CNI plugins", next((d for d in ("/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin")
                              if Path(d, "portmap").is_file()), None),
         "containernetworking-plugins"),
        ("iptables", which("iptables"), "iptables"),
        ("static busybox at /bin/busybox", str(BUSYBOX_PATH)
         if is_static_elf(BUSYBOX_PATH) else None, "busybox-static"),
    ]
    if netns:
        checks += [("ip", which("ip"), "iproute2"), ("nsenter", which("nsenter"), "util-linux")]
    packages = []
    for what, found, package in checks:
        if not found:
            missing.append(what)
            packages.append(package)
    if os.geteuid() != 0:
        missing.append("root (a machine's Podman runs rootful, with its own storage)")
    if missing:
        install = f"apt-get install -y {' '.join(packages)}" if packages else "run as root"
        raise UserError(
            f"cannot run a Podman machine here: missing {', '.join(missing)}; on Debian 12: "
            f"{install} (all Podman tests need: {APT_PACKAGES})"
        )
