"""`beemesh bundle install`: verify a bundle, then install the agent on this machine.

Nothing under ROOT changes unless the whole bundle checks out and is not older than the one
installed before (`--allow-downgrade` to go back on purpose); a failure partway puts back
every file it had changed (`changes`). Installs the .pyz, the fleet
material, agent.toml and the hardened systemd unit (rendered by `units`, as the Ansible role's),
the machine key (kept if present) and the bundled images; `--start` starts the agent detached,
for hosts without systemd.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beemesh.config import DEFAULT_LISTEN
from beemesh.errors import UserError
from beemesh.fleet import (
    POLICY,
    SWARM_KEY,
    TRUST_LIST,
    WORKPLANE_KEY,
    load_policy,
    parse_swarm_key,
    parse_trust_list,
)
from beemesh.identity import KeyPair, load_key, save_key
from beemesh.node.capacity import machine_arch
from beemesh.rollout.admit import admit_installed, keep_revocations
from beemesh.rollout.bundle_format import (
    ENROLLMENT_CERT,
    ENROLLMENT_KEY,
    FLEET_DIR,
    FLEET_FILES,
    PYZ_DIR,
    REVOCATIONS,
    BundleRefused,
    Progress,
    pyz_name,
    run_podman,
    stderr_progress,
)
from beemesh.rollout.changes import INSTALLED, Changes, Installed, check_not_older
from beemesh.rollout.units import (
    ConfigParams,
    UnitParams,
    render_config,
    render_unit,
)
from beemesh.rollout.verify import Report, verify
from beemesh.runtime import ROOT_PODMAN_SOCKET

# install runs the work plane as this user when it runs as root and the user exists.
WORKPLANE_USER = "beemesh-work"


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


def unit_params(lay: Layout, workplane_user: str, podman_socket: str | None) -> UnitParams:
    """The unit install writes: the agent as root, its work plane as `workplane_user` ("" for
    none); the Podman socket's directory writable (a root agent's default one if not given)."""
    return UnitParams(pyz=lay.pyz, config=lay.config, state_dir=lay.state_dir,
                      workplane_user=workplane_user,
                      podman_socket=podman_socket or ROOT_PODMAN_SOCKET)


def config_params(lay: Layout, site: str, peers: list[str], listen: list[str],
                  workplane_user: str, podman_socket: str | None) -> ConfigParams:
    """agent.toml install writes: the site's peers as the bootstrap list, `site` as label."""
    return ConfigParams(state_dir=lay.state_dir, fleet=lay.fleet, listen=tuple(listen),
                        workplane_listen=tuple(workplane_listen(listen)),
                        workplane_user=workplane_user, bootstrap=tuple(peers),
                        podman_socket=podman_socket or "", labels={"site": site})


def needed_files(body: dict[str, Any], arch: str) -> set[str]:
    """The listed files install reads (staged while verified): this machine's agent, the
    fleet material and the images."""
    listed = {f["path"] for f in body["files"]}
    return {f"{PYZ_DIR}/{pyz_name(arch, body['version'])}",
            *(f"{FLEET_DIR}/{name}" for name in FLEET_FILES),
            *(image["path"] for image in body["images"]),
            *(listed & {ENROLLMENT_KEY, ENROLLMENT_CERT, REVOCATIONS})}


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
    allow_downgrade: bool = False,
    progress: Progress = stderr_progress,
) -> dict[str, Any]:
    """Verify, then install; nothing under ROOT changes unless the whole bundle checks out,
    and an install that fails partway puts back what it changed.

    The bundle is read once: verify copies what install needs into a private directory while
    checking it, and install reads only those copies. Images are loaded before any file under
    ROOT changes. The work plane gets a user of its own (`workplane_user`, which then owns
    workplane.key and cannot read the machine's keys) when install runs as root and that user
    exists."""
    arch = arch or machine_arch()
    progress(f"verifying {bundle}")
    with tempfile.TemporaryDirectory(prefix="beemesh-bundle-") as tmp:
        report = verify(bundle, trusted, trust_path, progress, stage=Path(tmp),
                        wanted=lambda body: needed_files(body, arch))
        if not report.ok:
            raise BundleRefused(report.problems)
        return _install_staged(report, arch, trusted=trusted, root=root, state_dir=state_dir,
                               listen=listen,
                               podman_socket=podman_socket, start=start,
                               start_timeout=start_timeout, workplane_user=workplane_user,
                               allow_downgrade=allow_downgrade, progress=progress)


