"""Day-2 commands on a running workload, as kubectl has them: `get workloads` (`deploy`,
`sts`), `describe`, `scale`, `rollout status|restart|history|undo`.

`scale`, `rollout restart` and `rollout undo` change the operator-signed manifest the local
agent keeps (or one of its past revisions; its signature checked here against the fleet's
trust list) and sign it again: a new apply, which every machine takes up
(`workplane.rollout` rolls the replicas to a changed template).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from beemesh.cli.service_cmds import SERVICE_WORDS, describe_service
from beemesh.errors import UserError
from beemesh.output import (
    EVENT_COLUMNS,
    HISTORY_COLUMNS,
    POD_DESCRIBE_COLUMNS,
    WORKLOAD_COLUMNS,
    WORKLOAD_WIDE,
    emit,
    report,
    table,
)

DESCRIBE_EVENTS = 10  # the last events `describe` shows
MAX_TASKS_ASKED = 50  # the newest task ids of a workload `describe` asks the agent about

KIND_FILTER = {"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
               "sts": "StatefulSet", "statefulset": "StatefulSet",
               "statefulsets": "StatefulSet"}
WORKLOAD_WORDS = ("workloads", "workload", *KIND_FILTER)


def get_workloads(api: Any, what: str, name: str | None, namespace: str,
                  output: str) -> None:
    """`beemesh get workloads|deploy|sts [NAME]`."""
    from beemesh.api.client import call

    rows = call(api, "GET", "/v1/workloads")
    kind = KIND_FILTER.get(what)
    rows = [r for r in rows if kind is None or r["kind"] == kind]
    if name:
        from beemesh.cli.operator_client import workload_id

        rows = [workload_row(api, workload_id(name, namespace,
                                              kind.lower() if kind else "deployment"), rows)]
    emit(rows, WORKLOAD_COLUMNS, output, empty="no workloads", wide=WORKLOAD_WIDE)


def workload_row(api: Any, wid: str,
                 rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`wid`'s row of `/v1/workloads` (`rows`: already fetched), or a UserError naming it."""
    from beemesh.api.client import call

    row = next((r for r in (rows if rows is not None else call(api, "GET", "/v1/workloads"))
                if r["workload"] == wid), None)
    if row is None:
        raise UserError(f"no workload {wid} known to this agent; see `beemesh get workloads`")
    return row


