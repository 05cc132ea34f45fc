"""Table columns of the commands that list things (`nodes`, `get`, `apply`, `events`); the
demo prints the same tables."""

from __future__ import annotations

import time

from beemesh.output import human_bytes

NODE_COLUMNS = [
    ("peer id", lambda r: r["peer_id"] + (" (self)" if r["self"] else "")),
    ("arch", lambda r: r["arch"]),
    ("cpu", lambda r: f"{r['cpu']:g}"),
    ("memory", lambda r: human_bytes(r["memory"])),
    ("status", lambda r: "cordoned" if r["cordoned"] else "ready"),
    ("labels", lambda r: ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-"),
    ("age", lambda r: f"{r['age_s']:.0f}s"),
]


TASK_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("replica", lambda r: r["replica"]),
    ("task", lambda r: r["task_id"]),
    ("state", lambda r: r["state"]),
]
POD_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("replica", lambda r: r["replica"]),
    ("pod", lambda r: r["pod"]),
    ("machine", lambda r: r["machine"]),
    ("state", lambda r: r["state"] + (" (retiring)" if r.get("retiring") else "")),
    ("ready", lambda r: "yes" if r.get("ready") else "no"),
    ("age", lambda r: f"{r['age_s']}s"),
]
ENDPOINT_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("replica", lambda r: r["ordinal"]),
    ("pod", lambda r: r["pod"]),
    ("peer id", lambda r: r["peer_id"]),
    ("ready", lambda r: "yes" if r["ready"] else "no"),
    ("addresses", lambda r: ",".join(r["addrs"]) or "-"),
    ("ports", lambda r: ",".join(
        f"{p['host_port'] or p['port']}/{p['protocol']}" for p in r["ports"]) or "-"),
    ("age", lambda r: f"{r['age_s']:.0f}s"),
]
EVENT_COLUMNS = [
    ("time", lambda r: time.strftime("%H:%M:%S", time.localtime(r["ts"]))),
    ("kind", lambda r: r["kind"]),
    ("workload", lambda r: r["workload"] or "-"),
    ("task", lambda r: r["task"] or "-"),
    ("machine", lambda r: (r["node"] or "-")[-8:]),
    ("message", lambda r: r["text"]),
]


