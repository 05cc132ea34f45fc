"""Manifest parsing: the supported Kubernetes subset, one-line errors by field path, wire format."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
import yaml

from beemesh.errors import UserError
from beemesh.manifest import (
    ContainerSpec,
    ManifestError,
    PortSpec,
    ProbeSpec,
    WorkloadSpec,
    load_manifest_file,
    parse_manifests,
    parse_quantity_cpu,
    parse_quantity_memory,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MI = 1024**2

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "localhost/beemesh/busybox:latest",
                        "command": ["httpd"],
                        "args": ["-f", "-p", "8080"],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "ports": [{"containerPort": 8080, "hostPort": 18080}],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "32Mi"},
                            "limits": {"cpu": "250m", "memory": "64Mi"},
                        },
                    }
                ]
            },
        },
    },
}
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "one", "namespace": "edge", "labels": {"app": "one"}},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}
C0 = "spec.template.spec.containers[0]"


def dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def parse_one(doc: dict[str, Any]) -> WorkloadSpec:
    (spec,) = parse_manifests(dump(doc), "test.yaml")
    return spec


def mutated(base: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    change(doc)
    return doc


def container(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][i]


def template_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def assert_one_line(exc: pytest.ExceptionInfo[ManifestError], *fragments: str) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, UserError)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --- examples and the happy path ------------------------------------------------------------


@pytest.mark.parametrize("name", ["web.yaml", "pod.yaml", "statefulset.yaml"])
def test_examples_parse_and_round_trip(name: str) -> None:
    specs = load_manifest_file(EXAMPLES / name)
    assert len(specs) == 1
    spec = specs[0]
    assert spec.warnings == ()
    assert WorkloadSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_web_example_matches_the_brief() -> None:
    (web,) = load_manifest_file(EXAMPLES / "web.yaml")
    assert (web.kind, web.name, web.replicas) == ("Deployment", "web", 3)
    assert web.labels == (("app", "web"),)
    (c,) = web.containers
    assert c.image == "localhost/beemesh/busybox:latest"
    assert c.command[:2] == ("/bin/sh", "-c")
    assert "exec httpd -f -p 8080 -h /www" in c.command[2]
    assert c.ports == (PortSpec(container_port=8080, host_port=18080, protocol="TCP", name="http"),)
    assert (c.cpu_request_milli, c.memory_request_bytes) == (100, 32 * MI)
    assert (c.cpu_limit_milli, c.memory_limit_bytes) == (250, 64 * MI)
    assert web.host_ports() == [(18080, "TCP")]


def test_example_kinds() -> None:
    (pod,) = load_manifest_file(EXAMPLES / "pod.yaml")
    (sts,) = load_manifest_file(EXAMPLES / "statefulset.yaml")
    assert (pod.kind, pod.replicas) == ("Pod", 1)
    assert (sts.kind, sts.replicas) == ("StatefulSet", 3)
    assert [sts.pod_name(i) for i in range(3)] == ["counter-0", "counter-1", "counter-2"]


def test_deployment_fields() -> None:
    spec = parse_one(DEPLOYMENT)
    assert spec.workload_id == "deployment/default/web"
    assert spec.namespace == "default"
    assert spec.labels == (("app", "web"), ("tier", "front"))  # template labels, sorted
    assert spec.restart_policy == "Always"
    assert spec.node_selector == ()
    assert spec.arch is None
    assert spec.containers[0] == ContainerSpec(
        name="web",
        image="localhost/beemesh/busybox:latest",
        command=("httpd",),
        args=("-f", "-p", "8080"),
        env=(("MODE", "prod"),),
        ports=(PortSpec(8080, 18080, "TCP", None),),
        cpu_request_milli=100,
        memory_request_bytes=32 * MI,
        cpu_limit_milli=250,
        memory_limit_bytes=64 * MI,
    )


def test_pod_defaults() -> None:
    spec = parse_one(POD)
    assert (spec.workload_id, spec.replicas, spec.restart_policy) == ("pod/edge/one", 1, "Always")
    assert spec.labels == (("app", "one"),)
    c = spec.containers[0]
    assert (c.command, c.args, c.env, c.ports) == ((), (), (), ())
    assert (c.cpu_request_milli, c.memory_request_bytes) == (0, 0)
    assert (c.cpu_limit_milli, c.memory_limit_bytes) == (None, None)


def test_pod_restart_policies_and_defaults() -> None:
    for policy in ("Always", "OnFailure", "Never"):
        doc = mutated(POD, lambda d, p=policy: d["spec"].__setitem__("restartPolicy", p))
        assert parse_one(doc).restart_policy == policy


def test_replicas_default_and_zero() -> None:
    assert parse_one(mutated(DEPLOYMENT, lambda d: d["spec"].pop("replicas"))).replicas == 1
    assert parse_one(mutated(DEPLOYMENT, lambda d: d["spec"].update(replicas=0))).replicas == 0


def test_requests_default_to_limits() -> None:
    def only_limits(d: dict[str, Any]) -> None:
        container(d)["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}

    c = parse_one(mutated(DEPLOYMENT, only_limits)).containers[0]
    assert (c.cpu_request_milli, c.memory_request_bytes) == (1000, 1024 * MI)
    assert (c.cpu_limit_milli, c.memory_limit_bytes) == (1000, 1024 * MI)


def test_requests_sum_over_containers() -> None:
    def two(d: dict[str, Any]) -> None:
        second = {"name": "side", "image": "busybox",
                  "resources": {"requests": {"cpu": 0.5, "memory": "16Mi"}}}
        template_spec(d)["containers"].append(second)

    spec = parse_one(mutated(DEPLOYMENT, two))
    assert spec.requests() == (600, 48 * MI)


def test_host_ports_across_containers() -> None:
    def two(d: dict[str, Any]) -> None:
        template_spec(d)["containers"].append({
            "name": "dns", "image": "busybox",
            "ports": [{"containerPort": 53, "hostPort": 18080, "protocol": "UDP"},
                      {"containerPort": 9000}],
        })

    spec = parse_one(mutated(DEPLOYMENT, two))
    assert spec.host_ports() == [(18080, "TCP"), (18080, "UDP")]


def test_host_port_zero_means_unset() -> None:
    doc = mutated(DEPLOYMENT, lambda d: container(d)["ports"][0].update(hostPort=0))
    assert parse_one(doc).host_ports() == []


@pytest.mark.parametrize(
    ("value", "arch"),
    [("amd64", "x86_64"), ("arm64", "aarch64"), ("riscv64", "riscv64"), (None, None)],
)
def test_arch_mapping(value: str | None, arch: str | None) -> None:
    selector = {"kubernetes.io/arch": value, "zone": "lab"} if value else {"zone": "lab"}
    doc = mutated(DEPLOYMENT, lambda d: template_spec(d).update(nodeSelector=selector))
    spec = parse_one(doc)
    assert spec.arch == arch
    assert dict(spec.node_selector)["zone"] == "lab"


def test_pod_name() -> None:
    spec = parse_one(mutated(DEPLOYMENT, lambda d: d["metadata"].update(name="a" * 53)))
    name = spec.pod_name(999_999_999)
    assert len(name) == 63
    assert spec.pod_name(0) == "a" * 53 + "-0"
    with pytest.raises(ValueError):
        spec.pod_name(-1)


def test_multi_document_and_empty_documents() -> None:
    sts = mutated(DEPLOYMENT, lambda d: d.update(kind="StatefulSet"))
    sts["spec"]["serviceName"] = "web"
    text = "---\n" + dump(DEPLOYMENT) + "---\n# only a comment\n---\n" + dump(POD, sts)
    specs = parse_manifests(text)
    assert [s.workload_id for s in specs] == [
        "deployment/default/web", "pod/edge/one", "statefulset/default/web"]
    assert parse_manifests("") == []
    assert parse_manifests("---\n---\n") == []


def test_same_name_different_kind_or_namespace_is_fine() -> None:
    other_ns = mutated(DEPLOYMENT, lambda d: d["metadata"].update(namespace="blue"))
    pod = mutated(POD, lambda d: d["metadata"].update(name="web", namespace="default"))
    assert len(parse_manifests(dump(DEPLOYMENT, other_ns, pod))) == 3


def test_kubectl_dry_run_output_is_accepted() -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: web
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: web
    spec:
      containers:
      - image: nginx
        name: nginx
        resources: {}
status: {}
"""
    (spec,) = parse_manifests(text)
    assert spec.warnings == ()
    assert spec.containers[0].image == "nginx"


