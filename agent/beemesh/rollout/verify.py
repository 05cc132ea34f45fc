"""`beemesh bundle verify`: check a bundle's signature, signer and every file.

Also the trust source verify and install need (never the bundle's own trust list). Every
problem is collected, one line each, instead of stopping at the first.

Order matters on a hostile stick: MANIFEST.cbor is read alone (bounded) and its signature,
signer and shape are checked before any other file is read; then only listed files are read,
each at most to its listed size (`copy_bounded`), through `source` (no links followed, tars
never extracted). Install passes a private staging directory: each file it needs is copied
there while it is hashed, and install uses only those copies, so what is installed is what
was checked (the stick is read once).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beemesh import schema, wire
from beemesh.errors import UserError
from beemesh.files import create_new
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
    MAX_FILES,
    MAX_IMAGES,
    MAX_MANIFEST_BYTES,
    MAX_TOTAL_BYTES,
    REGULAR_ONLY,
    Progress,
    copy_bounded,
    show,
    unsafe_path,
)
from beemesh.rollout.source import Entry, NotRegular, Source, open_source


@dataclass
class Report:
    """Outcome of verify: one problem per line, and the manifest body if it could be read."""

    problems: list[str]
    body: dict[str, Any] | None
    signer: str = ""
    created_ms: int = 0  # the signed envelope's timestamp: when the operator signed it
    staged: dict[str, Path] = field(default_factory=dict)  # listed path -> checked private copy

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
           progress: Progress | None = None, stage: Path | None = None,
           wanted: Callable[[dict[str, Any]], set[str]] | None = None) -> Report:
    """Check signature, signer and every file of the bundle directory or tar at `bundle`;
    collect every problem instead of stopping. With `stage` (a private directory), the listed
    files `wanted(body)` names (all if None) are copied there as they are checked; nothing is
    copied unless the manifest's signature and signer check out."""
    with open_source(bundle) as src:
        data = src.read_manifest()
        if data is None:
            return Report([f"missing: {MANIFEST} (the signed file list); copy the whole bundle "
                           "again"], None)
        report = _check_manifest(data, trusted, trust_path)
        if report.body is None:
            return report
        trusted_body = report.ok  # signature and signer fine: staging may start
        problems = report.problems + _check_listing(report.body)
        if any(p.startswith("unsafe") or p.startswith("too ") for p in problems):
            return Report(problems, None)
        keep = set() if stage is None or not trusted_body else (
            wanted(report.body) if wanted else {f["path"] for f in report.body["files"]})
        problems += _check_files(src, report.body, stage, keep, report.staged, progress)
        report.problems = problems
        return report


def _check_manifest(data: bytes, trusted: dict[bytes, str], trust_path: Path | None) -> Report:
    """The manifest's signature, signer, shape and format; body None if it cannot be read."""
    if len(data) > MAX_MANIFEST_BYTES:
        return Report([f"unreadable manifest: {MANIFEST} is larger than "
                       f"{MAX_MANIFEST_BYTES} bytes; copy the bundle again"], None)
    verifier = wire.Verifier(KINDS, lambda: trusted, max_bytes=MAX_MANIFEST_BYTES)
    problems: list[str] = []
    signer = ""
    try:
        env = verifier.authenticate(data)
        signer = trusted[env.sender]
    except wire.Rejected as e:
        where = f" {trust_path}" if trust_path else ""
        if e.reason not in ("untrusted", "bad_signature"):
            return Report([f"unreadable manifest: {MANIFEST} is not a bundle manifest "
                           f"({e.reason}: {e.detail})"], None)
        env = wire.decode(data, MAX_MANIFEST_BYTES)
        problems.append(
            f"wrong signer: {MANIFEST} is signed by operator key {fingerprint(env.sender)}, "
            f"which is not in the trust list{where}; get a bundle from your fleet's operator"
            if e.reason == "untrusted" else
            f"bad signature: {MANIFEST} was altered after signing")
    body = env.body
    try:
        schema.check(body, BUNDLE_MANIFEST.body)
    except schema.SchemaError as e:
        return Report([*problems, f"unreadable manifest: {e}"], None)
    if body["format"] != FORMAT:
        problems.append(f"bundle format {body['format']} is not supported (this agent reads "
                        f"format {FORMAT}); use a matching beemesh")
    return Report(problems, body, signer, env.ts_ms)


