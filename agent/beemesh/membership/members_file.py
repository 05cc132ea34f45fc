"""The machines this agent counted as members, kept on disk across restarts.

Quorum (StatefulSet heals and fencing) compares the machines in sight with the members seen
within `quorum_memory_s`. Held only in memory, that list would be empty after a restart, and
an agent restarted while cut off would see a majority of one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from beemesh.files import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "members.json"


def load(state_dir: Path) -> dict[str, float]:
    """Peer -> record expiry; {} if there is no file. A damaged file is set aside (`.bad`)
    with a warning: quorum then starts from the machines in sight, as on a first start."""
    path = state_dir / FILE_NAME
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in data.items()):
            raise ValueError("not a map of peer id to expiry time")
        return {k: float(v) for k, v in data.items()}
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.warning("cannot read %s (%s); membership starts from the machines in sight", path, e)
        return {}
    except ValueError as e:  # not JSON, not UTF-8, or the wrong shape
        bad = path.with_suffix(".bad")
        path.replace(bad)
        log.warning("%s is damaged (%s); moved to %s, membership starts from the machines in "
                    "sight", path, e, bad.name)
        return {}


def save(state_dir: Path, members: dict[str, float]) -> None:
    write_atomic(state_dir / FILE_NAME, json.dumps(members, sort_keys=True).encode(), mode=0o600)