def test_annotations_ignored_without_warning() -> None:
    def annotate(d: dict[str, Any]) -> None:
        d["metadata"]["annotations"] = {"note": "x"}
        d["spec"]["template"]["metadata"]["annotations"] = {"note": "y"}

    assert parse_one(mutated(DEPLOYMENT, annotate)).warnings == ()


def test_warnings_for_safely_ignored_fields() -> None:
    def extras(d: dict[str, Any]) -> None:
        d["spec"].update(strategy={"type": "RollingUpdate"}, revisionHistoryLimit=3,
                         minReadySeconds=5, progressDeadlineSeconds=60)
        template_spec(d)["terminationGracePeriodSeconds"] = 10
        container(d).update(imagePullPolicy="IfNotPresent",
                            readinessProbe={"httpGet": {"port": 8080}},
                            livenessProbe={"exec": {"command": ["true"]}})

    spec = parse_one(mutated(DEPLOYMENT, extras))
    warnings = "\n".join(spec.warnings)
    assert len(spec.warnings) == 6
    for path in ("spec.strategy", "spec.revisionHistoryLimit", "spec.minReadySeconds",
                 "spec.progressDeadlineSeconds",
                 "spec.template.spec.terminationGracePeriodSeconds",
                 f"{C0}.imagePullPolicy"):
        assert f"{path}: " in warnings
    # Probes are run now: parsed into the spec, not warned about.
    assert "Probe" not in warnings
    c = spec.containers[0]
    assert c.readiness == ProbeSpec(action="http", port=8080)
    assert c.liveness == ProbeSpec(action="exec", command=("true",))


def test_statefulset_service_name_accepted_without_warning() -> None:
    sts = mutated(DEPLOYMENT, lambda d: d.update(kind="StatefulSet"))
    sts["spec"]["serviceName"] = "web"
    spec = parse_one(sts)
    assert (spec.kind, spec.warnings) == ("StatefulSet", ())


def test_unsupported_field_with_empty_value_is_accepted() -> None:
    def empties(d: dict[str, Any]) -> None:
        template_spec(d).update(volumes=[], hostNetwork=False, tolerations=None)
        container(d)["volumeMounts"] = []

    spec = parse_one(mutated(DEPLOYMENT, empties))
    assert spec.warnings == ()


