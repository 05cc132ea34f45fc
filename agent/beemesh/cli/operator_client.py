"""Operator commands: sign requests with the fleet's operator key, hand them to the local agent.

The agent cannot sign for the operator (it has no operator key); every machine checks the
operator signature itself, so a compromised relay cannot invent or alter a workload.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beemesh import wire
from beemesh.api.client import call, stream_lines
from beemesh.errors import UserError
from beemesh.fleet import Fleet
from beemesh.manifest import WorkloadSpec, load_manifest_file
from beemesh.workloads.messages import CORDON, DELETE, DRAIN, LOGS_REQUEST, WORKLOAD

KIND_ALIASES = {"deployment": "deployment", "deploy": "deployment", "statefulset": "statefulset",
                "sts": "statefulset", "pod": "pod", "po": "pod"}


def fleet_dir(flag: Path | None) -> Path:
    value = flag or os.environ.get("BEEMESH_FLEET")
    if not value:
        raise UserError("operator commands need the fleet material: pass --fleet DIR or set "
                        "BEEMESH_FLEET")
    return Path(value)


def sign(fleet_flag: Path | None, kind: str, body: dict[str, Any]) -> str:
    key = Fleet.load(fleet_dir(fleet_flag)).operator_key()
    return base64.b64encode(wire.seal(key, kind, body, time.time())).decode()


def apply(api: Path, fleet_flag: Path | None, manifest: Path) -> list[dict[str, Any]]:
    specs = load_manifest_file(manifest)
    for spec in specs:
        for warning in spec.warnings:
            print(f"warning: {spec.workload_id}: {warning}", file=sys.stderr)
    blobs = [sign(fleet_flag, WORKLOAD.name, {"spec": spec.to_dict()}) for spec in specs]
    return call(api, "POST", "/v1/apply", {"workloads": blobs})


def wait_deployed(api: Path, tasks: list[dict[str, Any]], timeout: float) -> tuple[bool, str]:
    """Poll the agent until every task is deployed; print progress as it changes."""
    pending = [t["task_id"] for t in tasks if t["state"] == "pending"]
    total = len(tasks)
    done_before = total - len(pending)
    deadline = time.monotonic() + timeout
    last = ""
    while pending:
        states = call(api, "GET", "/v1/tasks?ids=" + ",".join(pending))
        deployed = [s for s in states if s["state"] == "deployed"]
        line = f"{done_before + len(deployed)}/{total} replicas deployed"
        if line != last:
            print(line + "".join(f"\n  {s['workload']}[{s['replica']}] -> {s['machine']}"
                                 for s in deployed), file=sys.stderr, flush=True)
            last = line
        done_before += len(deployed)
        pending = [s["task_id"] for s in states if s["state"] != "deployed"]
        if not pending:
            break
        if time.monotonic() > deadline:
            reasons = {s.get("reason") or "no machine bid" + (
                f" (this one: {s['ineligible_here']})" if s.get("ineligible_here") else
                " (check arch, nodeSelector, free capacity, images and `beemesh events`)")
                for s in states}
            return False, f"{len(pending)} replica(s) not deployed after {timeout:.0f} s: " + \
                "; ".join(sorted(reasons))
        time.sleep(0.5)
    return True, f"all {total} replicas deployed"


def workload_id(name: str, namespace: str, kind: str = "deployment") -> str:
    """`web`, `statefulset/db` or the full `kind/namespace/name` -> the full workload id."""
    parts = name.split("/")
    if len(parts) == 3:
        kind, namespace, name = parts
    elif len(parts) == 2:
        kind, name = parts
    canonical = KIND_ALIASES.get(kind.lower())
    if canonical is None:
        raise UserError(f"unknown workload kind {kind!r}; use deployment, statefulset or pod")
    return f"{canonical}/{namespace}/{name}"


def delete(api: Path, fleet_flag: Path | None, kind: str, name: str,
           namespace: str) -> dict[str, Any]:
    wid = workload_id(name, namespace, kind)
    return call(api, "POST", "/v1/delete",
                {"request": sign(fleet_flag, DELETE.name, {"workload_id": wid})})


def resolve_machine(api: Path, name: str) -> str:
    """A full Peer ID, or a unique prefix/suffix of one this agent knows."""
    known = [n["peer_id"] for n in call(api, "GET", "/v1/nodes")]
    if name in known:
        return name
    matches = [p for p in known if p.startswith(name) or p.endswith(name)]
    if len(matches) != 1:
        raise UserError(f"{name!r} matches {len(matches)} known machines; give more of the "
                        "Peer ID (see `beemesh nodes`)")
    return matches[0]


def cordon(api: Path, fleet_flag: Path | None, machine: str, cordoned: bool) -> dict[str, Any]:
    peer = resolve_machine(api, machine)
    return call(api, "POST", "/v1/cordon", {"request": sign(
        fleet_flag, CORDON.name, {"machine": peer, "cordoned": cordoned})})


def drain(api: Path, fleet_flag: Path | None, machine: str, grace_s: int) -> dict[str, Any]:
    if grace_s < 0:
        raise UserError("--grace must be 0 or more seconds")
    peer = resolve_machine(api, machine)
    return call(api, "POST", "/v1/drain",
                {"request": sign(fleet_flag, DRAIN.name, {"machine": peer, "grace_s": grace_s})})


def wait_drained(api: Path, machine: str, timeout: float) -> tuple[bool, str]:
    """Poll `get pods` until no replica runs on `machine`; print progress as it changes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        left = [p for p in call(api, "GET", "/v1/pods") if p["machine"] == machine]
        if len(left) != last:
            print(f"{len(left)} replica(s) left on {machine}" + "".join(
                f"\n  {p['pod']} ({p['state']})" for p in left), file=sys.stderr, flush=True)
            last = len(left)
        if not left:
            return True, f"{machine} is drained"
        if time.monotonic() > deadline:
            return False, (f"{len(left)} replica(s) still on {machine} after {timeout:.0f} s: "
                           "their replacements are not ready (see `beemesh events` and `beemesh "
                           "get pods`)")
        time.sleep(1)


