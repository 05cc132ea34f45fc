"""The machines this agent counted as members, kept on disk across restarts.

Quorum (StatefulSet heals and fencing) compares the machines in sight with the members seen
within `quorum_memory_s`. Held only in memory, that list would be empty after a restart, and
an agent restarted while cut off would see a majority of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from beemesh.files import WriteBehind

log = logging.getLogger(__name__)

FILE_NAME = "members.json"


@dataclass(frozen=True)
class Remembered:
    """What an earlier run knew: the members, and whether that list can be trusted (False:
    the file was damaged or unreadable, so this run may have forgotten members)."""

    members: dict[str, float]
    trusted: bool = True


def load(state_dir: Path) -> Remembered:
    """Peer -> record expiry; none if there is no file (a first start). A damaged file is set
    aside (`.bad`) and an unreadable one left alone, each with a warning, and the list is not
    trusted: quorum then fails closed (`membership.quorum`) instead of counting this machine a
    majority of the machines in sight."""
    path = state_dir / FILE_NAME
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                and math.isfinite(v) for k, v in data.items()):
            raise ValueError("not a map of peer id to expiry time")
        return Remembered({k: float(v) for k, v in data.items()})
    except FileNotFoundError:
        return Remembered({})
    except OSError as e:
        log.warning("cannot read %s (%s); no StatefulSet replica starts here until the member "
                    "list is rebuilt", path, e)
        return Remembered({}, trusted=False)
    except ValueError as e:  # not JSON, not UTF-8, or the wrong shape
        bad = path.with_suffix(".bad")
        with contextlib.suppress(OSError):
            path.replace(bad)
        log.warning("%s is damaged (%s); moved to %s; no StatefulSet replica starts here until "
                    "the member list is rebuilt", path, e, bad.name)
        return Remembered({}, trusted=False)


def save(files: WriteBehind, state_dir: Path, members: dict[str, float]) -> None:
    files.write(state_dir / FILE_NAME, json.dumps(members, sort_keys=True).encode())