# --- quantities -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "milli"),
    [
        ("500m", 500), ("1", 1000), (1, 1000), (0.5, 500), ("1.5", 1500), ("0", 0), (0, 0),
        ("2.25", 2250), ("0.1", 100), (0.1, 100), ("100m", 100), ("1e1", 10000),
        ("0.0001", 1), ("+2", 2000), (".5", 500),
    ],
)
def test_cpu_quantities(value: str | int | float, milli: int) -> None:
    assert parse_quantity_cpu(value, "cpu") == milli


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("64Mi", 64 * MI), ("1Gi", 1024**3), ("128M", 128 * 10**6), ("1G", 10**9),
        ("1000", 1000), (1000, 1000), ("1e3", 1000), ("1E3", 1000), ("512Ki", 512 * 1024),
        ("1k", 1000), ("1.5Gi", 3 * 512 * MI), ("1Ti", 1024**4), ("1E", 10**18),
        ("1Ei", 2**60), ("0", 0), ("0.5", 1),
    ],
)
def test_memory_quantities(value: str | int, size: int) -> None:
    assert parse_quantity_memory(value, "memory") == size


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("lots", "is not a quantity"), ("-1", "must not be negative"),
        (-0.5, "must not be negative"), ("1Gi", "is not a quantity"), ("", "is not a quantity"),
        (True, "must be a quantity"), (None, "must be a quantity"), ([1], "must be a quantity"),
        (float("nan"), "is not a quantity"), ("1e999", "too large"), ("1 m", "is not a quantity"),
    ],
)
def test_bad_cpu_quantities(value: Any, problem: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_quantity_cpu(value, "x.cpu")
    assert_one_line(exc, "x.cpu: ", problem)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("12XB", "is not a quantity"), ("64MB", "is not a quantity"),
        ("-64Mi", "must not be negative"), (-1, "must not be negative"),
        ("lots", "is not a quantity"), ("128m", "milli-bytes"), ("Mi", "is not a quantity"),
        ("99999999Ei", "too large"), (False, "must be a quantity"),
    ],
)
def test_bad_memory_quantities(value: Any, problem: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_quantity_memory(value, "x.memory")
    assert_one_line(exc, "x.memory: ", problem)


def test_memory_milli_suffix_suggests_mi() -> None:
    with pytest.raises(ManifestError, match="did you mean 128Mi"):
        parse_quantity_memory("128m", "m")


# --- errors: each names its field path ---------------------------------------------------------


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


TS = ("spec", "template", "spec")
CT = (*TS, "containers", 0)


def add_container(extra: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda d: template_spec(d)["containers"].append(extra)


ERROR_CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    # identity
    ("missing name", drop(("metadata", "name")), ("metadata.name: ", "must be a string")),
    ("empty name", set_in(("metadata", "name"), ""), ("metadata.name: name must not be empty",)),
    ("uppercase name", set_in(("metadata", "name"), "Web"),
     ("metadata.name: 'Web' is not a valid name", "lowercase")),
    ("underscore name", set_in(("metadata", "name"), "my_web"), ("metadata.name: ",)),
    ("name too long", set_in(("metadata", "name"), "a" * 54),
     ("metadata.name: ", "longer than 53 characters")),
    ("bad namespace", set_in(("metadata", "namespace"), "Prod"), ("metadata.namespace: ",)),
    ("missing metadata", drop(("metadata",)), ("metadata: missing",)),
    ("unsupported kind", set_in(("kind",), "DaemonSet"),
     ("kind: apps/v1 DaemonSet is not supported",
      "use apps/v1 Deployment, apps/v1 StatefulSet or v1 Pod")),
    ("missing kind", drop(("kind",)), ("kind: missing",)),
    ("wrong apiVersion", set_in(("apiVersion",), "extensions/v1beta1"),
     ("apiVersion: extensions/v1beta1 Deployment is not supported", "use apiVersion: apps/v1")),
    ("missing apiVersion", drop(("apiVersion",)), ("apiVersion: missing",)),
    ("unknown top-level field", set_in(("extra",), {"a": 1}), ("extra: not supported",)),
    # controller spec
    ("missing spec", drop(("spec",)), ("spec: missing",)),
    ("negative replicas", set_in(("spec", "replicas"), -1), ("spec.replicas: ", "non-negative")),
    ("string replicas", set_in(("spec", "replicas"), "3"), ("spec.replicas: ", "string '3'")),
    ("float replicas", set_in(("spec", "replicas"), 1.5), ("spec.replicas: ",)),
    ("bool replicas", set_in(("spec", "replicas"), True), ("spec.replicas: ",)),
    ("selector mismatch", set_in(("spec", "selector", "matchLabels"), {"app": "api"}),
     ("spec.selector.matchLabels.app: selects app=api", "spec.template.metadata.labels")),
    ("selector not in template", set_in(("spec", "selector", "matchLabels", "x"), "y"),
     ("spec.selector.matchLabels.x: ",)),
    ("empty selector", set_in(("spec", "selector"), {"matchLabels": {}}),
     ("spec.selector.matchLabels: must not be empty",)),
    ("matchExpressions", set_in(("spec", "selector", "matchExpressions"), [{"key": "a"}]),
     ("spec.selector.matchExpressions: not supported", "matchLabels")),
    ("missing template", drop(("spec", "template")), ("spec.template: missing",)),
    ("missing pod spec", drop(("spec", "template", "spec")), ("spec.template.spec: missing",)),
    ("unknown spec field", set_in(("spec", "paused"), True), ("spec.paused: not supported",)),
    # pod spec
    ("missing containers", drop((*TS, "containers")), ("spec.template.spec.containers: missing",)),
    ("empty containers", set_in((*TS, "containers"), []),
     ("spec.template.spec.containers: must not be empty",)),
    ("containers not a list", set_in((*TS, "containers"), {"name": "web"}),
     ("spec.template.spec.containers: must be a list, got a mapping",)),
    ("volumes", set_in((*TS, "volumes"), [{"name": "data", "emptyDir": {}}]),
     ("spec.template.spec.volumes: not supported", "no volumes")),
    ("initContainers", set_in((*TS, "initContainers"), [{"name": "i", "image": "x"}]),
     ("spec.template.spec.initContainers: not supported",)),
    ("affinity", set_in((*TS, "affinity"), {"nodeAffinity": {}}),
     ("spec.template.spec.affinity: not supported",)),
    ("tolerations", set_in((*TS, "tolerations"), [{"key": "a"}]),
     ("spec.template.spec.tolerations: not supported",)),
    ("pod securityContext", set_in((*TS, "securityContext"), {"runAsUser": 1}),
     ("spec.template.spec.securityContext: not supported",)),
    ("hostNetwork", set_in((*TS, "hostNetwork"), True),
     ("spec.template.spec.hostNetwork: not supported",)),
    ("restartPolicy OnFailure in Deployment", set_in((*TS, "restartPolicy"), "OnFailure"),
     ("spec.template.spec.restartPolicy: ",
      "restartPolicy OnFailure is not allowed for a Deployment")),
    ("restartPolicy invalid", set_in((*TS, "restartPolicy"), "Sometimes"),
     ("spec.template.spec.restartPolicy: ", "Always, OnFailure or Never")),
    ("nodeSelector value not string", set_in((*TS, "nodeSelector"), {"gpu": True}),
     ("spec.template.spec.nodeSelector.gpu: value must be a string, got boolean true",
      'quote it: gpu: "true"')),
    ("nodeSelector not mapping", set_in((*TS, "nodeSelector"), ["a"]),
     ("spec.template.spec.nodeSelector: must be a mapping",)),
    # labels
    ("label value int", set_in(("spec", "template", "metadata", "labels", "version"), 1),
     ("spec.template.metadata.labels.version: value must be a string, got number 1",)),
    ("label value float", set_in(("metadata", "labels", "v"), 1.0),
     ("metadata.labels.v: value must be a string",)),
    ("label value null", set_in(("metadata", "labels", "v"), None),
     ("metadata.labels.v: value must be a string, got null",)),
    ("label value invalid", set_in(("metadata", "labels", "v"), "has space"),
     ("metadata.labels.v: 'has space' is not a valid label value",)),
    ("label key invalid", set_in(("metadata", "labels", "-bad"), "x"),
     ('metadata.labels["-bad"]: ', "not a valid label key")),
    ("label key int", set_in(("metadata", "labels", 5), "x"),
     ('metadata.labels["5"]: key must be a string',)),
    # containers
    ("missing image", drop((*CT, "image")), (f"{C0}.image: missing",)),
    ("empty image", set_in((*CT, "image"), ""), (f"{C0}.image: must not be empty",)),
    ("blank image", set_in((*CT, "image"), "   "), (f"{C0}.image: must not be empty",)),
    ("image with space", set_in((*CT, "image"), "busy box"), (f"{C0}.image: ", "whitespace")),
    ("image not string", set_in((*CT, "image"), 5), (f"{C0}.image: must be a string",)),
    ("missing container name", drop((*CT, "name")), (f"{C0}.name: ",)),
    ("bad container name", set_in((*CT, "name"), "Web_1"), (f"{C0}.name: 'Web_1'",)),
    ("duplicate container names", add_container({"name": "web", "image": "busybox"}),
     ("spec.template.spec.containers[1].name: duplicate container name 'web'",)),
    ("container not a mapping", add_container("busybox"),
     ("spec.template.spec.containers[1]: must be a mapping",)),
    ("command not list", set_in((*CT, "command"), "httpd -f"),
     (f"{C0}.command: must be a list of strings",)),
    ("args item not string", set_in((*CT, "args"), ["-p", 8080]),
     (f"{C0}.args[1]: must be a string, got number 8080",)),
    ("volumeMounts", set_in((*CT, "volumeMounts"), [{"name": "d", "mountPath": "/d"}]),
     (f"{C0}.volumeMounts: not supported",)),
    ("container securityContext", set_in((*CT, "securityContext"), {"privileged": True}),
     (f"{C0}.securityContext: not supported",)),
    ("envFrom", set_in((*CT, "envFrom"), [{"configMapRef": {"name": "c"}}]),
     (f"{C0}.envFrom: not supported", "literal value")),
    ("valueFrom", set_in((*CT, "env"), [{"name": "A", "valueFrom": {"fieldRef": {}}}]),
     (f"{C0}.env[0].valueFrom: not supported", "literal value")),
    ("env value int", set_in((*CT, "env"), [{"name": "PORT", "value": 80}]),
     (f"{C0}.env[0].value: must be a string, got number 80", 'quote it: value: "80"')),
    ("env missing name", set_in((*CT, "env"), [{"value": "x"}]), (f"{C0}.env[0].name: ",)),
    ("env not list", set_in((*CT, "env"), {"A": "b"}), (f"{C0}.env: must be a list",)),
    # resources
    ("cpu lots", set_in((*CT, "resources", "requests", "cpu"), "lots"),
     (f"{C0}.resources.requests.cpu: cpu 'lots' is not a quantity", "millicores")),
    ("memory 12XB", set_in((*CT, "resources", "limits", "memory"), "12XB"),
     (f"{C0}.resources.limits.memory: memory '12XB' is not a quantity",)),
    ("negative cpu", set_in((*CT, "resources", "requests", "cpu"), -1),
     (f"{C0}.resources.requests.cpu: cpu must not be negative",)),
    ("negative memory", set_in((*CT, "resources", "requests", "memory"), "-1Mi"),
     (f"{C0}.resources.requests.memory: memory must not be negative",)),
    ("cpu limit below request", set_in((*CT, "resources", "limits", "cpu"), "50m"),
     (f"{C0}.resources.limits.cpu: cpu limit 50m is lower than the request 100m",)),
    ("memory limit below request", set_in((*CT, "resources", "limits", "memory"), "16Mi"),
     (f"{C0}.resources.limits.memory: memory limit 16Mi is lower than the request 32Mi",)),
    ("gpu", set_in((*CT, "resources", "limits", "nvidia.com/gpu"), 1),
     (f'{C0}.resources.limits["nvidia.com/gpu"]: not supported', "only cpu and memory")),
    ("ephemeral storage", set_in((*CT, "resources", "requests", "ephemeral-storage"), "1Gi"),
     (f"{C0}.resources.requests.ephemeral-storage: not supported",)),
    ("resources claims", set_in((*CT, "resources", "claims"), [{"name": "x"}]),
     (f"{C0}.resources.claims: not supported",)),
    # ports
    ("containerPort 0", set_in((*CT, "ports"), [{"containerPort": 0}]),
     (f"{C0}.ports[0].containerPort: containerPort must be an integer from 1 to 65535",)),
    ("containerPort high", set_in((*CT, "ports"), [{"containerPort": 70000}]),
     (f"{C0}.ports[0].containerPort: ",)),
    ("containerPort string", set_in((*CT, "ports"), [{"containerPort": "http"}]),
     (f"{C0}.ports[0].containerPort: ",)),
    ("containerPort missing", set_in((*CT, "ports"), [{"hostPort": 80}]),
     (f"{C0}.ports[0].containerPort: missing",)),
    ("hostPort high", set_in((*CT, "ports"), [{"containerPort": 80, "hostPort": 65536}]),
     (f"{C0}.ports[0].hostPort: hostPort must be an integer from 1 to 65535",)),
    ("hostPort negative", set_in((*CT, "ports"), [{"containerPort": 80, "hostPort": -1}]),
     (f"{C0}.ports[0].hostPort: ",)),
    ("protocol SCTP", set_in((*CT, "ports"), [{"containerPort": 80, "protocol": "SCTP"}]),
     (f"{C0}.ports[0].protocol: protocol must be TCP or UDP",)),
    ("protocol lowercase", set_in((*CT, "ports"), [{"containerPort": 80, "protocol": "tcp"}]),
     (f"{C0}.ports[0].protocol: ",)),
    ("hostIP", set_in((*CT, "ports"), [{"containerPort": 80, "hostIP": "127.0.0.1"}]),
     (f"{C0}.ports[0].hostIP: not supported",)),
    ("duplicate hostPort in one container",
     set_in((*CT, "ports"), [{"containerPort": 80, "hostPort": 8080},
                             {"containerPort": 81, "hostPort": 8080}]),
     (f"{C0}.ports[1].hostPort: hostPort 8080/TCP is used twice in one pod",)),
    ("duplicate hostPort across containers",
     add_container({"name": "b", "image": "x", "ports": [{"containerPort": 1, "hostPort": 18080}]}),
     ("spec.template.spec.containers[1].ports[0].hostPort: hostPort 18080/TCP",)),
]


@pytest.mark.parametrize(("change", "fragments"), [(c[1], c[2]) for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_errors_name_the_field(change: Callable[[dict[str, Any]], None],
                               fragments: tuple[str, ...]) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(mutated(DEPLOYMENT, change)), "app.yaml")
    message = assert_one_line(exc, *fragments)
    assert message.startswith("app.yaml: document 1")
    assert "; " in message  # every error carries a fix


def test_error_prefix_names_kind_and_name() -> None:
    doc = mutated(DEPLOYMENT, set_in((*CT, "image"), ""))
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(POD, doc), "app.yaml")
    assert str(exc.value).startswith(f"app.yaml: document 2 (Deployment web): {C0}.image: ")


def test_pod_errors_use_pod_paths() -> None:
    cases = [
        (set_in(("spec", "volumes"), [{"name": "v"}]), "spec.volumes: not supported"),
        (set_in(("spec", "containers", 0, "image"), ""),
         "spec.containers[0].image: must not be empty"),
        (drop(("spec", "containers")), "spec.containers: missing"),
        (set_in(("spec", "restartPolicy"), "Maybe"), "spec.restartPolicy: "),
        (set_in(("spec", "replicas"), 3), "spec.replicas: not supported"),
    ]
    for change, fragment in cases:
        with pytest.raises(ManifestError) as exc:
            parse_manifests(dump(mutated(POD, change)), "pod.yaml")
        assert_one_line(exc, "pod.yaml: document 1 (Pod one): ", fragment)


def test_statefulset_restart_policy_must_be_always() -> None:
    sts = mutated(DEPLOYMENT, lambda d: d.update(kind="StatefulSet"))
    template_spec(sts)["restartPolicy"] = "Never"
    with pytest.raises(ManifestError, match="not allowed for a StatefulSet"):
        parse_one(sts)


def test_statefulset_volume_claim_templates_rejected() -> None:
    sts = mutated(DEPLOYMENT, lambda d: d.update(kind="StatefulSet"))
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}}]
    with pytest.raises(ManifestError, match=r"spec\.volumeClaimTemplates: not supported"):
        parse_one(sts)


