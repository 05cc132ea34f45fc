"""`beemesh bundle verify`: check a bundle's signature, signer and every file.

Also the trust source verify and install need (never the bundle's own trust list) and the
unpacking of a bundle tar. Every problem is collected, one line each, instead of stopping at
the first.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beemesh import schema, wire
from beemesh.errors import UserError
from beemesh.fleet import TRUST_LIST, parse_trust_list
from beemesh.identity import fingerprint
from beemesh.rollout.bundle_format import (
    BUNDLE_MANIFEST,
    CHUNK,
    FLEET_DIR,
    FLEET_FILES,
    FORMAT,
    KINDS,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Progress,
    sha256_file,
)


@dataclass
class Report:
    """Outcome of verify: one problem per line, and the manifest body if it could be read."""

    problems: list[str]
    body: dict[str, Any] | None
    signer: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def load_trust(fleet: Path | None, trust: Path | None) -> tuple[dict[bytes, str], Path]:
    """The operator keys a bundle must be signed by: --trust FILE, else --fleet's trust list.

    Never the bundle's own list: whoever can alter the bundle could alter that list too.
    """
    if trust is None and fleet is None:
        fleet_env = os.environ.get("BEEMESH_FLEET")
        if not fleet_env:
            raise UserError("bundle verify/install needs a trust source: --trust FILE (an "
                            "operators.trust you got from the operator) or --fleet DIR / "
                            "BEEMESH_FLEET")
        fleet = Path(fleet_env)
    path = trust if trust is not None else fleet / TRUST_LIST  # type: ignore[operator]
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"cannot read operator trust list {path} ({e.strerror}); fix --trust "
                        "or --fleet") from None
    keys = parse_trust_list(text, path)
    if not keys:
        raise UserError(f"operator trust list {path} holds no keys")
    return keys, path


def verify(bundle: Path, trusted: dict[bytes, str], trust_path: Path | None = None,
           progress: Progress | None = None) -> Report:
    """Check signature, signer and every file; collect every problem instead of stopping."""
    if not bundle.is_dir():
        raise UserError(f"bundle {bundle} is not a directory; pass the mounted bundle directory "
                        "or a bundle .tar")
    mpath = bundle / MANIFEST
    try:
        data = mpath.read_bytes()
    except FileNotFoundError:
        return Report([f"missing: {MANIFEST} (the signed file list); copy the whole bundle "
                       "again"], None)
    verifier = wire.Verifier(KINDS, lambda: trusted, max_bytes=MAX_MANIFEST_BYTES)
    problems: list[str] = []
    body: dict[str, Any] | None = None
    signer = ""
    try:
        env = verifier.authenticate(data)
        body = env.body
        signer = trusted[env.sender]
    except wire.Rejected as e:
        where = f" {trust_path}" if trust_path else ""
        if e.reason == "untrusted":
            env = wire.decode(data, MAX_MANIFEST_BYTES)
            problems.append(
                f"wrong signer: {MANIFEST} is signed by operator key "
                f"{fingerprint(env.sender)}, which is not in the trust list{where}; "
                "get a bundle from your fleet's operator")
            body = env.body
        elif e.reason == "bad_signature":
            problems.append(f"bad signature: {MANIFEST} was altered after signing")
            body = wire.decode(data, MAX_MANIFEST_BYTES).body
        else:
            return Report([f"unreadable manifest: {MANIFEST} is not a bundle manifest "
                           f"({e.reason}: {e.detail})"], None)
    try:
        schema.check(body, BUNDLE_MANIFEST.body)
    except schema.SchemaError as e:
        return Report([*problems, f"unreadable manifest: {e}"], None)
    if body["format"] != FORMAT:
        problems.append(f"bundle format {body['format']} is not supported (this agent reads "
                        f"format {FORMAT}); use a matching beemesh")
    listed = {f["path"]: f for f in body["files"]}
    for rel in listed:
        if rel.startswith("/") or ".." in Path(rel).parts:
            return Report([*problems, f"unsafe path in manifest: {rel}"], None)
    for rel in (f"{FLEET_DIR}/{name}" for name in FLEET_FILES):
        if rel not in listed:
            problems.append(f"missing: {rel} (not in the manifest: the bundle was made without "
                            "it, by an older beemesh; create it again with this one)")
    present = {p.relative_to(bundle).as_posix() for p in _walk_lenient(bundle)} - {MANIFEST}
    for rel in sorted(listed):
        entry = listed[rel]
        if rel not in present:
            problems.append(f"missing: {rel} (listed in the manifest, not in the bundle)")
            continue
        size = (bundle / rel).stat().st_size
        if size != entry["size"]:
            problems.append(f"altered: {rel} is {size} bytes, the manifest says "
                            f"{entry['size']} (partial copy?)")
            continue
        if progress and size > 16 * CHUNK:
            progress(f"checking {rel} ({size // 2**20} MB)")
        if sha256_file(bundle / rel) != entry["sha256"]:
            problems.append(f"altered: {rel} (SHA-256 differs from the manifest)")
    for rel in sorted(present - set(listed)):
        problems.append(f"extra: {rel} (not in the manifest; remove it or rebuild the bundle)")
    return Report(problems, body, signer)


def _walk_lenient(root: Path) -> Iterator[Path]:
    """Every file under root, symlinks and specials included, so they show up as extra files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def open_bundle(path: Path, stack: list[Any]) -> Path:
    """A directory as is; a .tar is unpacked into a temporary directory (data filter)."""
    if path.is_file() and tarfile.is_tarfile(path):
        tmp = tempfile.TemporaryDirectory(prefix="beemesh-bundle-")
        stack.append(tmp)
        dest = Path(tmp.name)
        with tarfile.open(path) as tf:
            # By hand, not extractall(filter=...): that filter is missing in early 3.11.x.
            for member in tf:
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise UserError(f"bundle tar {path} holds an unsafe path {member.name!r}")
                if member.isdir():
                    (dest / member.name).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target = dest / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    assert src is not None
                    with src, target.open("wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                    os.chmod(target, 0o600 if member.mode & 0o077 == 0 else 0o644)
                else:
                    raise UserError(f"bundle tar {path} holds {member.name!r}, which is not a "
                                    "regular file; bundles hold regular files only")
        return dest
    if not path.exists():
        raise UserError(f"bundle {path} not found; pass the mounted bundle directory")
    return path
