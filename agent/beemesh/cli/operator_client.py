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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from beemesh import wire
from beemesh.api.client import call, stream_lines
from beemesh.errors import UserError
from beemesh.fleet import Fleet
from beemesh.manifest import WorkloadSpec, load_manifest_file
from beemesh.workloads.messages import (
    CORDON,
    DELETE,
    DRAIN,
    EXEC_REQUEST,
    LOGS_REQUEST,
    MAX_EXEC_S,
    WORKLOAD,
)

KIND_ALIASES = {"deployment": "deployment", "deploy": "deployment", "statefulset": "statefulset",
                "sts": "statefulset", "pod": "pod", "po": "pod", "service": "service",
                "svc": "service", "configmap": "configmap", "cm": "configmap",
                "secret": "secret"}


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
    """Sign every object of a manifest file and hand them to the agent together (it checks
    them all before it acts on any); then apply again the stored workloads that roll on a
    changed ConfigMap or Secret, and seal the file's Secrets for the machines that start pods
    using them (`config_apply`)."""
    from beemesh.cli import config_apply

    key = Fleet.load(fleet_dir(fleet_flag)).operator_key()
    specs = load_manifest_file(manifest)
    for spec in specs:
        for warning in spec.warnings:
            print(f"warning: {config_apply.name_of(spec)}: {warning}", file=sys.stderr)
    planned = config_apply.plan(api, key, specs,
                                lambda wid: signed_spec(api, fleet_flag, wid))
    blobs = [base64.b64encode(wire.seal(key, config_apply.kind_of(spec), {
        "spec": spec.to_dict()}, time.time())).decode() for spec in planned.specs]
    rows: list[dict[str, Any]] = call(api, "POST", "/v1/apply", {"workloads": blobs})
    for wid, change in planned.rolled:
        print(f"{wid} rolls: a ConfigMap or Secret it uses changed", file=sys.stderr)
        rows += reapply(api, fleet_flag, wid, change)
    if planned.values:
        config_apply.seal_for_waiting(api, planned.values)
    return rows


# Exit codes of `apply --wait` (also in the CLI's module doc and the README).
DEPLOYED, FAILED, UNPLACED = 0, 1, 2
SURE_UNPLACEABLE_S = 15.0  # every machine ruled out this long: stop waiting (exit 2)


def wait_deployed(api: Path, tasks: list[dict[str, Any]], timeout: float) -> tuple[int, str]:
    """Poll the agent until every task is deployed; print progress as it changes and, while
    a replica waits for a machine, why. (exit code, last line): DEPLOYED; UNPLACED when a
    replica found no machine by the deadline, or sooner once every machine in view has been
    ruled out for SURE_UNPLACEABLE_S."""
    pending = [t["task_id"] for t in tasks if t["state"] == "pending"]
    total = len(tasks)
    done_before = total - len(pending)
    start = time.monotonic()
    ruled_out_since: float | None = None
    last, last_why = "", ""
    while pending:
        states = call(api, "GET", "/v1/tasks?ids=" + ",".join(pending))
        deployed = [s for s in states if s["state"] == "deployed"]
        line = f"{done_before + len(deployed)}/{total} replicas deployed"
        if line != last:
            print(line + "".join(f"\n  {s['workload']}[{s['replica']}] -> {s['machine']}"
                                 for s in deployed), file=sys.stderr, flush=True)
            last = line
        done_before += len(deployed)
        waiting = [s for s in states if s["state"] != "deployed"]
        pending = [s["task_id"] for s in waiting]
        if not pending:
            break
        now = time.monotonic()
        why = "; ".join(sorted({waiting_reason(s) for s in waiting}))
        if why != last_why and now - start >= 3:
            print(f"  waiting: {why}", file=sys.stderr, flush=True)
            last_why = why
        ruled_out_since = (ruled_out_since or now) if all(map(ruled_out, waiting)) else None
        sure = ruled_out_since is not None and now - ruled_out_since >= SURE_UNPLACEABLE_S
        if sure or now - start > timeout:
            after = f"{now - start:.0f} s" if sure else f"{timeout:.0f} s"
            return UNPLACED, (f"{len(pending)} replica(s) could not be placed after {after}: "
                              f"{why}")
        time.sleep(0.5)
    return DEPLOYED, f"all {total} replicas deployed"


