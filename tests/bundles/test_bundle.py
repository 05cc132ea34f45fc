"""Offline bundles end to end: create -> verify -> install on a fresh root inside a network
namespace that has only loopback (the "unplugged" site), where the installed agent joins the
site's first agent. Tampered or partial bundles must be refused before anything is written.

Real processes throughout (the CLI, agents, Podman); needs root for the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from beemesh import wire
from beemesh.fleet import Fleet, format_swarm_key
from beemesh.membership.certs import check_cert
from beemesh.rollout.bundle_format import MANIFEST, pyz_name
from beemesh.rollout.create import write_tar
from beemesh.rollout.install import WORKPLANE_USER, install
from beemesh.rollout.verify import load_trust

pytestmark = [pytest.mark.slow, pytest.mark.mesh]

REPO = Path(__file__).resolve().parents[2]
BEEMESH = [sys.executable, "-m", "beemesh"]
PORT = 4001  # a fresh namespace has every port free


def cli(*args: str | Path, prefix: list[str] | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*(prefix or []), *BEEMESH, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"beemesh {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (AssertionError, ValueError, subprocess.SubprocessError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "zombie"


def stop_group(pid: int) -> None:
    """SIGTERM the process group (clean shutdown), SIGKILL after 8 s; also non-children."""
    for sig, grace in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not alive(pid):
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def pyz_dir() -> Path:
    dist = REPO / "dist"
    if not all((dist / pyz_name(a)).is_file() for a in ("x86_64", "aarch64")):
        subprocess.run(["make", "--no-print-directory", "pyz"], cwd=REPO, check=True,
                       capture_output=True, timeout=1800)
    return dist


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fleets")
    cli("fleet", "init", "--out", base / "fleet")
    cli("fleet", "init", "--out", base / "other", "--operator-name", "mallory")
    return {"fleet": base / "fleet", "other": base / "other"}


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory, fleets: dict[str, Path],
                pyz_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    cli("bundle", "create", "--fleet", fleets["fleet"], "--site", "plant-a", "--out", out,
        "--pyz-dir", pyz_dir, "--peer", "/ip4/127.0.0.1/tcp/4001/p2p/"
        "12D3KooWGzBqSaFjEGxsw3cEPbTaNXMKM8uQWZkv2cJ29JxABzK9")
    return out


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A scratch dir others may pass through (pytest's tmp has 0700 parents): a work plane that
    runs as its own user must reach its key and the agent's PEX_ROOT below the site root."""
    path = Path(tempfile.mkdtemp(prefix="beemesh-bundle-"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def work_user_ids(name: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def netns() -> Iterator[list[str]]:
    """A namespace with only loopback: the site with its uplink unplugged."""
    assert os.geteuid() == 0 and shutil.which("ip") and shutil.which("nsenter"), (
        "these tests need root, iproute2 and nsenter for a network namespace "
        "(apt-get install iproute2 util-linux; run as root)")
    name = f"bmbundle{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["nsenter", f"--net=/run/netns/{name}"]
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_round_trip_offline(tmp_path: Path, fleets: dict[str, Path], pyz_dir: Path,
                            netns: list[str], open_tmp: Path) -> None:
    t0 = time.monotonic()
    links = subprocess.run([*netns, "ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"], links
    fleet = fleets["fleet"]

    # The site's first agent, already running inside the unplugged namespace. Its work plane
    # takes any free port: the installed agent below listens on PORT+1 (its work plane on +2).
    first_state = tmp_path / "first"
    first_peer = cli("init", "--state-dir", first_state).stdout.strip()
    cli("fleet", "admit", "--fleet", fleet, first_peer, "--labels", "site=plant-a", "--out",
        first_state / "machine.cert")
    first_api = tmp_path / "first.sock"
    pids: list[int] = []
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [*netns, *BEEMESH, "agent", "--state-dir", str(first_state), "--fleet", str(fleet),
         "--listen", f"/ip4/127.0.0.1/tcp/{PORT}", "--api", str(first_api),
         "--workplane-listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    pids.append(first.pid)
    root = open_tmp / "site-root"
    try:
        wait_for(lambda: first_api.exists(), 60, "the first agent's API socket")

        # Operator side: create (with a tar), verify the directory and the tar.
        peers = tmp_path / "peers.txt"
        peers.write_text(f"# plant-a\n/ip4/127.0.0.1/tcp/{PORT}/p2p/{first_peer}\n")
        bundle = tmp_path / "stick" / "bundle"
        tar = tmp_path / "stick" / "bundle.tar"
        cli("bundle", "create", "--fleet", fleet, "--site", "plant-a", "--out", bundle,
            "--tar", tar, "--peers", peers, "--pyz-dir", pyz_dir)
        assert not (bundle / "fleet" / "operator.key").exists()
        assert not list(bundle.rglob("operator.key"))
        for key in ("swarm.key", "workplane.key"):
            assert (bundle / "fleet" / key).stat().st_mode & 0o777 == 0o600
        ansible = REPO / "ansible"
        if ansible.is_dir() and any(ansible.iterdir()):  # being written in parallel
            assert (bundle / "ansible").is_dir(), "the repository's playbook was not bundled"
        ok = cli("bundle", "verify", bundle, "--fleet", fleet).stdout
        assert "bundle OK: site plant-a" in ok
        assert "bundle OK" in cli("bundle", "verify", tar, "--trust",
                                  fleet / "operators.trust").stdout
        tar2 = tmp_path / "again.tar"
        write_tar(bundle, tar2)
        assert tar2.read_bytes() == tar.read_bytes(), "tar output is not deterministic"

        # Site side: install + start, with no network but loopback.
        done = cli("bundle", "install", bundle, "--root", root, "--trust",
                   fleet / "operators.trust", "--listen", f"/ip4/127.0.0.1/tcp/{PORT + 1}",
                   "--start", prefix=netns, timeout=90)
        new_peer = done.stdout.strip().splitlines()[-1]
        state = root / "var/lib/beemesh"
        pid = int((state / "agent.pid").read_text())
        pids.append(pid)
        assert "verifying" in done.stderr and "agent running" in done.stderr
        assert (root / "usr/local/lib/beemesh/beemesh.pyz").read_bytes() == \
            (pyz_dir / pyz_name(os.uname().machine)).read_bytes()
        assert (root / "etc/beemesh/fleet/swarm.key").stat().st_mode & 0o777 == 0o600
        assert (state / "machine.key").stat().st_mode & 0o777 == 0o600
        # The work plane's key: 0600, its own user's if this machine has one, else root's.
        work = work_user_ids(WORKPLANE_USER)
        wp_key = (root / "etc/beemesh/fleet/workplane.key").stat()
        assert (wp_key.st_mode & 0o777, wp_key.st_uid) == (0o600, work[0] if work else 0)
        assert (root / "etc/beemesh/fleet/workplane.key").read_bytes() == \
            (fleet / "workplane.key").read_bytes()
        assert not (root / "etc/beemesh/fleet/operator.key").exists()
        # Admitted by the bundle's enrollment key, which stayed on the stick.
        assert "admitted this machine" in done.stderr
        assert (bundle / "site" / "enrollment.key").stat().st_mode & 0o777 == 0o600
        assert not list(root.rglob("enrollment.key"))
        cert = check_cert((state / "machine.cert").read_bytes(),
                          load_trust(None, fleet / "operators.trust")[0], time.time())
        assert (cert.peer_id, dict(cert.labels)) == (new_peer, {"site": "plant-a"})
        config = tomllib.loads((root / "etc/beemesh/agent.toml").read_text())
        assert config["bootstrap"] == [f"/ip4/127.0.0.1/tcp/{PORT}/p2p/{first_peer}"]
        assert config["workplane_listen"] == [f"/ip4/127.0.0.1/tcp/{PORT + 2}"]
        assert config["workplane_user"] == (WORKPLANE_USER if work else "")
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/proc/{first.pid}/ns/net")

        def both() -> bool:
            for api in (first_api, state / "api.sock"):
                nodes = json.loads(cli("nodes", "-o", "json", "--api", api).stdout)
                if {n["peer_id"] for n in nodes} != {first_peer, new_peer}:
                    return False
            return True

        wait_for(both, 45, "both agents to list each other")
        # The installed agent started its work plane, which read its key and made its own.
        wait_for(lambda: (state / "workplane/host.key").exists(), 30,
                 "the installed agent's work plane")
    finally:
        for pid in reversed(pids):
            stop_group(pid)
        log.close()
    assert not any(alive(p) for p in pids)
    print(f"round trip took {time.monotonic() - t0:.1f} s")


def _tamper_altered(b: Path, fleets: dict[str, Path]) -> str:
    target = b / "pyz" / pyz_name("x86_64")
    with target.open("r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    return f"altered: pyz/{pyz_name('x86_64')} (SHA-256 differs from the manifest)"


def _tamper_truncated(b: Path, fleets: dict[str, Path]) -> str:
    target = b / "pyz" / pyz_name("aarch64")
    size = target.stat().st_size
    os.truncate(target, size // 2)
    return f"altered: pyz/{pyz_name('aarch64')} is {size // 2} bytes, the manifest says {size}"


def _tamper_missing(b: Path, fleets: dict[str, Path]) -> str:
    (b / "site" / "peers.txt").unlink()
    return "missing: site/peers.txt (listed in the manifest, not in the bundle)"


def _tamper_extra(b: Path, fleets: dict[str, Path]) -> str:
    (b / "fleet" / "operators.trust.bak").write_text("ed25519:00 evil\n")
    return "extra: fleet/operators.trust.bak (not in the manifest"


def _tamper_signer(b: Path, fleets: dict[str, Path]) -> str:
    env = wire.decode((b / MANIFEST).read_bytes(), 4 << 20)
    mallory = Fleet.load(fleets["other"]).operator_key()
    (b / MANIFEST).write_bytes(wire.seal(mallory, env.kind, env.body, time.time()))
    return "wrong signer: MANIFEST.cbor is signed by operator key"


def _tamper_badsig(b: Path, fleets: dict[str, Path]) -> str:
    import cbor2

    raw = cbor2.loads((b / MANIFEST).read_bytes())
    raw["body"]["peers"] = ["/ip4/203.0.113.9/tcp/4001/p2p/"
                            "12D3KooWGzBqSaFjEGxsw3cEPbTaNXMKM8uQWZkv2cJ29JxABzK9"]
    (b / MANIFEST).write_bytes(cbor2.dumps(raw, canonical=True))
    return "bad signature: MANIFEST.cbor was altered after signing"


def _tamper_manifest(b: Path, fleets: dict[str, Path]) -> str:
    (b / MANIFEST).unlink()
    return "missing: MANIFEST.cbor"


def _tamper_wpkey_missing(b: Path, fleets: dict[str, Path]) -> str:
    (b / "fleet" / "workplane.key").unlink()
    return "missing: fleet/workplane.key (listed in the manifest, not in the bundle)"


def _tamper_wpkey_altered(b: Path, fleets: dict[str, Path]) -> str:
    # A well-formed key of the same size, but not the fleet's.
    (b / "fleet" / "workplane.key").write_text(format_swarm_key(os.urandom(32)))
    return "altered: fleet/workplane.key (SHA-256 differs from the manifest)"


def _tamper_wpkey_unlisted(b: Path, fleets: dict[str, Path]) -> str:
    """A correctly signed bundle without the work-plane key, as an older beemesh made them."""
    env = wire.decode((b / MANIFEST).read_bytes(), 4 << 20)
    body = {**env.body,
            "files": [f for f in env.body["files"] if f["path"] != "fleet/workplane.key"]}
    (b / "fleet" / "workplane.key").unlink()
    operator = Fleet.load(fleets["fleet"]).operator_key()
    (b / MANIFEST).write_bytes(wire.seal(operator, env.kind, body, time.time()))
    return "missing: fleet/workplane.key (not in the manifest"


@pytest.mark.parametrize("tamper", [_tamper_altered, _tamper_truncated, _tamper_missing,
                                    _tamper_extra, _tamper_signer, _tamper_badsig,
                                    _tamper_manifest, _tamper_wpkey_missing,
                                    _tamper_wpkey_altered, _tamper_wpkey_unlisted],
                         ids=lambda f: f.__name__.removeprefix("_tamper_"))
def test_tampered_bundle_refused(tmp_path: Path, good_bundle: Path, fleets: dict[str, Path],
                                 tamper) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    shutil.copytree(good_bundle, bundle)
    expected = tamper(bundle, fleets)
    verify = cli("bundle", "verify", bundle, "--fleet", fleets["fleet"], check=False)
    assert verify.returncode == 1, verify.stderr
    assert "Traceback" not in verify.stderr
    lines = verify.stderr.strip().splitlines()
    assert len(lines) == 2, lines  # the one problem, then the summary
    assert expected in lines[0], lines
    root = tmp_path / "root"
    install = cli("bundle", "install", bundle, "--root", root, "--fleet", fleets["fleet"],
                  check=False)
    assert install.returncode == 1, install.stderr
    assert "Traceback" not in install.stderr
    assert any(expected in ln for ln in install.stderr.splitlines()), install.stderr
    assert "nothing was installed" in install.stderr
    assert not root.exists(), list(root.rglob("*"))


def test_several_problems_each_named(tmp_path: Path, good_bundle: Path,
                                     fleets: dict[str, Path]) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(good_bundle, bundle)
    expected = [f(bundle, fleets) for f in (_tamper_missing, _tamper_extra, _tamper_signer)]
    verify = cli("bundle", "verify", bundle, "--fleet", fleets["fleet"], check=False)
    assert verify.returncode == 1
    for text in expected:
        assert sum(text in ln for ln in verify.stderr.splitlines()) == 1, verify.stderr


def can_read_as(ids: tuple[int, int], path: Path) -> bool:
    proc = subprocess.run(["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                           "test", "-r", str(path)], timeout=30)
    return proc.returncode == 0


@pytest.mark.parametrize("user", ["nobody", "beemesh-no-such-user"])
def test_install_gives_the_work_plane_its_key(good_bundle: Path, fleets: dict[str, Path],
                                              open_tmp: Path, user: str) -> None:
    """As root: an existing work-plane user owns workplane.key and may pass through to it, but
    cannot read the machine's keys; without that user, root keeps the key and the work plane
    runs as the agent's user."""
    assert os.geteuid() == 0, "this test installs as root (file owners); run it as root"
    ids = work_user_ids(user)
    root = open_tmp / "root"
    trusted, trust_path = load_trust(fleets["fleet"], None)
    lines: list[str] = []
    install(good_bundle, trusted=trusted, trust_path=trust_path, root=root,
            workplane_user=user, progress=lines.append)
    fleet, state = root / "etc/beemesh/fleet", root / "var/lib/beemesh"
    key = (fleet / "workplane.key").stat()
    config = tomllib.loads((root / "etc/beemesh/agent.toml").read_text())
    assert config["workplane_listen"] == ["/ip4/0.0.0.0/tcp/4002"]  # next to listen's 4001
    # The hardened unit (the Ansible role's): root agent, the work plane's capabilities only
    # with a user of its own.
    unit = (root / "etc/systemd/system/beemesh.service").read_text().splitlines()
    for line in ("User=root", "NoNewPrivileges=yes", "ProtectSystem=strict", "UMask=0077",
                 f"ReadWritePaths={state.resolve()}", "ReadWritePaths=-/run/podman",
                 f"Environment=PEX_ROOT={state.resolve()}/pex", "AmbientCapabilities="):
        assert line in unit, line
    caps = ("CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_KILL "
            if ids else "") + "CAP_SYS_ADMIN CAP_NET_ADMIN"
    assert f"CapabilityBoundingSet={caps}" in unit
    assert any(ln.startswith("ExecStartPre=") for ln in unit) == (ids is not None)
    if ids is None:
        assert (key.st_mode & 0o777, key.st_uid) == (0o600, 0)
        assert config["workplane_user"] == ""
        assert fleet.stat().st_mode & 0o777 == 0o700 and state.stat().st_mode & 0o777 == 0o700
        assert any(f"no user {user}" in ln and "useradd" in ln for ln in lines), lines
        return
    assert (key.st_mode & 0o777, key.st_uid) == (0o600, ids[0])
    assert config["workplane_user"] == user
    assert fleet.stat().st_mode & 0o777 == 0o711 and state.stat().st_mode & 0o777 == 0o711
    assert can_read_as(ids, fleet / "workplane.key")
    for secret in (fleet / "swarm.key", state / "machine.key"):
        assert not can_read_as(ids, secret), f"{user} can read {secret}"


def test_install_refuses_a_listen_address_without_a_next_port(
        good_bundle: Path, fleets: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = cli("bundle", "install", good_bundle, "--root", root, "--fleet", fleets["fleet"],
               "--listen", "/ip4/127.0.0.1/tcp/65535", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "the work plane listens on PORT+1" in proc.stderr
    assert not root.exists()


def test_create_needs_the_work_plane_key(tmp_path: Path, fleets: dict[str, Path],
                                         pyz_dir: Path) -> None:
    old_fleet = tmp_path / "old-fleet"
    shutil.copytree(fleets["fleet"], old_fleet)
    (old_fleet / "workplane.key").unlink()
    proc = cli("bundle", "create", "--fleet", old_fleet, "--site", "s", "--out",
               tmp_path / "b", "--pyz-dir", pyz_dir, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"beemesh fleet workplane-key --out {old_fleet}" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_verify_needs_a_trust_source(good_bundle: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BEEMESH_FLEET"}
    proc = subprocess.run([*BEEMESH, "bundle", "verify", str(good_bundle)], capture_output=True,
                          text=True, env=env, cwd=REPO)
    assert proc.returncode == 1
    assert "needs a trust source" in proc.stderr and "Traceback" not in proc.stderr


def test_images_travel_in_the_bundle(tmp_path: Path, fleets: dict[str, Path], pyz_dir: Path,
                                     netns: list[str]) -> None:
    """An image saved from the operator's Podman is loaded into the site's, with no network."""
    from beemesh.lab.busybox import BUSYBOX_IMAGE, ensure_busybox_image
    from beemesh.lab.podman_service import PodmanService

    with PodmanService(tmp_path / "src") as src, PodmanService(tmp_path / "dst") as dst:
        ensure_busybox_image(src)
        bundle = tmp_path / "bundle"
        cli("bundle", "create", "--fleet", fleets["fleet"], "--site", "plant-b", "--out", bundle,
            "--pyz-dir", pyz_dir, "--image", BUSYBOX_IMAGE, "--podman-socket", src.url,
            "--peer", "/ip4/127.0.0.1/tcp/4001/p2p/"
            "12D3KooWGzBqSaFjEGxsw3cEPbTaNXMKM8uQWZkv2cJ29JxABzK9")
        assert list((bundle / "images").glob("*.tar"))
        assert dst.run("image", "exists", BUSYBOX_IMAGE).returncode != 0
        done = cli("bundle", "install", bundle, "--root", tmp_path / "root", "--fleet",
                   fleets["fleet"], "--podman-socket", dst.url, prefix=netns)
        assert f"loading image 1/1: {BUSYBOX_IMAGE}" in done.stderr
        assert dst.run("image", "exists", BUSYBOX_IMAGE).returncode == 0
