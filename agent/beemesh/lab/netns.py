"""Network namespaces that let several test/demo "machines" share one host.

Each machine's Podman runs inside its own network namespace, joined to the host by a veth
pair: host side 10.77.<i>.1/24, namespace side 10.77.<i>.2/24. A container's hostPort is then
bound inside that namespace (by conmon, DNAT'd by CNI's portmap there), so three machines can
all publish hostPort 18080 and the host reaches each at its own 10.77.<i>.2:18080.

Why nsenter and not `ip netns exec`: the latter also mounts a fresh /sys, which hides the
cgroup v1 hierarchies under /sys/fs/cgroup from Podman; nsenter --net changes nothing but
the network namespace.

The subnet index doubles as the lock between parallel test workers: the host veth is named
``bm<i>h`` and creating a link that exists fails, so two workers never get the same index.
Needs root (CAP_NET_ADMIN) and iproute2.

Machines talk to each other through the host, which routes between the 10.77.<i>.0/24
subnets (``enable_forwarding``). A partition is a set of DROP rules in the host's FORWARD
chain between two subnets (``drop_between``): silent, like a cut cable, and tagged with an
iptables comment naming their owner so ``remove_rules`` and ``delete_stale_rules`` find them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from beemesh.errors import UserError

__all__ = [
    "NETNS_DIR",
    "Netns",
    "NetnsError",
    "delete_stale",
    "delete_stale_rules",
    "drop_between",
    "enable_forwarding",
    "remove_rules",
]

NETNS_DIR = Path("/run/netns")
SUBNET_PREFIX = "10.77"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


class NetnsError(UserError):
    """Creating or deleting a machine namespace failed; names the command and its error."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    except FileNotFoundError as exc:
        raise NetnsError("`ip` not found; install iproute2 (apt-get install iproute2)") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done


@dataclass(frozen=True)
class Netns:
    """One machine namespace and its veth link to the host."""

    name: str
    index: int

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def host_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def ip(self) -> str:
        """Where the host reaches this machine (and its published hostPorts)."""
        return f"{SUBNET_PREFIX}.{self.index}.2"

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.0/24"

    @property
    def host_if(self) -> str:
        return f"bm{self.index}h"

    @property
    def ns_if(self) -> str:
        return f"bm{self.index}n"

    def exec_prefix(self) -> list[str]:
        """Argv prefix that runs a command in this namespace only (see module doc)."""
        return ["nsenter", f"--net={self.path}", "--"]

    @classmethod
    def find(cls, name: str) -> Netns | None:
        """An existing namespace made by ``create`` (its index read back from its address)."""
        if not (NETNS_DIR / name).exists():
            return None
        done = _ip("-n", name, "-4", "-o", "addr", "show", check=False)
        m = re.search(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.2/24", done.stdout)
        return cls(name, int(m.group(1))) if m else None

    @classmethod
    def create(cls, name: str, index: int | None = None) -> Netns:
        """Make namespace ``name`` with its veth pair; returns the existing one if already made.

        index None picks the first free 10.77.<i>.0/24 (1..254).
        """
        if not _NAME.match(name):
            raise NetnsError(f"bad network namespace name {name!r}; use letters, digits, -_.")
        found = cls.find(name)
        if found is not None:
            return found
        if (NETNS_DIR / name).exists():
            raise NetnsError(
                f"network namespace {name} exists but was not made by beemesh "
                f"(no {SUBNET_PREFIX}.x.2/24 address); delete it with `ip netns del {name}`"
            )
        candidates = [index] if index is not None else list(range(1, 255))
        _ip("netns", "add", name)
        try:
            for i in candidates:
                ns = cls(name, i)
                done = _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if,
                           check=False)
                if done.returncode == 0:
                    break
                if "exists" not in done.stderr:
                    raise NetnsError(f"creating veth {ns.host_if}: {done.stderr.strip()}")
            else:
                raise NetnsError(
                    f"no free {SUBNET_PREFIX}.x.0/24 subnet for namespace {name} "
                    "(links bm<i>h exist); delete stale ones with `ip link del bm<i>h`"
                )
            _ip("link", "set", ns.ns_if, "netns", name)
            _ip("addr", "add", f"{ns.host_ip}/24", "dev", ns.host_if)
            _ip("link", "set", ns.host_if, "up")
            _ip("-n", name, "addr", "add", f"{ns.ip}/24", "dev", ns.ns_if)
            _ip("-n", name, "link", "set", ns.ns_if, "up")
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "route", "add", "default", "via", ns.host_ip)
        except BaseException:
            _ip("netns", "del", name, check=False)
            raise
        return ns

    def delete(self) -> None:
        """Remove the namespace and both veth ends; safe to call twice."""
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)


