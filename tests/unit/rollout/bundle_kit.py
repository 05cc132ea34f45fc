"""Small signed bundles for the bundle tests: a fleet, stand-in .pyz files, re-signing."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from beemesh import wire
from beemesh.fleet import Fleet, init_fleet
from beemesh.rollout.bundle_format import ARCHES, MANIFEST, pyz_name, sha256_file
from beemesh.rollout.create import create
from beemesh.rollout.install import install
from beemesh.rollout.verify import load_trust


def make_fleet(base: Path) -> Path:
    fleet, _ = init_fleet(base / "fleet")
    return fleet


def make_bundle(base: Path, fleet: Path, name: str = "b", tar: bool = False,
                pyz: bytes = b"agent v1") -> Path:
    """A real bundle (bundle create), with tiny stand-ins for the agent .pyz files."""
    pyz_dir = base / f"pyz-{name}"
    pyz_dir.mkdir()
    for arch in ARCHES:
        (pyz_dir / pyz_name(arch)).write_bytes(pyz + arch.encode())
    out = base / name
    create(fleet_dir=fleet, site="plant-a", out=out, peers=[], pyz_dir=pyz_dir,
           ansible_dir=base / "no-playbook", tar=base / f"{name}.tar" if tar else None,
           progress=lambda line: None)
    return base / f"{name}.tar" if tar else out


def resign(bundle: Path, fleet: Path, ts: float | None = None, **changes: Any) -> None:
    """List the bundle's regular files again and sign the manifest (at time `ts`)."""
    env = wire.decode((bundle / MANIFEST).read_bytes(), 4 << 20)
    files = [{"path": p.relative_to(bundle).as_posix(), "size": p.stat().st_size,
              "sha256": sha256_file(p)}
             for p in sorted(bundle.rglob("*"))
             if p.is_file() and not p.is_symlink() and p.name != MANIFEST]
    body = {**env.body, "files": files, **changes}
    operator = Fleet.load(fleet).operator_key()
    (bundle / MANIFEST).write_bytes(wire.seal(operator, env.kind, body,
                                              time.time() if ts is None else ts))


def install_into(bundle: Path, fleet: Path, root: Path, **kw: Any) -> dict[str, Any]:
    trusted, trust_path = load_trust(fleet, None)
    return install(bundle, trusted=trusted, trust_path=trust_path, root=root, arch="x86_64",
                   workplane_user="", progress=kw.pop("progress", lambda line: None), **kw)


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry under root: kind, mode and content (file bytes, link target)."""
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out
