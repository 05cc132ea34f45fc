"""Offline install bundles: everything a site without network access needs, on one stick.

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
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beemesh import __version__, schema, wire
from beemesh.errors import UserError
from beemesh.files import atomic_file, write_atomic
from beemesh.fleet import (
    SWARM_KEY,
    TRUST_LIST,
    WORKPLANE_KEY,
    Fleet,
    parse_swarm_key,
    parse_trust_list,
)
from beemesh.identity import fingerprint
from beemesh.node.capacity import machine_arch

FORMAT = 1
MANIFEST = "MANIFEST.cbor"
ARCHES = ("x86_64", "aarch64")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 20_000
_CHUNK = 1024 * 1024

PYZ_DIR = "pyz"
FLEET_DIR = "fleet"
SITE_DIR = "site"
PEERS_FILE = f"{SITE_DIR}/peers.txt"
IMAGES_DIR = "images"
ANSIBLE_DIR = "ansible"
FLEET_FILES = (SWARM_KEY, WORKPLANE_KEY, TRUST_LIST)  # what machines get; never operator.key
PRIVATE_FILES = {f"{FLEET_DIR}/{SWARM_KEY}", f"{FLEET_DIR}/{WORKPLANE_KEY}"}
# install runs the work plane as this user when it runs as root and the user exists.
WORKPLANE_USER = "beemesh-work"

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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def pyz_name(arch: str, version: str = __version__) -> str:
    return f"beemesh-{version}-linux-{arch}.pyz"


def default_pyz_dir() -> Path:
    """dist/ of the source tree this module runs from, else ./dist."""
    repo_dist = Path(__file__).resolve().parents[2] / "dist"
    return repo_dist if repo_dist.is_dir() else Path("dist")


def default_ansible_dir() -> Path | None:
    repo = Path(__file__).resolve().parents[2] / "ansible"
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


# ---------------------------------------------------------------------------------------------
# create


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
    progress: Progress = _stderr,
) -> dict[str, Any]:
    """Write a bundle directory (and optionally a tar of it); returns the manifest body."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", site):
        raise UserError(f"site name {site!r} must be 1-63 letters, digits, '.', '_' or '-'")
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
        shutil.copyfile(fleet_dir / name, out / FLEET_DIR / name)
    for rel in PRIVATE_FILES:
        os.chmod(out / rel, 0o600)
    (out / SITE_DIR).mkdir()
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
        _podman(podman_socket, "save", "-o", str(out / rel), image,
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


def _podman(socket: str | None, *args: str, what: str) -> None:
    argv = ["podman", *(["--url", socket] if socket else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise UserError(f"{what} needs the podman CLI; apt-get install -y podman") from None
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise UserError(f"{what} failed: {err}")


# ---------------------------------------------------------------------------------------------
# verify


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
        if progress and size > 16 * _CHUNK:
            progress(f"checking {rel} ({size // 2**20} MB)")
        if sha256_file(bundle / rel) != entry["sha256"]:
            problems.append(f"altered: {rel} (SHA-256 differs from the manifest)")
    for rel in sorted(present - set(listed)):
        problems.append(f"extra: {rel} (not in the manifest; remove it or rebuild the bundle)")
    return Report(problems, body, signer)


def _walk_lenient(root: Path) -> Iterator[Path]:
    """Like _walk but lists symlinks and specials too, so they show up as extra files."""
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
                        shutil.copyfileobj(src, out, _CHUNK)
                    os.chmod(target, 0o600 if member.mode & 0o077 == 0 else 0o644)
                else:
                    raise UserError(f"bundle tar {path} holds {member.name!r}, which is not a "
                                    "regular file; bundles hold regular files only")
        return dest
    if not path.exists():
        raise UserError(f"bundle {path} not found; pass the mounted bundle directory")
    return path


# ---------------------------------------------------------------------------------------------
# install


@dataclass
class Layout:
    """Where install puts things under ROOT (the target's `/`)."""

    root: Path
    state_dir: Path

    @property
    def pyz(self) -> Path:
        return self.root / "usr/local/lib/beemesh/beemesh.pyz"

    @property
    def bin(self) -> Path:
        return self.root / "usr/local/bin/beemesh"

    @property
    def etc(self) -> Path:
        return self.root / "etc/beemesh"

    @property
    def fleet(self) -> Path:
        return self.etc / "fleet"

    @property
    def config(self) -> Path:
        return self.etc / "agent.toml"

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system/beemesh.service"


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def workplane_listen(listen: list[str]) -> list[str]:
    """Where the work plane listens: next to the agent, on the next port (4001 -> 4002, the
    Ansible role's defaults too), so --listen alone keeps every agent on a machine apart.
    Port 0 (any free port) stays 0."""
    out = []
    for addr in listen:
        parts = addr.split("/")
        if (len(parts) != 5 or parts[0] or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp"
                or not parts[4].isdigit() or int(parts[4]) >= 65535):
            raise UserError(f"--listen {addr} must look like /ip4/ADDR/tcp/PORT with PORT below "
                            "65535 (the work plane listens on PORT+1)")
        port = int(parts[4])
        out.append("/".join([*parts[:4], str(port + 1 if port else 0)]))
    return out


def workplane_owner(user: str) -> tuple[int, int] | None:
    """(uid, gid) of the work plane's own user, if install runs as root and that user exists;
    None: the work plane runs as the agent's user and the installing user owns its key."""
    if os.geteuid() != 0 or not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def agent_config(lay: Layout, site: str, peers: list[str], listen: list[str],
                 workplane_user: str) -> str:
    """agent.toml per docs/formats.md: the site's peers as the bootstrap list."""
    def arr(items: list[str]) -> str:
        return "[" + ", ".join(_toml_str(i) for i in items) + "]"

    return (
        f"# written by `beemesh bundle install` for site {site}\n"
        f"state_dir = {_toml_str(str(lay.state_dir))}\n"
        f"fleet = {_toml_str(str(lay.fleet))}\n"
        f"listen = {arr(listen)}\n"
        f"workplane_listen = {arr(workplane_listen(listen))}\n"
        f"workplane_user = {_toml_str(workplane_user)}\n"
        f"bootstrap = {arr(peers)}\n"
        f"[labels]\nsite = {_toml_str(site)}\n"
    )


def systemd_unit(lay: Layout) -> str:
    return f"""\
[Unit]
Description=Beemesh agent
After=network-online.target
Wants=network-online.target

[Service]
Environment=PEX_ROOT={lay.state_dir / "pex"}
ExecStart=/usr/bin/python3 {lay.pyz} agent --config {lay.config}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def _copy(src: Path, dst: Path, mode: int, owner: tuple[int, int] | None = None) -> None:
    with src.open("rb") as f_in, atomic_file(dst, mode, owner) as f_out:
        shutil.copyfileobj(f_in, f_out, 1 << 20)


def install(
    bundle: Path,
    *,
    trusted: dict[bytes, str],
    trust_path: Path | None,
    root: Path,
    state_dir: Path | None = None,
    arch: str | None = None,
    listen: list[str] | None = None,
    podman_socket: str | None = None,
    start: bool = False,
    start_timeout: float = 60.0,
    workplane_user: str = WORKPLANE_USER,
    progress: Progress = _stderr,
) -> dict[str, Any]:
    """Verify, then install; nothing under ROOT changes unless the whole bundle checks out.

    The work plane gets a user of its own (`workplane_user`, which then owns workplane.key and
    cannot read the machine's keys) when install runs as root and that user exists."""
    progress(f"verifying {bundle}")
    report = verify(bundle, trusted, trust_path, progress)
    if not report.ok:
        raise BundleRefused(report.problems)
    body = report.body
    assert body is not None
    arch = arch or machine_arch()
    pyz_rel = f"{PYZ_DIR}/{pyz_name(arch, body['version'])}"
    if pyz_rel not in {f["path"] for f in body["files"]}:
        raise UserError(f"this bundle has no agent for {arch} ({pyz_rel}); build one with "
                        "`make pyz` and create the bundle again")
    # Fail before writing anything if the fleet material or --listen is unusable.
    for name in (SWARM_KEY, WORKPLANE_KEY):
        parse_swarm_key((bundle / FLEET_DIR / name).read_text(), bundle / FLEET_DIR / name)
    parse_trust_list((bundle / FLEET_DIR / TRUST_LIST).read_text(),
                     bundle / FLEET_DIR / TRUST_LIST)
    root = root.resolve()
    lay = Layout(root, (state_dir or root / "var/lib/beemesh").resolve())
    owner = workplane_owner(workplane_user)
    config = agent_config(lay, body["site"], body["peers"], listen or ["/ip4/0.0.0.0/tcp/4001"],
                          workplane_user if owner else "")
    progress(f"bundle OK: site {body['site']}, beemesh {body['version']}, signed by "
             f"{report.signer}")
    if owner is None and os.geteuid() == 0:
        progress(f"note: no user {workplane_user} here, so the work plane will run as root like "
                 f"the agent; to separate them: useradd --system --no-create-home --shell "
                 f"/usr/sbin/nologin {workplane_user}, then install again")

    progress(f"installing the {arch} agent to {lay.pyz}")
    _copy(bundle / pyz_rel, lay.pyz, 0o755)
    lay.bin.parent.mkdir(parents=True, exist_ok=True)
    if lay.bin.is_symlink() or lay.bin.exists():
        lay.bin.unlink()
    lay.bin.symlink_to(os.path.relpath(lay.pyz, lay.bin.parent))

    progress(f"installing fleet material to {lay.fleet}")
    lay.fleet.mkdir(parents=True, exist_ok=True)
    # The work plane's own user must pass through (not list) to its key.
    pass_through = 0o011 if owner else 0
    os.chmod(lay.etc, os.stat(lay.etc).st_mode | pass_through)
    os.chmod(lay.fleet, 0o700 | pass_through)
    _copy(bundle / FLEET_DIR / SWARM_KEY, lay.fleet / SWARM_KEY, 0o600)
    _copy(bundle / FLEET_DIR / WORKPLANE_KEY, lay.fleet / WORKPLANE_KEY, 0o600, owner)
    _copy(bundle / FLEET_DIR / TRUST_LIST, lay.fleet / TRUST_LIST, 0o644)

    write_atomic(lay.config, config.encode(), 0o644)
    write_atomic(lay.unit, systemd_unit(lay).encode(), 0o644)
    progress(f"wrote {lay.config} ({len(body['peers'])} bootstrap peer(s)) and {lay.unit}")

    from beemesh.identity import KeyPair, load_key, save_key

    key_path = lay.state_dir / "machine.key"
    lay.state_dir.mkdir(parents=True, exist_ok=True)
    # The work plane's user passes through to its directory and PEX_ROOT, as the agent allows.
    os.chmod(lay.state_dir, 0o700 | pass_through)
    if key_path.exists():
        key = load_key(key_path, "machine key", "remove it to let install create a new one")
        progress(f"keeping existing machine key {key_path}")
    else:
        key = KeyPair.generate()
        save_key(key_path, key)
        progress(f"created machine key {key_path}")

    for i, image in enumerate(body["images"], 1):
        progress(f"loading image {i}/{len(body['images'])}: {image['name']}")
        _podman(podman_socket, "load", "-i", str(bundle / image["path"]),
                what=f"loading image {image['name']}")

    result: dict[str, Any] = {"peer_id": key.peer_id, "config": str(lay.config),
                              "pyz": str(lay.pyz), "site": body["site"], "pid": None}
    if start:
        result["pid"] = start_agent(lay, podman_socket, start_timeout, progress)
    return result


class BundleRefused(UserError):
    """Verification failed; carries one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def start_agent(lay: Layout, podman_socket: str | None, timeout: float,
                progress: Progress) -> int:
    """Start the installed agent detached (for hosts without systemd); wait for its API."""
    api = lay.state_dir / "api.sock"
    log = lay.state_dir / "agent.log"
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    argv = [python, str(lay.pyz), "agent", "--config", str(lay.config)]
    if podman_socket:
        argv += ["--podman-socket", podman_socket]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.setdefault("PEX_ROOT", str(lay.state_dir / "pex"))
    progress(f"starting the agent (first start extracts the .pyz into {env['PEX_ROOT']}); "
             f"log: {log}")
    with log.open("ab") as out:
        # umask 022 as under systemd: the work plane's user runs Python from what pex extracts.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=env, start_new_session=True, umask=0o022)
    (lay.state_dir / "agent.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while not api.exists():
        if proc.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise UserError(f"the agent exited with status {proc.returncode}: {tail}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            raise UserError(f"the agent did not open {api} within {timeout:.0f} s; see {log}")
        time.sleep(0.2)
    progress(f"agent running, pid {proc.pid}, API {api}")
    return proc.pid


def enable_hint(unit: str) -> str:
    return (f"to run it under systemd: systemctl daemon-reload && systemctl enable --now "
            f"beemesh  (unit: {unit})")


__all__ = [
    "BUNDLE_MANIFEST", "BundleRefused", "Layout", "Report", "create", "install", "load_trust",
    "open_bundle", "read_peers", "verify", "write_tar",
]
