"""The Ansible role `ansible/roles/beemesh_agent` through real `ansible-playbook` runs.

Three "hosts" on this machine (ansible_connection=local), each installed below its own
`beemesh_agent_root` in tmp, without systemd (not PID 1 here): the test starts each agent as
its rendered unit would (UMask, ExecStartPre, ExecStart, NoNewPrivileges and the capability
bounding set) and checks the three form one mesh, each with its work plane running as the
work-plane user (`nobody` here: the test creates no accounts), which cannot read the agent's
keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from beemesh.fleet import Fleet
from beemesh.lab.localmesh import beemesh, free_port, wait_for
from beemesh.membership.certs import check_cert

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
SITE = ANSIBLE_DIR / "site.yml"
DIST = REPO / "dist"
BIN = Path(sys.executable).parent
HOSTS = ["node1", "node2", "node3"]
WORK_USER = "nobody"  # an account every Debian has; the role would create beemesh-work
# A label TOML must escape (quotes, backslash, tab) and one it need not (non-ASCII).
AWKWARD = 'say "hi" \\ to\tC:\\temp ✓ 🐝'
EXTRA_CONFIG = {"dead_after_s": 10, "heal_settle_s": 20.0, "bid_suppression": True}
INSTALL_HINT = "install it with: .venv/bin/pip install -e '.[dev]' (ansible-core, ansible-lint)"
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH; {INSTALL_HINT}")
    return found


def ansible_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LC_ALL="C.UTF-8",
        LANG="C.UTF-8",
        ANSIBLE_HOME=str(home),  # keeps ~/.ansible (tmp files, caches) inside tmp
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def playbook(inv: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [tool("ansible-playbook"), "-i", str(inv), str(SITE), *args]
    return subprocess.run(cmd, cwd=REPO, env=ansible_env(home), capture_output=True, text=True,
                          timeout=120)


def recap(proc: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    rows = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]),
                   "failed": int(m[4])} for m in RECAP.findall(proc.stdout)}
    assert rows, f"no PLAY RECAP in output:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return rows


def show(proc: subprocess.CompletedProcess) -> str:
    return (f"rc={proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
            f"--- stderr ---\n{proc.stderr[-3000:]}")


def write_inventory(path: Path, tmp: Path, fleet: Path, hosts: list[str], **extra) -> dict:
    """Writes the inventory; returns its host variables. Several agents share this machine, so
    each gets its own agent and work-plane port."""
    host_vars = {}
    for name in hosts:
        host_vars[name] = {
            "beemesh_agent_root": str(tmp / "roots" / name),
            "beemesh_agent_listen_port": free_port(),
            "beemesh_agent_workplane_port": free_port(),
            "beemesh_agent_labels": {"host": name, "zone": "test", "note": AWKWARD},
        }
    inventory = {
        "beemesh": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "beemesh_agent_manage_service": False,
                "beemesh_agent_create_user": False,  # no system user on the test machine
                "beemesh_agent_user": "root",
                "beemesh_agent_group": "root",
                "beemesh_agent_workplane_user": WORK_USER,
                "beemesh_agent_listen_address": "127.0.0.1",
                "beemesh_agent_advertise_address": "127.0.0.1",
                "beemesh_agent_bootstrap_hosts": [hosts[0]],
                "beemesh_agent_pyz_src_dir": str(DIST),
                "beemesh_agent_fleet_src_dir": str(fleet),
                "beemesh_agent_podman_socket": f"unix://{tmp}/podman/podman.sock",
                "beemesh_agent_extra_config": EXTRA_CONFIG,
                **extra,
            },
            "hosts": host_vars,
        }
    }
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return host_vars


def unit_path(tmp: Path, name: str) -> Path:
    return tmp / "roots" / name / "etc/systemd/system/beemesh.service"


def unit_directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def work_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(WORK_USER)
    except KeyError:
        pytest.fail(f"user {WORK_USER} not found; these tests run the work plane as that user")


def work_user_can_read(path: Path) -> bool:
    user = work_user()
    proc = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                           "--clear-groups", "test", "-r", str(path)], timeout=30)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def site() -> Iterator[dict]:
    """Fleet material + inventory + the first run of site.yml (installs 3 hosts).

    Not in pytest's tmp, whose parents are 0700: the work plane's user must pass through to its
    key and to the agent's PEX_ROOT, as it passes through / on a real host.
    """
    tool("ansible-playbook")
    arch = os.uname().machine
    pyz = DIST / f"beemesh-0.1.0-linux-{arch}.pyz"
    if not pyz.exists():
        pytest.fail(f"{pyz} missing: build it with `make pyz`")
    tmp = Path(tempfile.mkdtemp(prefix="beemesh-ansible-"))
    os.chmod(tmp, 0o711)
    try:
        fleet = tmp / "fleet"
        beemesh("fleet", "init", "--out", str(fleet))
        inv = tmp / "inventory.yml"
        host_vars = write_inventory(inv, tmp, fleet, HOSTS)
        home = tmp / "ansible-home"
        t0 = time.monotonic()
        first = playbook(inv, home)
        elapsed = time.monotonic() - t0
        assert first.returncode == 0, show(first)
        rows = recap(first)
        assert sorted(rows) == HOSTS, show(first)
        assert all(r["changed"] > 0 and r["failed"] == 0 for r in rows.values()), show(first)
        print(f"first run: {elapsed:.1f} s")
        yield {"tmp": tmp, "inv": inv, "home": home, "fleet": fleet, "hosts": host_vars}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_installed_files_and_modes(site: dict) -> None:
    tmp = site["tmp"]
    work_uid = work_user().pw_uid
    for name in HOSTS:
        root = tmp / "roots" / name
        state = root / "var/lib/beemesh"
        fleet = root / "etc/beemesh/fleet"
        # path: (mode, owner). With a work-plane user, the directories on its way are o+x.
        modes = {
            state: (0o711, 0),
            state / "machine.key": (0o600, 0),
            root / "etc/beemesh": (0o751, 0),
            fleet: (0o751, 0),
            fleet / "swarm.key": (0o600, 0),
            fleet / "workplane.key": (0o600, work_uid),
            fleet / "operators.trust": (0o640, 0),
            fleet / "fleet.toml": (0o644, 0),
            state / "machine.cert": (0o644, 0),
            root / "etc/beemesh/agent.toml": (0o640, 0),
            root / "usr/local/lib/beemesh/beemesh.pyz": (0o755, 0),
        }
        for path, (mode, owner) in modes.items():
            assert path.exists(), f"{path} not installed"
            st = path.stat()
            assert (st.st_mode & 0o777, st.st_uid) == (mode, owner), \
                f"{path}: mode {oct(st.st_mode)}, owner {st.st_uid}"
        assert (fleet / "workplane.key").read_bytes() == \
            (site["fleet"] / "workplane.key").read_bytes()
        # Neither side reads the other's keys: the work plane gets only its own.
        assert work_user_can_read(fleet / "workplane.key")
        for secret in (state / "machine.key", fleet / "swarm.key"):
            assert not work_user_can_read(secret), f"{WORK_USER} can read {secret}"
        assert not list(root.rglob("operator.key")), "operator key leaked"
        # Admitted by the controller, with exactly the host's labels.
        cert = check_cert((state / "machine.cert").read_bytes(),
                          Fleet.load(site["fleet"]).trusted_operators(), time.time())
        assert dict(cert.labels) == site["hosts"][name]["beemesh_agent_labels"]
        assert cert.peer_id == beemesh("id", "--state-dir", str(state)).stdout.strip()
        for parent in ("etc", "etc/systemd", "var/lib", "usr/local/lib"):
            assert (root / parent).stat().st_mode & 0o777 == 0o755, f"{root / parent}"
        link = root / "usr/local/bin/beemesh"
        assert link.resolve() == root / "usr/local/lib/beemesh/beemesh.pyz"
    # Each host got its own key; hosts 2 and 3 bootstrap from host 1 (and host 1 from nobody).
    ids = {n: beemesh("id", "--state-dir", str(tmp / "roots" / n / "var/lib/beemesh"))
           .stdout.strip() for n in HOSTS}
    assert len(set(ids.values())) == 3
    configs = {n: tomllib.loads((tmp / "roots" / n / "etc/beemesh/agent.toml").read_text())
               for n in HOSTS}
    assert configs["node1"]["bootstrap"] == []
    for n in HOSTS[1:]:
        (addr,) = configs[n]["bootstrap"]
        assert addr.startswith("/ip4/127.0.0.1/tcp/") and addr.endswith(f"/p2p/{ids['node1']}")
    for n in HOSTS:
        assert configs[n]["labels"] == {"host": n, "zone": "test", "note": AWKWARD}
        assert {k: configs[n][k] for k in EXTRA_CONFIG} == EXTRA_CONFIG
        port = site["hosts"][n]["beemesh_agent_workplane_port"]
        assert configs[n]["workplane_listen"] == [f"/ip4/127.0.0.1/tcp/{port}"]
        assert configs[n]["workplane_user"] == WORK_USER


def test_role_and_bundle_install_write_the_same_files(site: dict) -> None:
    """One renderer: the unit the role wrote is the one `bundle install` writes for the same
    machine (root agent, work-plane user, Podman socket), and agent.toml is render_config's
    text for the role's values."""
    from beemesh.rollout.install import Layout, unit_params
    from beemesh.rollout.units import ConfigParams, render_config, render_unit

    tmp = site["tmp"]
    podman_socket = f"unix://{tmp}/podman/podman.sock"
    for name, host in site["hosts"].items():
        root = tmp / "roots" / name
        lay = Layout(root, root / "var/lib/beemesh")
        assert unit_path(tmp, name).read_text() == \
            render_unit(unit_params(lay, WORK_USER, podman_socket))
        written = lay.config.read_text()
        params = ConfigParams(
            state_dir=lay.state_dir, fleet=lay.fleet,
            listen=(f"/ip4/127.0.0.1/tcp/{host['beemesh_agent_listen_port']}",),
            workplane_listen=(f"/ip4/127.0.0.1/tcp/{host['beemesh_agent_workplane_port']}",),
            workplane_user=WORK_USER, bootstrap=tuple(tomllib.loads(written)["bootstrap"]),
            podman_socket=podman_socket, labels=host["beemesh_agent_labels"],
            extra=EXTRA_CONFIG)
        assert written == render_config(params)


