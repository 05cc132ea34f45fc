"""Commands that talk to the local agent's API: what it knows (`nodes`, `status`, `get`,
`events`, `metrics`) and what the operator asks of the fleet (`apply`, `delete`, `cordon`,
`drain`, `logs`, `exec`), signed by `operator_client` with the operator key."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from beemesh.cli.service_cmds import CONFIG_WORDS, SERVICE_WORDS, get_services
from beemesh.cli.workload_cmds import WORKLOAD_WORDS, get_workloads
from beemesh.output import (
    CONFIG_COLUMNS,
    ENDPOINT_COLUMNS,
    EVENT_COLUMNS,
    NODE_COLUMNS,
    NODE_WIDE,
    POD_COLUMNS,
    POD_WIDE,
    TASK_COLUMNS,
    emit,
    report,
    table,
)


def cmd_nodes(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    emit(call(api_path(args.api), "GET", "/v1/nodes"), NODE_COLUMNS, args.output,
         empty="no machines known yet", wide=NODE_WIDE)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    status = call(api_path(args.api), "GET", "/v1/status")
    rows = [{"key": k, "value": v} for k, v in status.items() if k != "footprint"]
    for process, f in (status.get("footprint") or {}).items():
        rows.append({"key": process, "value": _footprint_line(f)})
    emit(status if args.output == "json" else rows,
         [("key", lambda r: r["key"]), ("value", lambda r: r["value"])], args.output)
    return 0


def _footprint_line(f: dict[str, Any] | None) -> str:
    if not f:
        return "not running"
    mb = {k: f[f"{k}_bytes"] / 2**20 for k in ("rss", "pss", "uss")}
    return (f"rss {mb['rss']:.1f} MB, pss {mb['pss']:.1f} MB, uss {mb['uss']:.1f} MB, "
            f"cpu {f['cpu_seconds']:.1f} s, {f['threads']} threads, {f['open_files']} fds")


def cmd_metrics(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    path = api_path(args.api)
    if args.output in ("json", "yaml"):
        emit(call(path, "GET", "/v1/metrics"), [], args.output)
    else:
        sys.stdout.write(call(path, "GET", "/metrics"))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    api = api_path(args.api)
    tasks = client.apply(api, args.fleet, args.file)
    emit(tasks, TASK_COLUMNS, args.output)
    if not args.wait:
        return 0
    code, message = client.wait_deployed(api, tasks, args.timeout)
    print(message, file=sys.stderr)
    return code


def cmd_get(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    api = api_path(args.api)
    if args.what in ("pods", "pod", "po"):
        emit(call(api, "GET", "/v1/pods"), POD_COLUMNS, args.output, empty="no pods",
             wide=POD_WIDE)
    elif args.what in WORKLOAD_WORDS:
        get_workloads(api, args.what, args.name, args.namespace, args.output)
    elif args.what in SERVICE_WORDS:
        get_services(api, args.name, args.namespace, args.output)
    elif args.what in CONFIG_WORDS:
        kind = "Secret" if args.what.startswith("secret") else "ConfigMap"
        rows = [r for r in call(api, "GET", "/v1/objects") if r["kind"] == kind
                and (not args.name or (r["name"], r["namespace"]) == (args.name,
                                                                     args.namespace))]
        emit(rows, CONFIG_COLUMNS, args.output, empty=f"no {kind}s")
    elif args.what in ("endpoints", "endpoint", "ep"):
        from urllib.parse import quote

        from beemesh.cli.operator_client import workload_id

        target = "/v1/endpoints"
        if args.name:
            target += "?workload=" + quote(workload_id(args.name, args.namespace))
        emit(call(api, "GET", target), ENDPOINT_COLUMNS, args.output,
             empty="no service records" + (f" for {args.name}" if args.name else ""))
    else:
        emit(call(api, "GET", "/v1/nodes"), NODE_COLUMNS, args.output,
             empty="no machines known yet", wide=NODE_WIDE)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    result = client.delete(api_path(args.api), args.fleet, args.kind, args.name,
                           args.namespace, args.delete_volumes)
    workload = result["workload"].split("/")[0] in ("deployment", "statefulset", "pod")
    volumes = "; its claim volumes too" if args.delete_volumes else (
        "; claim volumes kept (--delete-volumes removes them)"
        if result["workload"].startswith("statefulset/") else "")
    report(result, f"{result['workload']} deleted" + (
        f" ({result['replicas']} replica(s) being removed{volumes})" if workload else ""),
        args.output)
    return 0


def cmd_cordon(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    result = client.cordon(api_path(args.api), args.fleet, args.machine, args.cordon)
    report(result, f"{result['machine']} {'cordoned' if result['cordoned'] else 'uncordoned'}",
           args.output)
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    api = api_path(args.api)
    result = client.drain(api, args.fleet, args.machine, args.grace, args.keep_data)
    print(f"draining {result['machine']}: {result['replicas']} replica(s) to move", file=sys.stderr)
    ok = True
    if args.wait:
        ok, message = client.wait_drained(api, result["machine"], args.timeout)
        print(message, file=sys.stderr)
        result = {**result, "drained": ok}
    if args.output in ("json", "yaml"):
        emit(result, [], args.output)
    return 0 if ok else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    return client.logs(api_path(args.api), args.fleet, args.pod, args.follow)


def cmd_exec(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    return client.exec_in(api_path(args.api), args.fleet, args.pod, args.container,
                          list(args.cmd), args.timeout)


def cmd_events(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    api = api_path(args.api)
    got = call(api, "GET", "/v1/events?after=0")
    emit(got["events"], EVENT_COLUMNS, args.output, empty="no events yet")
    while args.watch:
        got = call(api, "GET", f"/v1/events?after={got['last']}&wait=25", timeout=40)
        for row in got["events"]:
            if args.output == "json":
                print(json.dumps(row), flush=True)
            else:
                print(table([row], EVENT_COLUMNS).splitlines()[1], flush=True)
    return 0


