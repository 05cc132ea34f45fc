"""Pod volumes in manifests: emptyDir, hostPath, claim templates, mounts; refusals; the wire
form re-checked as hostile."""

from __future__ import annotations

from typing import Any

import pytest
from manifest_testlib import (
    C0,
    DEPLOYMENT,
    MI,
    container,
    field_error,
    mutated,
    parse_one,
    template_spec,
)

from beemesh.manifest import ManifestError, WorkloadSpec
from beemesh.manifest.volumes import Mount, Volume


def with_volumes(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]],
                 base: dict[str, Any] = DEPLOYMENT) -> dict[str, Any]:
    def change(d: dict[str, Any]) -> None:
        template_spec(d)["volumes"] = volumes
        container(d)["volumeMounts"] = mounts
    return mutated(base, change)


GOOD = with_volumes(
    [{"name": "scratch", "emptyDir": {}},
     {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
     {"name": "logs", "hostPath": {"path": "/var/log/app/", "type": "DirectoryOrCreate"}}],
    [{"name": "scratch", "mountPath": "/tmp/work"}, {"name": "fast", "mountPath": "/cache"},
     {"name": "logs", "mountPath": "/logs", "readOnly": True}])


def test_each_kind_of_volume_and_its_mounts() -> None:
    spec = parse_one(GOOD)
    assert spec.volumes == (Volume("scratch", "emptyDir"),
                            Volume("fast", "emptyDir", medium="Memory", size_bytes=16 * MI),
                            Volume("logs", "hostPath", path="/var/log/app",
                                   path_type="DirectoryOrCreate"))
    assert spec.containers[0].mounts == (Mount("scratch", "/tmp/work"), Mount("fast", "/cache"),
                                         Mount("logs", "/logs", read_only=True))
    assert spec.host_paths == ("/var/log/app",)
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec


def test_a_workload_without_volumes_keeps_its_wire_form() -> None:
    d = parse_one(DEPLOYMENT).to_dict()
    assert "volumes" not in d and "mounts" not in d["containers"][0]


@pytest.mark.parametrize("volumes, mounts, fragments", [
    ([{"name": "c", "configMap": {"name": "x", "items": [{"key": "k", "path": "../x"}]}}], [],
     ("spec.template.spec.volumes[0].configMap.items[0].path: string '../x' must be a "
      "relative path",)),
    ([{"name": "c", "persistentVolumeClaim": {"claimName": "x"}}], [],
     ("spec.template.spec.volumes[0].persistentVolumeClaim: not supported",
      "volumeClaimTemplates")),
    ([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}}], [],
     ("spec.template.spec.volumes[0]: needs exactly one source",)),
    ([{"name": "a", "emptyDir": {"medium": "HugePages"}}], [],
     ("spec.template.spec.volumes[0].emptyDir.medium: must be",)),
    ([{"name": "a", "emptyDir": {"sizeLimit": "lots"}}], [],
     ("spec.template.spec.volumes[0].emptyDir.sizeLimit:",)),
    ([{"name": "a", "hostPath": {"path": "relative/dir"}}], [],
     ("spec.template.spec.volumes[0].hostPath.path: path must be an absolute, normalized path",)),
    ([{"name": "a", "hostPath": {"path": "/srv/../etc"}}], [],
     ("spec.template.spec.volumes[0].hostPath.path: path must be an absolute",)),
    ([{"name": "a", "hostPath": {"path": "/srv", "type": "Socket"}}], [],
     ("spec.template.spec.volumes[0].hostPath.type: string 'Socket' is not supported",)),
    ([{"name": "beemesh-hosts", "emptyDir": {}}], [],
     ("spec.template.spec.volumes[0].name: names starting with beemesh- are Beemesh's own",)),
    ([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}], [],
     ("spec.template.spec.volumes[1].name: volume a is declared twice",)),
    ([{"name": "a", "emptyDir": {}}], [{"name": "b", "mountPath": "/b"}],
     (f"{C0}.volumeMounts[0].name: no volume named b",)),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/a"},
                                        {"name": "a", "mountPath": "/a"}],
     (f"{C0}.volumeMounts[1].mountPath: /a is mounted twice",)),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/a", "subPath": "x"}],
     (f"{C0}.volumeMounts[0].subPath: not supported",)),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/a", "readOnly": "yes"}],
     (f"{C0}.volumeMounts[0].readOnly: must be true or false",)),
])
def test_refusals_name_the_field_and_the_fix(volumes: list[Any], mounts: list[Any],
                                             fragments: tuple[str, ...]) -> None:
    field_error(with_volumes(volumes, mounts), *fragments)