def test_duplicate_workload_in_one_file() -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(DEPLOYMENT, POD, DEPLOYMENT), "app.yaml")
    assert_one_line(exc, "app.yaml: document 3 (Deployment web): metadata.name: ",
                    "duplicate Deployment default/web (also document 1)")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("apiVersion: v1\nkind: Pod\n  metadata: x\n", ("x.yaml: line 3", "invalid YAML")),
        ("a: [1, 2\n", ("x.yaml: line 2", "invalid YAML")),
        ("a: b\na: c\n", ("x.yaml: line 2", "duplicate key 'a'", "keep only one")),
        ("\tkind: Pod\n", ("x.yaml: line 1", "invalid YAML")),
    ],
)
def test_invalid_yaml_names_the_line(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifests(text, "x.yaml")
    assert_one_line(exc, *fragments)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("- a\n- b\n", ("document 1: expected a Kubernetes object", "got a list", "'---'")),
        ("just a string\n", ("document 1: expected a Kubernetes object", "got string")),
        ("42\n", ("got number 42",)),
        (dump(POD) + "---\n[1, 2]\n", ("document 2: ", "got a list")),
        ("{}\n", ("document 1: kind: missing",)),
    ],
)
def test_document_must_be_a_mapping(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifests(text, "x.yaml")
    assert_one_line(exc, "x.yaml: ", *fragments)


def test_yaml_boolean_label_value_needs_quotes() -> None:
    text = dump(POD).replace("app: one", "app: yes")
    with pytest.raises(ManifestError, match=r'metadata\.labels\.app: .*quote it: app: "true"'):
        parse_manifests(text)


def test_load_manifest_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ManifestError, match=f"{missing}: no such file"):
        load_manifest_file(missing)
    with pytest.raises(ManifestError, match=f"{tmp_path}: cannot read manifest"):
        load_manifest_file(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest_file(binary)
    good = tmp_path / "good.yaml"
    good.write_text(dump(DEPLOYMENT))
    (spec,) = load_manifest_file(good)
    assert spec.name == "web"
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump(mutated(DEPLOYMENT, set_in(("metadata", "name"), "Bad"))))
    with pytest.raises(ManifestError, match=f"^{bad}: document 1"):
        load_manifest_file(bad)