def delete_stale(prefix: str) -> list[str]:
    """Delete namespaces named ``<prefix><pid>-...`` whose creating process is gone.

    Tests name their namespaces after their pid; a killed test run leaves them behind.
    """
    removed = []
    if not NETNS_DIR.is_dir():
        return removed
    for entry in NETNS_DIR.iterdir():
        m = re.match(rf"{re.escape(prefix)}(\d+)-", entry.name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        ns = Netns.find(entry.name)
        if ns is not None:
            ns.delete()
        else:
            _ip("netns", "del", entry.name, check=False)
        removed.append(entry.name)
    return removed


def enable_forwarding() -> None:
    """Let the host route between machine namespaces (each one's default route is the host)."""
    try:
        if IP_FORWARD.read_text().strip() != "1":
            IP_FORWARD.write_text("1\n")
    except OSError as exc:
        raise NetnsError(
            f"cannot enable IPv4 forwarding ({exc.strerror}), which machines in separate "
            "network namespaces need to reach each other; run as root: "
            "sysctl -w net.ipv4.ip_forward=1"
        ) from exc


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["iptables", "-w", "10", *args], capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError as exc:
        raise NetnsError("`iptables` not found; install it (apt-get install iptables)") from exc
    if check and done.returncode != 0:
        raise NetnsError(
            f"`iptables {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done


def drop_between(a: Netns, b: Netns, comment: str) -> None:
    """Silently drop all routed traffic between two machines, both ways (no RST: a cut cable).

    Inserted first in FORWARD, so established connections stall too.
    """
    for src, dst in ((a, b), (b, a)):
        _iptables("-I", "FORWARD", "1", "-s", src.subnet, "-d", dst.subnet,
                  "-m", "comment", "--comment", comment, "-j", "DROP")


def _tagged_rules() -> list[tuple[str, list[str]]]:
    """(comment, rule argv) of every commented DROP rule in the host's FORWARD chain."""
    rules = []
    for line in _iptables("-S", "FORWARD").stdout.splitlines():
        argv = shlex.split(line)
        if argv[:1] == ["-A"] and "--comment" in argv and argv[-2:] == ["-j", "DROP"]:
            rules.append((argv[argv.index("--comment") + 1], argv[1:]))
    return rules


def remove_rules(comment: str) -> int:
    """Delete the FORWARD DROP rules carrying exactly this comment; how many there were."""
    rules = [argv for tag, argv in _tagged_rules() if tag == comment]
    for argv in rules:
        _iptables("-D", *argv, check=False)
    return len(rules)


def delete_stale_rules(prefix: str) -> list[str]:
    """Delete FORWARD DROP rules commented ``<prefix><pid>-...`` whose creating process is gone;
    the comments removed. A killed test run's rules would cut whoever gets those subnets next.
    """
    stale = []
    for tag, argv in _tagged_rules():
        m = re.match(rf"{re.escape(prefix)}(\d+)-", tag)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _iptables("-D", *argv, check=False)
            stale.append(tag)
    return sorted(set(stale))
