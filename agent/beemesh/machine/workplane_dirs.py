"""Where the work plane's files live, laid out so a root agent never follows a link the work
plane's user could plant.

The agent often runs as root; the work plane runs as its own user (`workplane_user`). A root
process must never chown, chmod, create or bind in a directory another user can write: that
user could swap an entry for a link to anything (the agent's own code, /etc/shadow) between
the check and the use. So every directory the agent works in is root's, under the state dir:

    STATE_DIR/workplane/      the work plane's own (0700, its user): host.key, keys/
    STATE_DIR/link/           root's (0710, the work plane's group): agent.sock, the socket the
                              work plane talks to the agent through
    STATE_DIR/pods/           root's (0755): one directory per pod, made by the agent before
                              the deploy and handed to the work plane's user, which writes the
                              discovery files there; each is mounted read-only at /run/beemesh

The agent only ever touches the work plane's directory itself (in root's state dir, where
nobody else can replace it) and never what is inside it.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
from collections.abc import Collection
from pathlib import Path

from beemesh.config import AgentConfig
from beemesh.errors import UserError

log = logging.getLogger("beemesh.workplane_link")

SOCKET_NAME = "agent.sock"


def resolve_user(name: str) -> tuple[int, int] | None:
    """(uid, gid) for `workplane_user` (a name or a number), None for "same as the agent"."""
    if not name:
        return None
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        if name.isdigit():
            return int(name), int(name)
        raise UserError(f"workplane_user {name!r} does not exist on this machine; create it "
                        "(useradd --system beemesh-work) or fix workplane_user") from None
    return entry.pw_uid, entry.pw_gid


def _directory(path: Path, mode: int, owner: tuple[int, int] | None = None) -> None:
    """`path` as a real directory (never a link) with this mode and owner."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.mkdir(mode=mode)
        st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path} is not a directory (a link or a file); remove it and start the "
                        "agent again")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)


class WorkPlaneDirs:
    def __init__(self, cfg: AgentConfig, user: tuple[int, int] | None) -> None:
        self.state_dir = cfg.state_dir
        self.own = cfg.workplane_dir
        self.link = cfg.state_dir / "link"
        self.pods = cfg.state_dir / "pods"
        self.user = user

    @property
    def socket(self) -> Path:
        return self.link / SOCKET_NAME

    def prepare(self) -> None:
        """Make the three directories; the state dir becomes traversable (not readable) for
        the work plane's user."""
        if self.user is not None:
            os.chmod(self.state_dir, os.stat(self.state_dir).st_mode | 0o111)
        _directory(self.own, 0o700, self.user)
        _directory(self.link, 0o710, (0, self.user[1]) if self.user else None)
        _directory(self.pods, 0o755)

    def make(self, pod: str) -> Path:
        """The pod's discovery directory, before its deploy (`node.local.PodDirs`)."""
        path = self.pods / pod
        _directory(path, 0o755, self.user)
        return path

    def clean(self, keep: Collection[str], now: float, older_than_s: float) -> list[str]:
        """Remove discovery directories of pods not in `keep`, untouched for `older_than_s`;
        whatever else lies there (a link, a file) goes too. Never raises for one entry."""
        gone = []
        for entry in os.scandir(self.pods):
            try:
                st = entry.stat(follow_symlinks=False)
                if entry.name in keep or now - st.st_mtime <= older_than_s:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(entry.path)  # never follows links inside
                else:
                    os.unlink(entry.path)
                gone.append(entry.name)
            except OSError as e:
                log.warning("could not clean %s: %s", entry.path, e)
        return gone
