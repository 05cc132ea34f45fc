"""The systemd unit and agent.toml of an installed agent: the one renderer for both the Ansible
role (`ansible/roles/beemesh_agent`) and `beemesh bundle install`.

Each takes a small typed record (`UnitParams`, `ConfigParams`) and returns the file's text. The
role gets the same text from the .pyz it just installed (`beemesh rollout render-unit` /
`render-config`, cli/rollout_cmds.py) and writes it with `copy`, so both install paths write
the same hardened unit (ansible/README.md says what each line is for) and the same config
(docs/formats.md).

Values are checked before anything is rendered: a path that a unit cannot hold unquoted, a
user name that is not one, an extra config key the agent does not know, a value TOML cannot
hold — each is one `UserError` line naming the value and the fix. TOML strings are escaped
here (quotes, backslashes, control characters), not left to a JSON encoder.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from beemesh.config import AgentConfig
from beemesh.errors import UserError

# The socket a root agent talks to when agent.toml names none (runtime/podman.py).
# What a root agent needs to run its work plane as another user: start it as that user
# (SETUID SETGID), hand it its directory and socket (CHOWN FOWNER), use and clean that directory
# and check workplane.key at start (DAC_OVERRIDE), stop it (KILL). None without such a user.
WORKPLANE_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER",
                          "CAP_DAC_OVERRIDE", "CAP_KILL")
# A root agent opens each pod's Service listeners inside the pod's network namespace (setns:
# SYS_ADMIN) and writes the pod's NAT rules there (NET_ADMIN): `machine/pod_netns.py`.
NETWORK_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN")
HEADER = ("# Written by `beemesh bundle install` or the beemesh_agent Ansible role, both from\n"
          "# `beemesh rollout {command}` (beemesh/rollout/units.py); edits here are overwritten.\n")

# Paths go into Exec lines and ReadWritePaths= unquoted: no whitespace, quotes, backslashes,
# specifiers (%) or variables ($).
_UNIT_PATH = re.compile(r"/[^\s\"'\\%$]*")
_ACCOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                 "\r": "\\r"}


@dataclass(frozen=True)
class UnitParams:
    """What the unit says: where the agent and its config are, and who runs it."""

    pyz: Path
    config: Path
    state_dir: Path
    python: Path = Path("/usr/bin/python3")
    user: str = "root"
    group: str = "root"
    supplementary_groups: tuple[str, ...] = ()
    workplane_user: str = ""  # "" runs the work plane as `user` (no capabilities then)
    podman_socket: str = ""  # a unix:/// socket's directory becomes writable

    @property
    def pex_root(self) -> Path:
        """Where pex extracts the .pyz: in the state dir, the service's writable path."""
        return self.state_dir / "pex"

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capability bounding set: only what running the work plane as its user and (for
        a root agent) the pods' Service listeners need."""
        network = NETWORK_CAPABILITIES if self.user == "root" else ()
        return (WORKPLANE_CAPABILITIES if self.workplane_user else ()) + network

    @property
    def podman_dir(self) -> str:
        """The directory of a unix:/// Podman socket, else ""."""
        if not self.podman_socket.startswith("unix:///"):
            return ""
        return str(PurePosixPath(self.podman_socket.removeprefix("unix://")).parent)


@dataclass(frozen=True)
class ConfigParams:
    """What agent.toml says (docs/formats.md); `extra` holds further top-level keys."""

    state_dir: Path
    fleet: Path
    listen: tuple[str, ...]
    workplane_listen: tuple[str, ...]
    workplane_user: str = ""
    bootstrap: tuple[str, ...] = ()
    podman_socket: str = ""  # "": the agent's default
    labels: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api(self) -> Path:
        return self.state_dir / "api.sock"


def _unit_path(what: str, path: Path) -> str:
    text = str(path)
    if not _UNIT_PATH.fullmatch(text):
        raise UserError(f"{what} {text!r} cannot go into a systemd unit: it must be absolute, "
                        "without spaces, quotes, backslashes, '%' or '$'; choose another path")
    return text


def _account(what: str, name: str) -> str:
    if not _ACCOUNT.fullmatch(name):
        raise UserError(f"{what} {name!r} is not a user or group name (letters, digits, '_', "
                        "'.', '-', at most 32); fix it")
    return name


