"""A pod spec's containers (beemesh.manifest.containers): resources, ports, env, probes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from manifest_testlib import (
    C0,
    CT,
    DEPLOYMENT,
    MI,
    POD,
    assert_one_line,
    container,
    drop,
    dump,
    field_error,
    mutated,
    parse_one,
    set_in,
    template_spec,
)

from beemesh.manifest import ContainerSpec, ManifestError, ProbeSpec, parse_manifests

# --- resources and ports -----------------------------------------------------------------------


def test_requests_default_to_limits() -> None:
    def only_limits(d: dict[str, Any]) -> None:
        container(d)["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}

    c = parse_one(mutated(DEPLOYMENT, only_limits)).containers[0]
    assert (c.cpu_request_milli, c.memory_request_bytes) == (1000, 1024 * MI)
    assert (c.cpu_limit_milli, c.memory_limit_bytes) == (1000, 1024 * MI)


def test_host_port_zero_means_unset() -> None:
    doc = mutated(DEPLOYMENT, lambda d: container(d)["ports"][0].update(hostPort=0))
    assert parse_one(doc).host_ports() == []


# --- errors: each names its field path ---------------------------------------------------------


def add_container(extra: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda d: template_spec(d)["containers"].append(extra)


CONTAINER_ERRORS: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
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


@pytest.mark.parametrize(("change", "fragments"), [(c[1], c[2]) for c in CONTAINER_ERRORS],
                         ids=[c[0] for c in CONTAINER_ERRORS])
def test_container_errors_name_the_field(change: Callable[[dict[str, Any]], None],
                                         fragments: tuple[str, ...]) -> None:
    message = field_error(mutated(DEPLOYMENT, change), *fragments)
    assert message.startswith("app.yaml: document 1")


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
    message = field_error(probed(**probes), *fragments)
    assert message.startswith("app.yaml: document 1 (Deployment web): ")
