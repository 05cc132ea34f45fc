"""What `beemesh apply` does for ConfigMaps and Secrets (operator side).

- A Secret is signed without its values: with its key names and a digest keyed by the
  operator (`podconfig.sealing`). Its values stay in this process, which seals them for each
  machine that waits for them to start a pod (`seal_for_waiting`): the wants the local agent
  verified (an auction picked that machine for a replica of a workload that uses the Secret).
  `apply` waits, at most SEALING_WAIT_S, until every workload using the Secret has its
  replicas ready, printing whom it sealed for. Afterwards machines that hold the Secret pass it
  on to the machines that take over (`podconfig.holding`).
- The roll rule: a workload rolls on a change of its ConfigMaps or Secrets only if its pod
  template says so (annotation `beemesh.io/roll-on-config-change: "true"`). `apply` then
  records a digest of those objects in the template (`WorkloadSpec.config_digest`), both for
  the workloads in the file and for the stored ones that use an object the file changes (they
  are applied again, as `rollout restart` would): a change is a new template, rolled with the
  workload's strategy. Without the annotation nothing restarts, as in Kubernetes: variables
  keep the values they had when the container started, and files those of when the pod
  started.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from beemesh.api.client import call
from beemesh.errors import UserError
from beemesh.identity import KeyPair, peer_id
from beemesh.manifest import WorkloadSpec
from beemesh.manifest.config import ConfigMapSpec, SecretSpec, object_id
from beemesh.manifest.kube import Spec
from beemesh.podconfig.sealing import Opened, digest, digest_key, seal

SEALING_WAIT_S = 120.0
RESEAL_AFTER_S = 10.0  # a machine that still asks after this long gets a fresh copy


@dataclasses.dataclass
class Plan:
    specs: list[Spec]  # to sign, Secrets with their digest
    values: dict[str, tuple[SecretSpec, Opened]]  # Secret id -> its values (this process only)
    rolled: list[tuple[str, Callable[[WorkloadSpec], WorkloadSpec]]]  # stored workloads


def config_digest(spec: WorkloadSpec, digests: dict[str, str]) -> str:
    """The digest of the objects a workload uses (`digests`: object id -> its digest)."""
    used = sorted(object_id(source, spec.namespace, name) for source, name in
                  spec.config_refs())
    return hashlib.sha256(json.dumps([[o, digests.get(o, "")] for o in used]).encode()
                          ).hexdigest()


def plan(api: Path, operator: KeyPair, specs: list[Spec],
         stored_spec: Callable[[str], WorkloadSpec]) -> Plan:
    values: dict[str, tuple[SecretSpec, Opened]] = {}
    digests: dict[str, str] = {}
    out: list[Spec] = []
    for spec in specs:
        if isinstance(spec, SecretSpec):
            key = digest_key(operator, spec.object_id)
            vals = spec.values or {}
            spec = dataclasses.replace(spec, digest=digest(key, vals), values=None)
            values[spec.object_id] = (spec, Opened(key, dict(vals)))
        if isinstance(spec, ConfigMapSpec | SecretSpec):
            digests[spec.object_id] = spec.digest
        out.append(spec)
    if not any(isinstance(s, WorkloadSpec) and s.roll_on_config for s in out) and not digests:
        return Plan(out, values, [])
    kept = {r["object"]: r["digest"] for r in call(api, "GET", "/v1/objects")}
    changed = {o for o, d in digests.items() if kept.get(o) != d}
    digests = {**kept, **digests}
    out = [dataclasses.replace(s, config_digest=config_digest(s, digests))
           if isinstance(s, WorkloadSpec) and s.roll_on_config else s for s in out]
    in_file = {s.workload_id for s in out if isinstance(s, WorkloadSpec)}
    rolled = []
    namespaces = {o.split("/")[1] for o in changed}
    for row in call(api, "GET", "/v1/workloads") if changed else []:
        wid = row["workload"]
        if wid in in_file or row["namespace"] not in namespaces or not changed & set(
                row.get("uses", ())):
            continue
        stored = stored_spec(wid)
        if stored.roll_on_config:
            new = config_digest(stored, digests)
            rolled.append((wid, lambda s, new=new: dataclasses.replace(s, config_digest=new)))
    return Plan(out, values, rolled)


def seal_for_waiting(api: Path, values: dict[str, tuple[SecretSpec, Opened]],
                     timeout: float = SEALING_WAIT_S) -> None:
    """Seal each Secret for the machines that wait for it, until every workload using one of
    them is ready (or `timeout`)."""
    ids = set(values)
    start = time.monotonic()
    sealed: dict[tuple[str, str, str], float] = {}
    said = ""
    while True:
        copies = []
        for want in call(api, "GET", "/v1/secret-wants?ids=" + ",".join(sorted(ids))):
            secret, opened = values.get(want["secret"], (None, None))
            key = (want["secret"], want["machine"], want["task_id"])
            pub = bytes.fromhex(want["public_key"])
            if secret is None or opened is None or want["digest"] != secret.digest \
                    or peer_id(pub) != want["machine"] \
                    or time.monotonic() - sealed.get(key, -RESEAL_AFTER_S) < RESEAL_AFTER_S:
                continue
            sealed[key] = time.monotonic()
            copies.append({"secret": want["secret"], "digest": want["digest"],
                           "machine": want["machine"],
                           "box": base64.b64encode(seal(opened, pub)).decode()})
            print(f"sealed {want['secret']} for {want['machine']} (task {want['task_id']})",
                  file=sys.stderr, flush=True)
        if copies:
            call(api, "POST", "/v1/secret-copies", {"copies": copies})
        users = [r for r in call(api, "GET", "/v1/workloads") if ids & set(r.get("uses", ()))]
        waiting = [r["workload"] for r in users if r["state"] != "complete"]
        if users and not waiting:
            return
        line = (f"waiting for {', '.join(waiting)} to start with {', '.join(sorted(ids))}"
                if users else f"no workload uses {', '.join(sorted(ids))} yet")
        if not users and time.monotonic() - start > 5:
            print(f"{line}: its values reach the machines of a workload applied later when "
                  "this Secret is applied again (or applied in the same file)", file=sys.stderr)
            return
        if line != said and time.monotonic() - start > 3:
            print(line, file=sys.stderr, flush=True)
            said = line
        if time.monotonic() - start > timeout:
            raise UserError(f"{line} after {timeout:.0f} s; see `beemesh get workloads` and "
                            "`beemesh events`")
        time.sleep(0.5)


def kind_of(spec: Spec) -> str:
    """The signed message kind of an applied object (an object spec's kind is its own)."""
    return "Workload" if isinstance(spec, WorkloadSpec) else spec.kind


def name_of(spec: Spec) -> str:
    return spec.workload_id if isinstance(spec, WorkloadSpec) else spec.object_id