def render_unit(p: UnitParams) -> str:
    """The hardened systemd unit (beemesh.service) for these parameters."""
    python = _unit_path("python", p.python)
    pyz = _unit_path("pyz", p.pyz)
    config = _unit_path("config", p.config)
    state_dir = _unit_path("state dir", p.state_dir)
    user, group = _account("user", p.user), _account("group", p.group)
    groups = " ".join(_account("supplementary group", g) for g in p.supplementary_groups)
    wp_user = _account("work-plane user", p.workplane_user) if p.workplane_user else ""
    supplementary = f"SupplementaryGroups={groups}\n" if groups else ""
    pre = (
        f"# The work plane runs as {wp_user} from the Python environment that pex extracts\n"
        "# into PEX_ROOT: extract it readable (umask 022) before the agent starts with 0077.\n"
        f"ExecStartPre=/bin/sh -c 'umask 022 && exec {python} {pyz} --version >/dev/null'\n"
    ) if wp_user else ""
    podman = (
        "# The Podman REST socket (podman_socket in agent.toml); \"-\": ignored while it does\n"
        "# not exist.\n"
        f"ReadWritePaths=-{_unit_path('Podman socket directory', Path(p.podman_dir))}\n"
    ) if p.podman_dir else ""
    why_caps = (
        f"# Root only to start the work plane as {wp_user} (SETUID SETGID), hand it its\n"
        "# directory and socket (CHOWN FOWNER), use and clean that directory and check\n"
        "# workplane.key at start (DAC_OVERRIDE) and stop it (KILL). The work plane keeps none\n"
        "# of them. Root's Podman socket and ports >= 1024 need none.\n"
    ) if p.workplane_user else ""
    why_caps += (
        "# Each pod's Service listeners are opened inside the pod's network namespace\n"
        "# (SYS_ADMIN, for setns; RestrictNamespaces lets it join network namespaces only)\n"
        "# with the pod's NAT rules (NET_ADMIN).\n"
    ) if "CAP_SYS_ADMIN" in p.capabilities else ""
    return HEADER.format(command="render-unit") + f"""\
[Unit]
Description=Beemesh agent (decentralized edge orchestrator)
Documentation=https://github.com/beemesh/beemesh
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
User={user}
Group={group}
{supplementary}\
# pex extracts its venv here on the first start; it must stay writable (packaging/README.md).
Environment=PEX_ROOT={p.pex_root}
{pre}\
ExecStart={python} {pyz} agent --config {config}
Restart=on-failure
RestartSec=5s
TimeoutStopSec=30s
UMask=0077

# Hardening. No ProcSubset=pid: psutil reads /proc/meminfo and /proc/stat.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={state_dir}
{podman}\
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces={"net" if "CAP_SYS_ADMIN" in p.capabilities else "yes"}
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
{why_caps}\
CapabilityBoundingSet={" ".join(p.capabilities)}
AmbientCapabilities=
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise UserError(f"{value!r} is not valid UTF-8 text; fix its encoding")
    return '"' + "".join(
        _TOML_ESCAPES.get(ch) or (f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F
                                  else ch)
        for ch in value) + '"'


def toml_value(what: str, value: Any) -> str:
    """A string, number, boolean or list of them as a TOML value; anything else is refused,
    naming `what` the value is for."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(what, v) for v in value) + "]"
    raise UserError(f"{what}: {value!r} has no agent.toml form; use a string, a number, "
                    "true/false or a list of them")


def _extra_lines(extra: Mapping[str, Any], reserved: set[str]) -> list[str]:
    known = {f.name for f in dataclasses.fields(AgentConfig)} - reserved
    lines = []
    for key in sorted(extra):
        what = f"extra config key {key!r} (--extra, beemesh_agent_extra_config)"
        if key in reserved:
            raise UserError(f"{what} is written from its own setting; set that instead")
        if key not in known or not _BARE_KEY.fullmatch(key):
            raise UserError(f"{what} is not an agent setting; known keys: "
                            f"{', '.join(sorted(known))} (docs/formats.md)")
        lines.append(f"{key} = {toml_value(what, extra[key])}")
    return lines


def render_config(p: ConfigParams) -> str:
    """agent.toml (docs/formats.md) for these parameters."""
    main = {
        "state_dir": str(p.state_dir),
        "fleet": str(p.fleet),
        "api": str(p.api),
        "listen": list(p.listen),
        "workplane_listen": list(p.workplane_listen),
        "workplane_user": p.workplane_user,
        "bootstrap": list(p.bootstrap),
        **({"podman_socket": p.podman_socket} if p.podman_socket else {}),
    }
    lines = [f"{key} = {toml_value(f'config key {key!r}', value)}" for key, value in main.items()]
    lines += _extra_lines(p.extra, {*main, "podman_socket", "labels"})
    lines += ["", "[labels]"]
    lines += [f"{toml_string(str(k))} = {toml_string(str(v))}" for k, v in sorted(p.labels.items())]
    return HEADER.format(command="render-config") + "\n".join(lines) + "\n"
