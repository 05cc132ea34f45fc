"""How every container is hardened, what a ``securityContext`` may change, and its checks.

Every container runs, whatever its manifest says:

- with no-new-privileges (``allowPrivilegeEscalation: false``): setuid programs such as
  ``sudo``, ``su`` or ``ping`` from an old image, and file capabilities, grant nothing;
- under Podman's built-in default seccomp profile (the Pod manifest Beemesh hands to kube play
  carries no seccomp annotation, so Podman 4.3 loads its compiled-in profile, whatever the
  machine's containers.conf says);
- never privileged, never in the machine's network, PID or IPC namespace, never with a hostPath;
- with at most the capabilities of ``DEFAULT_CAPABILITIES``, minus ``capabilities.drop`` (one
  name, or ALL), plus ``capabilities.add`` from ``ADDABLE_CAPABILITIES``.

``DEFAULT_CAPABILITIES`` is Podman 4.3's own default set (which also holds NET_RAW, MKNOD and
AUDIT_WRITE when no containers.conf narrows it) minus what ordinary images do not need. Kept,
because images running as root routinely rely on them:

- CHOWN, FOWNER: entrypoints chown and chmod their data and run directories, and files in
  image layers belong to other users;
- DAC_OVERRIDE: root is expected to read and write files whatever their mode bits;
- SETUID, SETGID: servers and entrypoints (nginx, su-exec, gosu) start as root and switch to a
  service user;
- KILL: a root supervisor signals workers running as another user;
- NET_BIND_SERVICE: listening on ports below 1024 (80, 443, 53).

Dropped, and addable again by name: NET_RAW (raw and packet sockets: spoofing, sniffing the pod
network), SYS_CHROOT, SETFCAP (file capabilities), SETPCAP, MKNOD (device nodes), AUDIT_WRITE
(the kernel audit log) and FSETID (keeping setuid bits, moot under no-new-privileges). Any
other capability (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, ...) is refused: there is no agent-side
policy yet that could allow it on some machines and not others.

Users, the Kubernetes way with the container's value over the pod's: ``runAsUser`` and
``runAsGroup`` (0 to 2147483647) and ``runAsNonRoot``. Podman does not enforce runAsNonRoot
in kube play and Beemesh does not see the image when it checks a manifest, so runAsNonRoot
requires an explicit, non-zero runAsUser instead of trusting the image's USER. runAsGroup needs
a runAsUser too: Podman 4.3 would otherwise run the container as uid 0. A container that does
not run as root holds no capability at all except those in its own ``capabilities.add``
(Podman makes those ambient, so a uid 1000 server with NET_BIND_SERVICE can listen on 80).

Shared by the Kubernetes walker (``parse_pod_security``, ``parse_container_security``) and
``WorkloadSpec.from_dict`` (``capability_lists``, ``check_users``), so both refuse alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beemesh.manifest.checks import Fail, describe
from beemesh.manifest.fields import Doc

# Linux capability names in number order (CAP_CHOWN is 0, CAP_CHECKPOINT_RESTORE 40).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID",
                        "SETUID")
# What Podman would grant by default anyway: a manifest may ask for these back by name.
ADDABLE_CAPABILITIES = tuple(sorted((*DEFAULT_CAPABILITIES, "AUDIT_WRITE", "FSETID", "MKNOD",
                                     "NET_RAW", "SETFCAP", "SETPCAP", "SYS_CHROOT")))
# Why the capabilities people most often ask for are refused; others get a generic reason.
_REFUSED_WHY = {
    "SYS_ADMIN": "mounts, namespaces and much more: close to root on the machine",
    "NET_ADMIN": "reconfigures interfaces, routes and firewall rules",
    "SYS_MODULE": "loads kernel modules",
    "SYS_PTRACE": "traces and reads other processes",
    "SYS_RAWIO": "raw access to I/O ports and devices",
    "SYS_TIME": "sets the machine's clock",
    "DAC_READ_SEARCH": "opens any file by handle, escaping the container's root",
    "BPF": "loads BPF programs into the kernel",
    "PERFMON": "kernel performance monitoring and tracing",
    "SYS_BOOT": "reboots the machine or loads a new kernel",
    "SYS_RESOURCE": "overrides the machine's resource limits",
    "SYS_NICE": "real-time priorities can starve the machine's agent",
}
MAX_ID = 2**31 - 1  # Kubernetes' bound for runAsUser and runAsGroup
NO_POLICY = "there is no agent-side policy yet to allow"
_POD_KEYS = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
_CONTAINER_KEYS = (*_POD_KEYS, "readOnlyRootFilesystem", "allowPrivilegeEscalation",
                   "privileged", "capabilities")
# The walker's value of each SecuritySpec user field: (value, path it was read from).
Inherited = dict[str, tuple[Any, str]]


@dataclass(frozen=True)
class SecuritySpec:
    """A container's resolved securityContext (the pod's fields already folded in).

    cap_add and cap_drop are sorted, unique and without the CAP_ prefix; cap_drop may hold ALL.
    """

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    read_only_root_filesystem: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The most a root process in the container holds: the bounding set, sorted."""
        kept = () if "ALL" in self.cap_drop else (
            c for c in DEFAULT_CAPABILITIES if c not in self.cap_drop)
        return tuple(sorted({*kept, *self.cap_add}))