def test_claim_templates_are_checked() -> None:
    def sts(claim: dict[str, Any]) -> dict[str, Any]:
        d = mutated(DEPLOYMENT, lambda d: d.update(kind="StatefulSet"))
        d["spec"]["volumeClaimTemplates"] = [claim]
        return d

    field_error(sts({"metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteMany"]}}),
                "spec.volumeClaimTemplates[0].spec.accessModes:", "ReadWriteOnce")
    field_error(sts({"spec": {}}), "spec.volumeClaimTemplates[0].metadata: missing")
    spec = parse_one(sts({"metadata": {"name": "d"}, "spec": {
        "storageClassName": "fast", "resources": {"requests": {"storage": "2Gi"}}}}))
    assert spec.volumes == (Volume("d", "claim", size_bytes=2 * 2**30),)
    assert any("storageClassName" in w for w in spec.warnings)


@pytest.mark.parametrize("change", [
    lambda d: d.update(volumes=[{**d["volumes"][0], "source": "nfs"}]),
    lambda d: d.update(volumes=[{**d["volumes"][0], "size_bytes": -1}]),
    lambda d: d.update(volumes=[{**d["volumes"][0], "path": "/etc"}]),  # an emptyDir's path
    lambda d: d.update(volumes=[{**d["volumes"][0], "source": "claim"}]),  # in a Deployment
    lambda d: d.update(volumes=[{**d["volumes"][2], "path": "/a/../../etc"}]),
    lambda d: d.update(volumes=d["volumes"] * 2),  # names twice
    lambda d: d["containers"][0].update(mounts=[{"name": "nope", "path": "/x",
                                                 "read_only": False}]),
    lambda d: d["containers"][0].update(mounts=[{"name": "scratch", "path": "/x"}]),
])
def test_the_wire_form_is_rechecked(change: Any) -> None:
    d = parse_one(GOOD).to_dict()
    change(d)
    with pytest.raises(ManifestError):
        WorkloadSpec.from_dict(d)



def statefulset(**spec: Any) -> dict[str, Any]:
    return mutated(DEPLOYMENT, lambda d: (d.update(kind="StatefulSet"), d["spec"].update(spec)))


def test_pod_management_and_claim_retention_are_honoured_not_warned() -> None:
    ordered = parse_one(statefulset())
    assert not ordered.parallel and ordered.warnings == ()  # OrderedReady, Kubernetes' default
    spec = parse_one(statefulset(podManagementPolicy="Parallel",
                                 persistentVolumeClaimRetentionPolicy={
                                     "whenDeleted": "Delete", "whenScaled": "Retain"}))
    assert spec.parallel and spec.delete_claims_on_delete and not spec.delete_claims_on_scale
    assert spec.warnings == () and WorkloadSpec.from_dict(spec.to_dict()) == spec
    assert spec.template_hash == ordered.template_hash  # not part of the pod template
    field_error(statefulset(podManagementPolicy="Sometimes"),
                "spec.podManagementPolicy: string 'Sometimes' is not a policy", "OrderedReady")
    field_error(statefulset(persistentVolumeClaimRetentionPolicy={"whenScaled": "Keep"}),
                "whenScaled: string 'Keep' is not Retain or Delete")
    field_error(mutated(DEPLOYMENT, lambda d: d["spec"].update(podManagementPolicy="Parallel")),
                "spec.podManagementPolicy: not supported")
