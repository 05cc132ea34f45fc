"""Kubernetes YAML -> WorkloadSpec: documents, Deployment/StatefulSet/Pod, their pod spec.

``parse_manifests`` reads single- or multi-document YAML (duplicate keys refused) and walks
each Deployment, StatefulSet or Pod field by field (a Service: ``beemesh.manifest.service``);
the containers are walked in ``beemesh.manifest.containers``. What is supported, warned
about or refused is listed in the ``beemesh.manifest`` package doc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from beemesh.manifest.checks import (
    MAX_GRACE_S,
    MAX_LABEL,
    MAX_REPLICAS,
    MAX_WORKLOAD_NAME,
    ManifestError,
    Where,
    check_pod,
    describe,
    dns_label,
    join,
    label_map,
    pod_restart_policy,
)
from beemesh.manifest.config import ConfigMapSpec, SecretSpec, parse_config_map, parse_secret
from beemesh.manifest.containers import parse_container
from beemesh.manifest.fields import NOT_YET, READ_ONLY, Doc
from beemesh.manifest.model import ContainerSpec, WorkloadSpec
from beemesh.manifest.security import parse_pod_security
from beemesh.manifest.service import ServiceSpec, parse_service
from beemesh.manifest.strategy import (
    DEFAULT_STRATEGY,
    RESTARTED_AT,
    parse_strategy,
    restarted_at,
)
from beemesh.manifest.volumes import check_mounts, parse_claims, parse_volumes

_API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Pod": "v1", "Service": "v1",
                 "ConfigMap": "v1", "Secret": "v1"}
_SUPPORTED_TEXT = ("apps/v1 Deployment, apps/v1 StatefulSet, v1 Pod, v1 Service, v1 ConfigMap "
                   "or v1 Secret")
# In a pod template's annotations: "true" rolls the workload when a ConfigMap or Secret it uses
# changes (`beemesh apply` records their digest in the template).
ROLL_ON_CONFIG = "beemesh.io/roll-on-config-change"
# Document fields ignored with a warning (a container's own are in manifest.containers).
_META_READ_ONLY = dict.fromkeys(
    ("creationTimestamp", "uid", "resourceVersion", "generation", "managedFields", "selfLink"),
    READ_ONLY,
)
_CONTROLLER_WARN = {
    "Deployment": dict.fromkeys(("revisionHistoryLimit",), NOT_YET),
    "StatefulSet": dict.fromkeys(("revisionHistoryLimit",), NOT_YET),
}
_Pairs = tuple[tuple[str, str], ...]


Spec = WorkloadSpec | ServiceSpec | ConfigMapSpec | SecretSpec


def parse_manifests(text: str, source: str = "<manifest>") -> list[Spec]:
    """Parse single- or multi-document YAML; empty documents are skipped, so [] is possible."""
    # PyYAML loads here only: the agent and the work plane, which never read YAML, do not keep
    # its 25 modules (~1 MB) in memory.
    from beemesh.manifest.yaml_docs import load_documents

    specs: list[Spec] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    for number, doc in enumerate(load_documents(text, source), start=1):
        if doc is None:
            continue
        where = Where(f"{source}: document {number}")
        spec = _parse_document(doc, where)
        key = (spec.kind, spec.namespace, spec.name)
        if key in first_seen:
            where.fail("metadata.name",
                       f"duplicate {spec.kind} {spec.namespace}/{spec.name} "
                       f"(also document {first_seen[key]})",
                       f"give each {spec.kind} a unique name")
        first_seen[key] = number
        specs.append(spec)
    return specs


def load_manifest_file(path: Path) -> list[Spec]:
    """Read and parse a manifest file; any read problem becomes a ManifestError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file; check the path") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text; save the manifest as UTF-8") from None
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot read manifest: {exc.strerror or exc}; check the path and permissions"
        ) from None
    return parse_manifests(text, str(path))