# A container without a securityContext: the hardening alone.
DEFAULT_SECURITY = SecuritySpec()


# ---------------------------------------------------------------------------------------------
# Checks shared with from_dict


def id_number(value: Any, path: str, fail: Fail) -> int:
    """A uid or gid as Kubernetes bounds it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        fail(path, f"must be a whole number from 0 to {MAX_ID}, got {describe(value)}",
             "use a numeric id such as 1000")
    return value


def flag(value: Any, path: str, fail: Fail) -> bool:
    """A YAML boolean, not a string that looks like one."""
    if not isinstance(value, bool):
        fail(path, f"must be true or false, got {describe(value)}", "write true or false")
    return value


def _capability(value: Any, path: str, fail: Fail, *, adding: bool) -> str:
    """One name of capabilities.add or .drop, without its optional CAP_ prefix."""
    if not isinstance(value, str):
        fail(path, f"must be a capability name, got {describe(value)}",
             "write a name such as NET_BIND_SERVICE")
    name = value.removeprefix("CAP_")
    if name == "ALL":
        if adding:
            fail(path, f"ALL cannot be added (it holds SYS_ADMIN and every other capability) "
                 f"and {NO_POLICY} it", "add the capabilities you need by name")
        return name
    if name not in CAPABILITIES:
        upper = name.upper()
        fix = (f"write it in capitals: {upper}" if upper in CAPABILITIES or upper == "ALL"
               else "use a Linux capability name such as NET_BIND_SERVICE")
        fail(path, f"{value!r} is not a Linux capability", fix)
    if adding and name not in ADDABLE_CAPABILITIES:
        why = _REFUSED_WHY.get(name, "not one Podman grants by default")
        fail(path, f"{name} cannot be added ({why}) and {NO_POLICY} it",
             f"remove it (addable: {', '.join(ADDABLE_CAPABILITIES)})")
    return name


def capability_lists(add: Any, drop: Any, add_path: str, drop_path: str,
                     fail: Fail) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """capabilities.add and .drop (None: empty), checked and normalized: sorted, unique."""
    lists = []
    for raw, path, adding in ((add, add_path, True), (drop, drop_path, False)):
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            fail(path, f"must be a list of capability names, got {describe(raw)}",
                 'write it as ["NET_RAW"] or one "- NAME" per line')
        lists.append([(_capability(item, f"{path}[{i}]", fail, adding=adding), f"{path}[{i}]")
                      for i, item in enumerate(raw)])
    added, dropped = lists
    dropped_names = {name for name, _ in dropped}
    for name, path in added:
        if name in dropped_names:
            fail(path, f"{name} is both added and dropped",
                 "keep it in one list (drop ALL with an add keeps only the added ones)")
    return (tuple(sorted({name for name, _ in added})),
            tuple(sorted(dropped_names)))


def check_users(user: int | None, group: int | None, non_root: bool, at: dict[str, str],
                fail: Fail) -> None:
    """The rules between runAsUser, runAsGroup and runAsNonRoot; at maps each to its path."""
    if group is not None and user is None:
        fail(at["group"], "runAsGroup needs a runAsUser: Podman 4.3 would run the container "
             "as root (uid 0) with that group", "also set runAsUser, e.g. runAsUser: 1000")
    if non_root and user is None:
        fail(at["non_root"], "runAsNonRoot needs an explicit runAsUser: Beemesh cannot check the "
             "image's user and Podman does not enforce runAsNonRoot",
             "set runAsUser to a non-zero uid, e.g. runAsUser: 1000")
    if non_root and user == 0:
        fail(at["user"], "runAsUser 0 is root but runAsNonRoot is true",
             "use a non-zero uid such as 1000, or remove runAsNonRoot")


# ---------------------------------------------------------------------------------------------
# The Kubernetes walker


def parse_pod_security(d: Doc, raw: Any, path: str) -> Inherited:
    """A pod spec's securityContext: the user fields its containers inherit."""
    ctx = d.mapping(raw, path)
    d.check_fields(ctx, path, _POD_KEYS)
    return _users(d, ctx, path)


