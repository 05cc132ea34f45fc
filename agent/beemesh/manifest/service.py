"""v1 Service -> ServiceSpec: a stable name for the replicas a selector picks.

Supported: ``metadata`` as for workloads (the name a DNS-1035 label: a letter first, at most
63 characters), ``spec.selector`` (labels of pod templates in the same namespace; required:
Beemesh has no manual Endpoints), ``spec.ports[]`` (``name``, ``port``, ``targetPort`` as a
number or the name of a container port, ``protocol`` TCP), ``spec.clusterIP: None``
(headless: every replica has its own name, `NAME-0.SERVICE` for a StatefulSet),
``spec.publishNotReadyAddresses`` (connections also go to replicas that are not ready yet, as
the members of a Raft group must reach each other before any is ready) and
``type: ClusterIP``. A cluster IP is not a thing here (each pod reaches a Service at an address
Beemesh serves inside that pod), so a given ``clusterIP`` is ignored with a warning;
NodePort and LoadBalancer are refused (a container's ``hostPort`` publishes on a machine).

Who may connect (the Service's policy, checked by the serving work plane on every workload
stream): by default the workloads of the Service's own namespace. The annotation
``beemesh.io/allow-from`` replaces that with a comma-separated list of ``NAMESPACE/WORKLOAD``
patterns, either part ``*``: ``default/frontend`` narrows it to one workload (of any kind),
``*/*`` opens it to every namespace, ``default/*, tools/*`` adds one.

``from_dict`` re-checks every field: a ServiceSpec travels inside operator-signed messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beemesh.manifest.checks import (
    MAX_LABEL,
    Fail,
    Where,
    describe,
    dns_label,
    join,
    label_map,
    port_number,
)
from beemesh.manifest.fields import NOT_YET, READ_ONLY, Doc

if TYPE_CHECKING:
    from beemesh.manifest.model import WorkloadSpec

MAX_SERVICE_PORTS = 32
_SPEC_FIELDS = ("selector", "ports", "clusterIP", "clusterIPs", "type",
                "publishNotReadyAddresses")
_SPEC_WARN = {
    **dict.fromkeys(("sessionAffinity", "sessionAffinityConfig", "internalTrafficPolicy",
                     "trafficDistribution"), NOT_YET),
    **dict.fromkeys(("ipFamilies", "ipFamilyPolicy"), READ_ONLY),
}
_PORT_FIELDS = ("name", "port", "targetPort", "protocol")
_PORT_WARN = {"appProtocol": NOT_YET}
_HEADLESS = "None"
ALLOW_FROM = "beemesh.io/allow-from"
MAX_ALLOW = 32


@dataclass(frozen=True)
class ServicePort:
    name: str  # "" only when the Service has one port
    port: int  # what clients connect to
    target: int | str  # the container port: a number, or the name of a container's port

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "targetPort": self.target,
                "protocol": "TCP"}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    namespace: str
    selector: tuple[tuple[str, str], ...]
    ports: tuple[ServicePort, ...]
    headless: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    allow_from: tuple[str, ...] = ()  # NAMESPACE/WORKLOAD patterns; () = its own namespace
    not_ready: bool = False  # publishNotReadyAddresses: not-ready replicas are endpoints too

    kind = "Service"

    @property
    def service_id(self) -> str:
        return f"service/{self.namespace}/{self.name}"

    @property
    def object_id(self) -> str:
        """The id it shares with ConfigMaps and Secrets (`workloads.store` keeps all three)."""
        return self.service_id

    def selects(self, namespace: str, labels: tuple[tuple[str, str], ...]) -> bool:
        """Whether pods of a template with these labels, in that namespace, are endpoints."""
        have = dict(labels)
        return namespace == self.namespace and all(have.get(k) == v for k, v in self.selector)

    def picks(self, workloads: Iterable[WorkloadSpec]) -> list[WorkloadSpec]:
        """The workloads whose replicas are this Service's endpoints."""
        return [w for w in workloads if self.selects(w.namespace, w.labels)]

    def allows(self, namespace: str, workload: str) -> bool:
        """Whether replicas of `workload` (its name) in `namespace` may connect."""
        patterns = self.allow_from or (f"{self.namespace}/*",)
        for p in patterns:
            ns, _, name = p.partition("/")
            if ns in ("*", namespace) and name in ("*", workload):
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace,
                "labels": dict(self.labels), "selector": dict(self.selector),
                "ports": [p.to_dict() for p in self.ports], "headless": self.headless,
                **({"allow_from": list(self.allow_from)} if self.allow_from else {}),
                **({"not_ready": True} if self.not_ready else {})}

    @classmethod
    def from_dict(cls, data: Any) -> ServiceSpec:
        """A ServiceSpec from the wire or disk, every field checked (ManifestError if not)."""
        fail = Where("service").fail

        if not isinstance(data, dict):
            fail(None, f"must be a mapping, got {describe(data)}", "apply it again")
        unknown = set(data) - {"name", "namespace", "labels", "selector", "ports", "headless",
                               "allow_from", "not_ready"}
        if unknown:
            fail(sorted(map(str, unknown))[0], "unknown field", "apply it again")
        name = service_name(data.get("name"), "name", fail)
        namespace = dns_label(data.get("namespace"), "namespace", "namespace", MAX_LABEL, fail)
        headless, not_ready = data.get("headless", False), data.get("not_ready", False)
        for key, flag in (("headless", headless), ("not_ready", not_ready)):
            if not isinstance(flag, bool):
                fail(key, f"must be true or false, got {describe(flag)}", "apply it again")
        return cls(name=name, namespace=namespace,
                   selector=selector_of(data.get("selector"), "selector", fail),
                   ports=ports_of(data.get("ports"), "ports", headless, fail, None),
                   headless=headless, labels=label_map(data.get("labels"), "labels", fail),
                   allow_from=allow_from_of(data.get("allow_from", []), "allow_from", fail),
                   not_ready=not_ready)