def waiting_reason(status: dict[str, Any]) -> str:
    """Why a replica has no machine yet, from a `/v1/tasks` row: the last failure if one
    failed it, else which machines the constraints rule out, and this machine's reason."""
    name = f"{status.get('workload', '?')}[{status.get('replica', '?')}]"
    if status.get("reason"):
        return f"{name}: last failure: {status['reason']}"
    fleet = status.get("fleet") or {}
    parts = [f"{name}: no machine bid yet"]
    if fleet:
        machines, fit = fleet.get("machines", 0), fleet.get("fit", 0)
        text = f"of {machines} other machine(s) in view {fit} fit" if machines else \
            "no other machine in view"
        parts.append(text + "".join(f"; {n} {r}" for r, n in fleet.get("refusals", [])))
    if status.get("ineligible_here"):
        parts.append(f"this machine: {status['ineligible_here']}")
    return " — ".join(parts)


def ruled_out(status: dict[str, Any]) -> bool:
    """Every machine in view (this one too) cannot run this replica, as far as is known (an
    ordinal waiting for the lower ones to be ready is not ruled out: it is waiting)."""
    from beemesh.scheduling.scoring import ORDERED_READY

    fleet = status.get("fleet") or {}
    return bool(status.get("ineligible_here")) and not status.get("reason") and \
        fleet.get("fit", 1) == 0 and ORDERED_READY not in status["ineligible_here"]


def workload_id(name: str, namespace: str, kind: str = "deployment") -> str:
    """`web`, `statefulset/db` or the full `kind/namespace/name` -> the full workload id."""
    parts = name.split("/")
    if len(parts) == 3:
        kind, namespace, name = parts
    elif len(parts) == 2:
        kind, name = parts
    canonical = KIND_ALIASES.get(kind.lower())
    if canonical is None:
        raise UserError(f"unknown kind {kind!r}; use deployment, statefulset, pod, service, "
                        "configmap or secret")
    return f"{canonical}/{namespace}/{name}"


def delete(api: Path, fleet_flag: Path | None, kind: str, name: str,
           namespace: str, volumes: bool = False) -> dict[str, Any]:
    """Delete a workload or object; `volumes`: a StatefulSet's claim volumes go too."""
    wid = workload_id(name, namespace, kind)
    if volumes and not wid.startswith("statefulset/"):
        raise UserError("--delete-volumes is for a StatefulSet (its claim volumes)")
    return call(api, "POST", "/v1/delete", {"request": sign(
        fleet_flag, DELETE.name, {"workload_id": wid, **({"volumes": True} if volumes else {})})})


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


def drain(api: Path, fleet_flag: Path | None, machine: str, grace_s: int,
          keep_data: bool = False) -> dict[str, Any]:
    if grace_s < 0:
        raise UserError("--grace must be 0 or more seconds")
    peer = resolve_machine(api, machine)
    return call(api, "POST", "/v1/drain", {"request": sign(fleet_flag, DRAIN.name, {
        "machine": peer, "grace_s": grace_s, **({"keep_data": True} if keep_data else {})})})


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
    for item in pod_answer(api, "/v1/logs", request):
        if "error" in item:
            print(f"beemesh: error: {item['error']}", file=sys.stderr)
            return 1
        print(item["line"], flush=True)
    return 0


def exec_in(api: Path, fleet_flag: Path | None, pod: str, container: str, argv: list[str],
            timeout_s: int) -> int:
    """Run argv in a pod wherever it runs and print its output; the command's exit code, or
    1 with the reason if it could not be run."""
    if not argv:
        raise UserError("give the command after `--`, e.g. `beemesh exec web-0 -- ls /`")
    if not 1 <= timeout_s <= MAX_EXEC_S:
        raise UserError(f"--timeout must be 1 to {MAX_EXEC_S} seconds")
    request = sign(fleet_flag, EXEC_REQUEST.name, {"pod": pod, "container": container,
                                                   "argv": argv, "timeout_s": timeout_s})
    for item in pod_answer(api, "/v1/exec", request):
        if "error" in item:
            print(f"beemesh: error: {item['error']}", file=sys.stderr)
            return 1
        if "output" in item:
            sys.stdout.write(str(item["output"]))
            sys.stdout.flush()
        if "exit" in item:
            return int(item["exit"])
    print("beemesh: error: the agent ended the answer without the command's exit code; "
          "see `beemesh events` on the machine that runs the pod", file=sys.stderr)
    return 1


def pod_answer(api: Path, target: str, request: str) -> Iterator[dict[str, Any]]:
    """The JSON lines of the agent's answer to a signed pod request (logs, exec)."""
    for raw in stream_lines(api, "POST", target, {"request": request}):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            item = {"error": raw.removeprefix("error: ")}
        yield item if isinstance(item, dict) else {"error": f"unexpected answer {raw[:80]!r}"}


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
