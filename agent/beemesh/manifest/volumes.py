"""Pod volumes (sans-IO): what a manifest may ask for, checked up front, and their wire form.

- ``emptyDir`` (``medium`` "" or Memory, ``sizeLimit``): the pod's own volume, there from its
  start, kept across container restarts, gone with the pod. ``medium: Memory`` is a tmpfs of
  ``sizeLimit`` (Linux's default, half the machine's memory, without one); on disk
  ``sizeLimit`` is not enforced (Kubernetes evicts the pod past it; Beemesh does not).
- ``hostPath`` (``path``, ``type`` "" | Directory | DirectoryOrCreate | File | FileOrCreate):
  a machine's own file or directory. Fleet-wide a manifest cannot know what is on each
  machine, so it is checked on each machine: only under the roots its agent.toml lists in
  ``host_path_roots`` (none by default), never through a symbolic link; a machine that does
  not allow it does not bid, and says why (`machine.volumes`).
- StatefulSet ``volumeClaimTemplates`` (``metadata.name``, ``spec.resources.requests.storage``,
  ``accessModes`` ReadWriteOnce): a Podman named volume per (workload, ordinal, claim) on the
  machine that runs the ordinal, kept across pod and agent restarts; a container mounts it by
  the template's name, as in Kubernetes.
- ``configMap`` and ``secret``: the object's keys as files (``beemesh.manifest.config``), written
  when the pod starts into a directory on a tmpfs of the machine and mounted read-only.
- ``volumeMounts`` (``name``, ``mountPath``, ``readOnly``) on each container.

PersistentVolumeClaim objects, ``subPath`` and mount propagation are refused with the fix
named.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from beemesh.manifest.checks import MAX_INT, MAX_LABEL, Fail, describe, dns_label
from beemesh.manifest.config import CONFIG_MAP, SECRET
from beemesh.manifest.fields import NOT_YET, Doc
from beemesh.manifest.quantities import memory_bytes
from beemesh.manifest.references import ConfigFiles, parse_config_files

SOURCES = ("emptyDir", "hostPath", "claim", "configMap", "secret")
PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate")
MAX_VOLUMES = 64  # per pod
MAX_PATH = 1024
RESERVED = "beemesh-"  # the volumes Beemesh mounts itself (discovery files, /etc/hosts)
_NOT_YET_SOURCES = {
    "persistentVolumeClaim": "PersistentVolumeClaim objects do not exist in Beemesh; use a "
                             "StatefulSet with volumeClaimTemplates (a volume per ordinal)",
}


@dataclass(frozen=True)
class Volume:
    name: str
    source: str  # one of SOURCES
    medium: str = ""  # emptyDir: "" (disk) or "Memory" (tmpfs)
    size_bytes: int | None = None  # emptyDir sizeLimit; a claim's storage request
    path: str = ""  # hostPath
    path_type: str = ""  # hostPath type
    files: ConfigFiles | None = None  # configMap, secret

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "medium": self.medium,
                "size_bytes": self.size_bytes, "path": self.path, "path_type": self.path_type,
                **({"files": self.files.to_dict()} if self.files is not None else {})}


@dataclass(frozen=True)
class Mount:
    name: str  # a Volume's
    path: str  # inside the container
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "read_only": self.read_only}


def _absolute(value: Any, path: str, what: str, fail: Fail) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > MAX_PATH \
            or "\0" in value or posixpath.normpath(value) != (value.rstrip("/") or "/") \
            or "//" in value:
        fail(path, f"{what} must be an absolute, normalized path (no '..'), got "
             f"{describe(value)}", "write it like /var/lib/app")
    return value if value == "/" else value.rstrip("/")


# ---- from a manifest ----------------------------------------------------------------------


def parse_volumes(d: Doc, raw: Any, base: str) -> tuple[Volume, ...]:
    """A pod spec's `volumes`."""
    volumes = []
    for i, item in enumerate(d.items(raw, base, MAX_VOLUMES, "volumes",
                                     "list each volume with a name and one source")):
        path = f"{base}[{i}]"
        v = d.mapping(item, path)
        name = _volume_name(d, v.get("name"), f"{path}.name")
        for key, fix in _NOT_YET_SOURCES.items():
            if v.get(key) is not None:
                d.fail(f"{path}.{key}", "not supported by beemesh", fix)
        kinds = ("emptyDir", "hostPath", "configMap", "secret")
        d.check_fields(v, path, ("name", *kinds))
        sources = [key for key in kinds if v.get(key) is not None]
        if len(sources) != 1:
            d.fail(path, f"needs exactly one source, got {len(sources)}",
                   "give it one of emptyDir, hostPath, configMap or secret")
        source = sources[0]
        where = f"{path}.{source}"
        if source == "emptyDir":
            volumes.append(_empty_dir(d, name, v[source], where))
        elif source == "hostPath":
            volumes.append(_host_path(d, name, v[source], where))
        else:
            volumes.append(Volume(name, source, files=parse_config_files(
                d, CONFIG_MAP if source == "configMap" else SECRET, v[source], where)))
    return tuple(volumes)


