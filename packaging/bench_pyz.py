#!/usr/bin/env python3
"""Benchmark the single-file builds: file size per arch, cold and warm start of `--version`.
Prints a table, writes JSON. (The memory of agents and work planes run from the .pyz and from
the venv is `make bench`'s footprint group: tests/bench/footprint_bench.py.)

    python packaging/bench_pyz.py OUT.json [--runs 7] [--cold-runs 3]

Cold start = first run into an empty PEX_ROOT (extraction included); warm = the same file
again (median of --runs). The aarch64 file is timed under qemu-aarch64-static when the arm64
userland and binfmt handler are there (emulated: says nothing about a real Pi's speed, only
that the numbers stay sane). Needs `make pyz` first (and `make install` for the venv).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BEEMESH_PYZ_CACHE", ROOT / ".cache" / "pyz"))
DIST = Path(os.environ.get("BEEMESH_PYZ_DIST", ROOT / "dist"))
SYSTEM_PYTHON = "/usr/bin/python3"
ARM_ROOT = CACHE / "rootfs-arm64-bookworm"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def pyz(arch: str) -> Path:
    return DIST / f"beemesh-{version()}-linux-{arch}.pyz"


def env_for(home: Path, pex_root: Path | None = None, **extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    if pex_root is not None:
        env["PEX_ROOT"] = str(pex_root)
    env.update(extra)
    return env


def timed(argv: Sequence[str | Path], env: dict[str, str], timeout: float = 600) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: {proc.stderr.strip()[-500:]}")
    return elapsed


def du_mb(path: Path) -> float:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return round(total / 1e6, 1)


def start_times(
    argv: Sequence[str | Path], tmp: Path, runs: int, cold_runs: int, **extra: str
) -> dict[str, Any]:
    cold: list[float] = []
    extracted = 0.0
    for i in range(cold_runs):
        pex_root = tmp / f"cold-{i}"
        cold.append(timed([*argv, "--version"], env_for(tmp, pex_root, **extra)))
        extracted = du_mb(pex_root)
    warm_root = tmp / "cold-0"
    warm = [timed([*argv, "--version"], env_for(tmp, warm_root, **extra)) for _ in range(runs)]
    return {
        "cold_s": round(statistics.median(cold), 3),
        "cold_runs": [round(c, 3) for c in cold],
        "warm_s": round(statistics.median(warm), 3),
        "warm_runs": [round(w, 3) for w in warm],
        "extracted_mb": extracted,
    }


def venv_start(runs: int, tmp: Path) -> dict[str, Any] | None:
    if not VENV_PYTHON.exists():
        return None
    argv = [VENV_PYTHON, "-m", "beemesh", "--version"]
    env = env_for(tmp)
    timed(argv, env)  # bytecode written once, like a warm .pyz
    warm = [timed(argv, env) for _ in range(runs)]
    return {"warm_s": round(statistics.median(warm), 3), "warm_runs": [round(w, 3) for w in warm]}


def arm_ready() -> bool:
    binfmt = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    return (
        (ARM_ROOT / "usr/bin/python3.11").exists()
        and binfmt.exists()
        and binfmt.read_text().startswith("enabled")
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--runs", type=int, default=7, help="warm runs (median)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold runs (median)")
    parser.add_argument("--no-arm", action="store_true", help="skip the emulated aarch64 timing")
    args = parser.parse_args(argv)

    missing = [str(pyz(a)) for a in ("x86_64", "aarch64") if not pyz(a).exists()]
    if missing:
        print(f"bench_pyz: error: {', '.join(missing)} missing: run `make pyz`", file=sys.stderr)
        return 1
    if platform.machine() != "x86_64":
        print("bench_pyz: error: runs on an x86_64 host", file=sys.stderr)
        return 1

    result: dict[str, Any] = {
        "version": version(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": SYSTEM_PYTHON},
        "files": {
            a: {"bytes": pyz(a).stat().st_size, "sha256": sha256(pyz(a))}
            for a in ("x86_64", "aarch64")
        },
        "start": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-pyz-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "x86").mkdir()
        result["start"]["x86_64_pyz"] = start_times(
            [SYSTEM_PYTHON, "-I", pyz("x86_64")], tmp / "x86", args.runs, args.cold_runs
        )
        (tmp / "venv").mkdir()
        venv = venv_start(args.runs, tmp / "venv")
        if venv:
            result["start"]["x86_64_venv"] = venv
        if not args.no_arm and arm_ready():
            (tmp / "arm").mkdir()
            result["start"]["aarch64_pyz_qemu"] = start_times(
                [ARM_ROOT / "usr/bin/python3.11", "-I", pyz("aarch64")],
                tmp / "arm",
                max(3, args.runs // 2),
                1,
                QEMU_LD_PREFIX=str(ARM_ROOT),
            )

    rows = [(f"size {a}", f"{f['bytes'] / 1e6:.1f} MB") for a, f in result["files"].items()]
    for name, s in result["start"].items():
        if "cold_s" in s:
            rows.append(
                (
                    f"{name} cold --version",
                    f"{s['cold_s']:.2f} s ({s['extracted_mb']} MB extracted)",
                )
            )
        rows.append((f"{name} warm --version", f"{s['warm_s']:.2f} s"))
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
