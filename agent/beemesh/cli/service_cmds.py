"""`beemesh get services` and `describe service NAME`: each Service the local agent keeps,
the workloads its selector picks, and their replicas' service records (its endpoints)."""

from __future__ import annotations

from typing import Any

from beemesh.errors import UserError
from beemesh.output import ENDPOINT_COLUMNS, SERVICE_COLUMNS, SERVICE_WIDE, emit, table

SERVICE_WORDS = ("services", "service", "svc")
CONFIG_WORDS = ("configmaps", "configmap", "cm", "secrets", "secret")


def service_rows(api: Any, name: str | None, namespace: str) -> list[dict[str, Any]]:
    """`/v1/services`, or the one row of `name` (a UserError naming it if there is none)."""
    from beemesh.api.client import call

    rows = call(api, "GET", "/v1/services")
    if not name:
        return rows
    sid = f"service/{namespace}/{name.split('/')[-1]}"
    row = [r for r in rows if r["service"] == sid]
    if not row:
        raise UserError(f"no Service {sid} known to this agent; see `beemesh get services`")
    return row


def get_services(api: Any, name: str | None, namespace: str, output: str) -> None:
    emit(service_rows(api, name, namespace), SERVICE_COLUMNS, output, empty="no services",
         wide=SERVICE_WIDE)


def describe_service(api: Any, name: str, namespace: str, output: str) -> None:
    (row,) = service_rows(api, name, namespace)
    if output in ("json", "yaml"):
        emit(row, [], output)
        return
    lines = [f"Name:        {row['service']}",
             f"Selector:    {', '.join(f'{k}={v}' for k, v in row['selector'].items())}",
             f"Type:        {'headless (clusterIP: None)' if row['headless'] else 'ClusterIP'}",
             "Ports:       " + (", ".join(port_text(p) for p in row["ports"]) or "none"),
             f"Address:     {row['address']}:PORT inside every pod (by name: {row['name']}, "
             f"{row['name']}.{row['namespace']}, ...)",
             "Allow from:  " + ", ".join(row["allow_from"]),
             "Workloads:   " + (", ".join(row["workloads"]) or "none selected"),
             f"Endpoints:   {row['ready']} ready of {len(row['endpoints'])}"]
    if row["endpoints"]:
        lines += ["  " + line for line in table(row["endpoints"], [
            *ENDPOINT_COLUMNS[:4], ("machine", lambda r: str(r.get("machine", ""))[-8:]),
            *ENDPOINT_COLUMNS[4:5]]).splitlines()]
    print("\n".join(lines))


def port_text(p: dict[str, Any]) -> str:
    """`http 80->8080/TCP` (name, port, target)."""
    name = f"{p['name']} " if p.get("name") else ""
    return f"{name}{p['port']}->{p['targetPort']}/{p['protocol']}"