def _parse_document(doc: Any, where: Where) -> Spec:
    if not isinstance(doc, dict):
        fix = ("put each object in its own document, separated by '---'"
               if isinstance(doc, list) else "check the indentation")
        where.fail(None, "expected a Kubernetes object (a mapping with apiVersion, kind, metadata "
                   f"and spec), got {describe(doc)}", fix)
    d = Doc(where)
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if kind is None:
        d.fail("kind", "missing", f"set apiVersion and kind to one of {_SUPPORTED_TEXT}")
    if not isinstance(kind, str) or kind not in _API_VERSIONS:
        shown = f"{api_version} {kind}" if isinstance(api_version, str) else describe(kind)
        d.fail("kind", f"{shown} is not supported", f"use {_SUPPORTED_TEXT}")
    where.kind = kind
    if api_version is None:
        d.fail("apiVersion", "missing", f"add apiVersion: {_API_VERSIONS[kind]}")
    if api_version != _API_VERSIONS[kind]:
        shown = f"{api_version} {kind}" if isinstance(api_version, str) else describe(api_version)
        d.fail("apiVersion", f"{shown} is not supported",
               f"use apiVersion: {_API_VERSIONS[kind]} (supported: {_SUPPORTED_TEXT})")

    meta = d.mapping(doc.get("metadata"), "metadata", required=True)
    name = dns_label(meta.get("name"), "metadata.name", "name", MAX_WORKLOAD_NAME, d.fail)
    where.name = name
    d.check_fields(meta, "metadata", ("name", "namespace", "labels", "annotations"),
                   _META_READ_ONLY)
    namespace = meta.get("namespace")
    namespace = "default" if namespace is None else dns_label(
        namespace, "metadata.namespace", "namespace", MAX_LABEL, d.fail)
    labels = label_map(meta.get("labels"), "metadata.labels", d.fail)
    if kind == "ConfigMap":
        return parse_config_map(d, name, namespace, labels, doc)
    if kind == "Secret":
        return parse_secret(d, name, namespace, labels, doc)
    d.check_fields(doc, "", ("apiVersion", "kind", "metadata", "spec"), {"status": READ_ONLY})
    spec = d.mapping(doc.get("spec"), "spec", required=True)
    if kind == "Service":
        annotations = d.mapping(meta.get("annotations"), "metadata.annotations")
        return parse_service(d, name, namespace, labels, annotations, spec)

    if kind == "Pod":
        replicas, pod_base = 1, "spec"
        pod, strategy, restarted = spec, DEFAULT_STRATEGY, ""
        annotations = d.mapping(meta.get("annotations"), "metadata.annotations")
    else:
        allowed = ["replicas", "selector", "template", "minReadySeconds"]
        if kind == "StatefulSet":
            allowed += ["serviceName", "updateStrategy", "volumeClaimTemplates",
                        "podManagementPolicy", "persistentVolumeClaimRetentionPolicy"]
        else:
            allowed += ["strategy", "progressDeadlineSeconds"]
            service = spec.get("serviceName", "")
            if not isinstance(service, str):
                d.fail("spec.serviceName", f"must be a string, got {describe(service)}",
                       "quote it")
        d.check_fields(spec, "spec", allowed, _CONTROLLER_WARN[kind])
        replicas = spec.get("replicas", 1)
        replicas = 1 if replicas is None else replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            d.fail("spec.replicas", f"must be a non-negative integer, got {describe(replicas)}",
                   "use a whole number like 3")
        if replicas > MAX_REPLICAS:
            d.fail("spec.replicas", f"{replicas} is more than Beemesh runs of one workload "
                   f"({MAX_REPLICAS})", f"use at most {MAX_REPLICAS} or split the workload")
        template = d.mapping(spec.get("template"), "spec.template", required=True)
        d.check_fields(template, "spec.template", ("metadata", "spec"))
        tmeta = d.mapping(template.get("metadata"), "spec.template.metadata")
        d.check_fields(tmeta, "spec.template.metadata", ("labels", "annotations"),
                       {**_META_READ_ONLY, "name": "pods are named after the workload; ignored"})
        labels = label_map(tmeta.get("labels"), "spec.template.metadata.labels", d.fail)
        annotations = d.mapping(tmeta.get("annotations"), "spec.template.metadata.annotations")
        restart = annotations.get(RESTARTED_AT)
        restarted = "" if restart is None else restarted_at(
            restart, f"spec.template.metadata.annotations.{RESTARTED_AT}", d.fail)
        strategy = parse_strategy(kind, spec, d.fail)
        _check_selector(d, spec.get("selector"), dict(labels))
        pod_base = "spec.template.spec"
        pod = d.mapping(template.get("spec"), pod_base, required=True)

    containers, node_selector, restart_policy = _parse_pod_spec(d, pod, pod_base, kind)
    grace = pod.get("terminationGracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)
                              or not 0 <= grace <= MAX_GRACE_S):
        d.fail(f"{pod_base}.terminationGracePeriodSeconds", f"must be a whole number of "
               f"seconds from 0 to {MAX_GRACE_S}, got {describe(grace)}", "write e.g. 30")
    volumes = parse_volumes(d, pod.get("volumes"), f"{pod_base}.volumes")
    if kind == "StatefulSet":
        volumes += parse_claims(d, spec.get("volumeClaimTemplates"), "spec.volumeClaimTemplates")
    check_mounts(volumes, [(f"{pod_base}.containers[{i}].volumeMounts", c.mounts)
                           for i, c in enumerate(containers)], f"{pod_base}.", "volumes",
                 where.fail)
    return WorkloadSpec(
        kind=kind, name=name, namespace=namespace, replicas=replicas, labels=labels,
        node_selector=node_selector, containers=containers, restart_policy=restart_policy,
        warnings=tuple(d.warnings), strategy=strategy, restarted_at=restarted, volumes=volumes,
        grace_s=grace, roll_on_config=_roll_on_config(d, annotations),
        parallel=kind == "StatefulSet" and _parallel(d, spec.get("podManagementPolicy")),
        **(_retention(d, spec.get("persistentVolumeClaimRetentionPolicy"))
           if kind == "StatefulSet" else {}),
    )


