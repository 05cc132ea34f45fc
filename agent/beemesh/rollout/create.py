"""`beemesh bundle create`: write a signed bundle directory for one site, and its tar.

The operator side: copies the .pyz files, the machines' fleet material (never operator.key),
the site's peers, the playbook and saved images, then signs the file list (bundle_format).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from beemesh import __version__, wire
from beemesh.errors import UserError
from beemesh.files import atomic_file
from beemesh.fleet import POLICY, POLICY_TEXT, WORKPLANE_KEY, Fleet
from beemesh.identity import fingerprint, save_key
from beemesh.membership.certs import DAY_S, issue_enrollment
from beemesh.rollout.bundle_format import (
    ANSIBLE_DIR,
    ARCHES,
    BUNDLE_MANIFEST,
    ENROLLMENT_CERT,
    ENROLLMENT_KEY,
    FLEET_DIR,
    FLEET_FILES,
    FORMAT,
    IMAGES_DIR,
    MANIFEST,
    PEERS_FILE,
    PRIVATE_FILES,
    PYZ_DIR,
    REVOCATIONS,
    SITE_DIR,
    Progress,
    pyz_name,
    run_podman,
    sha256_file,
    stderr_progress,
)

# agent/beemesh/rollout/create.py -> the source tree's root
_REPO = Path(__file__).resolve().parents[3]


def default_pyz_dir() -> Path:
    """dist/ of the source tree this module runs from, else ./dist."""
    repo_dist = _REPO / "dist"
    return repo_dist if repo_dist.is_dir() else Path("dist")


def default_ansible_dir() -> Path | None:
    """ansible/ of the source tree this module runs from, if it has anything in it."""
    repo = _REPO / "ansible"
    return repo if repo.is_dir() and any(repo.iterdir()) else None


def image_file_name(image: str) -> str:
    """A stable, filesystem-safe archive name for an image reference."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", image).strip("_") + ".tar"