def test_second_run_changes_nothing(site: dict) -> None:
    second = playbook(site["inv"], site["home"])
    assert second.returncode == 0, show(second)
    rows = recap(second)
    assert sorted(rows) == HOSTS
    changed = {h: r["changed"] for h, r in rows.items() if r["changed"] or r["failed"]}
    assert not changed, f"second run not idempotent: {changed}\n{show(second)}"


def test_check_diff_run(site: dict) -> None:
    check = playbook(site["inv"], site["home"], "--check", "--diff")
    assert check.returncode == 0, show(check)
    rows = recap(check)
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in rows.values()), show(check)


def test_check_diff_on_a_fresh_host(tmp_path: Path, site: dict) -> None:
    """--check --diff before anything is installed: succeeds and creates nothing."""
    inv = tmp_path / "inventory.yml"
    write_inventory(inv, tmp_path, site["fleet"], ["fresh1", "fresh2"])
    check = playbook(inv, tmp_path / "ansible-home", "--check", "--diff")
    assert check.returncode == 0, show(check)
    assert all(r["changed"] > 0 for r in recap(check).values()), show(check)
    assert not (tmp_path / "roots").exists(), "check mode created files"


def test_unit_passes_systemd_analyze_verify(site: dict, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.fail("systemd-analyze not found: apt-get install -y systemd")
    unit = unit_path(site["tmp"], "node1")
    d = unit_directives(unit)
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "Restart": "on-failure", "User": "root",
                       "UMask": "0077", "AmbientCapabilities": "",
                       "CapabilityBoundingSet": "CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER "
                                                "CAP_DAC_OVERRIDE CAP_KILL CAP_SYS_ADMIN "
                                                "CAP_NET_ADMIN"}.items():
        assert d[key] == [value], f"{unit}: {key}={d.get(key)}"
    (pre,) = d["ExecStartPre"]
    assert pre.startswith("/bin/sh -c 'umask 022 && exec ") and "--version" in pre
    assert str(site["tmp"] / "roots/node1/var/lib/beemesh") in d["ReadWritePaths"]
    assert "ProcSubset" not in d  # psutil needs /proc/meminfo and /proc/stat
    # verify the unit as rendered (its paths point into the test root, and they exist). A copy
    # in its own dir keeps systemd-analyze from picking up anything else.
    copy = tmp_path / "beemesh.service"
    shutil.copy(unit, copy)
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    problems = [line for line in proc.stderr.splitlines() if "beemesh" in line]
    assert proc.returncode == 0 and not problems, f"rc={proc.returncode}\n{proc.stderr}"