def _install_staged(report: Report, arch: str, *, trusted: dict[bytes, str], root: Path,
                    state_dir: Path | None,
                    listen: list[str] | None, podman_socket: str | None, start: bool,
                    start_timeout: float, workplane_user: str, allow_downgrade: bool,
                    progress: Progress) -> dict[str, Any]:
    body = report.body
    assert body is not None
    staged = report.staged
    pyz_rel = f"{PYZ_DIR}/{pyz_name(arch, body['version'])}"
    if pyz_rel not in staged:
        raise UserError(f"this bundle has no agent for {arch} ({pyz_rel}); build one with "
                        "`make pyz` and create the bundle again")
    # Fail before writing anything if the fleet material or --listen is unusable.
    fleet_files = {name: staged[f"{FLEET_DIR}/{name}"].read_bytes() for name in FLEET_FILES}
    for name in (SWARM_KEY, WORKPLANE_KEY):
        parse_swarm_key(fleet_files[name].decode(errors="replace"), Path(FLEET_DIR) / name)
    parse_trust_list(fleet_files[TRUST_LIST].decode(errors="replace"),
                     Path(FLEET_DIR) / TRUST_LIST)
    load_policy(staged[f"{FLEET_DIR}/{POLICY}"].parent)
    root = root.resolve()
    lay = Layout(root, (state_dir or root / "var/lib/beemesh").resolve())
    this = Installed(body["site"], body["version"], report.created_ms)
    check_not_older(this, lay.etc / INSTALLED, allow_downgrade)
    owner = workplane_owner(workplane_user)
    wp_user = workplane_user if owner else ""
    config = render_config(config_params(lay, body["site"], body["peers"],
                                         listen or [DEFAULT_LISTEN], wp_user, podman_socket))
    unit = render_unit(unit_params(lay, wp_user, podman_socket))
    progress(f"bundle OK: site {body['site']}, beemesh {body['version']}, signed by "
             f"{report.signer}")
    if owner is None and os.geteuid() == 0:
        progress(f"note: no user {workplane_user} here, so the work plane will run as root like "
                 f"the agent; to separate them: useradd --system --no-create-home --shell "
                 f"/usr/sbin/nologin {workplane_user}, then install again")
    # Images first: a failing `podman load` leaves every file under ROOT as it was.
    for i, image in enumerate(body["images"], 1):
        progress(f"loading image {i}/{len(body['images'])}: {image['name']}")
        run_podman(podman_socket, "load", "-i", str(staged[image["path"]]),
                   what=f"loading image {image['name']}")
    changes = Changes()
    try:
        key = _write_files(lay, changes, staged[pyz_rel], fleet_files, owner, config, unit,
                           arch, progress)
        if ENROLLMENT_KEY in staged:
            admit_installed(lay.state_dir / "machine.cert", key, staged[ENROLLMENT_KEY],
                            staged[ENROLLMENT_CERT], trusted, changes, progress)
        if REVOCATIONS in staged:
            keep_revocations(lay.state_dir, staged[REVOCATIONS], changes, progress)
        changes.write(lay.etc / INSTALLED, this.encode(), 0o644)
    except BaseException:
        changes.rollback()
        progress("install failed; the files it had changed are back as they were")
        raise
    changes.commit()
    result: dict[str, Any] = {"peer_id": key.peer_id, "config": str(lay.config),
                              "pyz": str(lay.pyz), "site": body["site"], "pid": None}
    if start:
        result["pid"] = start_agent(lay, start_timeout, progress)
    return result


def _write_files(lay: Layout, changes: Changes, pyz: Path, fleet_files: dict[str, bytes],
                 owner: tuple[int, int] | None, config: str, unit: str, arch: str,
                 progress: Progress) -> KeyPair:
    """Every file install writes, each through `changes` (undone if a later one fails)."""
    progress(f"installing the {arch} agent to {lay.pyz}")
    changes.mkdir(lay.pyz.parent)
    changes.copy(lay.pyz, pyz, 0o755)
    changes.mkdir(lay.bin.parent)
    changes.symlink(lay.bin, os.path.relpath(lay.pyz, lay.bin.parent))

    progress(f"installing fleet material to {lay.fleet}")
    changes.mkdir(lay.etc)
    changes.mkdir(lay.fleet, 0o700)
    # The work plane's own user must pass through (not list) to its key.
    pass_through = 0o011 if owner else 0
    changes.chmod(lay.etc, 0o755 | pass_through)
    changes.chmod(lay.fleet, 0o700 | pass_through)
    changes.write(lay.fleet / SWARM_KEY, fleet_files[SWARM_KEY], 0o600)
    changes.write(lay.fleet / WORKPLANE_KEY, fleet_files[WORKPLANE_KEY], 0o600, owner)
    changes.write(lay.fleet / TRUST_LIST, fleet_files[TRUST_LIST], 0o644)
    changes.write(lay.fleet / POLICY, fleet_files[POLICY], 0o644)

    changes.write(lay.config, config.encode(), 0o644)
    changes.mkdir(lay.unit.parent)
    changes.write(lay.unit, unit.encode(), 0o644)
    progress(f"wrote {lay.config} and {lay.unit}")

    key_path = lay.state_dir / "machine.key"
    changes.mkdir(lay.state_dir, 0o700)
    # The work plane's user passes through to its directory and PEX_ROOT, as the agent allows.
    changes.chmod(lay.state_dir, 0o700 | pass_through)
    if key_path.exists():
        key = load_key(key_path, "machine key", "remove it to let install create a new one")
        progress(f"keeping existing machine key {key_path}")
    else:
        key = KeyPair.generate()
        save_key(key_path, key)
        changes.created(key_path)
        progress(f"created machine key {key_path}")
    return key


def start_agent(lay: Layout, timeout: float, progress: Progress) -> int:
    """Start the installed agent detached (for hosts without systemd); wait for its API.
    agent.toml carries everything, --podman-socket included."""
    api = lay.state_dir / "api.sock"
    log = lay.state_dir / "agent.log"
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    argv = [python, str(lay.pyz), "agent", "--config", str(lay.config)]
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
    """What to run to start the installed unit under systemd."""
    return (f"to run it under systemd: systemctl daemon-reload && systemctl enable --now "
            f"beemesh  (unit: {unit})")
