"""CLI output: every listing prints as an aligned table (`-o wide`: with more columns), or as
JSON or YAML (`-o json|yaml`); the columns of each listing (`nodes`, `get`, `apply`, `events`;
the demo prints the same tables)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    cells = [[name.upper() for name, _ in columns]]
    cells += [[str(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def emit(rows: Any, columns: Sequence[Column], fmt: str, empty: str = "",
         wide: Sequence[Column] = ()) -> None:
    """`fmt`: table, wide (`columns` then `wide`), json or yaml."""
    if fmt == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(rows, sort_keys=False, default_flow_style=False))
    elif not rows and empty:
        print(empty)
    else:
        print(table(rows, [*columns, *wide] if fmt == "wide" else columns))


def report(result: dict[str, Any], text: str, fmt: str) -> None:
    """What a command that changes something did: `text` for people (table and wide), or
    `result` as JSON or YAML, like a listing's rows."""
    if fmt in ("json", "yaml"):
        emit(result, [], fmt)
    else:
        print(text)


OUTPUTS = ["table", "wide", "json", "yaml"]


NODE_COLUMNS = [
    ("peer id", lambda r: r["peer_id"] + (" (self)" if r["self"] else "")),
    ("arch", lambda r: r["arch"]),
    ("cpu", lambda r: f"{r['cpu']:g}"),
    ("memory", lambda r: human_bytes(r["memory"])),
    ("status", lambda r: "suspect" if r.get("suspect") else "draining" if r.get("draining")
     else "cordoned" if r["cordoned"] else "ready"),
    ("labels", lambda r: ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-"),
    ("age", lambda r: f"{r['age_s']:.0f}s"),
]
NODE_WIDE = [
    ("free memory", lambda r: human_bytes(r["memory_available"])),
    ("pods", lambda r: r["pods"]),
    ("addresses", lambda r: ",".join(r["addrs"]) or "-"),
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
POD_WIDE = [
    ("template", lambda r: r.get("template") or "-"),
    ("task", lambda r: r["task"]),
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
SERVICE_COLUMNS = [
    ("name", lambda r: r["name"]),
    ("namespace", lambda r: r["namespace"]),
    ("type", lambda r: "headless" if r["headless"] else "ClusterIP"),
    ("ports", lambda r: ",".join(f"{p['port']}/{p['protocol']}" for p in r["ports"]) or "-"),
    ("endpoints", lambda r: f"{r['ready']}/{len(r['endpoints'])} ready"),
    ("selector", lambda r: ",".join(f"{k}={v}" for k, v in sorted(r["selector"].items()))),
    ("age", lambda r: f"{r['age_s']}s"),
]
CONFIG_COLUMNS = [  # ConfigMaps and Secrets (a Secret's keys, never its values)
    ("name", lambda r: r["name"]),
    ("namespace", lambda r: r["namespace"]),
    ("kind", lambda r: r["kind"] if r["kind"] == "ConfigMap" else f"Secret ({r['type']})"),
    ("data", lambda r: str(len(r["keys"]) if "keys" in r else len(r["data"]) + len(r["binary"]))),
    ("age", lambda r: f"{r['age_s']}s"),
]
SERVICE_WIDE = [
    ("workloads", lambda r: ",".join(r["workloads"]) or "-"),
    ("pods", lambda r: ",".join(f"{e['pod']}@{str(e.get('machine', ''))[-8:]}"
                                for e in r["endpoints"] if e.get("ready")) or "-"),
]
EVENT_COLUMNS = [
    ("time", lambda r: time.strftime("%H:%M:%S", time.localtime(r["ts"]))),
    ("kind", lambda r: r["kind"]),
    ("workload", lambda r: r["workload"] or "-"),
    ("task", lambda r: r["task"] or "-"),
    ("machine", lambda r: (r["machine"] or "-")[-8:]),
    ("message", lambda r: r["text"]),
]


WORKLOAD_COLUMNS = [
    ("name", lambda r: f"{r['kind'].lower()}/{r['name']}"),
    ("namespace", lambda r: r["namespace"]),
    ("ready", lambda r: f"{r['ready']}/{r['desired']}"),
    ("up-to-date", lambda r: r["up_to_date"]),
    ("current", lambda r: r["current"]),
    ("state", lambda r: r["state"]),
    ("age", lambda r: f"{r['age_s']}s"),
]
WORKLOAD_WIDE = [
    ("template", lambda r: r["template"]),
    ("strategy", lambda r: r["strategy"]),
    ("reason", lambda r: r["reason"] or "-"),
]
HISTORY_COLUMNS = [
    ("revision", lambda r: str(r["revision"]) + (" (current)" if r["current"] else "")),
    ("template", lambda r: r["template"]),
    ("age", lambda r: f"{r['age_s']}s"),
    ("change", lambda r: r["change"] or "-"),
]
POD_DESCRIBE_COLUMNS = [
    ("replica", lambda r: r["replica"]),
    ("pod", lambda r: r["pod"]),
    ("machine", lambda r: r["machine"][-8:]),
    ("state", lambda r: r["state"] + (" (retiring)" if r.get("retiring") else "")),
    ("ready", lambda r: "yes" if r.get("ready") else "no"),
    ("template", lambda r: r.get("template") or "-"),
    ("age", lambda r: f"{r['age_s']}s"),
]