def _check_listing(body: dict[str, Any]) -> list[str]:
    """What the manifest lists: safe, unique paths, bounded sizes, images among the files."""
    problems: list[str] = []
    listed: set[str] = set()
    total = 0
    for f in body["files"]:
        rel = f["path"]
        why = unsafe_path(rel)
        if why or rel == MANIFEST or rel in listed:
            problems.append(f"unsafe path in manifest: {show(rel)} "
                            f"({why or 'listed twice or the manifest itself'})")
        listed.add(rel)
        if f["size"] < 0:
            problems.append(f"unsafe path in manifest: {show(rel)} has a negative size")
        total += max(f["size"], 0)
    if len(body["files"]) > MAX_FILES or total > MAX_TOTAL_BYTES:
        problems.append(f"too big: the manifest lists {len(body['files'])} files of {total} "
                        f"bytes, more than the {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes a "
                        "bundle may hold; create a smaller bundle")
    if len(body["images"]) > MAX_IMAGES:
        problems.append(f"too many images: {len(body['images'])} (at most {MAX_IMAGES}); "
                        "create a bundle with fewer --image")
    for image in body["images"]:
        if unsafe_path(image["path"]) or image["path"] not in listed:
            problems.append(f"unsafe image path in manifest: {show(image['path'])} (image "
                            f"{show(image['name'])}) is not one of the listed, hashed files; "
                            "create the bundle again with `beemesh bundle create`")
    for rel in (f"{FLEET_DIR}/{name}" for name in FLEET_FILES):
        if rel not in listed:
            problems.append(f"missing: {rel} (not in the manifest: the bundle was made without "
                            "it, by an older beemesh; create it again with this one)")
    return problems


def _check_files(src: Source, body: dict[str, Any], stage: Path | None, keep: set[str],
                 staged: dict[str, Path], progress: Progress | None) -> list[str]:
    """Every listed file present, regular, of its listed size and hash (copied into `stage`
    if in `keep`); nothing unlisted in the bundle."""
    problems: list[str] = []
    present: dict[str, Entry] = src.names()
    present.pop(MANIFEST, None)
    listed = {f["path"]: f for f in body["files"]}
    for rel in sorted(listed):
        entry, size = present.get(rel), listed[rel]["size"]
        if entry is None:
            problems.append(f"missing: {rel} (listed in the manifest, not in the bundle)")
        elif entry.problem:
            problems.append(f"not a regular file: {rel} is {entry.problem}; {REGULAR_ONLY}")
        elif entry.size != size:
            problems.append(f"altered: {rel} is {entry.size} bytes, the manifest says {size} "
                            "(partial copy?)")
        else:
            if progress and size > 16 * CHUNK:
                progress(f"checking {rel} ({size // 2**20} MB)")
            problem = _read_one(src, rel, listed[rel], stage if rel in keep else None, staged)
            if problem:
                problems.append(problem)
    for rel in sorted(set(present) - set(listed)):
        why = present[rel].problem
        problems.append(f"extra: {show(rel)} ({f'{why}, ' if why else ''}not in the manifest; "
                        "remove it or rebuild the bundle)")
    return problems


def _read_one(src: Source, rel: str, listed: dict[str, Any], stage: Path | None,
              staged: dict[str, Path]) -> str | None:
    """Hash one listed file (copying it into `stage` if given); the problem, or None."""
    size = listed["size"]
    out = None
    if stage is not None:
        out = stage / rel
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = create_new(out, 0o600) if out is not None else None
    try:
        with src.open(rel) as f:
            got, digest = copy_bounded(f, size, fd)
    except NotRegular as e:
        got, digest = -1, f"not a regular file: {rel} is {e}; {REGULAR_ONLY}"
    except FileNotFoundError:
        got, digest = -1, f"missing: {rel} (listed in the manifest, not in the bundle)"
    except (OSError, tarfile.TarError) as e:  # a bad stick, a tar cut short, a full /tmp
        why = getattr(e, "strerror", None) or str(e)
        got, digest = -1, f"cannot read {rel} ({why}); copy the bundle again (or free space in " \
            "$TMPDIR for install's private copies)"
    finally:
        if fd is not None:
            os.close(fd)
    problem = (digest if got < 0 else
               f"altered: {rel} changed size while it was read (the manifest says {size} "
               "bytes); copy the bundle again" if got != size else
               f"altered: {rel} (SHA-256 differs from the manifest)"
               if digest != listed["sha256"] else None)
    if out is not None:
        if problem:
            out.unlink(missing_ok=True)
        else:
            staged[rel] = out
    return problem
