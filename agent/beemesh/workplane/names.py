"""Service names inside pods (sans-IO): addresses, /etc/hosts, env vars, listeners.

Each pod reaches a Service at an address Beemesh serves inside that pod's own network
namespace: a loopback address derived from the Service's name (`address`), so every pod,
machine and restart agrees on it without asking anyone. The agent (root) opens a listening
socket there, in the pod's namespace, for every port of every Service (`listeners`), and hands
it to its work plane, which answers each connection with a workload stream (`streams`). Only
that pod can connect to its own listeners, so a connection's source is known without trusting
any address.

Names resolve through the pod's /etc/hosts, which the agent writes (`hosts_text`) and mounts
read-only in every container; it is rewritten in place when Services change, so names applied
after a pod started resolve too. A pod reads, as in Kubernetes:

- `SERVICE` (its own namespace), `SERVICE.NAMESPACE`, `SERVICE.NAMESPACE.svc` and
  `SERVICE.NAMESPACE.svc.cluster.local`;
- for a headless Service over a StatefulSet, `POD.SERVICE...` for every ordinal (`web-0.web`):
  a listener of its own that only ever reaches that ordinal, wherever it runs;
- its own pod name (the hostname) at 127.0.1.1;
- env vars for the Services of its namespace that exist when it starts
  (`<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT`, `<SVC>_SERVICE_PORT_<NAME>`, `<SVC>_PORT`);
  headless Services get none, as in Kubernetes.

Two Services whose addresses collide (about one pair in 100,000 for 50 Services) are both
served only if the collision is in different pods; in one pod the one that sorts second is left
out and logged (`Plan.collisions`): rename one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from beemesh.manifest.service import ServiceSpec

MAX_LISTENERS = 1024  # per pod: Services x ports x ordinals beyond this are left out
HOSTNAME_ADDRESS = "127.0.1.1"
DOMAIN = "svc.cluster.local"


def address(namespace: str, service: str, ordinal: int | None = None) -> str:
    """The loopback address of a Service (or of one ordinal of a headless one) in every pod:
    127.64.0.0 - 127.253.255.255, clear of 127.0.0.1 and the hostname's 127.0.1.1."""
    key = f"{namespace}/{service}" + ("" if ordinal is None else f"/{ordinal}")
    d = hashlib.sha256(key.encode()).digest()
    return f"127.{64 + d[0] % 190}.{d[1]}.{d[2]}"


@dataclass(frozen=True)
class Endpoints:
    """What the names of a Service depend on besides its spec: for a headless one over a
    StatefulSet, the pod name of each ordinal (`web-0`, `web-1`, ...)."""

    service: ServiceSpec
    ordinals: tuple[tuple[int, str], ...] = ()  # (ordinal, pod name)


@dataclass(frozen=True)
class Listener:
    """One socket a pod's Services are served at: where, and what it reaches."""

    pod: str
    service_id: str
    address: str
    port: int  # the Service's port (what the app connects to)
    ordinal: int | None = None  # a headless Service's one ordinal; None: any ready replica
    workload_id: str = ""  # the pod's (the caller's)

    @property
    def key(self) -> str:
        return f"{self.pod}|{self.address}|{self.port}"


@dataclass
class Plan:
    """A pod's names and listeners."""

    hosts: list[tuple[str, list[str]]] = field(default_factory=list)  # address, names
    listeners: list[Listener] = field(default_factory=list)
    collisions: list[str] = field(default_factory=list)


def _names(svc: ServiceSpec, host: str, own_namespace: str) -> list[str]:
    full = f"{host}.{svc.namespace}"
    short = [host] if svc.namespace == own_namespace else []
    return [*short, full, f"{full}.svc", f"{full}.{DOMAIN}"]


def plan(pod: str, workload_id: str, services: Iterable[Endpoints]) -> Plan:
    """Every name and listener of `pod` (a replica of `workload_id`), Services in a stable
    order."""
    namespace = workload_id.split("/")[1] if workload_id.count("/") == 2 else ""
    out = Plan()
    taken: dict[str, str] = {}

    def add(addr: str, names: list[str], svc: ServiceSpec, ordinal: int | None) -> None:
        owner = f"{svc.service_id}" + ("" if ordinal is None else f"/{ordinal}")
        if taken.setdefault(addr, owner) != owner:
            out.collisions.append(f"{owner} has the address of {taken[addr]}")
            return
        out.hosts.append((addr, names))
        for p in svc.ports:
            if len(out.listeners) < MAX_LISTENERS:
                out.listeners.append(Listener(pod, svc.service_id, addr, p.port, ordinal,
                                              workload_id))

    for e in sorted(services, key=lambda e: e.service.service_id):
        svc = e.service
        add(address(svc.namespace, svc.name), _names(svc, svc.name, namespace), svc, None)
        if svc.headless:
            for ordinal, pod_name in e.ordinals:
                add(address(svc.namespace, svc.name, ordinal),
                    _names(svc, f"{pod_name}.{svc.name}", namespace), svc, ordinal)
    return out


def hosts_text(pod: str, p: Plan) -> str:
    """The pod's /etc/hosts."""
    lines = ["# written by beemesh: Services this pod can reach (rewritten when they change)",
             "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{HOSTNAME_ADDRESS}\t{pod}"]
    lines += [f"{addr}\t{' '.join(names)}" for addr, names in p.hosts]
    return "\n".join(lines) + "\n"


def env_vars(namespace: str, services: Iterable[ServiceSpec]) -> dict[str, str]:
    """Kubernetes' service env vars for the (non-headless) Services of `namespace`."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s.name):
        if svc.namespace != namespace or svc.headless or not svc.ports:
            continue
        prefix = svc.name.upper().replace("-", "_")
        host, first = address(svc.namespace, svc.name), svc.ports[0].port
        env[f"{prefix}_SERVICE_HOST"] = host
        env[f"{prefix}_SERVICE_PORT"] = str(first)
        env[f"{prefix}_PORT"] = f"tcp://{host}:{first}"
        for p in svc.ports:
            if p.name:
                env[f"{prefix}_SERVICE_PORT_{p.name.upper().replace('-', '_')}"] = str(p.port)
            env[f"{prefix}_PORT_{p.port}_TCP"] = f"tcp://{host}:{p.port}"
    return env