def cmd_scale(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    if args.replicas < 0:
        raise UserError(f"--replicas must be 0 or more, got {args.replicas}")
    wid = client.workload_id(args.name, args.namespace)
    if wid.startswith("pod/"):
        raise UserError("a Pod has exactly one replica; scale a Deployment or StatefulSet")
    client.reapply(api_path(args.api), args.fleet, wid,
                   lambda spec: dataclasses.replace(spec, replicas=args.replicas))
    report({"workload": wid, "replicas": args.replicas}, f"{wid} scaled to {args.replicas}",
           args.output)
    return 0


def cmd_rollout_restart(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path
    from beemesh.cli import operator_client as client

    wid = client.workload_id(args.name, args.namespace)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    client.reapply(api_path(args.api), args.fleet, wid,
                   lambda spec: dataclasses.replace(spec, restarted_at=stamp))
    report({"workload": wid, "restarted_at": stamp},
           f"{wid} restarted (template annotation restartedAt={stamp})", args.output)
    return 0


def cmd_rollout_status(args: argparse.Namespace) -> int:
    """Follow a workload until every replica runs its newest template and is ready: exit 0;
    exit 1 with the reason when it stalls (progress deadline) or `--timeout` passes."""
    from beemesh.api.client import api_path
    from beemesh.cli.operator_client import workload_id

    api = api_path(args.api)
    wid = workload_id(args.name, args.namespace)
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        row = workload_row(api, wid)
        if row["state"] == "complete":
            report(row, f'{wid} successfully rolled out ({row["desired"]} replica(s) on '
                   f'template {row["template"]})', args.output)
            return 0
        if row["state"] == "stalled":
            return _rollout_failed(row, f"error: {wid}: {row['reason']}", args.output)
        line = (f"Waiting for {wid} rollout to finish: {row['up_to_date']} of "
                f"{row['desired']} updated, {row['ready']} ready"
                + (f" ({row['reason']})" if row["reason"] else ""))
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if not args.watch:
            return _rollout_failed(row, "", args.output)
        if time.monotonic() > deadline:
            return _rollout_failed(row, f"error: {wid}: rollout not finished after "
                                   f"{args.timeout:.0f} s", args.output)
        time.sleep(1)


def _rollout_failed(row: dict[str, Any], why: str, fmt: str) -> int:
    """`rollout status` did not see the rollout complete: the reason on stderr, the row on
    stdout for -o json|yaml; exit 1."""
    if why:
        print(why, file=sys.stderr)
    if fmt in ("json", "yaml"):
        emit(row, [], fmt)
    return 1


def cmd_rollout_history(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from beemesh.api.client import api_path, call
    from beemesh.cli.operator_client import workload_id

    wid = workload_id(args.name, args.namespace)
    emit(call(api_path(args.api), "GET", "/v1/workloads/history?workload=" + quote(wid)),
         HISTORY_COLUMNS, args.output)
    return 0


def cmd_rollout_undo(args: argparse.Namespace) -> int:
    """Back to a past pod template (default: the one before the current), keeping the
    current replicas count; a new apply, rolled like any other."""
    from urllib.parse import quote

    from beemesh.api.client import api_path, call
    from beemesh.cli import operator_client as client

    api = api_path(args.api)
    wid = client.workload_id(args.name, args.namespace)
    history = call(api, "GET", "/v1/workloads/history?workload=" + quote(wid))
    current = len(history)
    to = current - 1 if args.to_revision is None else args.to_revision
    if not 1 <= to < current:
        raise UserError(f"{wid} has revisions 1 to {current} (the current one); --to-revision "
                        "must name an earlier one" if current > 1 else
                        f"{wid} has no earlier revision to go back to")
    replicas = client.signed_spec(api, args.fleet, wid).replicas
    client.reapply(api, args.fleet, wid,
                   lambda spec: dataclasses.replace(spec, replicas=replicas), revision=to)
    report({"workload": wid, "revision": to, "template": history[to - 1]["template"]},
           f"{wid} rolled back to revision {to} (template {history[to - 1]['template']})",
           args.output)
    return 0


def describe(workload: dict[str, Any] | None, pods: list[dict[str, Any]],
             events: list[dict[str, Any]], what: str,
             waiting: dict[int, str] | None = None) -> str:
    """`beemesh describe` as text, like kubectl's: the workload (or one pod), its replicas
    and the last events, and for a replica that does not run, why: `waiting` (replica ->
    why its pending task has no machine, `operator_client.waiting_reason`), else as the
    events say."""
    lines: list[str] = []
    if workload is not None:
        w = workload
        lines += [f"Name:        {w['workload']}",
                  f"Template:    {w['template']} (generation {w['generation']})",
                  f"Strategy:    {w['strategy']}",
                  f"Replicas:    {w['desired']} desired | {w['current']} current | "
                  f"{w['ready']} ready | {w['up_to_date']} up-to-date",
                  f"State:       {w['state']}" + (f" ({w['reason']})" if w["reason"] else "")]
        running = {p["replica"] for p in pods if p["state"] == "running"}
        for ordinal in range(w["desired"]):
            if ordinal not in running:
                why = (waiting or {}).get(ordinal) or why_not(events)
                lines.append(f"Replica {ordinal}:   not running: {why}")
        for p in pods:
            if p.get("afresh"):
                lines.append(f"Replica {p['replica']}:   started afresh on {p['machine']}: "
                             "empty claim volumes, the machine that held its data is gone")
    else:
        lines.append(f"Pod:         {what}")
    lines.append("Pods:" if pods else "Pods:        none")
    lines += ["  " + line for line in table(pods, POD_DESCRIBE_COLUMNS).splitlines()] if pods \
        else []
    lines.append("Events:" if events else "Events:      none")
    lines += ["  " + line for line in table(events[-DESCRIBE_EVENTS:],
                                             EVENT_COLUMNS).splitlines()] if events else []
    return "\n".join(lines)


def why_not(events: list[dict[str, Any]]) -> str:
    """The newest reason the events give for a replica not running: a failed deploy, or why
    this machine did not bid."""
    for e in reversed(events):
        if e["kind"] == "Failed" or (e["kind"] == "Note" and "not bidding" in e["text"]):
            return e["text"]
    return "no machine has reported on it yet (see `beemesh events`)"


def pending_tasks(api: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `/v1/tasks` rows of the workload's tasks (named by its events) still pending,
    the newest per replica: each says why no machine took it (`fleet`, `ineligible_here`)."""
    from beemesh.api.client import call

    ids = list(dict.fromkeys(e["task"] for e in events if e.get("task")))[-MAX_TASKS_ASKED:]
    if not ids:
        return []
    by_replica = {t["replica"]: t for t in call(api, "GET", "/v1/tasks?ids=" + ",".join(ids))
                  if t.get("state") == "pending"}
    return [by_replica[r] for r in sorted(by_replica)]


def cmd_describe(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call
    from beemesh.cli.operator_client import waiting_reason, workload_id

    api = api_path(args.api)
    kind, _, inline = args.kind.partition("/")
    if kind.lower() in SERVICE_WORDS:
        if not (inline or args.name):
            raise UserError("name the Service: `beemesh describe service NAME`")
        describe_service(api, inline or args.name, args.namespace, args.output)
        return 0
    events = call(api, "GET", "/v1/events?after=0")["events"]
    pods = call(api, "GET", "/v1/pods")
    if args.kind.lower() in ("pod", "po") and args.name is not None:
        mine = [p for p in pods if p["pod"] == args.name]
        if not mine:
            raise UserError(f"no pod {args.name} known to this agent; see `beemesh get pods`")
        tasks = {p["task"] for p in mine}
        related = [e for e in events if e["task"] in tasks or args.name in e["text"]]
        out: dict[str, Any] = {"pods": mine, "events": related}
        text = describe(None, mine, related, args.name)
    else:
        wid = workload_id(args.kind if args.name is None else f"{args.kind}/{args.name}",
                          args.namespace)
        row = workload_row(api, wid)
        mine = [p for p in pods if p["workload"] == wid]
        related = [e for e in events if e["workload"] == wid]
        pending = pending_tasks(api, related)
        out = {"workload": row, "pods": mine, "events": related, "pending": pending}
        text = describe(row, mine, related, wid,
                        {t["replica"]: waiting_reason(t) for t in pending})
    if args.output in ("json", "yaml"):
        emit(out, [], args.output)
    else:
        print(text)
    return 0
