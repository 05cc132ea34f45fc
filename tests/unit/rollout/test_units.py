"""The one renderer of the systemd unit and agent.toml (beemesh.rollout.units), used by
`beemesh bundle install` directly and by the Ansible role through `beemesh rollout render-*`.

The role's own run (real ansible-playbook) is checked against these functions in
tests/ansible/test_site.py; here: the hardening, the refusals, TOML escaping, and that the CLI
the role calls prints exactly what install writes.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from beemesh.config import load_config
from beemesh.errors import UserError
from beemesh.rollout.install import Layout, config_params, unit_params
from beemesh.rollout.units import (
    NETWORK_CAPABILITIES,
    WORKPLANE_CAPABILITIES,
    ConfigParams,
    UnitParams,
    render_config,
    render_unit,
)
from beemesh.runtime import ROOT_PODMAN_SOCKET

ROOT = Path("/srv/site-a")
LAY = Layout(ROOT, ROOT / "var/lib/beemesh")
AWKWARD = ['plain', 'say "hi"', "C:\\temp\\", "tab\there", "new\nline", "bell\x07", "del\x7f",
           "ünïcödé ✓ 🐝", "'single'", "[labels]", "a = b # not a comment", ""]


def directives(unit: str) -> dict[str, list[str]]:
    """KEY -> values in order (a key may repeat), comments and section headers left out."""
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_is_hardened() -> None:
    unit = render_unit(unit_params(LAY, "beemesh-work", None))
    d = directives(unit)
    expected = {
        "User": ["root"], "Type": ["exec"], "UMask": ["0077"], "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"], "ProtectHome": ["yes"], "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"], "ProtectKernelTunables": ["yes"],
        "RestrictSUIDSGID": ["yes"], "AmbientCapabilities": [""], "Restart": ["on-failure"],
        "ReadWritePaths": [f"{ROOT}/var/lib/beemesh", "-/run/podman"],
        "Environment": [f"PEX_ROOT={ROOT}/var/lib/beemesh/pex"],
        "CapabilityBoundingSet": [" ".join(WORKPLANE_CAPABILITIES + NETWORK_CAPABILITIES)],
        "RestrictNamespaces": ["net"],
        "ExecStart": [f"/usr/bin/python3 {ROOT}/usr/local/lib/beemesh/beemesh.pyz agent "
                      f"--config {ROOT}/etc/beemesh/agent.toml"],
        "ExecStartPre": ["/bin/sh -c 'umask 022 && exec /usr/bin/python3 "
                         f"{ROOT}/usr/local/lib/beemesh/beemesh.pyz --version >/dev/null'"],
    }
    assert {k: d.get(k) for k in expected} == expected
    assert "ProcSubset" not in d  # psutil reads /proc/meminfo and /proc/stat
    assert "SupplementaryGroups" not in d
    assert unit.endswith("[Install]\nWantedBy=multi-user.target\n")


def test_without_a_work_plane_user_only_the_network_capabilities_and_no_pre_start() -> None:
    d = directives(render_unit(unit_params(LAY, "", "ssh://host/run/podman.sock")))
    assert d["CapabilityBoundingSet"] == [" ".join(NETWORK_CAPABILITIES)]
    assert "ExecStartPre" not in d
    assert d["ReadWritePaths"] == [f"{ROOT}/var/lib/beemesh"]  # not a unix socket: no dir


def test_unit_options_from_the_record() -> None:
    p = UnitParams(pyz=Path("/opt/b.pyz"), config=Path("/etc/b.toml"), state_dir=Path("/st"),
                   python=Path("/opt/py/bin/python3.11"), user="root", group="beemesh",
                   supplementary_groups=("podman", "dialout"), workplane_user="work",
                   podman_socket="unix:///srv/podman/sock/podman.sock")
    d = directives(render_unit(p))
    assert d["Group"] == ["beemesh"] and d["SupplementaryGroups"] == ["podman dialout"]
    assert d["ExecStart"] == ["/opt/py/bin/python3.11 /opt/b.pyz agent --config /etc/b.toml"]
    assert d["ReadWritePaths"] == ["/st", "-/srv/podman/sock"]


@pytest.mark.parametrize(("field", "value", "named"), [
    ("state_dir", Path("/var/lib/bee mesh"), "state dir"),
    ("pyz", Path("/opt/%h/beemesh.pyz"), "pyz"),
    ("config", Path("/etc/$HOME/agent.toml"), "config"),
    ("python", Path("/usr/bin/it's/python3"), "python"),
    ("pyz", Path("relative/beemesh.pyz"), "pyz"),
    ("podman_socket", 'unix:///run/pod"man/podman.sock', "Podman socket directory"),
    ("user", "root\nExecStart=/bin/evil", "user"),
    ("workplane_user", "bee work", "work-plane user"),
    ("supplementary_groups", ("ok", "-x;y"), "supplementary group"),
])
def test_unit_refuses_what_it_cannot_hold(field: str, value: object, named: str) -> None:
    base = {"pyz": Path("/b.pyz"), "config": Path("/a.toml"), "state_dir": Path("/s")}
    with pytest.raises(UserError) as e:
        render_unit(UnitParams(**{**base, field: value}))  # type: ignore[arg-type]
    message = str(e.value)
    assert message.startswith(named) and "\n" not in message.replace(repr(value), "")


def test_config_escapes_awkward_values() -> None:
    """Whatever a label or path holds, agent.toml parses back to exactly that."""
    labels = {f"k{i}{v}": v for i, v in enumerate(AWKWARD)}
    odd_dir = Path('/srv/"quoted" dir/back\\slash')
    p = ConfigParams(state_dir=odd_dir, fleet=odd_dir / "fleet",
                     listen=("/ip4/0.0.0.0/tcp/4001",), workplane_listen=("/ip4/0.0.0.0/tcp/4002",),
                     workplane_user="beemesh-work", bootstrap=("/ip4/10.0.0.1/tcp/4001/p2p/x",),
                     podman_socket="unix:///run/podman/podman.sock", labels=labels)
    text = render_config(p)
    parsed = tomllib.loads(text)
    assert parsed["labels"] == labels
    assert parsed["state_dir"] == str(odd_dir) and parsed["api"] == f"{odd_dir}/api.sock"
    assert parsed["fleet"] == f"{odd_dir}/fleet"
    assert parsed["podman_socket"] == "unix:///run/podman/podman.sock"
    assert "\x7f" not in text and "\x07" not in text  # TOML forbids them unescaped


def test_config_with_extra_keys_is_one_the_agent_loads(tmp_path: Path) -> None:
    extra = {"dead_after_s": 12, "price": 0.25, "bid_suppression": False,
             "workplane_key": '/etc/beemesh/fleet/wp "2".key'}
    path = tmp_path / "agent.toml"
    path.write_text(render_config(ConfigParams(
        state_dir=tmp_path, fleet=tmp_path / "fleet", listen=("/ip4/0.0.0.0/tcp/1",),
        workplane_listen=("/ip4/0.0.0.0/tcp/2",), labels={"zone": 'a"b'}, extra=extra)))
    cfg = load_config(path, {})
    assert (cfg.dead_after_s, cfg.price, cfg.bid_suppression) == (12, 0.25, False)
    assert str(cfg.workplane_key) == extra["workplane_key"]
    assert cfg.labels == {"zone": 'a"b'} and cfg.api_socket == tmp_path / "api.sock"


@pytest.mark.parametrize(("extra", "says"), [
    ({"listen": ["/ip4/1.2.3.4/tcp/1"]}, "is written from its own setting"),
    ({"labels": {"a": "b"}}, "is written from its own setting"),
    ({"no_such_key": 1}, "is not an agent setting"),
    ({"x = 1\n[evil]": 1}, "is not an agent setting"),
    ({"dead_after_s": {"a": 1}}, "has no agent.toml form"),
    ({"price": float("nan")}, "has no agent.toml form"),
    ({"bootstrap_backoff_max_s": None}, "has no agent.toml form"),
])
def test_config_refuses_extra_keys_it_cannot_write(extra: dict, says: str) -> None:
    p = config_params(LAY, "plant-a", [], ["/ip4/0.0.0.0/tcp/4001"], "", None)
    with pytest.raises(UserError, match=says) as e:
        render_config(ConfigParams(**{**p.__dict__, "extra": extra}))
    assert "beemesh_agent_extra_config" in str(e.value)  # names the role's variable too


def test_install_config_keeps_the_site_and_its_peers() -> None:
    peer = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWGzBqSaFjEGxsw3cEPbTaNXMKM8uQWZkv2cJ29JxABzK9"
    parsed = tomllib.loads(render_config(config_params(
        LAY, "plant-a", [peer], ["/ip4/0.0.0.0/tcp/4001"], "beemesh-work", None)))
    assert parsed == {
        "state_dir": f"{ROOT}/var/lib/beemesh", "fleet": f"{ROOT}/etc/beemesh/fleet",
        "api": f"{ROOT}/var/lib/beemesh/api.sock", "listen": ["/ip4/0.0.0.0/tcp/4001"],
        "workplane_listen": ["/ip4/0.0.0.0/tcp/4002"], "workplane_user": "beemesh-work",
        "bootstrap": [peer], "labels": {"site": "plant-a"}}


def beemesh_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "beemesh", *args], capture_output=True,
                          timeout=60)


def test_render_commands_print_what_install_writes() -> None:
    """The role's commands (flags as --name=VALUE, as vars/main.yml passes them) print the
    bytes bundle install writes for the same machine."""
    unit = beemesh_cli(
        "rollout", "render-unit", "--python=/usr/bin/python3", f"--pyz={LAY.pyz}",
        f"--config={LAY.config}", f"--state-dir={LAY.state_dir}", "--user=root", "--group=root",
        "--workplane-user=beemesh-work", f"--podman-socket={ROOT_PODMAN_SOCKET}")
    assert unit.returncode == 0, unit.stderr
    assert unit.stdout.decode() == render_unit(unit_params(LAY, "beemesh-work", None))
    labels = {"site": "plant-a", "note": AWKWARD[1] + AWKWARD[2] + AWKWARD[7], "empty": ""}
    config = beemesh_cli(
        "rollout", "render-config", f"--state-dir={LAY.state_dir}", f"--fleet={LAY.fleet}",
        "--listen=/ip4/0.0.0.0/tcp/4001", "--workplane-listen=/ip4/0.0.0.0/tcp/4002",
        "--workplane-user=", "--podman-socket=", "--bootstrap=/ip4/10.0.0.1/tcp/4001/p2p/x",
        *(f"--label={k}={v}" for k, v in sorted(labels.items())),
        "--extra=dead_after_s=12", '--extra=workplane_key="/k=\\\\"')
    assert config.returncode == 0, config.stderr
    params = config_params(LAY, "plant-a", ["/ip4/10.0.0.1/tcp/4001/p2p/x"],
                           ["/ip4/0.0.0.0/tcp/4001"], "", None)
    expected = ConfigParams(**{**params.__dict__, "labels": labels,
                               "extra": {"dead_after_s": 12, "workplane_key": "/k=\\"}})
    assert config.stdout.decode() == render_config(expected)


@pytest.mark.parametrize(("args", "says"), [
    (["render-config", "--label=zone"], "--label 'zone' is not KEY=VALUE"),
    (["render-config", "--extra=dead_after_s=ten"], "the value must be JSON"),
    (["render-unit", "--state-dir=/var/lib/be mesh"], "state dir '/var/lib/be mesh' cannot go"),
])
def test_render_commands_refuse_bad_input_in_one_line(args: list[str], says: str) -> None:
    required = {"render-config": ["--state-dir=/s", "--fleet=/f", "--listen=/ip4/0.0.0.0/tcp/1",
                                  "--workplane-listen=/ip4/0.0.0.0/tcp/2"],
                "render-unit": ["--pyz=/b.pyz", "--config=/a.toml", "--state-dir=/s"]}
    proc = beemesh_cli("rollout", args[0], *required[args[0]], *args[1:])
    err = proc.stderr.decode()
    assert proc.returncode == 1 and proc.stdout == b"", err
    assert len(err.splitlines()) == 1 and says in err and err.startswith("beemesh: error: ")


def test_render_commands_are_not_listed_in_help() -> None:
    """Plumbing for the role, not commands for people: `rollout` lists status and restart."""
    listing = beemesh_cli("rollout", "--help").stdout.decode()
    assert "status" in listing and "restart" in listing
    assert "render" not in listing
