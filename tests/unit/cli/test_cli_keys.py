"""The real CLI (`python -m beemesh`) in a subprocess: keys, fleet material, one-line errors."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from beemesh import __version__
from beemesh.fleet import (
    OPERATOR_KEY,
    POLICY,
    SWARM_KEY,
    TRUST_LIST,
    WORKPLANE_KEY,
    init_fleet,
)
from beemesh.identity import KeyPair, save_key

PEER_ID = re.compile(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}")


def beemesh(*args: str | Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "beemesh", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,  # a broken error path would start a real agent: never hang the suite
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("beemesh: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- init / id ----------------------------------------------------------------------------


def test_init_and_id(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = beemesh("init", "--state-dir", state)
    assert proc.returncode == 0, proc.stderr
    pid = proc.stdout.strip()
    assert PEER_ID.fullmatch(pid), pid
    key = state / "machine.key"
    assert mode(key) == 0o600
    assert mode(state) == 0o700

    proc = beemesh("id", "--state-dir", state)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == pid


def test_init_prints_key_peer_id(tmp_path: Path) -> None:
    key = KeyPair(b"\x07" * 32)
    save_key(tmp_path / "machine.key", key)
    proc = beemesh("init", "--state-dir", tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == key.peer_id
    assert beemesh("id", "--state-dir", tmp_path).stdout.strip() == key.peer_id


def test_init_twice_keeps_peer_id(tmp_path: Path) -> None:
    first = beemesh("init", "--state-dir", tmp_path)
    key_bytes = (tmp_path / "machine.key").read_bytes()
    second = beemesh("init", "--state-dir", tmp_path)
    assert second.returncode == 0
    assert second.stdout.strip() == first.stdout.strip()
    assert "already exists; keeping it" in second.stderr
    assert (tmp_path / "machine.key").read_bytes() == key_bytes


def test_init_refuses_world_readable_existing_key(tmp_path: Path) -> None:
    beemesh("init", "--state-dir", tmp_path)
    key = tmp_path / "machine.key"
    key.chmod(0o644)
    before = key.read_bytes()
    proc = beemesh("init", "--state-dir", tmp_path)
    assert_one_line_error(proc, str(key), "chmod 600")
    assert key.read_bytes() == before


def test_id_without_key(tmp_path: Path) -> None:
    proc = beemesh("id", "--state-dir", tmp_path)
    assert_one_line_error(proc, str(tmp_path / "machine.key"), "beemesh init")
    assert not (tmp_path / "machine.key").exists()


# --- agent refuses to start on bad key material ------------------------------------------


def _good_state(state: Path) -> None:
    assert beemesh("init", "--state-dir", state).returncode == 0
    init_fleet(state / "fleet")


def _missing_key(state: Path) -> Path:
    init_fleet(state / "fleet")
    return state / "machine.key"


def _world_readable_key(state: Path) -> Path:
    _good_state(state)
    (state / "machine.key").chmod(0o644)
    return state / "machine.key"


def _malformed_key(state: Path) -> Path:
    _good_state(state)
    (state / "machine.key").write_text("ed25519:not-hex\n")
    return state / "machine.key"


def _key_is_directory(state: Path) -> Path:
    init_fleet(state / "fleet")
    (state / "machine.key").mkdir(parents=True)
    return state / "machine.key"


def _missing_fleet(state: Path) -> Path:
    assert beemesh("init", "--state-dir", state).returncode == 0
    return state / "fleet"


def _malformed_swarm_key(state: Path) -> Path:
    _good_state(state)
    (state / "fleet" / SWARM_KEY).write_text("/key/swarm/psk/1.0.0/\n/base16/\nabc\n")
    return state / "fleet" / SWARM_KEY


def _world_readable_swarm_key(state: Path) -> Path:
    _good_state(state)
    (state / "fleet" / SWARM_KEY).chmod(0o644)
    return state / "fleet" / SWARM_KEY


def _missing_swarm_key(state: Path) -> Path:
    _good_state(state)
    (state / "fleet" / SWARM_KEY).unlink()
    return state / "fleet" / SWARM_KEY


def _missing_trust_list(state: Path) -> Path:
    _good_state(state)
    (state / "fleet" / TRUST_LIST).unlink()
    return state / "fleet" / TRUST_LIST


def _malformed_trust_list(state: Path) -> Path:
    _good_state(state)
    (state / "fleet" / TRUST_LIST).write_text("ed25519:abcd bob\n")
    return state / "fleet" / TRUST_LIST


def _admit(state: Path, peer: str | None = None, days: float = 1,
           labels: dict[str, str] | None = None, fleet: str = "fleet") -> Path:
    """A certificate from the operator of state/`fleet` at state/machine.cert (for `peer`,
    default the machine's own)."""
    from beemesh.fleet import Fleet
    from beemesh.membership.certs import issue_machine_cert

    pid = peer or beemesh("id", "--state-dir", state).stdout.strip()
    now = time.time()
    data = issue_machine_cert(Fleet.load(state / fleet).operator_key(), pid, labels or {},
                              now + days * 86_400, now)
    (state / "machine.cert").write_bytes(data)
    return state / "machine.cert"


def _missing_cert(state: Path) -> Path:
    _good_state(state)
    return state / "machine.cert"


def _foreign_cert(state: Path) -> Path:
    _good_state(state)
    return _admit(state, peer=KeyPair.generate().peer_id)


def _expired_cert(state: Path) -> Path:
    _good_state(state)
    return _admit(state, days=-1)


def _corrupt_cert(state: Path) -> Path:
    _good_state(state)
    (state / "machine.cert").write_bytes(b"\xa1\x61x\xff")
    return state / "machine.cert"


def _cert_of_another_fleet(state: Path) -> Path:
    _good_state(state)
    init_fleet(state / "other")
    return _admit(state, fleet="other")


def _malformed_policy(state: Path) -> Path:
    _good_state(state)
    _admit(state)
    (state / "fleet" / POLICY).write_text('admission = "maybe"\n')
    return state / "fleet" / POLICY


PROBLEMS: dict[str, Callable[[Path], Path]] = {
    "missing-key": _missing_key,
    "world-readable-key": _world_readable_key,
    "malformed-key": _malformed_key,
    "key-is-directory": _key_is_directory,
    "missing-fleet": _missing_fleet,
    "malformed-swarm-key": _malformed_swarm_key,
    "world-readable-swarm-key": _world_readable_swarm_key,
    "missing-swarm-key": _missing_swarm_key,
    "missing-trust-list": _missing_trust_list,
    "malformed-trust-list": _malformed_trust_list,
    "missing-cert": _missing_cert,
    "foreign-cert": _foreign_cert,
    "expired-cert": _expired_cert,
    "corrupt-cert": _corrupt_cert,
    "cert-of-another-fleet": _cert_of_another_fleet,
    "malformed-policy": _malformed_policy,
}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_agent_refuses_bad_key_material(tmp_path: Path, problem: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    bad_path = PROBLEMS[problem](state)
    key = state / "machine.key"
    key_before = key.read_bytes() if key.is_file() else None
    key_mode = mode(key) if key.is_file() else None
    api = tmp_path / "api.sock"

    proc = beemesh("agent", "--state-dir", state, "--api", api,
                   "--listen", "/ip4/127.0.0.1/tcp/0")
    assert_one_line_error(proc, str(bad_path))
    assert proc.stdout == ""
    # Nothing was "repaired" behind the user's back.
    if key_before is None:
        assert not key.is_file()
    else:
        assert key.read_bytes() == key_before
        assert mode(key) == key_mode
    assert not api.exists()


def test_agent_world_readable_key_message_has_fix(tmp_path: Path) -> None:
    key = _world_readable_key(tmp_path)
    proc = beemesh("agent", "--state-dir", tmp_path)
    assert_one_line_error(proc, f"chmod 600 {key}")


def test_agent_missing_key_message_has_fix(tmp_path: Path) -> None:
    _missing_key(tmp_path)
    proc = beemesh("agent", "--state-dir", tmp_path)
    assert_one_line_error(proc, "not found", f"beemesh init --state-dir {tmp_path}")


def test_agent_with_labels_its_certificate_does_not_grant(tmp_path: Path) -> None:
    _good_state(tmp_path)
    _admit(tmp_path, labels={"zone": "a"})
    proc = beemesh("agent", "--state-dir", tmp_path, "--labels", "zone=b")
    assert_one_line_error(proc, "label zone=b is not granted", "beemesh fleet admit")


def test_agent_bad_config_file(tmp_path: Path) -> None:
    _good_state(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text("record_tll_s = 5\n")
    proc = beemesh("agent", "--state-dir", tmp_path, "--config", config)
    assert_one_line_error(proc, "'record_tll_s'")


def test_agent_bad_labels(tmp_path: Path) -> None:
    _good_state(tmp_path)
    proc = beemesh("agent", "--state-dir", tmp_path, "--labels", "zone")
    assert_one_line_error(proc, "'zone'", "key=value")


# --- API client without an agent ----------------------------------------------------------


@pytest.mark.parametrize("command", ["nodes", "status", "metrics"])
def test_no_agent_running(command: str) -> None:
    proc = beemesh(command, "--api", "/nonexistent.sock")
    assert_one_line_error(proc, "no agent is running", "/nonexistent.sock")
    assert proc.stdout == ""


def test_no_agent_running_env_var(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    env = {**os.environ, "BEEMESH_API": str(sock)}
    proc = beemesh("nodes", env=env)
    assert_one_line_error(proc, "no agent is running", str(sock))


# --- fleet init, version ------------------------------------------------------------------


def test_fleet_init(tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    proc = beemesh("fleet", "init", "--out", out, "--operator-name", "alice")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([SWARM_KEY, WORKPLANE_KEY,
                                                            OPERATOR_KEY, TRUST_LIST, POLICY])
    assert mode(out / SWARM_KEY) == 0o600
    assert mode(out / WORKPLANE_KEY) == 0o600
    assert (out / SWARM_KEY).read_text() != (out / WORKPLANE_KEY).read_text()
    assert mode(out / OPERATOR_KEY) == 0o600
    assert str(out) in proc.stdout
    fingerprint = re.search(r"operator key fingerprint: ([0-9a-f]{16})", proc.stdout)
    assert fingerprint is not None
    trust = (out / TRUST_LIST).read_text()
    assert f"ed25519:{fingerprint.group(1)}" in trust
    assert "alice" in trust


def test_fleet_init_refuses_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    assert beemesh("fleet", "init", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = beemesh("fleet", "init", "--out", out)
    assert_one_line_error(proc, str(out), "refusing to overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_version() -> None:
    proc = beemesh("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "beemesh 0.1.0"
    assert __version__ == "0.1.0"


def test_no_command_is_usage_error() -> None:
    proc = beemesh()
    assert proc.returncode == 1
    assert "usage: beemesh" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- admission: fleet admit, enroll-site, require-admission ------------------------------


def test_fleet_admit_and_a_site_enrollment(tmp_path: Path) -> None:
    from beemesh.fleet import Fleet
    from beemesh.membership.certs import check_cert

    fleet = tmp_path / "fleet"
    init_fleet(fleet)
    peer = KeyPair.generate().peer_id
    proc = beemesh("fleet", "admit", "--fleet", fleet, peer, "--labels", "zone=a",
                   "--label", "note=a,b", "--expires", "10", "--out", tmp_path / "m.cert")
    assert proc.returncode == 0, proc.stderr
    trusted = Fleet.load(fleet).trusted_operators()
    cert = check_cert((tmp_path / "m.cert").read_bytes(), trusted, time.time())
    assert (cert.peer_id, dict(cert.labels)) == (peer, {"zone": "a", "note": "a,b"})
    assert 9.9 * 86_400 < cert.expires - time.time() <= 10 * 86_400

    site = tmp_path / "site"
    assert beemesh("fleet", "enroll-site", "--fleet", fleet, "--site", "plant-a", "--out",
                   site).returncode == 0
    assert mode(site / "enrollment.key") == 0o600
    proc = beemesh("fleet", "admit", "--enrollment", site, peer, "--out", tmp_path / "s.cert")
    assert proc.returncode == 0, proc.stderr
    cert = check_cert((tmp_path / "s.cert").read_bytes(), trusted, time.time())
    assert dict(cert.labels) == {"site": "plant-a"}
    proc = beemesh("fleet", "admit", "--enrollment", site, peer, "--labels", "site=plant-b",
                   "--out", tmp_path / "x.cert")
    assert_one_line_error(proc, "admits machines of site plant-a only")


def test_fleet_admit_refuses_what_is_no_peer_id(tmp_path: Path) -> None:
    init_fleet(tmp_path / "fleet")
    proc = beemesh("fleet", "admit", "--fleet", tmp_path / "fleet", "node-7", "--out",
                   tmp_path / "c")
    assert_one_line_error(proc, "'node-7' is not a machine Peer ID", "beemesh id")
    proc = beemesh("fleet", "admit", KeyPair.generate().peer_id, "--out", tmp_path / "c")
    assert_one_line_error(proc, "needs --fleet DIR")


def test_an_older_fleet_opts_in(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    init_fleet(fleet)
    (fleet / POLICY).unlink()
    proc = beemesh("fleet", "require-admission", "--fleet", fleet)
    assert proc.returncode == 0 and "admission required" in proc.stdout
    assert 'admission = "required"' in (fleet / POLICY).read_text()
