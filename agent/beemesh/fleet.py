"""Fleet material: the pre-shared network key, the operator key and the operator trust list.

Layout of a fleet directory (see docs/formats.md):
  swarm.key          libp2p private-network key, `/key/swarm/psk/1.0.0/` text format, 0600
  workplane.key      the work plane's own private-network key (same format), 0600
  operator.key       operator signing key (`ed25519:<hex seed>`), 0600; only on operator hosts
  operators.trust    trusted operator public keys, one `ed25519:<hex> [name]` per line
  fleet.toml         the fleet's policy: `admission = "required"` (new fleets) or "off"
Machine agents need `swarm.key`, `operators.trust` and `fleet.toml`, work planes need
`workplane.key`;
`operator.key` stays with the operator. The two network keys keep the planes' transports apart:
a machine-plane peer cannot even complete a handshake with a work-plane host, and vice versa.
"""

from __future__ import annotations

import logging
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from beemesh.errors import UserError
from beemesh.identity import (
    KEY_PREFIX,
    KeyPair,
    load_key,
    read_private_file,
    save_key,
    write_private_file,
)

SWARM_KEY = "swarm.key"
WORKPLANE_KEY = "workplane.key"
OPERATOR_KEY = "operator.key"
TRUST_LIST = "operators.trust"
POLICY = "fleet.toml"
ADMISSION_CHOICES = ("required", "off")
POLICY_TEXT = """\
# Beemesh fleet policy (read by every agent at start)
# admission: "required" = a machine needs an operator-signed certificate (machine.cert) to
# take part; "off" = any holder of swarm.key is a machine (fleets made before admission).
admission = "{admission}"
"""

log = logging.getLogger(__name__)
_SWARM_HEADER = ("/key/swarm/psk/1.0.0/", "/base16/")


def format_swarm_key(psk: bytes) -> str:
    return "\n".join([*_SWARM_HEADER, psk.hex()]) + "\n"


def parse_swarm_key(text: str, path: Path) -> str:
    """Return the 64-hex-digit PSK py-libp2p expects, from the common swarm.key format."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) != 3 or tuple(lines[:2]) != _SWARM_HEADER:
        raise UserError(
            f"network key {path} is malformed (expected the lines '/key/swarm/psk/1.0.0/', "
            "'/base16/' and 64 hex digits); copy it again from the fleet material"
        )
    try:
        key = bytes.fromhex(lines[2])
    except ValueError:
        key = b""
    if len(key) != 32:
        raise UserError(
            f"network key {path} must hold 64 hex digits (32 bytes); "
            "copy it again from the fleet material"
        )
    return key.hex()


def format_trust_entry(public_key: bytes, name: str) -> str:
    return f"{KEY_PREFIX}{public_key.hex()} {name}\n"


def parse_trust_list(text: str, path: Path) -> dict[bytes, str]:
    """Trusted operator keys -> names. Blank lines and `#` comments are ignored."""
    trusted: dict[bytes, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key_text, _, name = line.partition(" ")
        try:
            key = bytes.fromhex(key_text.removeprefix(KEY_PREFIX))
        except ValueError:
            key = b""
        if not key_text.startswith(KEY_PREFIX) or len(key) != 32:
            raise UserError(
                f"operator trust list {path} line {n} is malformed (expected "
                "'ed25519:<64 hex digits> [name]'); fix or remove that line"
            )
        trusted[key] = name.strip() or f"operator-{n}"
    return trusted


class TrustList:
    """The operator trust list, read again when the file changes (rotation without restarts).

    A file that becomes unreadable or malformed keeps the list in force and is logged once
    per change; an emptied list is honoured (no operator then passes)."""

    def __init__(self, path: Path, keys: dict[bytes, str]) -> None:
        self.path = path
        self._keys = keys
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def __call__(self) -> dict[bytes, str]:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                self._keys = parse_trust_list(self.path.read_text(), self.path)
                log.info("operator trust list %s reloaded: %d key(s)", self.path,
                         len(self._keys))
            except (OSError, UnicodeDecodeError, UserError) as e:
                log.warning("operator trust list %s changed but cannot be used (%s); keeping "
                            "the %d key(s) in force", self.path, e, len(self._keys))
        return self._keys


def load_policy(directory: Path) -> bool:
    """Whether the fleet requires admission: fleet.toml's `admission` ("off" if no file)."""
    path = directory / POLICY
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"fleet policy {path} is unreadable ({e}); write it again with "
                        f"`beemesh fleet require-admission --fleet {directory}` (or copy it "
                        "from the fleet material)") from None
    choice = data.get("admission", "off")
    if set(data) - {"admission"} or choice not in ADMISSION_CHOICES:
        raise UserError(f"fleet policy {path} must hold only admission = \"required\" or "
                        f"\"off\"; fix it or copy it from the fleet material")
    return bool(choice == "required")


