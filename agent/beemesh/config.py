"""Agent settings: defaults, overridden by a TOML config file, overridden by flags.

Every field has a default so a test or a demo needs no file at all; a config file with an
unknown key or a wrong type is refused with the key's name, not ignored.
"""

from __future__ import annotations

import dataclasses
import posixpath
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beemesh.errors import UserError

DEFAULT_STATE_DIR = Path("/var/lib/beemesh")
DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4001"
DEFAULT_WORKPLANE_LISTEN = "/ip4/0.0.0.0/tcp/4002"
DEFAULT_POD_FILES = Path("/run/beemesh/pod-files")


@dataclass
class AgentConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    fleet: Path | None = None  # default: <state_dir>/fleet
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    bootstrap: list[str] = field(default_factory=list)
    api: Path | None = None  # default: <state_dir>/api.sock
    labels: dict[str, str] = field(default_factory=dict)
    # How long a machine that stopped answering may take to be declared dead everywhere
    # (`membership.liveness` needs ~5 s): a majority must hold this long before a StatefulSet
    # replica starts, and pods a machine lists this soon after coming into view count as
    # brought along (`scheduling.bounds.Claims`).
    dead_after_s: int = 10
    record_refresh_s: float = 3.0  # how often this machine's record is looked at for changes
    gossip_heartbeat_s: float = 1.0
    bootstrap_backoff_max_s: float = 10.0
    podman_socket: str | None = None  # default: the machine's rootful/rootless socket
    deploy_timeout_s: float = 10.0
    image_pulls: bool = True  # false on air-gapped sites: only images already stored run here
    # Machine directories a hostPath volume may name (and what is below them); none by default.
    host_path_roots: list[str] = field(default_factory=list)
    # Where the files of configMap and secret volumes are written: a tmpfs (mounted there by
    # a root agent when it is not one already). Default: /run/beemesh/pod-files.
    pod_files: Path | None = None
    price: float = 0.5  # 0 = cheapest/greenest machine, 1 = most expensive (10 % of the score)
    # Offer at most this much to workloads (like kubelet's system-reserved); 0 = all of it.
    max_cpu_milli: int = 0
    max_memory_bytes: int = 0
    bid_suppression: bool = True  # off only to measure what suppression saves
    deploy_delay_s: float = 0.0  # fault injection for tests and drills: pause before deploying
    # The work plane: a child process with its own libp2p host, network key and (as root) user.
    workplane: bool = True
    workplane_listen: list[str] = field(default_factory=lambda: [DEFAULT_WORKPLANE_LISTEN])
    workplane_user: str = ""  # user name or uid to run it as when the agent runs as root
    workplane_key: Path | None = None  # default: <fleet>/workplane.key
    cert: Path | None = None  # this machine's certificate; default: <state_dir>/machine.cert
    # Healing: a restarted agent asks for nothing until peers have had time to tell it about
    # Deletes and running replicas; StatefulSet heals need a majority and wait out fencing.
    heal_settle_s: float = 20.0
    # ... and asks for none while it hears machine records this much later than usual: records
    # that lapse in a backlog are not machines that died.
    heal_pause_late_s: float = 3.0
    statefulset_margin_s: float = 10.0
    quorum_memory_s: float = 600.0

    @property
    def fleet_dir(self) -> Path:
        return self.fleet or self.state_dir / "fleet"

    @property
    def cert_path(self) -> Path:
        return self.cert or self.state_dir / "machine.cert"

    @property
    def api_socket(self) -> Path:
        return self.api or self.state_dir / "api.sock"

    @property
    def machine_key_path(self) -> Path:
        return self.state_dir / "machine.key"

    @property
    def pod_files_dir(self) -> Path:
        return self.pod_files or DEFAULT_POD_FILES

    @property
    def workplane_dir(self) -> Path:
        return self.state_dir / "workplane"

    @property
    def workplane_key_path(self) -> Path:
        return self.workplane_key or self.fleet_dir / "workplane.key"

    def check(self) -> None:
        if not 1 <= self.dead_after_s <= 300:
            raise UserError("dead_after_s must be between 1 and 300 seconds")
        if not 0 < self.record_refresh_s <= 300:
            raise UserError("record_refresh_s must be positive and at most 300 seconds")
        for root in self.host_path_roots:
            if not root.startswith("/") or posixpath.normpath(root) != root or root == "/":
                raise UserError(f"host_path_roots: {root!r} must be an absolute, normalized "
                                "directory other than / (like /srv/data)")
        if self.heal_pause_late_s <= 0:
            raise UserError("heal_pause_late_s must be positive (seconds of lateness that pause "
                            "healing)")


_PATHS = {"state_dir", "fleet", "api", "workplane_key", "cert", "pod_files"}


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> dict; a clear error for anything else."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UserError(f"label {part!r} is not key=value (example: --labels zone=a,ssd=yes)")
        labels[key.strip()] = value.strip()
    return labels


def load_config(path: Path | None, overrides: dict[str, Any]) -> AgentConfig:
    """Defaults <- config file <- overrides (flags; None means 'not given')."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"config file {path} not found; fix --config") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read config file {path} ({e})") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"config file {path} is not valid TOML: {e}") from None
    values.update({k: v for k, v in overrides.items() if v not in (None, [], {})})
    known = {f.name: f for f in dataclasses.fields(AgentConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"unknown config key {key!r}; known keys: {', '.join(sorted(known))}")
        kwargs[key] = _coerce(key, value)
    cfg = AgentConfig(**kwargs)
    cfg.check()
    return cfg


def _coerce(key: str, value: Any) -> Any:
    """Type-check one config value, converting paths."""
    default = AgentConfig()
    expected = getattr(default, key)
    if key == "podman_socket":
        if not isinstance(value, str):
            raise UserError("config key 'podman_socket' must be a URL like unix:///run/podman.sock")
        return value
    if key in _PATHS:
        if not isinstance(value, str | Path):
            raise UserError(f"config key {key!r} must be a path string")
        return Path(value)
    if isinstance(expected, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"config key {key!r} must be a list of strings")
        return list(value)
    if isinstance(expected, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise UserError(f"config key {key!r} must be a table of strings")
        return {str(k): v for k, v in value.items()}
    if isinstance(expected, str):
        if not isinstance(value, str):
            raise UserError(f"config key {key!r} must be a string")
        return value
    if isinstance(expected, bool):
        if not isinstance(value, bool):
            raise UserError(f"config key {key!r} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"config key {key!r} must be a number")
    if isinstance(expected, int) and not isinstance(value, int):
        raise UserError(f"config key {key!r} must be a whole number, not {value!r}")
    return type(expected)(value)