# --- to_dict / from_dict -----------------------------------------------------------------------


def rich_spec() -> WorkloadSpec:
    def extras(d: dict[str, Any]) -> None:
        template_spec(d)["nodeSelector"] = {"kubernetes.io/arch": "arm64", "zone": "a"}
        container(d)["imagePullPolicy"] = "Always"  # keeps a warning in the round trip
        container(d)["ports"][0]["name"] = "http"
        container(d)["startupProbe"] = {"exec": {"command": ["cat", "/tmp/ready"]},
                                        "failureThreshold": 30}
        container(d)["readinessProbe"] = {
            "httpGet": {"port": "http", "path": "/healthz",
                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
            "periodSeconds": 5, "successThreshold": 2,
        }
        container(d)["livenessProbe"] = {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 3}
        container(d)["env"].append({"name": "EMPTY"})
        container(d)["ports"].append({"containerPort": 53, "protocol": "UDP", "name": "dns"})
        template_spec(d)["containers"].append({"name": "side", "image": "busybox"})

    return parse_one(mutated(DEPLOYMENT, extras))


def test_round_trip() -> None:
    spec = rich_spec()
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON-safe data
    assert WorkloadSpec.from_dict(data) == spec
    assert WorkloadSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert spec.warnings and spec.arch == "aarch64"
    pod = parse_one(POD)
    assert WorkloadSpec.from_dict(pod.to_dict()) == pod


def test_round_trip_through_cbor() -> None:
    spec = rich_spec()
    assert WorkloadSpec.from_dict(cbor2.loads(cbor2.dumps(spec.to_dict()))) == spec


def corrupt(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = rich_spec().to_dict()
    change(data)
    return data


GARBAGE: list[tuple[str, Any, str]] = [
    ("not a dict", [1, 2], "expected a mapping"),
    ("none", None, "expected a mapping"),
    ("missing key", corrupt(lambda d: d.pop("replicas")), "replicas: missing"),
    ("extra key", corrupt(lambda d: d.update(evil=1)), "evil: unexpected field"),
    ("bad kind", corrupt(lambda d: d.update(kind="Job")), "kind: 'Job'"),
    ("kind not string", corrupt(lambda d: d.update(kind=5)), "kind: expected a string"),
    ("bad name", corrupt(lambda d: d.update(name="../etc")), "name: '../etc' is not a valid"),
    ("bad namespace", corrupt(lambda d: d.update(namespace="")), "namespace: "),
    ("negative replicas", corrupt(lambda d: d.update(replicas=-1)), "replicas: expected a non"),
    ("bool replicas", corrupt(lambda d: d.update(replicas=True)), "replicas: "),
    ("labels not map", corrupt(lambda d: d.update(labels=[1])), "labels: must be a mapping"),
    ("label value int", corrupt(lambda d: d["labels"].update(app=1)), "labels.app: value must"),
    ("no containers", corrupt(lambda d: d.update(containers=[])), "containers: must not be empty"),
    ("containers not list", corrupt(lambda d: d.update(containers="x")), "containers: expected"),
    ("container not dict", corrupt(lambda d: d["containers"].append(3)), "containers[2]: "),
    ("empty image", corrupt(lambda d: d["containers"][0].update(image="")), "containers[0].image"),
    ("image type", corrupt(lambda d: d["containers"][0].update(image=b"x")), "containers[0].image"),
    ("command item", corrupt(lambda d: d["containers"][0].update(command=[1])),
     "containers[0].command[0]: expected a string"),
    ("env pair", corrupt(lambda d: d["containers"][0].update(env=[["A"]])), "containers[0].env[0]"),
    ("env name", corrupt(lambda d: d["containers"][0].update(env=[["A=B", "c"]])),
     "containers[0].env[0]"),
    ("negative cpu", corrupt(lambda d: d["containers"][0].update(cpu_request_milli=-5)),
     "containers[0].cpu_request_milli: expected a non-negative integer"),
    ("huge memory", corrupt(lambda d: d["containers"][0].update(memory_request_bytes=2**70)),
     "containers[0].memory_request_bytes"),
    ("float cpu", corrupt(lambda d: d["containers"][0].update(cpu_limit_milli=1.5)),
     "containers[0].cpu_limit_milli"),
    ("limit below request", corrupt(lambda d: d["containers"][0].update(cpu_limit_milli=1)),
     "containers[0].cpu_limit_milli: cpu limit 1m is lower than the request 100m"),
    ("port range", corrupt(lambda d: d["containers"][0]["ports"][0].update(host_port=0)),
     "containers[0].ports[0].host_port: "),
    ("port protocol", corrupt(lambda d: d["containers"][0]["ports"][0].update(protocol="tcp")),
     "containers[0].ports[0].protocol"),
    ("port extra", corrupt(lambda d: d["containers"][0]["ports"][0].update(x=1)),
     "containers[0].ports[0].x: unexpected field"),
    ("duplicate container", corrupt(lambda d: d["containers"][1].update(name="web")),
     "containers[1].name: duplicate container name"),
    ("duplicate host port", corrupt(lambda d: d["containers"][1]["ports"].append(
        {"container_port": 1, "host_port": 18080, "protocol": "TCP", "name": None})),
     "containers[1].ports[0].host_port: hostPort 18080/TCP is used twice"),
    ("restart policy", corrupt(lambda d: d.update(restart_policy="Never")),
     "restart_policy: restartPolicy Never is not allowed for a Deployment"),
    ("warnings type", corrupt(lambda d: d.update(warnings=[None])), "warnings[0]"),
    ("pod replicas", {**parse_one(POD).to_dict(), "replicas": 2}, "a Pod has exactly 1 replica"),
]


@pytest.mark.parametrize(("data", "fragment"), [(g[1], g[2]) for g in GARBAGE],
                         ids=[g[0] for g in GARBAGE])
def test_from_dict_rejects_garbage(data: Any, fragment: str) -> None:
    with pytest.raises(ManifestError) as exc:
        WorkloadSpec.from_dict(data)
    message = assert_one_line(exc, fragment)
    assert message.startswith("workload spec")


# --- probes ------------------------------------------------------------------------------------


PROBE_KEYS = {"startup": "startupProbe", "readiness": "readinessProbe", "liveness": "livenessProbe"}


def probed(**probes: Any) -> dict[str, Any]:
    """DEPLOYMENT with probes set on its container; its port 8080 is named "http"."""
    def change(d: dict[str, Any]) -> None:
        container(d)["ports"][0]["name"] = "http"
        container(d).update(probes)

    return mutated(DEPLOYMENT, change)


def parse_container(**probes: Any) -> ContainerSpec:
    return parse_one(probed(**probes)).containers[0]


def timing(p: ProbeSpec) -> tuple[int, ...]:
    return (p.initial_delay_s, p.period_s, p.timeout_s, p.success_threshold,
            p.failure_threshold)


K8S_DEFAULT_TIMING = (0, 10, 1, 1, 3)


@pytest.mark.parametrize("which", list(PROBE_KEYS))
@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ({"httpGet": {"port": 8080}}, ProbeSpec(action="http", port=8080)),
        ({"tcpSocket": {"port": 8080}}, ProbeSpec(action="tcp", port=8080)),
        ({"exec": {"command": ["true"]}}, ProbeSpec(action="exec", command=("true",))),
    ],
    ids=["httpGet", "tcpSocket", "exec"],
)
def test_probe_handlers_with_defaults(which: str, handler: dict[str, Any],
                                      expected: ProbeSpec) -> None:
    spec = parse_one(probed(**{PROBE_KEYS[which]: handler}))
    c = spec.containers[0]
    probe = getattr(c, which)
    assert probe == expected
    assert timing(probe) == K8S_DEFAULT_TIMING
    assert (probe.path, probe.headers) == ("/", ())
    others = [getattr(c, name) for name in PROBE_KEYS if name != which]
    assert others == [None, None]
    assert spec.warnings == ()