def parse_container_security(d: Doc, raw: Any, path: str, pod: Inherited) -> SecuritySpec:
    """A container's securityContext over the pod's, as Kubernetes resolves them."""
    ctx = d.mapping(raw, path)
    d.check_fields(ctx, path, _CONTAINER_KEYS)
    users = {**pod, **_users(d, ctx, path)}
    if ctx.get("privileged") is not None and flag(ctx["privileged"], f"{path}.privileged",
                                                  d.fail):
        d.fail(f"{path}.privileged", f"privileged containers are refused: {NO_POLICY} them",
               "remove it or set it to false")
    escalation = ctx.get("allowPrivilegeEscalation")
    if escalation is not None and flag(escalation, f"{path}.allowPrivilegeEscalation", d.fail):
        d.fail(f"{path}.allowPrivilegeEscalation", "true is refused: every container runs "
               "with no-new-privileges (setuid programs and file capabilities grant nothing)",
               "remove it or set it to false")
    read_only = ctx.get("readOnlyRootFilesystem")
    caps_path = f"{path}.capabilities"
    caps = d.mapping(ctx.get("capabilities"), caps_path)
    d.check_fields(caps, caps_path, ("add", "drop"))
    cap_add, cap_drop = capability_lists(caps.get("add"), caps.get("drop"), f"{caps_path}.add",
                                         f"{caps_path}.drop", d.fail)
    user, user_at = users.get("runAsUser", (None, f"{path}.runAsUser"))
    group, group_at = users.get("runAsGroup", (None, f"{path}.runAsGroup"))
    non_root, non_root_at = users.get("runAsNonRoot", (False, f"{path}.runAsNonRoot"))
    check_users(user, group, non_root, {"user": user_at, "group": group_at,
                                        "non_root": non_root_at}, d.fail)
    return SecuritySpec(
        run_as_user=user, run_as_group=group, run_as_non_root=non_root,
        read_only_root_filesystem=False if read_only is None else flag(
            read_only, f"{path}.readOnlyRootFilesystem", d.fail),
        cap_add=cap_add, cap_drop=cap_drop,
    )


def _users(d: Doc, ctx: dict[Any, Any], path: str) -> Inherited:
    """The user fields set in one securityContext (pod or container), and its seccompProfile."""
    found: Inherited = {}
    for key in ("runAsUser", "runAsGroup"):
        if ctx.get(key) is not None:
            found[key] = (id_number(ctx[key], f"{path}.{key}", d.fail), f"{path}.{key}")
    if ctx.get("runAsNonRoot") is not None:
        at = f"{path}.runAsNonRoot"
        found["runAsNonRoot"] = (flag(ctx["runAsNonRoot"], at, d.fail), at)
    _seccomp(d, ctx.get("seccompProfile"), f"{path}.seccompProfile")
    return found


def _seccomp(d: Doc, raw: Any, path: str) -> None:
    """Only RuntimeDefault, which is what every container gets anyway."""
    profile = d.mapping(raw, path)
    if not profile:
        return
    kind = profile.get("type")
    if kind == "Unconfined":
        d.fail(f"{path}.type", "every container runs under Podman's default seccomp profile "
               f"and {NO_POLICY} another", "use type: RuntimeDefault or remove seccompProfile")
    if kind == "Localhost":
        d.fail(f"{path}.type", "custom seccomp profiles are not supported",
               "use type: RuntimeDefault or remove seccompProfile")
    if kind != "RuntimeDefault":
        d.fail(f"{path}.type", f"must be RuntimeDefault, got {describe(kind)}",
               "use type: RuntimeDefault or remove seccompProfile")
    d.check_fields(profile, path, ("type",))
