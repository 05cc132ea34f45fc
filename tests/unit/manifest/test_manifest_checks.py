"""Field checks shared by the Kubernetes walker and the wire spec (beemesh.manifest.checks).

Each check is called directly with a path and `Where.fail`, so every refusal is compared as
the whole one-line message: "<prefix> (<Kind> <name>): <path>: <problem>; <fix>". (Named
test_manifest_checks.py: tests/unit/node/test_checks.py already takes test_checks.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from beemesh.errors import UserError
from beemesh.manifest.checks import (
    MAX_LABEL,
    MAX_WORKLOAD_NAME,
    ManifestError,
    Where,
    check_limit,
    check_pod,
    check_success_threshold,
    describe,
    dns_label,
    env_name,
    http_header,
    http_request_path,
    join,
    label_map,
    pod_restart_policy,
    port_number,
    port_protocol,
    probe_int,
)
from beemesh.manifest.model import PortSpec

AT = "app.yaml (Deployment web)"
MAX_INT32 = 2**31 - 1


def where() -> Where:
    w = Where("app.yaml")
    w.kind, w.name = "Deployment", "web"
    return w


FAIL = where().fail


def refusal(call: Callable[[], object]) -> str:
    """The one-line ManifestError message that call raises."""
    with pytest.raises(ManifestError) as exc:
        call()
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- Where, describe, join ------------------------------------------------------------------


def test_where_names_the_document_kind_and_name() -> None:
    assert refusal(lambda: FAIL("spec.replicas", "bad", "fix it")) == (
        "app.yaml (Deployment web): spec.replicas: bad; fix it")


def test_where_before_the_kind_or_name_is_known() -> None:
    w = Where("app.yaml: document 2")
    assert refusal(lambda: w.fail("kind", "missing", "add kind")) == (
        "app.yaml: document 2: kind: missing; add kind")
    w.kind = "Pod"
    assert refusal(lambda: w.fail("metadata.name", "missing", "add it")) == (
        "app.yaml: document 2 (Pod): metadata.name: missing; add it")
    w.name = "one"
    assert refusal(lambda: w.fail(None, "empty", "write something")) == (
        "app.yaml: document 2 (Pod one): empty; write something")


def test_manifest_error_is_a_user_error() -> None:
    with pytest.raises(UserError):
        FAIL("x", "bad", "fix")


@pytest.mark.parametrize(("value", "shown"), [
    (None, "null"),
    (True, "boolean true"),
    (False, "boolean false"),
    (0, "number 0"),
    (-3, "number -3"),
    (1.5, "number 1.5"),
    ("", "string ''"),
    ("web", "string 'web'"),
    ([], "a list"),
    ([1, 2], "a list"),
    ({}, "a mapping"),
    ({"a": 1}, "a mapping"),
    (b"x", "bytes"),
    ((1,), "tuple"),
])
def test_describe(value: Any, shown: str) -> None:
    assert describe(value) == shown


@pytest.mark.parametrize(("base", "key", "path"), [
    ("", "spec", "spec"),
    ("", "a b", "a b"),
    ("metadata", "labels", "metadata.labels"),
    ("env", "_X-1", "env._X-1"),
    ("metadata.labels", "app.kubernetes.io/name", 'metadata.labels["app.kubernetes.io/name"]'),
    ("metadata.labels", "a b", 'metadata.labels["a b"]'),
    ("metadata.labels", "", 'metadata.labels[""]'),
    ("metadata.labels", "1x", 'metadata.labels["1x"]'),
    ("metadata.labels", 1, 'metadata.labels["1"]'),
    ("metadata.labels", True, "metadata.labels.True"),
    ("metadata.labels", "x\n", 'metadata.labels["x\n"]'),
])
def test_join(base: str, key: Any, path: str) -> None:
    assert join(base, key) == path


# --- dns_label ------------------------------------------------------------------------------

NAME_FIX = (
    f"use at most {MAX_WORKLOAD_NAME} lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)


@pytest.mark.parametrize("value", ["a", "0", "web", "web-1", "1-a", "a--b",
                                   "a" * MAX_WORKLOAD_NAME])
def test_dns_label_accepts(value: str) -> None:
    assert dns_label(value, "metadata.name", "name", MAX_WORKLOAD_NAME, FAIL) == value


@pytest.mark.parametrize(("value", "problem"), [
    (None, "name must be a string, got null"),
    (5, "name must be a string, got number 5"),
    (True, "name must be a string, got boolean true"),
    (["web"], "name must be a string, got a list"),
    ("", "name must not be empty"),
    ("a" * (MAX_WORKLOAD_NAME + 1),
     f"name {'a' * (MAX_WORKLOAD_NAME + 1)!r} is longer than {MAX_WORKLOAD_NAME} characters"),
    ("Web", "'Web' is not a valid name"),
    ("-web", "'-web' is not a valid name"),
    ("web-", "'web-' is not a valid name"),
    ("we_b", "'we_b' is not a valid name"),
    ("web.x", "'web.x' is not a valid name"),
    ("web x", "'web x' is not a valid name"),
    ("web\n", "'web\\n' is not a valid name"),
])
def test_dns_label_refuses(value: Any, problem: str) -> None:
    message = refusal(lambda: dns_label(value, "metadata.name", "name", MAX_WORKLOAD_NAME, FAIL))
    assert message == f"{AT}: metadata.name: {problem}; {NAME_FIX}"


def test_dns_label_bound_is_the_callers() -> None:
    assert dns_label("a" * 63, "metadata.namespace", "namespace", 63, FAIL) == "a" * 63
    message = refusal(lambda: dns_label("a" * 64, "metadata.namespace", "namespace", 63, FAIL))
    assert "namespace 'aaa" in message and "longer than 63 characters" in message
    assert message.endswith("; use at most 63 lowercase letters, digits and '-', "
                            "starting and ending with a letter or digit")


# --- label_map ------------------------------------------------------------------------------

KEY_FIX = ("use an optional DNS prefix and '/' then at most 63 letters, digits, '-', '_' or '.', "
           "starting and ending with a letter or digit")
VALUE_FIX = ("use at most 63 letters, digits, '-', '_' or '.', "
             "starting and ending with a letter or digit")


@pytest.mark.parametrize("value", [None, {}])
def test_label_map_absent_or_empty(value: Any) -> None:
    assert label_map(value, "metadata.labels", FAIL) == ()


def test_label_map_sorted_pairs() -> None:
    labels = {"tier": "front", "app": "web", "example.com/owner": "ops", "empty": ""}
    assert label_map(labels, "metadata.labels", FAIL) == (
        ("app", "web"), ("empty", ""), ("example.com/owner", "ops"), ("tier", "front"))


@pytest.mark.parametrize("key", [
    "a", "A_b.c-d", "x" * MAX_LABEL, "example.com/app", "a.b-c/Z", "a" * 253 + "/x",
])
def test_label_map_accepts_keys(key: str) -> None:
    assert label_map({key: "v"}, "metadata.labels", FAIL) == ((key, "v"),)


@pytest.mark.parametrize("value", ["", "v", "V1.0_rc-2", "9", "x" * MAX_LABEL])
def test_label_map_accepts_values(value: str) -> None:
    assert label_map({"k": value}, "metadata.labels", FAIL) == (("k", value),)


@pytest.mark.parametrize(("value", "shown"), [
    (["app=web"], "a list"), ("app=web", "string 'app=web'"), (3, "number 3"),
])
def test_label_map_refuses_non_mappings(value: Any, shown: str) -> None:
    assert refusal(lambda: label_map(value, "metadata.labels", FAIL)) == (
        f"{AT}: metadata.labels: must be a mapping of strings to strings, got {shown}; "
        "write it as key: value lines")


@pytest.mark.parametrize(("key", "path", "shown"), [
    (1, 'metadata.labels["1"]', "number 1"),
    (2.5, 'metadata.labels["2.5"]', "number 2.5"),
    (True, "metadata.labels.True", "boolean true"),  # YAML's `yes:` or `true:` as a key
    (None, "metadata.labels.None", "null"),
])
def test_label_map_refuses_non_string_keys(key: Any, path: str, shown: str) -> None:
    assert refusal(lambda: label_map({key: "v"}, "metadata.labels", FAIL)) == (
        f"{AT}: {path}: key must be a string, got {shown}; quote the key")


@pytest.mark.parametrize("key", [
    "",  # no name
    "/app",  # a '/' with no prefix
    "example.com/",  # a prefix with no name
    "x" * (MAX_LABEL + 1),
    "-app",
    "app-",
    "a b",
    "Example.com/app",  # the prefix is a lowercase DNS subdomain
    "a/b/c",
    "a" * 254 + "/x",  # prefix over 253 characters
])
def test_label_map_refuses_keys(key: str) -> None:
    assert refusal(lambda: label_map({key: "v"}, "metadata.labels", FAIL)) == (
        f"{AT}: {join('metadata.labels', key)}: {key!r} is not a valid label key; {KEY_FIX}")


@pytest.mark.parametrize(("value", "shown", "quoted"), [
    (True, "boolean true", '"true"'),
    (False, "boolean false", '"false"'),
    (1, "number 1", '"1"'),
    (1.0, "number 1.0", '"1.0"'),
    (None, "null", '""'),
])
def test_label_map_refuses_unquoted_values(value: Any, shown: str, quoted: str) -> None:
    """YAML reads `debug: true` as a boolean; the fix shows the quoted spelling."""
    assert refusal(lambda: label_map({"debug": value}, "metadata.labels", FAIL)) == (
        f"{AT}: metadata.labels.debug: value must be a string, got {shown}; "
        f"quote it: debug: {quoted}")


@pytest.mark.parametrize("value", ["x" * (MAX_LABEL + 1), "-x", "x-", "a b", "a/b", "é"])
def test_label_map_refuses_values(value: str) -> None:
    assert refusal(lambda: label_map({"app.kubernetes.io/name": value}, "metadata.labels",
                                     FAIL)) == (
        f'{AT}: metadata.labels["app.kubernetes.io/name"]: {value!r} is not a valid label '
        f"value; {VALUE_FIX}")


# --- ports ----------------------------------------------------------------------------------

PORT = "spec.template.spec.containers[0].ports[1].hostPort"


@pytest.mark.parametrize("value", [1, 80, 65535])
def test_port_number_accepts(value: int) -> None:
    assert port_number(value, PORT, "hostPort", FAIL) == value


@pytest.mark.parametrize(("value", "shown"), [
    (0, "number 0"), (-1, "number -1"), (65536, "number 65536"),
    (True, "boolean true"), (False, "boolean false"), (80.0, "number 80.0"),
    ("80", "string '80'"), (None, "null"),
])
def test_port_number_refuses(value: Any, shown: str) -> None:
    assert refusal(lambda: port_number(value, PORT, "hostPort", FAIL)) == (
        f"{AT}: {PORT}: hostPort must be an integer from 1 to 65535, got {shown}; "
        "pick a port in that range")


@pytest.mark.parametrize("value", ["TCP", "UDP"])
def test_port_protocol_accepts(value: str) -> None:
    assert port_protocol(value, "ports[0].protocol", FAIL) == value


@pytest.mark.parametrize(("value", "shown"), [
    ("tcp", "string 'tcp'"), ("SCTP", "string 'SCTP'"), ("", "string ''"), (None, "null"),
    (6, "number 6"),
])
def test_port_protocol_refuses(value: Any, shown: str) -> None:
    assert refusal(lambda: port_protocol(value, "ports[0].protocol", FAIL)) == (
        f"{AT}: ports[0].protocol: protocol must be TCP or UDP, got {shown}; use TCP or UDP")


# --- restart policy -------------------------------------------------------------------------

POLICY = "spec.template.spec.restartPolicy"


@pytest.mark.parametrize("value", ["Always", "OnFailure", "Never"])
def test_pod_restart_policy_any_for_a_pod(value: str) -> None:
    assert pod_restart_policy(value, "Pod", "spec.restartPolicy", FAIL) == value


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_pod_restart_policy_always_only_for_controllers(kind: str) -> None:
    assert pod_restart_policy("Always", kind, POLICY, FAIL) == "Always"
    for value in ("OnFailure", "Never"):
        assert refusal(lambda v=value: pod_restart_policy(v, kind, POLICY, FAIL)) == (
            f"{AT}: {POLICY}: restartPolicy {value} is not allowed for a {kind}; "
            "use Always, or run it as a v1 Pod")


@pytest.mark.parametrize(("kind", "value", "shown"), [
    ("Pod", "always", "string 'always'"),
    ("Pod", None, "null"),
    ("Pod", "", "string ''"),
    ("Deployment", "Sometimes", "string 'Sometimes'"),  # spelling is checked before the kind
    ("Deployment", True, "boolean true"),
])
def test_pod_restart_policy_refuses_unknown(kind: str, value: Any, shown: str) -> None:
    assert refusal(lambda: pod_restart_policy(value, kind, POLICY, FAIL)) == (
        f"{AT}: {POLICY}: restartPolicy must be Always, OnFailure or Never, got {shown}; "
        "use one of those")


# --- probes ---------------------------------------------------------------------------------

PROBE = "spec.template.spec.containers[0].livenessProbe"


@pytest.mark.parametrize(("value", "minimum"), [
    (0, 0), (1, 1), (30, 1), (MAX_INT32, 0), (MAX_INT32, 1),
])
def test_probe_int_accepts(value: int, minimum: int) -> None:
    assert probe_int(value, f"{PROBE}.periodSeconds", minimum, FAIL) == value


@pytest.mark.parametrize(("value", "minimum", "shown"), [
    (0, 1, "number 0"),
    (-1, 0, "number -1"),
    (MAX_INT32 + 1, 0, f"number {MAX_INT32 + 1}"),
    (True, 0, "boolean true"),  # a bool is not a count, even where 1 would do
    (False, 0, "boolean false"),
    (1.0, 1, "number 1.0"),
    ("5", 1, "string '5'"),
    (None, 1, "null"),
])
def test_probe_int_refuses(value: Any, minimum: int, shown: str) -> None:
    assert refusal(lambda: probe_int(value, f"{PROBE}.periodSeconds", minimum, FAIL)) == (
        f"{AT}: {PROBE}.periodSeconds: must be a whole number from {minimum} to {MAX_INT32}, "
        f"got {shown}; use a whole number, or remove it for the Kubernetes default")


@pytest.mark.parametrize("value", ["/", "/healthz", "/a%20b?x=1&y=2#f", "/ready/"])
def test_http_request_path_accepts(value: str) -> None:
    assert http_request_path(value, f"{PROBE}.httpGet.path", FAIL) == value


@pytest.mark.parametrize(("value", "shown"), [
    ("", "string ''"),
    ("healthz", "string 'healthz'"),
    ("/a b", "string '/a b'"),
    ("/a\tb", "string '/a\\tb'"),
    ("/a\r\nHost: evil", "string '/a\\r\\nHost: evil'"),
    ("/\x00", "string '/\\x00'"),
    ("/\x7f", "string '/\\x7f'"),
    ("/a\u00a0b", "string '/a\\xa0b'"),  # a no-break space is whitespace too
    (None, "null"),
    (5, "number 5"),
    (["/"], "a list"),
])
def test_http_request_path_refuses(value: Any, shown: str) -> None:
    assert refusal(lambda: http_request_path(value, f"{PROBE}.httpGet.path", FAIL)) == (
        f"{AT}: {PROBE}.httpGet.path: must be a path starting with '/', got {shown}; "
        "use a path like /healthz (percent-encode spaces as %20)")


HEADER = f"{PROBE}.httpGet.httpHeaders[0]"


@pytest.mark.parametrize(("name", "value"), [
    ("X-Probe", "yes"), ("accept", ""), ("X-1", "a: b, c"), ("A", "tab\tis fine"),
])
def test_http_header_accepts(name: str, value: str) -> None:
    assert http_header(name, value, f"{HEADER}.name", f"{HEADER}.value", FAIL) == (name, value)


@pytest.mark.parametrize(("name", "shown"), [
    ("", "string ''"), ("X Probe", "string 'X Probe'"), ("X_Probe", "string 'X_Probe'"),
    ("X:Probe", "string 'X:Probe'"), ("X-Probe\n", "string 'X-Probe\\n'"),
    (5, "number 5"), (None, "null"),
])
def test_http_header_refuses_names(name: Any, shown: str) -> None:
    """The name is checked first, so a bad value behind it does not hide it."""
    assert refusal(lambda: http_header(name, None, f"{HEADER}.name", f"{HEADER}.value",
                                       FAIL)) == (
        f"{AT}: {HEADER}.name: header name must be letters, digits and '-', got {shown}; "
        "use a name like X-Probe")


@pytest.mark.parametrize(("value", "shown"), [
    ("a\r\nX-Evil: 1", "string 'a\\r\\nX-Evil: 1'"),
    ("a\n", "string 'a\\n'"),
    ("a\r", "string 'a\\r'"),
    ("a\0", "string 'a\\x00'"),
    (5, "number 5"),
    (True, "boolean true"),
    (None, "null"),
])
def test_http_header_refuses_values(value: Any, shown: str) -> None:
    assert refusal(lambda: http_header("X-Probe", value, f"{HEADER}.name", f"{HEADER}.value",
                                       FAIL)) == (
        f"{AT}: {HEADER}.value: header value must be a string on one line, got {shown}; "
        'quote it: value: "..."')


@pytest.mark.parametrize("which", ["startup", "readiness", "liveness"])
def test_success_threshold_of_one_everywhere(which: str) -> None:
    assert check_success_threshold(1, which, f"{PROBE}.successThreshold", FAIL) is None


def test_success_threshold_above_one_for_readiness() -> None:
    assert check_success_threshold(3, "readiness", "readinessProbe.successThreshold",
                                   FAIL) is None


@pytest.mark.parametrize(("which", "value"), [
    ("liveness", 2), ("startup", 3), ("liveness", 0),
])
def test_success_threshold_refused_outside_readiness(which: str, value: int) -> None:
    assert refusal(lambda: check_success_threshold(value, which, f"{PROBE}.successThreshold",
                                                   FAIL)) == (
        f"{AT}: {PROBE}.successThreshold: must be 1 for a {which} probe, got {value}; "
        "set it to 1 or remove it")


# --- env ------------------------------------------------------------------------------------

ENV = "spec.template.spec.containers[0].env[2].name"


@pytest.mark.parametrize("value", ["MODE", "_x", "lower.case-1", "1ST", "A B", "Ü"])
def test_env_name_accepts(value: str) -> None:
    assert env_name(value, ENV, FAIL) == value


@pytest.mark.parametrize(("value", "shown"), [
    ("", "string ''"), ("A=B", "string 'A=B'"), ("=", "string '='"),
    ("A\0", "string 'A\\x00'"), (None, "null"), (5, "number 5"), (False, "boolean false"),
])
def test_env_name_refuses(value: Any, shown: str) -> None:
    assert refusal(lambda: env_name(value, ENV, FAIL)) == (
        f"{AT}: {ENV}: environment variable name must be a non-empty string without '=', "
        f"got {shown}; fix the name")


# --- limits ---------------------------------------------------------------------------------

LIMITS = "spec.template.spec.containers[0].resources.limits.cpu"


def milli(m: int) -> str:
    return f"{m}m"


@pytest.mark.parametrize(("request_", "limit"), [(250, None), (250, 250), (250, 251), (0, 0)])
def test_check_limit_accepts(request_: int, limit: int | None) -> None:
    assert check_limit(request_, limit, LIMITS, "cpu", milli, FAIL) is None


@pytest.mark.parametrize(("request_", "limit"), [(250, 249), (250, 0), (1, 0)])
def test_check_limit_refuses_a_limit_below_the_request(request_: int, limit: int) -> None:
    assert refusal(lambda: check_limit(request_, limit, LIMITS, "cpu", milli, FAIL)) == (
        f"{AT}: {LIMITS}: cpu limit {limit}m is lower than the request {request_}m; "
        "raise the limit or lower the request")


# --- pod-wide rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """What check_pod reads of a container."""

    name: str
    ports: Sequence[PortSpec] = ()


def port(host: int | None, protocol: str = "TCP", container: int = 80) -> PortSpec:
    return PortSpec(container_port=container, host_port=host, protocol=protocol, name=None)


def test_check_pod_accepts_distinct_names_and_host_ports() -> None:
    boxes = [
        Box("web", [port(8080), port(8080, "UDP"), port(None), port(None)]),
        Box("side", [port(9090), port(None)]),
        Box("bare"),
    ]
    assert check_pod(boxes, "spec.template.spec.", "hostPort", FAIL) is None
    assert check_pod(iter(boxes), "", "host_port", FAIL) is None  # any iterable
    assert check_pod([], "spec.", "hostPort", FAIL) is None


def test_check_pod_refuses_a_duplicate_container_name() -> None:
    boxes = [Box("web"), Box("side"), Box("web")]
    assert refusal(lambda: check_pod(boxes, "spec.template.spec.", "hostPort", FAIL)) == (
        f"{AT}: spec.template.spec.containers[2].name: duplicate container name 'web'; "
        "give each container a unique name")


def test_check_pod_refuses_a_host_port_in_two_containers() -> None:
    boxes = [Box("web", [port(8080)]), Box("side", [port(9090), port(8080, container=81)])]
    assert refusal(lambda: check_pod(boxes, "spec.template.spec.", "hostPort", FAIL)) == (
        f"{AT}: spec.template.spec.containers[1].ports[1].hostPort: hostPort 8080/TCP is used "
        "twice in one pod; give each host port to one container only")


def test_check_pod_refuses_a_host_port_twice_in_one_container() -> None:
    boxes = [Box("dns", [port(53, "UDP"), port(53, "TCP"), port(53, "UDP", container=54)])]
    assert refusal(lambda: check_pod(boxes, "spec.", "hostPort", FAIL)) == (
        f"{AT}: spec.containers[0].ports[2].hostPort: hostPort 53/UDP is used twice in one "
        "pod; give each host port to one container only")


def test_check_pod_names_the_wire_fields() -> None:
    """A spec from the wire: no base, snake_case field, and its own prefix."""
    w = Where("workload spec")
    boxes = [Box("a", [port(7000)]), Box("b", [port(7000)])]
    assert refusal(lambda: check_pod(boxes, "", "host_port", w.fail)) == (
        "workload spec: containers[1].ports[0].host_port: hostPort 7000/TCP is used twice in "
        "one pod; give each host port to one container only")