def test_no_probes_means_none() -> None:
    c = parse_one(DEPLOYMENT).containers[0]
    assert (c.startup, c.readiness, c.liveness) == (None, None, None)
    c = parse_container(readinessProbe=None)
    assert c.readiness is None


def test_http_probe_explicit_values() -> None:
    c = parse_container(readinessProbe={
        "httpGet": {"port": 9000, "path": "/healthz?full=1", "scheme": "HTTP",
                    "httpHeaders": [{"name": "X-Probe", "value": "beemesh"},
                                    {"name": "Accept", "value": ""}]},
        "initialDelaySeconds": 5, "periodSeconds": 7, "timeoutSeconds": 2,
        "successThreshold": 2, "failureThreshold": 4,
    })
    assert c.readiness == ProbeSpec(
        action="http", port=9000, path="/healthz?full=1",
        headers=(("X-Probe", "beemesh"), ("Accept", "")),
        initial_delay_s=5, period_s=7, timeout_s=2, success_threshold=2, failure_threshold=4,
    )


def test_tcp_and_exec_probe_explicit_values() -> None:
    c = parse_container(
        livenessProbe={"tcpSocket": {"port": 8080}, "initialDelaySeconds": 15,
                       "periodSeconds": 20, "timeoutSeconds": 3, "successThreshold": 1,
                       "failureThreshold": 6},
        startupProbe={"exec": {"command": ["/bin/sh", "-c", "test -f /tmp/up"]},
                      "periodSeconds": 1, "failureThreshold": 60},
    )
    assert c.liveness == ProbeSpec(action="tcp", port=8080, initial_delay_s=15, period_s=20,
                                   timeout_s=3, failure_threshold=6)
    assert c.startup == ProbeSpec(action="exec", command=("/bin/sh", "-c", "test -f /tmp/up"),
                                  period_s=1, failure_threshold=60)


def test_probe_zero_and_empty_mean_kubernetes_defaults() -> None:
    # The API server defaults 0 and an empty path, so manifests written for it keep working.
    c = parse_container(livenessProbe={
        "httpGet": {"port": 8080, "path": ""},
        "initialDelaySeconds": 0, "periodSeconds": 0, "timeoutSeconds": 0,
        "successThreshold": 0, "failureThreshold": 0,
    })
    assert c.liveness == ProbeSpec(action="http", port=8080)
    assert timing(c.liveness) == K8S_DEFAULT_TIMING


def test_named_probe_port_resolves_to_its_number() -> None:
    def change(d: dict[str, Any]) -> None:
        container(d)["ports"] = [{"containerPort": 8080, "name": "http"},
                                 {"containerPort": 9090, "name": "metrics"}]
        container(d)["readinessProbe"] = {"httpGet": {"port": "metrics", "path": "/ready"}}
        container(d)["livenessProbe"] = {"tcpSocket": {"port": "http"}}

    c = parse_one(mutated(DEPLOYMENT, change)).containers[0]
    assert c.readiness == ProbeSpec(action="http", port=9090, path="/ready")
    assert c.liveness == ProbeSpec(action="tcp", port=8080)


def test_named_probe_port_only_looks_in_its_own_container() -> None:
    def change(d: dict[str, Any]) -> None:
        template_spec(d)["containers"].append({
            "name": "side", "image": "busybox",
            "readinessProbe": {"tcpSocket": {"port": "http"}},
        })
        container(d)["ports"][0]["name"] = "http"

    with pytest.raises(ManifestError) as exc:
        parse_one(mutated(DEPLOYMENT, change))
    assert_one_line(exc, "spec.template.spec.containers[1].readinessProbe.tcpSocket.port: "
                         "no port named 'http' in this container", "name the port")


