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
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from beemesh import __version__, schema, wire
from beemesh.errors import UserError
from beemesh.fleet import SWARM_KEY, TRUST_LIST, WORKPLANE_KEY

FORMAT = 1
MANIFEST = "MANIFEST.cbor"
ARCHES = ("x86_64", "aarch64")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 20_000
CHUNK = 1024 * 1024

PYZ_DIR = "pyz"
FLEET_DIR = "fleet"
SITE_DIR = "site"
PEERS_FILE = f"{SITE_DIR}/peers.txt"
IMAGES_DIR = "images"
ANSIBLE_DIR = "ansible"
FLEET_FILES = (SWARM_KEY, WORKPLANE_KEY, TRUST_LIST)  # what machines get; never operator.key
PRIVATE_FILES = {f"{FLEET_DIR}/{SWARM_KEY}", f"{FLEET_DIR}/{WORKPLANE_KEY}"}

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