def read_peers(peer_file: Path | None, peers: list[str]) -> list[str]:
    """Bootstrap multiaddrs from --peers FILE (one per line, # comments) and --peer flags."""
    out: list[str] = []
    if peer_file is not None:
        try:
            text = peer_file.read_text()
        except OSError as e:
            raise UserError(f"cannot read peer list {peer_file} ({e.strerror}); fix --peers")\
                from None
        out += [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    out += [p.strip() for p in peers]
    out = list(dict.fromkeys(p for p in out if p))
    for p in out:
        if not p.startswith("/") or "/p2p/" not in p:
            raise UserError(f"bootstrap peer {p!r} is not a multiaddr ending in /p2p/<peer id> "
                            "(example: /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW...)")
    return out


def _walk(root: Path) -> Iterator[Path]:
    """Every regular file under root, sorted (symlinks and specials are refused, not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                raise UserError(f"{p} is a symlink or special file; bundles hold regular files "
                                "only")
            yield p


def create(
    *,
    fleet_dir: Path,
    site: str,
    out: Path,
    peers: list[str],
    images: Sequence[str] = (),
    pyz_dir: Path | None = None,
    ansible_dir: Path | None = None,
    podman_socket: str | None = None,
    tar: Path | None = None,
    enrollment_days: float = 30.0,
    progress: Progress = stderr_progress,
) -> dict[str, Any]:
    """Write a bundle directory (and optionally a tar of it); returns the manifest body.

    When the fleet requires admission the bundle carries an enrollment key for its site, valid
    `enrollment_days`, with which `bundle install` admits each machine (site=SITE only)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", site):
        raise UserError(f"site name {site!r} must be 1-63 letters, digits, '.', '_' or '-'")
    if not 0 < enrollment_days <= 3650:
        raise UserError("--enrollment-days must be above 0 (and at most 3650)")
    fleet = Fleet.load(fleet_dir)
    key = fleet.operator_key()
    if not (fleet_dir / WORKPLANE_KEY).is_file():
        raise UserError(f"fleet directory {fleet_dir} has no {WORKPLANE_KEY} (made before the "
                        "work plane); add it with `beemesh fleet workplane-key --out "
                        f"{fleet_dir}`, copy it to the machines you manage by hand, then create "
                        "the bundle")
    if not peers:
        progress("warning: no bootstrap peers (--peers/--peer): machines installed from this "
                 "bundle will not find the site's mesh on their own")
    pyz_dir = pyz_dir or default_pyz_dir()
    pyzs = {a: pyz_dir / pyz_name(a) for a in ARCHES}
    missing = [str(p) for p in pyzs.values() if not p.is_file()]
    if missing:
        raise UserError(f"agent file(s) {', '.join(missing)} not found; run `make pyz` or pass "
                        "--pyz-dir")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)

    for arch, src in pyzs.items():
        progress(f"copying agent for {arch} ({src.stat().st_size // 2**20} MB)")
        (out / PYZ_DIR).mkdir(exist_ok=True)
        shutil.copyfile(src, out / PYZ_DIR / src.name)
    (out / FLEET_DIR).mkdir()
    # Only what machines need: operator.key must never leave the operator.
    for name in FLEET_FILES:
        if name == POLICY:  # written, not copied: older fleets have no file (admission off)
            policy = "required" if fleet.admission_required else "off"
            (out / FLEET_DIR / POLICY).write_text(POLICY_TEXT.format(admission=policy))
        else:
            shutil.copyfile(fleet_dir / name, out / FLEET_DIR / name)
    revocations = fleet_dir / Path(REVOCATIONS).name
    if revocations.is_file():
        shutil.copyfile(revocations, out / REVOCATIONS)
    (out / SITE_DIR).mkdir()
    if fleet.admission_required:
        now = time.time()
        enrollment = issue_enrollment(key, site, now + enrollment_days * DAY_S, now)
        save_key(out / ENROLLMENT_KEY, enrollment.key)
        (out / ENROLLMENT_CERT).write_bytes(enrollment.cert)
        progress(f"enrollment key for site {site} included (valid {enrollment_days:g} days): "
                 "install admits each machine with it")
    for rel in PRIVATE_FILES:
        if (out / rel).exists():
            os.chmod(out / rel, 0o600)
    (out / PEERS_FILE).write_text(
        f"# bootstrap peers of site {site}, one multiaddr per line\n"
        + "".join(p + "\n" for p in peers))
    ansible_dir = ansible_dir if ansible_dir is not None else default_ansible_dir()
    if ansible_dir is not None and ansible_dir.is_dir():
        progress(f"copying playbook from {ansible_dir}")
        shutil.copytree(ansible_dir, out / ANSIBLE_DIR, symlinks=False,
                        ignore=shutil.ignore_patterns("*.retry", "__pycache__", ".git"))
    image_entries = []
    for image in images:
        rel = f"{IMAGES_DIR}/{image_file_name(image)}"
        (out / IMAGES_DIR).mkdir(exist_ok=True)
        progress(f"saving image {image}")
        run_podman(podman_socket, "save", "-o", str(out / rel), image,
                   what=f"saving image {image}")
        image_entries.append({"name": image, "path": rel})

    files = []
    for p in _walk(out):
        rel = p.relative_to(out).as_posix()
        if rel == MANIFEST:
            continue
        files.append({"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)})
    body = {"format": FORMAT, "site": site, "version": __version__, "files": files,
            "peers": peers, "images": image_entries}
    (out / MANIFEST).write_bytes(wire.seal(key, BUNDLE_MANIFEST.name, body, time.time()))
    progress(f"bundle for site {site} written to {out}: {len(files)} files, signed by operator "
             f"{fingerprint(key.public_key)}")
    if tar is not None:
        progress(f"writing {tar}")
        write_tar(out, tar)
    return body


def write_tar(src: Path, tar: Path) -> None:
    """A deterministic tar of the bundle: sorted names, mtime 0, root-owned, fixed modes."""
    with atomic_file(tar) as f, tarfile.open(fileobj=f, mode="w",
                                              format=tarfile.PAX_FORMAT) as tf:
        paths = sorted(p.relative_to(src).as_posix() for p in _walk(src))
        dirs = sorted({str(Path(p).parent) for p in paths} - {"."})
        for name in sorted({*dirs, *(str(q) for d in dirs for q in Path(d).parents)} - {"."}):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tf.addfile(info)
        for name in paths:
            info = tarfile.TarInfo(name)
            info.size = (src / name).stat().st_size
            info.mode = 0o600 if name in PRIVATE_FILES else 0o644
            info.mtime = 0
            with (src / name).open("rb") as member:
                tf.addfile(info, member)
