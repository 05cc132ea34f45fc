"""Helpers for the .pyz tests: build the files if needed, run them with a bare Python 3.11
(no venv, minimal environment), and run the aarch64 file in the Debian arm64 userland under
qemu-aarch64-static."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BEEMESH_PYZ_CACHE", ROOT / ".cache" / "pyz"))
DIST = Path(os.environ.get("BEEMESH_PYZ_DIST", ROOT / "dist"))
SYSTEM_PYTHON = "/usr/bin/python3"
ARM_ROOT = CACHE / "rootfs-arm64-bookworm"
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
PEER_ID = re.compile(r"\b12D3KooW[1-9A-HJ-NP-Za-km-z]{44}\b")
SETUP_HINT = "run `sh packaging/ci-setup.sh` as root"

# tool -> Debian package that provides it
BUILD_TOOLS = {
    "make": "make",
    "gcc": "gcc",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "debootstrap": "debootstrap",
    "qemu-aarch64-static": "qemu-user-static",
    "dpkg-deb": "dpkg",
}


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def pyz_path(arch: str) -> Path:
    return DIST / f"beemesh-{version()}-linux-{arch}.pyz"


def require_tools(tools: dict[str, str]) -> None:
    missing = {tool: pkg for tool, pkg in tools.items() if not shutil.which(tool)}
    if missing:
        pytest.fail(
            f"missing tools {sorted(missing)}: {SETUP_HINT} "
            f"(or `apt-get install -y {' '.join(sorted(set(missing.values())))}`)",
            pytrace=False,
        )
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} missing: `apt-get install -y python3`", pytrace=False)


def ensure_built() -> dict[str, Path]:
    """`make pyz` (incremental: about a second when nothing changed; it builds whatever is
    missing or stale, so the tests never run an old file)."""
    require_tools(BUILD_TOOLS)
    makefile = ROOT / "Makefile"
    if makefile.exists() and "packaging/pyz.mk" in makefile.read_text():
        cmd = ["make", "--no-print-directory", "pyz"]
    else:
        cmd = ["make", "--no-print-directory", "-f", "packaging/pyz.mk", "pyz"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        pytest.fail(f"`{' '.join(cmd)}` failed:\n{tail}", pytrace=False)
    files = {arch: pyz_path(arch) for arch in ("x86_64", "aarch64")}
    for path in files.values():
        if not path.exists():
            pytest.fail(f"`{' '.join(cmd)}` did not produce {path}", pytrace=False)
    return files


def plain_env(home: Path, pex_root: Path | None = None, **extra: str) -> dict[str, str]:
    """What a bare machine has: no venv, no PYTHON* variables, a system PATH."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    if pex_root is not None:
        env["PEX_ROOT"] = str(pex_root)
    env.update(extra)
    return env


def run(
    argv: Sequence[str | Path], env: dict[str, str], timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout, **kw
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("beemesh: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def peer_id(text: str) -> str:
    found = PEER_ID.findall(text)
    assert found, f"no Peer ID in {text!r}"
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # keep polling; the last failure goes into the message
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


# --------------------------------------------------------------------------- aarch64


def require_arm() -> Path:
    """The arm64 userland (made by `make pyz`) and a kernel that starts arm64 binaries
    through qemu (binfmt_misc), so that arm64 programs can exec arm64 programs."""
    require_tools({"qemu-aarch64-static": "qemu-user-static"})
    python = ARM_ROOT / "usr" / "bin" / "python3.11"
    if not python.exists():
        pytest.fail(f"{python} missing: `make pyz` builds the arm64 userland", pytrace=False)
    status = BINFMT.read_text().splitlines()[0] if BINFMT.exists() else "not registered"
    if status != "enabled":
        pytest.fail(
            f"qemu-aarch64 binfmt_misc handler is {status}: {SETUP_HINT} (it registers "
            "/usr/lib/binfmt.d/qemu-aarch64.conf)",
            pytrace=False,
        )
    probe = run(
        [python, "-c", "import platform; print(platform.machine())"],
        env=arm_env(Path("/tmp")),
        timeout=60,
    )
    if probe.stdout.strip() != "aarch64":
        pytest.fail(f"arm64 python3 does not run under qemu: {probe.stderr.strip()}")
    return python


def arm_env(home: Path, pex_root: Path | None = None, **extra: str) -> dict[str, str]:
    """qemu finds the arm64 dynamic loader and libraries in the userland; every other path
    (the .pyz, PEX_ROOT, state dirs) is the host's."""
    return plain_env(home, pex_root, QEMU_LD_PREFIX=str(ARM_ROOT), **extra)


def arm_python() -> Path:
    return ARM_ROOT / "usr" / "bin" / "python3.11"


# --------------------------------------------------------------------------- agents


class Agent:
    """One `beemesh agent` process started from a .pyz; stopped by `stop()`."""

    def __init__(
        self, argv: Sequence[str | Path], env: dict[str, str], log: Path, api: Path
    ) -> None:
        self.api = api
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_file.close()

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def nodes(cli: Sequence[str | Path], env: dict[str, str], api: Path) -> list[dict[str, Any]]:
    proc = run([*cli, "nodes", "-o", "json", "--api", api], env=env, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or proc.stdout.strip())
    data = json.loads(proc.stdout)
    assert isinstance(data, list), data
    return data