def _volume_name(d: Doc, value: Any, path: str) -> str:
    name = dns_label(value, path, "volume name", MAX_LABEL, d.fail)
    if name.startswith(RESERVED):
        d.fail(path, f"names starting with {RESERVED} are Beemesh's own volumes",
               "choose another name")
    return name


def _empty_dir(d: Doc, name: str, raw: Any, path: str) -> Volume:
    e = d.mapping(raw, path)
    d.check_fields(e, path, ("medium", "sizeLimit"))
    medium = e.get("medium") or ""
    if medium not in ("", "Memory"):
        d.fail(f"{path}.medium", f"must be \"\" or Memory, got {describe(medium)}",
               "use medium: Memory for a tmpfs, or leave it out for disk")
    size = e.get("sizeLimit")
    return Volume(name, "emptyDir", medium=medium, size_bytes=None if size is None else
                  memory_bytes(size, f"{path}.sizeLimit", d.fail))


def _host_path(d: Doc, name: str, raw: Any, path: str) -> Volume:
    h = d.mapping(raw, path)
    d.check_fields(h, path, ("path", "type"))
    kind = h.get("type") or ""
    if kind not in PATH_TYPES:
        d.fail(f"{path}.type", f"{describe(kind)} is not supported",
               f"use one of {', '.join(t for t in PATH_TYPES if t)}, or leave it out")
    host = _absolute(h.get("path"), f"{path}.path", "path", d.fail)
    if host == "/":
        d.fail(f"{path}.path", "the machine's whole file system cannot be mounted",
               "mount the directory the workload needs")
    return Volume(name, "hostPath", path=host, path_type=kind)


def parse_claims(d: Doc, raw: Any, base: str) -> tuple[Volume, ...]:
    """A StatefulSet's `volumeClaimTemplates`."""
    claims = []
    for i, item in enumerate(d.items(raw, base, MAX_VOLUMES, "claims", "list each claim with "
                                     "metadata.name and spec.resources.requests.storage")):
        path = f"{base}[{i}]"
        c = d.mapping(item, path)
        d.check_fields(c, path, ("metadata", "spec"), {"apiVersion": NOT_YET, "kind": NOT_YET})
        meta = d.mapping(c.get("metadata"), f"{path}.metadata", required=True)
        d.check_fields(meta, f"{path}.metadata", ("name",), {"labels": NOT_YET,
                                                              "annotations": NOT_YET})
        name = _volume_name(d, meta.get("name"), f"{path}.metadata.name")
        spec = d.mapping(c.get("spec"), f"{path}.spec", required=True)
        d.check_fields(spec, f"{path}.spec", ("accessModes", "resources", "volumeMode"),
                       {"storageClassName": "every claim is a local Podman volume; ignored"})
        modes = d.strings(spec.get("accessModes"), f"{path}.spec.accessModes")
        if any(m not in ("ReadWriteOnce", "ReadWriteOncePod") for m in modes):
            d.fail(f"{path}.spec.accessModes", f"{list(modes)} is not supported",
                   "use [ReadWriteOnce]: a claim is a volume on one machine")
        if spec.get("volumeMode") not in (None, "Filesystem"):
            d.fail(f"{path}.spec.volumeMode", "only Filesystem is supported", "remove it")
        res = d.mapping(spec.get("resources"), f"{path}.spec.resources")
        d.check_fields(res, f"{path}.spec.resources", ("requests",), {"limits": NOT_YET})
        requests = d.mapping(res.get("requests"), f"{path}.spec.resources.requests")
        d.check_fields(requests, f"{path}.spec.resources.requests", ("storage",))
        storage = requests.get("storage")
        claims.append(Volume(name, "claim", size_bytes=None if storage is None else memory_bytes(
            storage, f"{path}.spec.resources.requests.storage", d.fail)))
    return tuple(claims)


