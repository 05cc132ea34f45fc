"""The model (beemesh.manifest.model): WorkloadSpec's methods, to_dict and from_dict."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from manifest_testlib import (
    DEPLOYMENT,
    MI,
    POD,
    assert_one_line,
    container,
    mutated,
    parse_one,
    template_spec,
)

from beemesh.manifest import ManifestError, ProbeSpec, WorkloadSpec

# --- WorkloadSpec ------------------------------------------------------------------------------


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


# --- to_dict / from_dict -----------------------------------------------------------------------


def rich_spec() -> WorkloadSpec:
    def extras(d: dict[str, Any]) -> None:
        template_spec(d)["nodeSelector"] = {"kubernetes.io/arch": "arm64", "zone": "a"}
        container(d)["imagePullPolicy"] = "Never"  # carried on the wire
        d["spec"]["revisionHistoryLimit"] = 3  # keeps a warning in the round trip
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


def from_dict_error(data: Any, fragment: str) -> str:
    """The one-line error WorkloadSpec.from_dict raises for data."""
    with pytest.raises(ManifestError) as exc:
        WorkloadSpec.from_dict(data)
    return assert_one_line(exc, fragment)


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
    assert from_dict_error(data, fragment).startswith("workload spec")


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
    assert from_dict_error(data, fragment).startswith("workload spec (Deployment web): ")