def test_probe_termination_grace_period_is_warned_and_ignored() -> None:
    spec = parse_one(probed(livenessProbe={"exec": {"command": ["true"]},
                                           "terminationGracePeriodSeconds": 5}))
    assert spec.warnings == (
        f"{C0}.livenessProbe.terminationGracePeriodSeconds: not applied by beemesh yet; ignored",
    )
    assert spec.containers[0].liveness == ProbeSpec(action="exec", command=("true",))


def test_probe_in_a_pod_uses_pod_paths() -> None:
    doc = mutated(POD, set_in(("spec", "containers", 0, "livenessProbe"),
                              {"exec": {"command": []}}))
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(doc), "pod.yaml")
    assert_one_line(exc, "pod.yaml: document 1 (Pod one): "
                         "spec.containers[0].livenessProbe.exec.command: ")


RP = f"{C0}.readinessProbe"
LP = f"{C0}.livenessProbe"
HTTP_OK = {"port": 8080}

PROBE_ERRORS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    # the probe itself
    ("not a mapping", {"readinessProbe": "yes"}, (f"{RP}: must be a mapping",)),
    ("no handler", {"readinessProbe": {"periodSeconds": 5}},
     (f"{RP}: has no handler", "exactly one of httpGet, tcpSocket or exec")),
    ("empty probe", {"readinessProbe": {}}, (f"{RP}: has no handler",)),
    ("two handlers", {"readinessProbe": {"httpGet": HTTP_OK, "exec": {"command": ["true"]}}},
     (f"{RP}: sets both httpGet and exec", "exactly one")),
    ("grpc", {"livenessProbe": {"grpc": {"port": 9000}}},
     (f"{LP}.grpc: not supported by beemesh", "use httpGet, tcpSocket or exec")),
    ("unknown probe field", {"readinessProbe": {"httpGet": HTTP_OK, "bogus": 1}},
     (f"{RP}.bogus: not supported by beemesh", "remove it")),
    ("handler not a mapping", {"readinessProbe": {"httpGet": 8080}},
     (f"{RP}.httpGet: must be a mapping",)),
    # httpGet
    ("http host", {"readinessProbe": {"httpGet": {"port": 8080, "host": "10.0.0.1"}}},
     (f"{RP}.httpGet.host: not supported by beemesh", "pod's own IP")),
    ("http unknown field", {"readinessProbe": {"httpGet": {"port": 8080, "query": "a"}}},
     (f"{RP}.httpGet.query: not supported by beemesh",)),
    ("https", {"readinessProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS"}}},
     (f"{RP}.httpGet.scheme: HTTPS probes are not supported", "plain HTTP port")),
    ("lowercase scheme", {"readinessProbe": {"httpGet": {"port": 80, "scheme": "http"}}},
     (f"{RP}.httpGet.scheme: must be HTTP, got string 'http'", "use HTTP")),
    ("relative path", {"readinessProbe": {"httpGet": {"port": 80, "path": "healthz"}}},
     (f"{RP}.httpGet.path: must be a path starting with '/'", "/healthz")),
    ("path with space", {"readinessProbe": {"httpGet": {"port": 80, "path": "/a b"}}},
     (f"{RP}.httpGet.path: ", "%20")),
    ("path not string", {"readinessProbe": {"httpGet": {"port": 80, "path": 5}}},
     (f"{RP}.httpGet.path: must be a path starting with '/', got number 5",)),
    ("headers not list", {"readinessProbe": {"httpGet": {"port": 80, "httpHeaders": {"a": "b"}}}},
     (f"{RP}.httpGet.httpHeaders: must be a list",)),
    ("header bad name",
     {"readinessProbe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "X Y", "value": "1"}]}}},
     (f"{RP}.httpGet.httpHeaders[0].name: header name must be letters, digits and '-'",)),
    ("header missing name",
     {"readinessProbe": {"httpGet": {"port": 80, "httpHeaders": [{"value": "1"}]}}},
     (f"{RP}.httpGet.httpHeaders[0].name: ", "got null")),
    ("header value int",
     {"readinessProbe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": 1}]}}},
     (f"{RP}.httpGet.httpHeaders[0].value: header value must be a string", "quote it")),
    ("header value newline",
     {"readinessProbe": {"httpGet": {"port": 80,
                                     "httpHeaders": [{"name": "X", "value": "a\r\nB: c"}]}}},
     (f"{RP}.httpGet.httpHeaders[0].value: header value must be a string on one line",)),
    ("header unknown field",
     {"readinessProbe": {"httpGet": {"port": 80,
                                     "httpHeaders": [{"name": "X", "value": "1", "v": 2}]}}},
     (f"{RP}.httpGet.httpHeaders[0].v: not supported",)),
    # ports
    ("port missing", {"readinessProbe": {"httpGet": {"path": "/"}}},
     (f"{RP}.httpGet.port: missing", "a number or a port name")),
    ("port zero", {"readinessProbe": {"httpGet": {"port": 0}}},
     (f"{RP}.httpGet.port: port must be an integer from 1 to 65535, got number 0",)),
    ("port too high", {"livenessProbe": {"tcpSocket": {"port": 65536}}},
     (f"{LP}.tcpSocket.port: port must be an integer from 1 to 65535",)),
    ("port bool", {"livenessProbe": {"tcpSocket": {"port": True}}},
     (f"{LP}.tcpSocket.port: ", "got boolean true")),
    ("unknown port name", {"livenessProbe": {"tcpSocket": {"port": "admin"}}},
     (f"{LP}.tcpSocket.port: no port named 'admin' in this container",
      "one of this container's port names: http")),
    ("quoted port number", {"readinessProbe": {"httpGet": {"port": "8080"}}},
     (f"{RP}.httpGet.port: no port named '8080'", "write the number without quotes: port: 8080")),
    ("tcp host", {"livenessProbe": {"tcpSocket": {"port": 80, "host": "db"}}},
     (f"{LP}.tcpSocket.host: not supported by beemesh", "pod's own IP")),
    ("tcp path", {"livenessProbe": {"tcpSocket": {"port": 80, "path": "/"}}},
     (f"{LP}.tcpSocket.path: not supported by beemesh",)),
    # exec
    ("exec empty command", {"livenessProbe": {"exec": {"command": []}}},
     (f"{LP}.exec.command: must list the program to run", "exits 0")),
    ("exec no command", {"livenessProbe": {"exec": {}}},
     (f"{LP}.exec.command: must list the program to run",)),
    ("exec command string", {"livenessProbe": {"exec": {"command": "true"}}},
     (f"{LP}.exec.command: must be a list of strings",)),
    ("exec command item", {"livenessProbe": {"exec": {"command": ["sleep", 1]}}},
     (f"{LP}.exec.command[1]: must be a string, got number 1", "quote it")),
    # timing
    ("negative period", {"readinessProbe": {"httpGet": HTTP_OK, "periodSeconds": -1}},
     (f"{RP}.periodSeconds: must be a whole number from 0 to 2147483647, got number -1",
      "Kubernetes default")),
    ("float timeout", {"readinessProbe": {"httpGet": HTTP_OK, "timeoutSeconds": 1.5}},
     (f"{RP}.timeoutSeconds: must be a whole number", "got number 1.5")),
    ("string threshold", {"readinessProbe": {"httpGet": HTTP_OK, "failureThreshold": "3"}},
     (f"{RP}.failureThreshold: must be a whole number", "got string '3'")),
    ("bool delay", {"readinessProbe": {"httpGet": HTTP_OK, "initialDelaySeconds": True}},
     (f"{RP}.initialDelaySeconds: must be a whole number", "got boolean true")),
    ("beyond int32", {"readinessProbe": {"httpGet": HTTP_OK, "periodSeconds": 2**31}},
     (f"{RP}.periodSeconds: must be a whole number from 0 to 2147483647",)),
    ("liveness success threshold",
     {"livenessProbe": {"httpGet": HTTP_OK, "successThreshold": 2}},
     (f"{LP}.successThreshold: must be 1 for a liveness probe, got 2", "set it to 1")),
    ("startup success threshold",
     {"startupProbe": {"exec": {"command": ["true"]}, "successThreshold": 3}},
     (f"{C0}.startupProbe.successThreshold: must be 1 for a startup probe, got 3",)),
]