def parse_mounts(d: Doc, raw: Any, base: str) -> tuple[Mount, ...]:
    """A container's `volumeMounts`."""
    mounts = []
    for i, item in enumerate(d.items(raw, base, MAX_VOLUMES, "mounts",
                                     "list each mount with name and mountPath")):
        path = f"{base}[{i}]"
        m = d.mapping(item, path)
        d.check_fields(m, path, ("name", "mountPath", "readOnly"))
        read_only = m.get("readOnly", False)
        if not isinstance(read_only, bool):
            d.fail(f"{path}.readOnly", f"must be true or false, got {describe(read_only)}",
                   "write true or false")
        mounts.append(Mount(
            dns_label(m.get("name"), f"{path}.name", "volume name", MAX_LABEL, d.fail),
            _absolute(m.get("mountPath"), f"{path}.mountPath", "mountPath", d.fail), read_only))
    return tuple(mounts)


def check_mounts(volumes: tuple[Volume, ...], mounts_by_container: list[tuple[str, tuple[
        Mount, ...]]], base: str, volumes_key: str, fail: Fail) -> None:
    """Volume names are unique; every mount names one; no two mounts of a container share a
    path. `mounts_by_container`: (path of the container, its mounts)."""
    names: set[str] = set()
    for i, v in enumerate(volumes):
        if v.name in names:
            fail(f"{base}{volumes_key}[{i}].name", f"volume {v.name} is declared twice",
                 "give each volume (and claim template) its own name")
        names.add(v.name)
    for path, mounts in mounts_by_container:
        seen: set[str] = set()
        for j, m in enumerate(mounts):
            if m.name not in names:
                fail(f"{path}[{j}].name", f"no volume named {m.name}",
                     f"declare it under volumes (or volumeClaimTemplates), or use one of "
                     f"{sorted(names) or 'none declared'}")
            if m.path in seen or m.path == "/":
                fail(f"{path}[{j}].mountPath", f"{m.path} is mounted twice or is the root",
                     "mount each volume at its own directory")
            seen.add(m.path)


# ---- the wire form ------------------------------------------------------------------------


def volume_from_dict(raw: Any, path: str, fail: Fail) -> Volume:
    keys = {"name", "source", "medium", "size_bytes", "path", "path_type"}
    if not isinstance(raw, dict) or set(raw) - {"files"} != keys:
        fail(path, f"expected a volume mapping, got {describe(raw)}",
             "send WorkloadSpec.to_dict() output")
    name = dns_label(raw["name"], f"{path}.name", "volume name", MAX_LABEL, fail)
    source, medium, size = raw["source"], raw["medium"], raw["size_bytes"]
    if source not in SOURCES or medium not in ("", "Memory") or raw["path_type"] not in \
            PATH_TYPES or (size is not None and (isinstance(size, bool) or not isinstance(
                size, int) or not 0 <= size <= MAX_INT)):
        fail(path, "a volume's source, medium, type or size is out of bounds",
             "send WorkloadSpec.to_dict() output")
    host = _absolute(raw["path"], f"{path}.path", "path", fail) if source == "hostPath" else ""
    if source != "hostPath" and (raw["path"] or raw["path_type"]):
        fail(f"{path}.path", "only a hostPath volume has a path", "send to_dict() output")
    files = None
    if source in ("configMap", "secret"):
        files = ConfigFiles.from_dict(raw.get("files"), f"{path}.files", fail)
        if files.source != (CONFIG_MAP if source == "configMap" else SECRET):
            fail(f"{path}.files", "names the other kind of object", "send to_dict() output")
    elif "files" in raw:
        fail(f"{path}.files", "only a configMap or secret volume has files",
             "send to_dict() output")
    return Volume(name, source, medium, size, host, raw["path_type"], files)


def mount_from_dict(raw: Any, path: str, fail: Fail) -> Mount:
    if not isinstance(raw, dict) or set(raw) != {"name", "path", "read_only"} or \
            not isinstance(raw["read_only"], bool):
        fail(path, f"expected a mount mapping, got {describe(raw)}",
             "send WorkloadSpec.to_dict() output")
    return Mount(dns_label(raw["name"], f"{path}.name", "volume name", MAX_LABEL, fail),
                 _absolute(raw["path"], f"{path}.path", "path", fail), raw["read_only"])
