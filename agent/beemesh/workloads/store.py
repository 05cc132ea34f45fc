"""Operator-signed workloads, objects and deletes, kept on disk: recovery must not need the
operator.

Every machine keeps the newest signed `Workload` of each workload it has seen (from an apply,
from a Task, or asked of a peer), the newest signed object (a Service, a ConfigMap, or a Secret
without its values) of each, and every operator `Delete` for `DELETE_TTL_S` (a Delete names a
workload or an object by its id, `kind/namespace/name`). A machine
that restarts, or that is cut off from the operator, can still heal what it knows about and
still refuse what was deleted. The files hold the operator's own signed bytes, so a file that
was altered on disk fails verification on load and is set aside (renamed `*.bad`) rather than
trusted; nothing else in the store depends on it.

Which record wins is decided by the operator's signing time: a Delete shadows every apply
signed up to it, and a later apply lifts the Delete. Changes take effect in memory at once and
are written behind (`files.WriteBehind`): a slow or full disk never stops the agent, and never
holds back the removal of what a Delete removes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from beemesh import wire
from beemesh.files import TMP_SUFFIX, WriteBehind
from beemesh.manifest import ManifestError, ServiceSpec, WorkloadSpec
from beemesh.manifest.config import ConfigMapSpec, SecretSpec
from beemesh.workloads.messages import ObjectSpec, check_object

log = logging.getLogger(__name__)

DELETE_TTL_S = 7 * 24 * 3600.0
REVISIONS_KEPT = 10  # pod templates remembered per workload (Kubernetes' revisionHistoryLimit)


@dataclass(frozen=True)
class StoredWorkload:
    spec: WorkloadSpec
    blob: bytes  # the operator-signed Workload envelope
    ts: float  # the operator's signing time: the apply's generation

    @property
    def workload_id(self) -> str:
        return self.spec.workload_id

    @property
    def generation(self) -> int:
        return round(self.ts * 1000)  # ts came from ts_ms / 1000: undo it exactly


@dataclass(frozen=True)
class StoredObject:
    """A Service, ConfigMap or Secret (its values never: `manifest.config`)."""

    spec: ObjectSpec
    blob: bytes  # the operator-signed envelope
    ts: float  # the operator's signing time

    @property
    def object_id(self) -> str:
        return self.spec.object_id


@dataclass(frozen=True)
class StoredDelete:
    workload_id: str
    blob: bytes  # the operator-signed Delete envelope
    ts: float


class MisfiledError(ValueError):
    """A stored file holds another workload than its name says (copied or renamed by hand)."""


_Keep = Callable[[Path, bytes, wire.Envelope, float], None]
_S = TypeVar("_S", "StoredWorkload", "StoredObject")


def _file_name(workload_id: str) -> str:
    return hashlib.sha256(workload_id.encode()).hexdigest()[:32] + ".cbor"


class WorkloadStore:
    """Newest signed Workload per workload id, and Deletes younger than DELETE_TTL_S.

    `authenticate_workload` / `authenticate_delete` check an envelope's signature, signer and
    schema (`wire.Verifier.authenticate`); the store never trusts bytes it did not check.
    """

    def __init__(self, directory: Path,
                 authenticate_workload: Callable[[bytes], wire.Envelope],
                 authenticate_delete: Callable[[bytes], wire.Envelope],
                 files: WriteBehind | None = None,
                 authenticate_object: Callable[[bytes], wire.Envelope] | None = None) -> None:
        """`files`: where changes go to disk (written behind, by the agent's persister);
        the store itself is always current in memory. Without `authenticate_object` no
        stored Service, ConfigMap or Secret is loaded (a store that keeps workloads only)."""
        self.files = files if files is not None else WriteBehind()
        self.object_dir = directory / "objects"
        self._auth_object = authenticate_object
        self._objects: dict[str, StoredObject] = {}
        self.workload_dir = directory / "workloads"
        self.delete_dir = directory / "deleted"
        self.revision_dir = directory / "revisions"
        self._auth_workload = authenticate_workload
        self._auth_delete = authenticate_delete
        self._workloads: dict[str, StoredWorkload] = {}
        self._deletes: dict[str, StoredDelete] = {}
        # workload -> the newest apply of each of its last REVISIONS_KEPT templates, oldest
        # first (`rollout history`, `rollout undo`)
        self._revisions: dict[str, list[StoredWorkload]] = {}

    # ---- reading ---------------------------------------------------------------------------

    def workload(self, workload_id: str) -> StoredWorkload | None:
        return self._workloads.get(workload_id)

    def workloads(self) -> list[StoredWorkload]:
        return sorted(self._workloads.values(), key=lambda w: w.workload_id)

    def revisions(self, workload_id: str) -> list[StoredWorkload]:
        """The workload's pod templates this machine has seen (newest apply of each), oldest
        first; the last one is the current template."""
        return list(self._revisions.get(workload_id, ()))

    def object(self, object_id: str) -> StoredObject | None:
        """A Service, ConfigMap or Secret by its id (`kind/namespace/name`)."""
        return self._objects.get(object_id)

    def objects(self) -> list[StoredObject]:
        return sorted(self._objects.values(), key=lambda s: s.object_id)

    def services(self) -> list[StoredObject]:
        return [s for s in self.objects() if isinstance(s.spec, ServiceSpec)]

    def config_map(self, namespace: str, name: str) -> ConfigMapSpec | None:
        stored = self._objects.get(f"configmap/{namespace}/{name}")
        return stored.spec if stored is not None and isinstance(stored.spec,
                                                                ConfigMapSpec) else None

    def secret(self, namespace: str, name: str) -> SecretSpec | None:
        stored = self._objects.get(f"secret/{namespace}/{name}")
        return stored.spec if stored is not None and isinstance(stored.spec,
                                                                SecretSpec) else None

    def delete_of(self, workload_id: str) -> StoredDelete | None:
        """The operator's Delete in force for this workload, if any."""
        return self._deletes.get(workload_id)

    def deleted(self, workload_id: str) -> bool:
        return workload_id in self._deletes

    def deletes(self) -> list[StoredDelete]:
        return sorted(self._deletes.values(), key=lambda d: d.workload_id)

    def is_deleted(self, workload_id: str, applied_ts: float) -> bool:
        """True when a Delete signed at or after `applied_ts` shadows that apply."""
        tomb = self._deletes.get(workload_id)
        return tomb is not None and applied_ts <= tomb.ts

    def is_superseded(self, workload_id: str, applied_ts: float) -> bool:
        """True when this machine holds a newer apply of the workload: an older signed
        manifest must never start again (a replayed one would roll a workload back)."""
        current = self._workloads.get(workload_id)
        return current is not None and applied_ts < current.ts

    # ---- writing ---------------------------------------------------------------------------

    def add_workload(self, blob: bytes, env: wire.Envelope,
                     save: bool = True) -> StoredWorkload | None:
        """Keep a verified Workload if it is the newest apply and not deleted; returns it."""
        spec = WorkloadSpec.from_dict(env.body["spec"])
        ts = env.ts_ms / 1000
        wid = spec.workload_id
        unchanged, current = self._unchanged(self._workloads, wid, ts)
        if unchanged:
            return current
        stored = StoredWorkload(spec, blob, ts)
        self._workloads[wid] = stored
        self._remember_revision(stored)
        if save and current is not None and current.spec.template_hash != spec.template_hash:
            self._save_file(self._revision_path(current), current.blob)  # now a past one
        self._kept(self.workload_dir, wid, blob, save)
        return stored

    def add_object(self, blob: bytes, env: wire.Envelope,
                   save: bool = True) -> StoredObject | None:
        """Keep a verified Service, ConfigMap or Secret if it is the newest apply and not
        deleted; returns it (wire.Rejected if it is none of them or out of bounds)."""
        spec = check_object(blob, env)
        ts = env.ts_ms / 1000
        oid = spec.object_id
        unchanged, current = self._unchanged(self._objects, oid, ts)
        if unchanged:
            return current
        stored = self._objects[oid] = StoredObject(spec, blob, ts)
        self._kept(self.object_dir, oid, blob, save)
        return stored

    def _unchanged(self, kept: Mapping[str, _S], key: str, ts: float) -> tuple[bool, _S | None]:
        """(True, what `add_*` returns) when an apply signed at `ts` changes nothing: a Delete
        shadows it, or the one kept is as new (returned when it is this very apply);
        (False, the one kept) otherwise."""
        if self.is_deleted(key, ts):
            return True, None
        current = kept.get(key)
        if current is not None and current.ts >= ts:
            return True, current if current.ts == ts else None
        return False, current

    def _kept(self, directory: Path, key: str, blob: bytes, save: bool) -> None:
        """A newer apply was kept: written (unless loaded from disk), and it lifts the
        Delete."""
        if save:
            self._save(directory, key, blob)
        if key in self._deletes:
            del self._deletes[key]
            self.files.remove(self.delete_dir / _file_name(key))

    def add_delete(self, blob: bytes, env: wire.Envelope, now: float, save: bool = True) -> bool:
        """Keep a verified Delete if it is new and not expired; drops the applies it shadows."""
        wid = env.body["workload_id"]
        ts = env.ts_ms / 1000
        if ts + DELETE_TTL_S <= now:
            return False
        current = self._deletes.get(wid)
        if current is not None and current.ts >= ts:
            return False
        applied = self._workloads.get(wid) or self._objects.get(wid)
        if applied is not None and applied.ts > ts:
            return False  # the operator applied it again after this Delete
        self._deletes[wid] = StoredDelete(wid, blob, ts)
        if save:
            self._save(self.delete_dir, wid, blob)
        if self._workloads.pop(wid, None) is not None:
            self.files.remove(self.workload_dir / _file_name(wid))
        if self._objects.pop(wid, None) is not None:
            self.files.remove(self.object_dir / _file_name(wid))
        for old in self._revisions.pop(wid, ()):
            self.files.remove(self._revision_path(old))
        return True

    def expire(self, now: float) -> list[str]:
        """Forget Deletes older than DELETE_TTL_S; returns their workload ids."""
        gone = [d.workload_id for d in self._deletes.values() if d.ts + DELETE_TTL_S <= now]
        for wid in gone:
            del self._deletes[wid]
            self.files.remove(self.delete_dir / _file_name(wid))
        return gone

    def _remember_revision(self, stored: StoredWorkload) -> None:
        """Past templates are kept on disk in `revision_dir` (one file per template), the
        current one in `workload_dir`."""
        revs = self._revisions.setdefault(stored.workload_id, [])
        template = stored.spec.template_hash
        same = next((r for r in revs if r.spec.template_hash == template), None)
        if same is not None and same.ts >= stored.ts:
            return
        if same is not None:
            revs.remove(same)
        revs.append(stored)
        revs.sort(key=lambda r: r.ts)
        while len(revs) > REVISIONS_KEPT:
            self.files.remove(self._revision_path(revs.pop(0)))

    def _revision_path(self, stored: StoredWorkload) -> Path:
        name = _file_name(stored.workload_id).removesuffix(".cbor")
        return self.revision_dir / f"{name}-{stored.spec.template_hash}.cbor"

    # ---- disk ------------------------------------------------------------------------------

    def _save(self, directory: Path, workload_id: str, blob: bytes) -> None:
        self._save_file(directory / _file_name(workload_id), blob)

    def _save_file(self, path: Path, blob: bytes) -> None:
        self.files.write(path, blob, mode=0o600)

    def load(self, now: float) -> list[str]:
        """Read what an earlier run kept; returns one line per file set aside as unusable."""
        problems: list[str] = []
        kinds: list[tuple[Path, Callable[[bytes], wire.Envelope], _Keep]] = [
            (self.delete_dir, self._auth_delete, self._keep_delete),
            (self.revision_dir, self._auth_workload, self._keep_revision),
            (self.workload_dir, self._auth_workload, self._keep_workload)]
        if self._auth_object is not None:
            kinds.append((self.object_dir, self._auth_object, self._keep_object))
        for directory, auth, keep in kinds:
            if not directory.is_dir():
                continue
            for tmp in directory.glob(f"*{TMP_SUFFIX}"):  # a write cut short by a crash
                tmp.unlink(missing_ok=True)
            for path in sorted(directory.glob("*.cbor")):
                try:
                    blob = path.read_bytes()
                    env = auth(blob)
                    keep(path, blob, env, now)
                except (OSError, wire.Rejected, ManifestError, MisfiledError) as e:
                    bad = path.with_suffix(".bad")
                    try:
                        path.replace(bad)
                        problems.append(f"{path}: {e}; set aside as {bad.name}")
                    except OSError as e2:
                        problems.append(f"{path}: {e}; could not set it aside ({e2})")
        for line in problems:
            log.error("stored workload file unusable: %s", line)
        return problems

    def _keep_delete(self, path: Path, blob: bytes, env: wire.Envelope, now: float) -> None:
        if path.name != _file_name(env.body["workload_id"]):
            raise MisfiledError("file name does not match the workload it holds")
        if not self.add_delete(blob, env, now, save=False):
            path.unlink(missing_ok=True)  # expired or superseded

    def _keep_revision(self, path: Path, blob: bytes, env: wire.Envelope, _now: float) -> None:
        stored = StoredWorkload(WorkloadSpec.from_dict(env.body["spec"]), blob, env.ts_ms / 1000)
        if path != self._revision_path(stored):
            raise MisfiledError("file name does not match the workload and template it holds")
        if self.is_deleted(stored.workload_id, stored.ts):
            path.unlink(missing_ok=True)
            return
        self._remember_revision(stored)

    def _keep_object(self, path: Path, blob: bytes, env: wire.Envelope, _now: float) -> None:
        if path.name != _file_name(check_object(blob, env).object_id):
            raise MisfiledError("file name does not match the object it holds")
        if self.add_object(blob, env, save=False) is None:
            path.unlink(missing_ok=True)  # deleted after this apply

    def _keep_workload(self, path: Path, blob: bytes, env: wire.Envelope, _now: float) -> None:
        wid = WorkloadSpec.from_dict(env.body["spec"]).workload_id
        if path.name != _file_name(wid):
            raise MisfiledError("file name does not match the workload it holds")
        if self.add_workload(blob, env, save=False) is None:
            path.unlink(missing_ok=True)  # deleted after this apply
