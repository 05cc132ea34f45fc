"""A pod spec's containers (beemesh.manifest.containers): requests, host ports, probes.

Their field errors are in test_kube's ERROR_CASES, except the probes' (PROBE_ERRORS here).
"""

from __future__ import annotations

from typing import Any

import pytest
from manifest_testlib import (
    C0,
    DEPLOYMENT,
    MI,
    POD,
    assert_one_line,
    container,
    dump,
    field_error,
    mutated,
    parse_one,
    set_in,
    template_spec,
)

from beemesh.manifest import ContainerSpec, ManifestError, ProbeSpec, WorkloadSpec, parse_manifests

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


def test_grace_and_lifecycle_hooks_are_parsed_and_rechecked() -> None:
    def hooks(d: dict[str, Any]) -> None:
        template_spec(d)["terminationGracePeriodSeconds"] = 45
        container(d)["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/leave"]}},
                                     "postStart": {"exec": {"command": ["/bin/join", "x"]}}}

    spec = parse_one(mutated(DEPLOYMENT, hooks))
    c = spec.containers[0]
    assert (spec.grace_s, c.pre_stop, c.post_start) == (45, ("/bin/leave",), ("/bin/join", "x"))
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec
    plain = parse_one(DEPLOYMENT).to_dict()
    assert "grace_s" not in plain and "pre_stop" not in plain["containers"][0]
    for bad in ({**spec.to_dict(), "grace_s": 10**6}, {**spec.to_dict(), "grace_s": -1}):
        with pytest.raises(ManifestError):
            WorkloadSpec.from_dict(bad)
    field_error(mutated(DEPLOYMENT, lambda d: container(d).update(
        lifecycle={"preStop": {"httpGet": {"port": 80}}})),
        f"{C0}.lifecycle.preStop.httpGet: not supported")
    field_error(mutated(DEPLOYMENT, lambda d: template_spec(d).update(
        terminationGracePeriodSeconds=-5)),
        "spec.template.spec.terminationGracePeriodSeconds: must be a whole number")
