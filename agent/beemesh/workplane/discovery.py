"""What an application sees of its peers: files in /run/beemesh inside each pod.

The agent mounts each pod's own directory (`<workplane dir>/pods/<pod>/`) read-only at
`/run/beemesh` in every container of the pod, and sets `BEEMESH_WORKLOAD`, `BEEMESH_ORDINAL`,
`BEEMESH_POD` and `BEEMESH_DISCOVERY_DIR`. The work plane keeps two files there, replaced
atomically (write + rename) whenever their content changes, so a reader never sees half a file:

- `self.json`:  this replica: workload, ordinal, pod, name (its stable name: `POD.SERVICE`
  when a headless Service selects the workload, as `etcd-0.etcd`, else the pod name), peer_id
  (its workload Peer ID), ready, addrs (where its machine is reachable), ports (name, port,
  host_port, protocol).
- `peers.json`: {"workload", "peers": [...], "members": [...]}: `peers` are the replicas of the
  same workload whose probes say ready (this one included, marked "self": true), sorted by
  ordinal, same fields; `members` every replica with a live record, ready or not
  ({ordinal, pod, name, ready, self}): what a member of a Raft group needs to know its group.

A pod sees only its own directory: no other workload's replicas are listed to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from beemesh.files import write_atomic

SELF_FILE = "self.json"
PEERS_FILE = "peers.json"


def _write_if_changed(path: Path, content: dict[str, Any]) -> bool:
    text = json.dumps(content, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    write_atomic(path, text.encode(), mode=0o644, durable=False)  # rewritten every change
    return True


def entry(record: dict[str, Any], service: str | None) -> dict[str, Any]:
    """The fields of a record an application needs; `service`: the headless Service that
    names the replicas, if any."""
    pod = record["pod"]
    return {**{k: record[k] for k in ("ordinal", "pod", "peer_id", "ready", "addrs", "ports")},
            "name": f"{pod}.{service}" if service else pod}


def write(directory: Path, workload: str, me: dict[str, Any],
          records: list[dict[str, Any]], service: str | None = None) -> bool:
    """Refresh one pod's files; `me` and `records` are record dicts (ServiceRecord.to_dict).
    Returns True if a file changed. A directory the agent has not made yet is skipped."""
    if not directory.is_dir():
        return False
    mine = [{**entry(r, service), "self": r["peer_id"] == me["peer_id"]}
            for r in sorted(records, key=lambda r: (r["ordinal"], r["peer_id"]))
            if r["workload"] == workload]
    members = [{k: m[k] for k in ("ordinal", "pod", "name", "ready", "self")} for m in mine]
    changed = _write_if_changed(directory / SELF_FILE,
                                {"workload": workload, **entry(me, service)})
    return _write_if_changed(directory / PEERS_FILE, {
        "workload": workload, "peers": [m for m in mine if m["ready"]],
        "members": members}) or changed
