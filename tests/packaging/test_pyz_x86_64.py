"""The x86_64 .pyz on a bare Python 3.11, and its one-line errors (packaging/README.md)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from pyz_support import (
    SYSTEM_PYTHON,
    assert_one_line_error,
    peer_id,
    plain_env,
    run,
    version,
)

pytestmark = pytest.mark.slow

on_x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 host only")


@on_x86_64
def test_version_with_plain_system_python(pyz_x86: Path, tmp_path: Path) -> None:
    """`/usr/bin/python3 -I beemesh.pyz --version` with no venv in the environment: a cold
    start (empty PEX_ROOT) and a warm one."""
    pex_root = tmp_path / "pex"
    env = plain_env(tmp_path, pex_root)
    for _ in range(2):
        proc = run([SYSTEM_PYTHON, "-I", pyz_x86, "--version"], env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"beemesh {version()}"
    assert (pex_root / "venvs").is_dir()  # extracted where PEX_ROOT said


@on_x86_64
def test_default_extraction_dir_is_home_cache(pyz_x86: Path, tmp_path: Path) -> None:
    proc = run([SYSTEM_PYTHON, "-I", pyz_x86, "--version"], env=plain_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".cache" / "pex" / "venvs").is_dir()


@on_x86_64
def test_init_and_id(pyz_x86: Path, x86_pex_root: Path, tmp_path: Path) -> None:
    env = plain_env(tmp_path, x86_pex_root)
    state = tmp_path / "state"
    init = run([SYSTEM_PYTHON, "-I", pyz_x86, "init", "--state-dir", state], env=env)
    assert init.returncode == 0, init.stderr
    ident = run([SYSTEM_PYTHON, "-I", pyz_x86, "id", "--state-dir", state], env=env)
    assert ident.returncode == 0, ident.stderr
    assert peer_id(init.stdout) == peer_id(ident.stdout)


@on_x86_64
def test_first_run_needs_no_network(pyz_x86: Path, tmp_path: Path) -> None:
    """Cold start (extraction) and a command that loads libp2p, in a network namespace with
    only a down loopback: nothing is downloaded at run time."""
    unshare = shutil.which("unshare")
    assert os.geteuid() == 0 and unshare, (
        "this test needs root and unshare(1) (apt-get install util-linux) to cut the network")
    env = plain_env(tmp_path, tmp_path / "pex")
    base = [unshare, "--net", SYSTEM_PYTHON, "-I", pyz_x86]
    proc = run([*base, "--version"], env=env)
    assert proc.returncode == 0, proc.stderr
    init = run([*base, "init", "--state-dir", tmp_path / "state"], env=env)
    assert init.returncode == 0, init.stderr
    peer_id(init.stdout)


@on_x86_64
def test_wrong_architecture_is_one_line(pyz_arm: Path, tmp_path: Path) -> None:
    """The aarch64 file started natively on this (x86_64) machine."""
    proc = run([SYSTEM_PYTHON, "-I", pyz_arm, "--version"], env=plain_env(tmp_path))
    assert_one_line_error(proc, "built for aarch64", "this machine is x86_64", "x86_64.pyz")


def test_too_old_python_simulated_is_one_line(pyz_x86: Path, tmp_path: Path) -> None:
    """The file's own preamble, run with sys.version_info set to 3.10.12 (Debian 12 has no
    Python 3.10 to test with)."""
    code = (
        "import runpy, sys; sys.version_info = (3, 10, 12, 'final', 0); "
        f"sys.argv = [{str(pyz_x86)!r}, '--version']; "
        f"runpy.run_path({str(pyz_x86)!r}, run_name='__main__')"
    )
    proc = run([SYSTEM_PYTHON, "-I", "-c", code], env=plain_env(tmp_path))
    assert_one_line_error(proc, "needs CPython 3.11", "3.10.12", "python3.11")


def test_unwritable_pex_root_is_one_line(pyz_x86: Path, tmp_path: Path) -> None:
    """PEX_ROOT below a regular file: cannot be created by anyone, root included."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = run(
        [SYSTEM_PYTHON, "-I", pyz_x86, "--version"],
        env=plain_env(tmp_path, blocker / "pex"),
    )
    assert_one_line_error(proc, "PEX_ROOT=", "not a writable directory", "set PEX_ROOT")


def test_read_only_pex_root_is_one_line(pyz_x86: Path, tmp_path: Path) -> None:
    """PEX_ROOT on a read-only filesystem (read-only root fs without PEX_ROOT set), even when
    already populated: pex would otherwise fall back to re-extracting into /tmp each start."""
    assert os.geteuid() == 0, "this test needs root to mount a read-only filesystem"
    ro = tmp_path / "ro"
    ro.mkdir()
    env = plain_env(tmp_path, ro / "pex")
    warm = run([SYSTEM_PYTHON, "-I", pyz_x86, "--version"], env=env)
    assert warm.returncode == 0, warm.stderr
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True, text=True
    )
    assert mounted.returncode == 0, f"cannot bind-mount read-only: {mounted.stderr.strip()}"
    try:
        # (older util-linux needs a remount to apply ro to a bind mount)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True)
        proc = run([SYSTEM_PYTHON, "-I", pyz_x86, "--version"], env=env)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    assert_one_line_error(proc, f"PEX_ROOT={ro / 'pex'}", "not a writable directory")
