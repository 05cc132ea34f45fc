"""The files of a pod's configMap and secret volumes, on a tmpfs of this machine (IO).

Each pod has a directory `<pod_files>/<pod>/<volume>/` written just before its deploy and
removed with the pod (and at the agent's next poll if it went some other way). The base is a
tmpfs so that a Secret's values never reach a disk: when it is not one and the agent runs as
root, a tmpfs (mode 0700) is mounted there; otherwise pods that need files are refused with the
fix named. Everything is created afresh by this process under a directory only it can write
(0700), with O_NOFOLLOW and O_EXCL: root never follows a link someone else planted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from beemesh.errors import UserError

TMPFS = ("tmpfs", "ramfs")
TMPFS_SIZE = "64m"


def filesystem_of(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str:
    """The type of the file system `path` (an existing directory) is on."""
    real = os.path.realpath(path)
    best, kind = "", ""
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        after = line.split(" - ", 1)[1].split()
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, after[0] if after else ""
    return kind


class PodFiles:
    def __init__(self, base: Path) -> None:
        self.base = base
        self._problem: str | None = None
        self._ready = False

    def ensure(self) -> str | None:
        """Make the base a private tmpfs; the reason it cannot be, or None."""
        if self._ready:
            return None
        try:
            self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = os.lstat(self.base)
            if not os.path.isdir(self.base) or os.path.islink(self.base) \
                    or st.st_uid != os.geteuid():
                return f"pod_files {self.base} is not a directory this agent owns; remove it"
            if filesystem_of(self.base) not in TMPFS:
                if os.geteuid() != 0:
                    return (f"pod_files {self.base} is not on a tmpfs and this agent is not "
                            "root, so it cannot mount one; set pod_files in agent.toml to a "
                            "directory on a tmpfs (e.g. under /dev/shm)")
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,size={TMPFS_SIZE}",
                                "beemesh-pod-files", str(self.base)], check=True,
                               capture_output=True, timeout=10)
            os.chmod(self.base, 0o700)
        except (OSError, subprocess.SubprocessError) as e:
            return f"pod_files {self.base}: {e}; check the path and that it can be a tmpfs"
        self._ready = True
        return None

    def write(self, pod: str, files: dict[str, tuple[tuple[str, bytes, int], ...]]
              ) -> dict[str, Path]:
        """Write each volume's files afresh; volume name -> its directory."""
        if not files:
            return {}
        problem = self.ensure()
        if problem is not None:
            raise UserError(problem)
        pod_dir = self.base / pod
        self.remove(pod)
        out = {}
        try:
            os.mkdir(pod_dir, 0o711)
            for volume, entries in files.items():
                root = pod_dir / volume
                os.mkdir(root, 0o755)
                for rel, data, mode in entries:
                    target = root / rel
                    for parent in reversed(target.relative_to(root).parents[:-1]):
                        if not (root / parent).is_dir():
                            os.mkdir(root / parent, 0o755)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o600)
                    try:
                        os.write(fd, data)
                        os.fchmod(fd, mode)
                    finally:
                        os.close(fd)
                out[volume] = root
        except OSError as e:
            self.remove(pod)
            raise UserError(f"cannot write the config files of {pod} under {self.base}: "
                            f"{e.strerror or e}; free space on the tmpfs or fix the path") from None
        return out

    def remove(self, pod: str) -> None:
        path = self.base / pod
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)

    def pods(self) -> list[str]:
        try:
            return [p.name for p in self.base.iterdir()]
        except OSError:
            return []