def logs(api: Path, fleet_flag: Path | None, pod: str, follow: bool) -> int:
    """Print a pod's log lines; exit status 1 if the agent reports an error."""
    request = sign(fleet_flag, LOGS_REQUEST.name, {"pod": pod, "follow": follow})
    for raw in stream_lines(api, "POST", "/v1/logs", {"request": request}):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            item = {"error": raw.removeprefix("error: ")}
        if "error" in item:
            print(f"beemesh: error: {item['error']}", file=sys.stderr)
            return 1
        print(item["line"], flush=True)
    return 0


def signed_spec(api: Path, fleet_flag: Path | None, wid: str,
                revision: int | None = None) -> WorkloadSpec:
    """The spec of the signed manifest the agent keeps of `wid` (or of one of its revisions),
    its signature checked against the fleet's trust list: a copy changed on the machine is
    never signed again."""
    from urllib.parse import quote

    fleet = Fleet.load(fleet_dir(fleet_flag))
    target = "/v1/workloads/manifest?workload=" + quote(wid)
    if revision is not None:
        target += f"&revision={revision}"
    got = call(api, "GET", target)
    try:
        blob = base64.b64decode(str(got.get("workload", "")), validate=True)
        env = wire.Verifier({WORKLOAD.name: WORKLOAD}, fleet.trusted_operators).authenticate(
            blob)
        return WorkloadSpec.from_dict(env.body["spec"])
    except (ValueError, wire.Rejected) as e:
        raise UserError(f"the agent's copy of {wid} is not an operator-signed workload ({e}); "
                        "apply the manifest again with `beemesh apply -f`") from None


def reapply(api: Path, fleet_flag: Path | None, wid: str,
            change: Callable[[WorkloadSpec], WorkloadSpec],
            revision: int | None = None) -> list[dict[str, Any]]:
    """Apply `change` to the signed manifest the agent keeps of `wid` (or of one of its
    revisions) and apply the result: what `scale`, `rollout restart` and `rollout undo` do."""
    changed = change(signed_spec(api, fleet_flag, wid, revision))
    blobs = [sign(fleet_flag, WORKLOAD.name, {"spec": changed.to_dict()})]
    return call(api, "POST", "/v1/apply", {"workloads": blobs})
