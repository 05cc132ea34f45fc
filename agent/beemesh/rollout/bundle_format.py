"""The offline bundle format: its layout, the signed manifest kind, and what create, verify and
install share (file hashes, the .pyz names, the podman CLI).

Sites cannot reach a registry, PyPI or the operator, so a bundle carries the agent (.pyz per
architecture), the fleet's two network keys (machine plane and work plane) and operator trust
list (never operator.key), the site's bootstrap peers, the Ansible playbook, and container
images as `podman save` archives.

`MANIFEST.cbor` lists every other file with its size and SHA-256 and is a normal signed wire
envelope (kind `BundleManifest`, signer: a trusted operator), so checking it reuses
`wire.Verifier.authenticate` and the fleet's trust list rather than a second signing scheme.
The envelope timestamp is not checked for staleness: a bundle may sit in a drawer for months.
Format: bundles/README.md.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from beemesh import __version__, schema, wire
from beemesh.errors import UserError
from beemesh.fleet import POLICY, SWARM_KEY, TRUST_LIST, WORKPLANE_KEY

FORMAT = 1
MANIFEST = "MANIFEST.cbor"
ARCHES = ("x86_64", "aarch64")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 20_000
MAX_IMAGES = 1_000
MAX_TOTAL_BYTES = 64 * 2**30  # all listed files together: nothing reads or writes more
MAX_FLEET_FILE_BYTES = 64 * 1024  # keys and trust list, read into memory
MAX_ENTRIES = 2 * MAX_FILES + 1_000  # directory entries or tar members looked at, at most
MAX_PATH = 1_024
CHUNK = 1024 * 1024

PYZ_DIR = "pyz"
FLEET_DIR = "fleet"
SITE_DIR = "site"
PEERS_FILE = f"{SITE_DIR}/peers.txt"
IMAGES_DIR = "images"
ANSIBLE_DIR = "ansible"
FLEET_FILES = (SWARM_KEY, WORKPLANE_KEY, TRUST_LIST, POLICY)  # never operator.key
# With admission: the site's enrollment key, with which install admits the machine (it is
# never copied onto the machine), and the operator's revocations, which install keeps.
ENROLLMENT_KEY = f"{SITE_DIR}/enrollment.key"
ENROLLMENT_CERT = f"{SITE_DIR}/enrollment.cert"
REVOCATIONS = f"{FLEET_DIR}/revoked.cbor"
PRIVATE_FILES = {f"{FLEET_DIR}/{SWARM_KEY}", f"{FLEET_DIR}/{WORKPLANE_KEY}", ENROLLMENT_KEY}

_FILE = schema.Struct({"path": str, "size": int, "sha256": str})
_IMAGE = schema.Struct({"name": str, "path": str})
BUNDLE_MANIFEST = wire.Kind(
    "BundleManifest",
    wire.OPERATOR,
    schema.Struct(
        {
            "format": int,
            "site": str,
            "version": str,
            "files": schema.ListOf(_FILE, MAX_FILES),
            "peers": schema.ListOf(str),
            "images": schema.ListOf(_IMAGE),
        },
    ),
)
KINDS = {BUNDLE_MANIFEST.name: BUNDLE_MANIFEST}

Progress = Callable[[str], None]


class BundleRefused(UserError):
    """The bundle does not check out; one line per problem, each naming the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


REGULAR_ONLY = ("a bundle holds regular files only; copy the bundle again from the one "
                "`beemesh bundle create` wrote")


def show(name: str) -> str:
    """A name read off the stick, safe to print on one line (escaped, at most 200 chars)."""
    text = name if name.isprintable() else repr(name)
    return text if len(text) <= 200 else text[:200] + "..."


def unsafe_path(rel: str) -> str | None:
    """Why `rel` cannot name a file inside a bundle, or None: a bundle path is relative,
    normalised ('a/b', not '/a', 'a/../b', './a', 'a//b' or 'a/'), printable, not too long."""
    if not rel or len(rel) > MAX_PATH or not rel.isprintable():
        return "empty, too long or not printable"
    if rel.startswith("/"):
        return "absolute"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or PurePosixPath(rel).as_posix() != rel:
        return "not normalised: '.', '..' or empty parts"
    return None


def stderr_progress(line: str) -> None:
    """The default progress report: one line on stderr."""
    print(line, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file in hex, read in chunks (a .pyz is tens of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_bounded(src: BinaryIO, size: int, out_fd: int | None = None) -> tuple[int, str]:
    """Read `src` (a bundle file said to hold `size` bytes), hashing it and writing it to
    `out_fd` if given, but never more than `size` bytes: one more is read only to tell that
    the file is bigger than listed. Returns (bytes read, up to size + 1; SHA-256 hex of the
    first `size` of them)."""
    h = hashlib.sha256()
    done = 0
    while done <= size:
        chunk = src.read(min(CHUNK, size + 1 - done))
        if not chunk:
            break
        keep = memoryview(chunk)[: size - done]  # all but the byte past `size`, if read
        done += len(chunk)
        h.update(keep)
        while out_fd is not None and keep:
            keep = keep[os.write(out_fd, keep):]
    return done, h.hexdigest()


def pyz_name(arch: str, version: str = __version__) -> str:
    """File name of the agent for one architecture, as `make pyz` writes it."""
    return f"beemesh-{version}-linux-{arch}.pyz"


def run_podman(socket: str | None, *args: str, what: str) -> None:
    """Run the podman CLI (against `socket` if given); a failure is one UserError line."""
    argv = ["podman", *(["--url", socket] if socket else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise UserError(f"{what} needs the podman CLI; apt-get install -y podman") from None
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise UserError(f"{what} failed: {err}")
