"""ARM proof: the aarch64 .pyz in a Debian bookworm arm64 userland under qemu-aarch64-static
(python3.11 and every native extension run as arm64 code), and an aarch64 agent that joins a
mesh with an x86_64 agent on loopback.

Needs `make pyz` (run by the fixtures) and `sh packaging/ci-setup.sh` (qemu-user-static and
the qemu-aarch64 binfmt_misc handler: pex re-executes its venv's python, which is arm64)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from pyz_support import (
    SYSTEM_PYTHON,
    Agent,
    arm_env,
    free_port,
    nodes,
    peer_id,
    plain_env,
    run,
    version,
    wait_for,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates aarch64 on x86_64"),
]

# Emulated arm64 is ~5-10x slower than native: generous limits.
ARM_TIMEOUT = 300


def test_arm_python_is_aarch64(arm_python: Path, tmp_path: Path) -> None:
    proc = run(
        [arm_python, "-c", "import platform, sys; print(platform.machine(), sys.version)"],
        env=arm_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("aarch64 3.11."), proc.stdout


def test_arm_version(arm_python: Path, pyz_arm: Path, arm_pex_root: Path, tmp_path: Path) -> None:
    proc = run(
        [arm_python, "-I", pyz_arm, "--version"],
        env=arm_env(tmp_path, arm_pex_root),
        timeout=ARM_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"beemesh {version()}"


def test_arm_native_extensions_are_arm64(
    arm_python: Path, pyz_arm: Path, arm_pex_root: Path, tmp_path: Path
) -> None:
    """The native extensions Beemesh runs (libsodium through PyNaCl, cryptography's X25519,
    pycryptodome's Salsa20 for the private network) are aarch64 ELF files and work under the
    arm64 interpreter; the distributions left out of the file (fastecdsa, coincurve) are not
    there to load."""
    code = (
        "import importlib.util, platform, nacl._sodium, nacl.signing; "
        "from cryptography.hazmat.primitives.asymmetric import x25519; "
        "from Crypto.Cipher import Salsa20; "
        "k = nacl.signing.SigningKey.generate(); k.verify_key.verify(k.sign(b'x')); "
        "x25519.X25519PrivateKey.generate().public_key(); "
        "Salsa20.new(key=bytes(32), nonce=bytes(8)).encrypt(b'x'); "
        "assert importlib.util.find_spec('fastecdsa') is None; "
        "assert importlib.util.find_spec('coincurve') is None; "
        "print(platform.machine(), nacl._sodium.__file__)"
    )
    env = arm_env(tmp_path, arm_pex_root, PEX_INTERPRETER="1")
    proc = run([arm_python, "-I", pyz_arm, "-c", code], env=env, timeout=ARM_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    machine, so_path = proc.stdout.split()
    assert machine == "aarch64"
    header = Path(so_path).read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def test_arm_init_prints_peer_id(
    arm_python: Path, pyz_arm: Path, arm_pex_root: Path, tmp_path: Path
) -> None:
    proc = run(
        [arm_python, "-I", pyz_arm, "init", "--state-dir", tmp_path / "state"],
        env=arm_env(tmp_path, arm_pex_root),
        timeout=ARM_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    peer_id(proc.stdout)


@pytest.mark.mesh
def test_arm_agent_joins_x86_mesh(
    arm_python: Path,
    pyz_arm: Path,
    pyz_x86: Path,
    arm_pex_root: Path,
    x86_pex_root: Path,
    tmp_path: Path,
) -> None:
    """An x86_64 agent and an aarch64 agent (emulated) form a mesh on loopback; each lists
    the other in `beemesh nodes -o json` with its architecture."""
    x86_env = plain_env(tmp_path, x86_pex_root)
    arm_env_ = arm_env(tmp_path, arm_pex_root)
    x86_cli = [SYSTEM_PYTHON, "-I", pyz_x86]
    arm_cli = [arm_python, "-I", pyz_arm]
    fleet = tmp_path / "fleet"
    made = run([*x86_cli, "fleet", "init", "--out", fleet], env=x86_env)
    assert made.returncode == 0, made.stderr

    x86_state, arm_state = tmp_path / "x86", tmp_path / "arm"
    x86_init = run([*x86_cli, "init", "--state-dir", x86_state], env=x86_env)
    assert x86_init.returncode == 0, x86_init.stderr
    x86_id = peer_id(x86_init.stdout)
    arm_init = run([*arm_cli, "init", "--state-dir", arm_state], env=arm_env_, timeout=ARM_TIMEOUT)
    assert arm_init.returncode == 0, arm_init.stderr
    arm_id = peer_id(arm_init.stdout)
    for state, pid in ((x86_state, x86_id), (arm_state, arm_id)):  # the operator admits both
        admitted = run([*x86_cli, "fleet", "admit", "--fleet", fleet, pid, "--out",
                        state / "machine.cert"], env=x86_env)
        assert admitted.returncode == 0, admitted.stderr

    x86_port, arm_port = free_port(), free_port()
    x86_api, arm_api = tmp_path / "x86.sock", tmp_path / "arm.sock"
    agents: list[Agent] = []
    try:
        x86_listen = f"/ip4/127.0.0.1/tcp/{x86_port}"
        x86 = Agent(
            [
                *x86_cli,
                "agent",
                "--state-dir",
                x86_state,
                "--fleet",
                fleet,
                "--listen",
                x86_listen,
                "--api",
                x86_api,
            ],
            env=x86_env,
            log=tmp_path / "x86.log",
            api=x86_api,
        )
        agents.append(x86)
        wait_for(lambda: x86.alive() and nodes(x86_cli, x86_env, x86_api), 60, "x86_64 API")
        # From the .pyz the agent runs as `python -I -m beemesh` of the extracted venv (pex's
        # launcher does not stay loaded under it; same pid), and maps no OpenSSL.
        argv = Path(f"/proc/{x86.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1:5] == [b"-I", b"-m", b"beemesh", b"agent"], argv
        maps = Path(f"/proc/{x86.proc.pid}/maps").read_text()
        assert "/libcrypto" not in maps and "/libssl" not in maps

        arm = Agent(
            [
                *arm_cli,
                "agent",
                "--state-dir",
                arm_state,
                "--fleet",
                fleet,
                "--listen",
                f"/ip4/127.0.0.1/tcp/{arm_port}",
                "--bootstrap",
                f"{x86_listen}/p2p/{x86_id}",
                "--api",
                arm_api,
            ],
            env=arm_env_,
            log=tmp_path / "arm.log",
            api=arm_api,
        )
        agents.append(arm)

        def arm_seen_by_x86() -> dict | None:
            assert arm.alive(), f"aarch64 agent exited:\n{arm.tail()}"
            found = [n for n in nodes(x86_cli, x86_env, x86_api) if n["peer_id"] == arm_id]
            return found[0] if found else None

        seen = wait_for(arm_seen_by_x86, ARM_TIMEOUT, "the aarch64 agent in x86_64's nodes")
        assert seen["arch"] == "aarch64", seen

        def x86_seen_by_arm() -> list:
            by_id = {n["peer_id"]: n for n in nodes(x86_cli, x86_env, arm_api)}
            return [by_id[x86_id], by_id[arm_id]] if {x86_id, arm_id} <= by_id.keys() else []

        other, own = wait_for(x86_seen_by_arm, ARM_TIMEOUT, "both machines in aarch64's nodes")
        assert other["arch"] == "x86_64", other
        assert own["arch"] == "aarch64", own
    except BaseException:
        for agent in agents:
            print(f"--- {agent.log.name}\n{agent.tail(40)}")
        raise
    finally:
        for agent in agents:
            agent.stop()