def start_like_systemd(unit: Path, log: IO[str]) -> subprocess.Popen:
    """Run the service as its unit says, minus systemd's namespaces: Environment and UMask,
    the ExecStartPre lines in order, then ExecStart, with no new privileges and only the
    unit's capability bounding set, so a capability the agent needs but lacks fails here."""
    d = unit_directives(unit)
    env = dict(os.environ)
    for assignment in d.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    (caps,) = d["CapabilityBoundingSet"]
    bounding = ",".join(["-all", *(f"+{c.lower().removeprefix('cap_')}" for c in caps.split())])
    confine = ["setpriv", "--no-new-privs", "--bounding-set", bounding]
    (umask,) = d["UMask"]
    options: dict[str, Any] = {"env": env, "stdout": log, "stderr": subprocess.STDOUT,
                               "umask": int(umask, 8)}
    for line in d.get("ExecStartPre", []):
        subprocess.run([*confine, *shlex.split(line)], check=True, timeout=120, **options)
    (exec_start,) = d["ExecStart"]
    return subprocess.Popen([*confine, *shlex.split(exec_start)], start_new_session=True,
                            **options)


def test_installed_agents_form_one_mesh(site: dict) -> None:
    tmp = site["tmp"]
    procs: list[subprocess.Popen] = []
    work_uid = work_user().pw_uid
    workers: list[psutil.Process] = []

    def logs() -> str:  # tmp is gone after the module: show the logs, not their path
        return "\n".join(f"--- {n} ---\n{(tmp / f'{n}.log').read_text()[-2000:]}" for n in HOSTS)

    try:
        apis, work_dirs = {}, {}
        for name in HOSTS:
            with (tmp / f"{name}.log").open("w") as log:
                procs.append(start_like_systemd(unit_path(tmp, name), log))
            config = tomllib.loads((tmp / "roots" / name / "etc/beemesh/agent.toml").read_text())
            apis[name] = config["api"]
            work_dirs[name] = Path(config["state_dir"]) / "workplane"

        def all_see_three() -> bool:
            exited = [n for n, p in zip(HOSTS, procs, strict=True) if p.poll() is not None]
            if exited:
                raise AssertionError(f"agent(s) {exited} exited\n{logs()}")
            for api in apis.values():
                proc = beemesh("nodes", "-o", "json", "--api", api, check=False, timeout=10)
                if proc.returncode != 0 or len(json.loads(proc.stdout or "[]")) != 3:
                    return False
            # Each work plane made its host key: it started, as its own user, and read its key.
            return all((d / "host.key").exists() for d in work_dirs.values())

        try:
            wait_for(all_see_three, timeout=30,
                     what="3 machines in `beemesh nodes` of each agent and 3 work planes")
        except TimeoutError:
            raise AssertionError(f"agents did not form one mesh\n{logs()}") from None
        for name, proc in zip(HOSTS, procs, strict=True):
            assert (work_dirs[name] / "host.key").stat().st_uid == work_uid
            children = psutil.Process(proc.pid).children(recursive=True)
            (work,) = [c for c in children if "workplane" in c.cmdline()[3:5]]
            assert work.uids().real == work_uid and work.uids().effective == work_uid
            assert psutil.Process(proc.pid).uids().real == 0
            workers.append(work)
        # SIGTERM to the agents only: each must stop its work plane itself (CAP_KILL) and exit.
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=20) for proc in procs]
        assert codes == [0, 0, 0], f"agents exited with {codes}\n{logs()}"
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"work planes outlived their agents: {alive}"
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_bad_variable_fails_early(tmp_path: Path, site: dict) -> None:
    inv = tmp_path / "inventory.yml"
    write_inventory(inv, tmp_path, site["fleet"], ["bad1"])
    proc = playbook(inv, tmp_path / "ansible-home", "-e", "beemesh_agent_listen_port=abc")
    assert proc.returncode != 0, show(proc)
    out = proc.stdout + proc.stderr
    assert "Validating arguments against arg spec" in out, show(proc)
    assert "beemesh_agent_listen_port" in out and "unable to convert to int" in out, show(proc)
    assert not (tmp_path / "roots").exists(), "files were installed before validation failed"


def test_example_inventory_parses(tmp_path: Path) -> None:
    example = ANSIBLE_DIR / "inventory/example.yml"
    proc = subprocess.run([tool("ansible-inventory"), "-i", str(example), "--list"],
                          env=ansible_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, show(proc)
    inv = json.loads(proc.stdout)
    assert set(inv["beemesh"]["children"]) == {"plant_a", "plant_b"}
    assert inv["_meta"]["hostvars"]["gw-b1"]["beemesh_agent_labels"]["zone"] == "plant-b"


def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    lint = tool("ansible-lint")
    # A copy, so ansible-lint's cache dir (.ansible/ in the project dir) lands in tmp.
    shutil.copytree(ANSIBLE_DIR, tmp_path / "ansible")
    proc = subprocess.run([lint, "--offline", "--profile", "production", "ansible/"],
                          cwd=tmp_path, env=ansible_env(tmp_path / "ansible-home"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, show(proc)
