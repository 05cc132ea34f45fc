"""v1 Service: parsed like Kubernetes, refused with the field and the fix, re-checked off the
wire (beemesh.manifest.service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from beemesh.manifest import ManifestError, ServicePort, ServiceSpec, parse_manifests

BACKEND = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
           "spec": {"selector": {"app": "backend"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                              {"name": "admin", "port": 9000}]}}
DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend}
spec:
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers: [{name: main, image: localhost/beemesh/busybox:latest}]
"""


def parse(doc: dict[str, Any]) -> ServiceSpec:
    (spec,) = parse_manifests(yaml.safe_dump(doc), "svc.yaml")
    assert isinstance(spec, ServiceSpec)
    return spec


def changed(**spec: Any) -> dict[str, Any]:
    return {**BACKEND, "spec": {**BACKEND["spec"], **spec}}


def test_a_service_is_parsed_and_round_trips() -> None:
    spec = parse(BACKEND)
    assert spec.service_id == "service/default/backend"
    assert spec.selector == (("app", "backend"),)
    assert spec.ports == (ServicePort("http", 80, "web"), ServicePort("admin", 9000, 9000))
    assert not spec.headless and spec.warnings == ()
    assert ServiceSpec.from_dict(spec.to_dict()) == spec
    assert spec.selects("default", (("app", "backend"), ("tier", "x")))
    assert not spec.selects("other", (("app", "backend"),))
    assert not spec.selects("default", (("app", "frontend"),))


def test_headless_needs_no_ports_and_a_cluster_ip_is_ignored_with_a_warning() -> None:
    headless = parse(changed(clusterIP="None", ports=None))
    assert headless.headless and headless.ports == ()
    fixed = parse(changed(clusterIP="10.96.0.10", type="ClusterIP"))
    assert not fixed.headless
    assert any("spec.clusterIP" in w for w in fixed.warnings)


def test_publish_not_ready_addresses_makes_replicas_endpoints_before_they_are_ready() -> None:
    spec = parse(changed(clusterIP="None", publishNotReadyAddresses=True))
    assert spec.not_ready and spec.warnings == ()
    assert ServiceSpec.from_dict(spec.to_dict()) == spec
    assert "not_ready" not in parse(BACKEND).to_dict()  # the wire form it had before
    with pytest.raises(ManifestError, match=r"spec\.publishNotReadyAddresses: must be true or"):
        parse(changed(publishNotReadyAddresses="yes"))
    with pytest.raises(ManifestError, match="not_ready"):
        ServiceSpec.from_dict({**spec.to_dict(), "not_ready": 1})


def test_services_and_workloads_apply_together_from_one_file() -> None:
    text = DEPLOY + "---\n" + yaml.safe_dump(BACKEND)
    kinds = [s.kind for s in parse_manifests(text, "app.yaml")]
    assert kinds == ["Deployment", "Service"]  # the same name, two kinds: both kept


@pytest.mark.parametrize(("spec", "says"), [
    (changed(selector=None), "spec.selector: missing or empty"),
    (changed(ports=[]), "spec.ports: missing or empty"),
    (changed(ports=[{"port": 80, "protocol": "UDP"}]), "spec.ports[0].protocol"),
    (changed(type="NodePort"), "give the container a hostPort"),
    (changed(ports=[{"port": 80}, {"port": 81}]), "spec.ports[0].name"),
    (changed(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]), "used twice"),
    (changed(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]), "listed twice"),
    (changed(ports=[{"port": 70000}]), "from 1 to 65535"),
    (changed(externalName="x.example"), "spec.externalName: not supported"),
    ({**BACKEND, "metadata": {"name": "9lives"}}, "must start with a letter"),
])
def test_a_bad_service_names_the_field_and_the_fix(spec: dict[str, Any], says: str) -> None:
    with pytest.raises(ManifestError, match="Service") as e:
        parse(spec)
    assert says in str(e.value)


@pytest.mark.parametrize("data", [
    None, [], {"name": "x"}, {**parse(BACKEND).to_dict(), "ports": "80"},
    {**parse(BACKEND).to_dict(), "extra": 1}, {**parse(BACKEND).to_dict(), "headless": "yes"},
    {**parse(BACKEND).to_dict(), "selector": {}},
])
def test_from_dict_refuses_what_the_parser_would(data: Any) -> None:
    with pytest.raises(ManifestError):
        ServiceSpec.from_dict(data)


def test_allow_from_annotation_widens_or_narrows_who_may_connect() -> None:
    annotated = {**BACKEND, "metadata": {"name": "backend", "annotations": {
        "beemesh.io/allow-from": "default/api, tools/*"}}}
    assert parse(annotated).allow_from == ("default/api", "tools/*")
    for bad in ("default", "Default/x", "", "a/b/c"):
        annotated["metadata"]["annotations"]["beemesh.io/allow-from"] = bad
        with pytest.raises(ManifestError, match="allow-from"):
            parse(annotated)
    port = (ServicePort("", 80, 80),)
    base = ServiceSpec("db", "default", (("app", "db"),), port)
    assert base.allows("default", "anything") and not base.allows("tools", "x")
    narrow = ServiceSpec("db", "default", (("app", "db"),), port, allow_from=("default/api",))
    assert narrow.allows("default", "api") and not narrow.allows("default", "web")
    wide = ServiceSpec("db", "default", (("app", "db"),), port, allow_from=("*/*",))
    assert wide.allows("tools", "x")
    assert ServiceSpec.from_dict(narrow.to_dict()) == narrow


@pytest.mark.parametrize("path", sorted(
    (Path(__file__).parents[3] / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_manifest_is_accepted(path: Path) -> None:
    assert parse_manifests(path.read_text(), path.name)