@pytest.mark.parametrize(("probes", "fragments"), [(c[1], c[2]) for c in PROBE_ERRORS],
                         ids=[c[0] for c in PROBE_ERRORS])
def test_probe_errors_name_the_field(probes: dict[str, Any], fragments: tuple[str, ...]) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(probed(**probes)), "app.yaml")
    message = assert_one_line(exc, *fragments)
    assert message.startswith("app.yaml: document 1 (Deployment web): ")
    assert "; " in message  # every error carries a fix


def test_probes_round_trip() -> None:
    spec = rich_spec()
    c = spec.containers[0]
    assert c.startup == ProbeSpec(action="exec", command=("cat", "/tmp/ready"),
                                  failure_threshold=30)
    assert c.readiness == ProbeSpec(action="http", port=8080, path="/healthz",
                                    headers=(("X-Probe", "1"),), period_s=5,
                                    success_threshold=2)
    assert c.liveness == ProbeSpec(action="tcp", port=8080, initial_delay_s=3)
    data = spec.to_dict()
    assert data["containers"][0]["readiness"] == {
        "action": "http", "port": 8080, "path": "/healthz", "headers": [["X-Probe", "1"]],
        "command": [], "initial_delay_s": 0, "period_s": 5, "timeout_s": 1,
        "success_threshold": 2, "failure_threshold": 3,
    }
    side = data["containers"][1]
    assert (side["startup"], side["readiness"], side["liveness"]) == (None, None, None)
    assert WorkloadSpec.from_dict(json.loads(json.dumps(data))) == spec


def probe_corrupt(which: str, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    return corrupt(lambda d: change(d["containers"][0][which]))


PROBE_GARBAGE: list[tuple[str, Any, str]] = [
    ("old wire dict without probes", corrupt(lambda d: d["containers"][0].pop("liveness")),
     "containers[0].liveness: missing"),
    ("probe not a mapping", corrupt(lambda d: d["containers"][0].update(readiness="http")),
     "containers[0].readiness: expected a mapping"),
    ("probe missing key", probe_corrupt("readiness", lambda p: p.pop("period_s")),
     "containers[0].readiness.period_s: missing"),
    ("probe extra key", probe_corrupt("readiness", lambda p: p.update(host="evil")),
     "containers[0].readiness.host: unexpected field"),
    ("unknown action", probe_corrupt("readiness", lambda p: p.update(action="grpc")),
     "containers[0].readiness.action: expected http, tcp or exec, got string 'grpc'"),
    ("action not string", probe_corrupt("readiness", lambda p: p.update(action=["http"])),
     "containers[0].readiness.action: expected a string"),
    ("negative period", probe_corrupt("readiness", lambda p: p.update(period_s=-1)),
     "containers[0].readiness.period_s: must be a whole number from 1"),
    ("zero period", probe_corrupt("liveness", lambda p: p.update(period_s=0)),
     "containers[0].liveness.period_s: must be a whole number from 1"),
    ("zero failure threshold", probe_corrupt("startup", lambda p: p.update(failure_threshold=0)),
     "containers[0].startup.failure_threshold: "),
    ("negative delay", probe_corrupt("startup", lambda p: p.update(initial_delay_s=-5)),
     "containers[0].startup.initial_delay_s: must be a whole number from 0"),
    ("float timeout", probe_corrupt("readiness", lambda p: p.update(timeout_s=1.5)),
     "containers[0].readiness.timeout_s: "),
    ("string port", probe_corrupt("readiness", lambda p: p.update(port="http")),
     "containers[0].readiness.port: port must be an integer from 1 to 65535"),
    ("port range", probe_corrupt("liveness", lambda p: p.update(port=70000)),
     "containers[0].liveness.port: "),
    ("http without port", probe_corrupt("readiness", lambda p: p.update(port=None)),
     "containers[0].readiness.port: missing for http probes"),
    ("exec with port", probe_corrupt("startup", lambda p: p.update(port=22)),
     "containers[0].startup.port: is not used by exec probes"),
    ("tcp with headers", probe_corrupt("liveness", lambda p: p.update(headers=[["A", "b"]])),
     "containers[0].liveness.headers: is not used by tcp probes"),
    ("tcp with path", probe_corrupt("liveness", lambda p: p.update(path="/x")),
     "containers[0].liveness.path: is not used by tcp probes"),
    ("http with command", probe_corrupt("readiness", lambda p: p.update(command=["sh"])),
     "containers[0].readiness.command: is not used by http probes"),
    ("exec without command", probe_corrupt("startup", lambda p: p.update(command=[])),
     "containers[0].startup.command: must not be empty"),
    ("relative path", probe_corrupt("readiness", lambda p: p.update(path="healthz")),
     "containers[0].readiness.path: must be a path starting with '/'"),
    ("header injection",
     probe_corrupt("readiness", lambda p: p.update(headers=[["X", "1\r\nHost: evil"]])),
     "containers[0].readiness.headers[0]: header value must be a string on one line"),
    ("header not a pair", probe_corrupt("readiness", lambda p: p.update(headers=[["X"]])),
     "containers[0].readiness.headers[0]: expected a [name, value] pair"),
    ("liveness success threshold",
     probe_corrupt("liveness", lambda p: p.update(success_threshold=2)),
     "containers[0].liveness.success_threshold: must be 1 for a liveness probe"),
]


@pytest.mark.parametrize(("data", "fragment"), [(g[1], g[2]) for g in PROBE_GARBAGE],
                         ids=[g[0] for g in PROBE_GARBAGE])
def test_from_dict_rejects_tampered_probes(data: Any, fragment: str) -> None:
    with pytest.raises(ManifestError) as exc:
        WorkloadSpec.from_dict(data)
    message = assert_one_line(exc, fragment)
    assert message.startswith("workload spec (Deployment web): ")
