"""The Kubernetes walker (beemesh.manifest.kube): documents, kinds, pod specs, YAML, files.

Over 400 lines for one table: ERROR_CASES holds the walker's field errors for documents and
containers alike, each checked as parse_manifests reports it (probe errors are in
test_containers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from manifest_testlib import (
    C0,
    CT,
    DEPLOYMENT,
    EXAMPLES,
    MI,
    POD,
    TS,
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

from beemesh.manifest import (
    ContainerSpec,
    ManifestError,
    PortSpec,
    ProbeSpec,
    WorkloadSpec,
    load_manifest_file,
    parse_manifests,
)

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
    assert len(spec.warnings) == 1
    assert "spec.revisionHistoryLimit: " in warnings
    assert spec.grace_s == 10  # terminationGracePeriodSeconds is applied now
    assert spec.containers[0].pull_policy == "IfNotPresent"  # applied now, not warned about
    # The update strategy is applied now (manifest.strategy): parsed, not warned about.
    assert (spec.strategy.min_ready_s, spec.strategy.progress_deadline_s) == (5, 60)
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


# --- errors: each names its field path ---------------------------------------------------------


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
      "use apps/v1 Deployment, apps/v1 StatefulSet, v1 Pod, v1 Service, v1 ConfigMap or "
      "v1 Secret")),
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
    ("volumes", set_in((*TS, "volumes"), [{"name": "data", "secret": {"secretName": "S"}}]),
     ("spec.template.spec.volumes[0].secret.secretName: 'S' is not a valid name",)),
    ("initContainers", set_in((*TS, "initContainers"), [{"name": "i", "image": "x"}]),
     ("spec.template.spec.initContainers: not supported",)),
    ("affinity", set_in((*TS, "affinity"), {"nodeAffinity": {}}),
     ("spec.template.spec.affinity: not supported",)),
    ("tolerations", set_in((*TS, "tolerations"), [{"key": "a"}]),
     ("spec.template.spec.tolerations: not supported",)),
    ("pod securityContext", set_in((*TS, "securityContext"), {"runAsUser": -1}),
     ("spec.template.spec.securityContext.runAsUser: must be a whole number from 0 to",)),
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
     (f"{C0}.volumeMounts[0].name: no volume named d",)),
    ("container securityContext", set_in((*CT, "securityContext"), {"privileged": True}),
     (f"{C0}.securityContext.privileged: privileged containers are refused",)),
    ("envFrom", set_in((*CT, "envFrom"), [{"configMapRef": {"name": "c"}, "secretRef": {
        "name": "s"}}]), (f"{C0}.envFrom[0]: needs exactly one of configMapRef or secretRef",)),
    ("valueFrom", set_in((*CT, "env"), [{"name": "A", "valueFrom": {"fieldRef": {}}}]),
     (f"{C0}.env[0].valueFrom: needs exactly one of configMapKeyRef or secretKeyRef",)),
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
    message = field_error(mutated(DEPLOYMENT, change), *fragments)
    assert message.startswith("app.yaml: document 1")


def test_error_prefix_names_kind_and_name() -> None:
    doc = mutated(DEPLOYMENT, set_in((*CT, "image"), ""))
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(POD, doc), "app.yaml")
    assert str(exc.value).startswith(f"app.yaml: document 2 (Deployment web): {C0}.image: ")


def test_pod_errors_use_pod_paths() -> None:
    cases = [
        (set_in(("spec", "volumes"), [{"name": "v"}]), "spec.volumes[0]: needs exactly one"),
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


def test_statefulset_volume_claim_templates_are_claims_a_container_mounts() -> None:
    sts = mutated(DEPLOYMENT, lambda d: d.update(kind="StatefulSet"))
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    container(sts)["volumeMounts"] = [{"name": "data", "mountPath": "/var/lib/data"}]
    spec = parse_one(sts)
    assert [(v.name, v.source, v.size_bytes) for v in spec.volumes] == [("data", "claim", 2**30)]
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec
    deployment = mutated(DEPLOYMENT, lambda d: None)
    deployment["spec"]["volumeClaimTemplates"] = sts["spec"]["volumeClaimTemplates"]
    with pytest.raises(ManifestError, match=r"spec\.volumeClaimTemplates: not supported"):
        parse_one(deployment)


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