def _parallel(d: Doc, value: Any) -> bool:
    if value not in (None, "OrderedReady", "Parallel"):
        d.fail("spec.podManagementPolicy", f"{describe(value)} is not a policy",
               "use OrderedReady (the default) or Parallel")
    return value == "Parallel"


def _retention(d: Doc, value: Any) -> dict[str, bool]:
    """persistentVolumeClaimRetentionPolicy: whether claims go when the StatefulSet is deleted
    and when it scales down (Retain, Kubernetes' default, keeps them)."""
    path = "spec.persistentVolumeClaimRetentionPolicy"
    policy = d.mapping(value, path)
    d.check_fields(policy, path, ("whenDeleted", "whenScaled"))
    out = {}
    for key, field in (("whenDeleted", "delete_claims_on_delete"),
                       ("whenScaled", "delete_claims_on_scale")):
        given = policy.get(key)
        if given not in (None, "Retain", "Delete"):
            d.fail(f"{path}.{key}", f"{describe(given)} is not Retain or Delete",
                   "use Retain (the default) or Delete")
        out[field] = given == "Delete"
    return out


def _roll_on_config(d: Doc, annotations: dict[Any, Any]) -> bool:
    value = annotations.get(ROLL_ON_CONFIG)
    if value not in (None, "true", "false"):
        d.fail(f"annotations.{ROLL_ON_CONFIG}", f"must be \"true\" or \"false\", got "
               f"{describe(value)}", 'write "true" (quoted)')
    return value == "true"


def _check_selector(d: Doc, selector: Any, template_labels: dict[str, str]) -> None:
    """The selector must pick the template's own pods, or Kubernetes would reject it too."""
    if selector is None:
        return
    selector = d.mapping(selector, "spec.selector")
    d.check_fields(selector, "spec.selector", ("matchLabels",))
    match = label_map(selector.get("matchLabels"), "spec.selector.matchLabels", d.fail)
    if not match:
        d.fail("spec.selector.matchLabels", "must not be empty",
               "select the pod template's labels, e.g. app: <name>")
    for key, value in match:
        if template_labels.get(key) != value:
            d.fail(join("spec.selector.matchLabels", key),
                   f"selects {key}={value} but spec.template.metadata.labels does not have it",
                   f"add {key}: {value} to spec.template.metadata.labels or fix the selector")


def _parse_pod_spec(d: Doc, pod: dict[Any, Any], base: str,
                    kind: str) -> tuple[tuple[ContainerSpec, ...], _Pairs, str]:
    d.check_fields(pod, base, ("containers", "nodeSelector", "restartPolicy", "securityContext",
                               "volumes", "terminationGracePeriodSeconds"))
    pod_security = parse_pod_security(d, pod.get("securityContext"), f"{base}.securityContext")
    node_selector = label_map(pod.get("nodeSelector"), f"{base}.nodeSelector", d.fail)
    restart = pod.get("restartPolicy")
    restart_policy = "Always" if restart is None else pod_restart_policy(
        restart, kind, f"{base}.restartPolicy", d.fail)
    raw = pod.get("containers")
    if not isinstance(raw, list) or not raw:
        shown = ("missing" if raw is None else "must not be empty" if raw == []
                 else f"must be a list, got {describe(raw)}")
        d.fail(f"{base}.containers", shown, "list at least one container with a name and image")
    containers = tuple(
        parse_container(d, item, f"{base}.containers[{i}]", pod_security)
        for i, item in enumerate(raw)
    )
    check_pod(containers, f"{base}.", "hostPort", d.fail)
    return containers, node_selector, restart_policy