def service_name(value: Any, path: str, fail: Fail) -> str:
    """A DNS-1035 label, as Kubernetes requires of Service names: it becomes a host name."""
    name = dns_label(value, path, "Service name", MAX_LABEL, fail)
    if not name[0].isalpha():
        fail(path, f"Service name {name!r} must start with a letter",
             "start it with a lowercase letter")
    return name


def allow_from_of(value: Any, path: str, fail: Fail) -> tuple[str, ...]:
    """The policy patterns: NAMESPACE/WORKLOAD, each part a DNS label or `*`."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or (not value and path != "allow_from"):
        fail(path, f"must list NAMESPACE/WORKLOAD patterns, got {describe(value)}",
             "write e.g. 'default/frontend, tools/*'")
    if len(value) > MAX_ALLOW:
        fail(path, f"{len(value)} patterns, more than {MAX_ALLOW}", "use * for a whole namespace")
    out = []
    for item in value:
        ns, slash, name = item.partition("/") if isinstance(item, str) else ("", "", "")
        if not slash:
            fail(path, f"{describe(item)} is not NAMESPACE/WORKLOAD",
                 "write e.g. default/frontend, or default/* for a whole namespace")
        for part in (ns, name):
            if part != "*":
                dns_label(part, path, "namespace or workload name", MAX_LABEL, fail)
        out.append(f"{ns}/{name}")
    return tuple(out)


def selector_of(value: Any, path: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    selector = label_map(value, path, fail)
    if not selector:
        fail(path, "missing or empty", "select the pod template labels of the workloads it "
             "serves, e.g. app: web (Beemesh has no manual Endpoints)")
    return selector


def ports_of(value: Any, path: str, headless: bool, fail: Fail,
             d: Doc | None) -> tuple[ServicePort, ...]:
    """spec.ports: each port checked; names unique and required when there are several."""
    if value is None:
        value = []
    if not isinstance(value, list):
        fail(path, f"must be a list, got {describe(value)}", "write one '- port: N' per port")
    if not value and not headless:
        fail(path, "missing or empty", "list the ports clients use, e.g. - port: 80")
    if len(value) > MAX_SERVICE_PORTS:
        fail(path, f"{len(value)} ports, more than {MAX_SERVICE_PORTS}", "split the Service")
    ports: list[ServicePort] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            fail(where, f"must be a mapping, got {describe(item)}", "write it as port: N")
        if d is not None:
            d.check_fields(item, where, _PORT_FIELDS, _PORT_WARN)
        protocol = item.get("protocol", "TCP")
        if protocol != "TCP":
            fail(join(where, "protocol"), f"{describe(protocol)} is not supported",
                 "use TCP (workload streams carry TCP only)")
        name = item.get("name") or ""
        if name or len(value) > 1:
            name = dns_label(name, join(where, "name"), "port name", 15, fail)
        port = port_number(item.get("port"), join(where, "port"), "port", fail)
        target = item.get("targetPort", port)
        if isinstance(target, str):
            target = dns_label(target, join(where, "targetPort"), "port name", 15, fail)
        else:
            target = port_number(target, join(where, "targetPort"), "targetPort", fail)
        ports.append(ServicePort(name, port, target))
    names = [p.name for p in ports]
    for i, p in enumerate(ports):
        if p.name in names[:i]:
            fail(join(f"{path}[{i}]", "name"), f"port name {p.name!r} is used twice",
                 "give each port its own name")
        if p.port in [q.port for q in ports[:i]]:
            fail(join(f"{path}[{i}]", "port"), f"port {p.port} is listed twice",
                 "list each port once")
    return tuple(ports)


def parse_service(d: Doc, name: str, namespace: str, labels: tuple[tuple[str, str], ...],
                  annotations: dict[Any, Any], spec: dict[Any, Any]) -> ServiceSpec:
    """The spec of a v1 Service document (metadata already checked by `kube`)."""
    service_name(name, "metadata.name", d.fail)
    d.check_fields(spec, "spec", _SPEC_FIELDS, _SPEC_WARN)
    kind = spec.get("type", "ClusterIP")
    if kind not in (None, "ClusterIP"):
        d.fail("spec.type", f"{describe(kind)} is not supported",
               "use ClusterIP (the default); to publish on a machine's address give the "
               "container a hostPort")
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == _HEADLESS
    not_ready = spec.get("publishNotReadyAddresses", False)
    if not isinstance(not_ready, bool):
        d.fail("spec.publishNotReadyAddresses", f"must be true or false, got "
               f"{describe(not_ready)}", "write true or false")
    if cluster_ip not in (None, "", _HEADLESS) or spec.get("clusterIPs") not in (
            None, [], [_HEADLESS]):
        d.warnings.append("spec.clusterIP: pods reach a Service at an address Beemesh serves "
                          "inside each pod, not at a cluster IP; ignored")
    return ServiceSpec(name=name, namespace=namespace,
                       selector=selector_of(spec.get("selector"), "spec.selector", d.fail),
                       ports=ports_of(spec.get("ports"), "spec.ports", headless, d.fail, d),
                       headless=headless, labels=labels, warnings=tuple(d.warnings),
                       allow_from=allow_from_of(annotations[ALLOW_FROM],
                                                f"metadata.annotations.{ALLOW_FROM}", d.fail)
                       if ALLOW_FROM in annotations else (), not_ready=not_ready)