def write_policy(directory: Path, admission: str) -> Path:
    path = directory / POLICY
    path.write_text(POLICY_TEXT.format(admission=admission))
    return path


@dataclass(frozen=True)
class Fleet:
    """What an agent needs from the fleet material."""

    directory: Path
    psk_hex: str
    trusted_operators: TrustList
    admission_required: bool = field(default=False)

    @classmethod
    def load(cls, directory: Path) -> Fleet:
        fix = f"create fleet material with `beemesh fleet init --out {directory}` or pass --fleet"
        if not directory.is_dir():
            raise UserError(f"fleet directory {directory} not found; {fix}")
        swarm_path = directory / SWARM_KEY
        psk = parse_swarm_key(read_private_file(swarm_path, "network key", fix), swarm_path)
        trust_path = directory / TRUST_LIST
        try:
            trust_text = trust_path.read_text()
        except FileNotFoundError:
            raise UserError(f"operator trust list {trust_path} not found; {fix}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(
                f"cannot read operator trust list {trust_path} ({type(e).__name__}); "
                f"it must be a readable text file: {fix}"
            ) from None
        trust = TrustList(trust_path, parse_trust_list(trust_text, trust_path))
        return cls(directory, psk, trust, load_policy(directory))

    def operator_key(self) -> KeyPair:
        """The operator signing key, for operator commands (apply, delete, bundle)."""
        return load_key(
            self.directory / OPERATOR_KEY,
            "operator key",
            "operator commands must run where the fleet's operator.key is (see --fleet)",
        )


def load_workplane_psk(path: Path) -> str:
    """The work plane's network key (hex), or a UserError naming the file and the fix."""
    fix = (f"create fleet material with `beemesh fleet init`, or add the missing key to an older "
           f"fleet with `beemesh fleet workplane-key --out {path.parent}` and copy it to every "
           "machine")
    return parse_swarm_key(read_private_file(path, "work-plane network key", fix), path)


def init_workplane_key(out: Path) -> Path:
    """Add a work-plane network key to fleet material (fleets made before the work plane)."""
    path = out / WORKPLANE_KEY
    write_private_file(path, format_swarm_key(secrets.token_bytes(32)))
    return path


def init_fleet(out: Path, operator_name: str = "operator") -> tuple[Path, KeyPair]:
    """Create new fleet material in `out`; refuses to overwrite existing files."""
    for name in (SWARM_KEY, WORKPLANE_KEY, OPERATOR_KEY, TRUST_LIST, POLICY):
        if (out / name).exists():
            raise UserError(
                f"{out / name} already exists; refusing to overwrite fleet material "
                "(choose another --out)"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_private_file(out / SWARM_KEY, format_swarm_key(secrets.token_bytes(32)))
    init_workplane_key(out)
    operator = KeyPair.generate()
    save_key(out / OPERATOR_KEY, operator)
    (out / TRUST_LIST).write_text(
        "# Beemesh operator trust list: operator keys allowed to submit and delete workloads\n"
        + format_trust_entry(operator.public_key, operator_name)
    )
    write_policy(out, "required")
    return out, operator
