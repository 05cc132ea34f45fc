"""Kubernetes manifests -> WorkloadSpec: the subset beemesh can honour, checked up front.

Operators hand us ordinary Deployment, StatefulSet and Pod YAML. Every field is either used,
ignored with a warning (ignoring it cannot change what the workload sees), or rejected with an
error naming its full path: silently dropping, say, a volume would run a workload that is
quietly broken on some machine far away. WorkloadSpec is also what travels inside signed tasks,
so ``from_dict`` re-checks everything instead of trusting the wire.

An unsupported field set to its empty or "off" value (null, {}, [], "", false) changes nothing,
so it is accepted silently; this keeps ``kubectl create --dry-run -o yaml`` output usable.

Supported fields:

- apps/v1 Deployment and StatefulSet: ``spec.replicas``, ``spec.selector.matchLabels`` (must
  select the template's labels), ``spec.serviceName`` (StatefulSet), ``spec.template`` with
  ``metadata.labels``/``annotations`` (its ``kubectl.kubernetes.io/restartedAt`` is part of
  the pod template, as ``rollout restart`` uses it); Deployment ``spec.strategy``
  (RollingUpdate ``maxSurge``/``maxUnavailable``, or Recreate), StatefulSet
  ``spec.updateStrategy`` (RollingUpdate ``partition``, or OnDelete), ``minReadySeconds``,
  ``progressDeadlineSeconds`` (``beemesh.manifest.strategy``); v1 Pod: the pod spec directly
  under ``spec``.
- v1 Service: ``beemesh.manifest.service`` (selector, ports, headless).
- v1 ConfigMap and Secret: ``beemesh.manifest.config`` (data, binaryData / stringData, type,
  immutable; a Secret travels without its values).
- ``metadata``: ``name`` (at most 53 characters), ``namespace`` (default "default"), ``labels``,
  ``annotations``.
- Pod spec: ``containers``, ``nodeSelector``, ``restartPolicy`` (only Always for controllers),
  ``securityContext`` (``runAsUser``, ``runAsGroup``, ``runAsNonRoot``, ``seccompProfile``
  RuntimeDefault), ``volumes`` (``emptyDir``, ``hostPath``, ``configMap``, ``secret``:
  ``beemesh.manifest.volumes``),
  ``terminationGracePeriodSeconds`` (0-3600; Beemesh's default without it is 10 s, not
  Kubernetes' 30).
  ``hostNetwork``, ``hostPID`` and ``hostIPC`` are refused. StatefulSet
  ``volumeClaimTemplates``: a volume per ordinal on the machine that runs it.
- Container: ``name``, ``image``, ``command``, ``args``, ``env[]`` (``name`` and a literal
  ``value`` or ``valueFrom`` a ConfigMap or Secret key), ``envFrom[]``, ``ports[]``
  (``containerPort``, ``hostPort``, ``protocol`` TCP or UDP, ``name``),
  ``resources.requests``/``limits`` for ``cpu`` and ``memory`` (requests default to limits),
  ``volumeMounts`` (``name``, ``mountPath``, ``readOnly``), ``lifecycle.postStart`` and
  ``lifecycle.preStop`` with an ``exec`` command (a failing postStart fails the deploy; preStop
  runs within the pod's grace before SIGTERM),
  ``startupProbe``, ``readinessProbe``, ``livenessProbe``, and ``securityContext``
  (the pod's fields plus ``readOnlyRootFilesystem``, ``capabilities.add``/``drop``;
  ``privileged`` and ``allowPrivilegeEscalation`` only as false). Every container runs
  confined whatever it asks (no-new-privileges, default seccomp, a reduced capability set):
  ``beemesh.manifest.security`` says how and why.
- Probe: exactly one handler, ``httpGet`` (``port``, ``path`` default "/", ``httpHeaders``,
  ``scheme`` HTTP only), ``tcpSocket`` (``port``) or ``exec`` (``command``); ``port`` is a
  number or the ``name`` of one of the same container's ports, resolved to its number here.
  Timing as in Kubernetes: ``initialDelaySeconds`` (0), ``periodSeconds`` (10),
  ``timeoutSeconds`` (1), ``successThreshold`` (1, and only 1 for liveness and startup probes),
  ``failureThreshold`` (3); absent or 0 means the default, as the Kubernetes API server
  defaults it. ``grpc``, ``host`` and HTTPS are refused: beemesh probes speak plain HTTP,
  TCP or exec against the pod's own IP.

Modules: ``model`` (WorkloadSpec and its parts, ``to_dict``/``from_dict``), ``kube`` (YAML
documents: Deployment, StatefulSet, Pod and their pod spec) with ``containers`` (a pod spec's
containers and probes) and ``fields`` (used, warned and refused fields of one document),
``checks`` (rules and one-line errors shared by the walker and ``from_dict``) and
``quantities`` (cpu and memory amounts), ``security`` (securityContext and the
confinement every container gets), ``volumes`` (pod volumes and mounts) and ``config``
(ConfigMaps and Secrets) with ``references`` (what a pod takes from them). Import from
``beemesh.manifest`` itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beemesh.manifest.checks import ManifestError
    from beemesh.manifest.kube import load_manifest_file, parse_manifests
    from beemesh.manifest.model import ContainerSpec, PortSpec, ProbeSpec, WorkloadSpec
    from beemesh.manifest.quantities import parse_quantity_cpu, parse_quantity_memory
    from beemesh.manifest.security import SecuritySpec
    from beemesh.manifest.service import ServicePort, ServiceSpec

# Name -> its module, loaded when the name is first used (PEP 562): the work plane imports
# only `checks`, `service` and `strategy` (~0.6 MB), not the YAML walker and the model
# behind these names (~1.6 MB more).
_FROM = {
    "ManifestError": "checks",
    "load_manifest_file": "kube", "parse_manifests": "kube",
    "ContainerSpec": "model", "PortSpec": "model", "ProbeSpec": "model", "WorkloadSpec": "model",
    "parse_quantity_cpu": "quantities", "parse_quantity_memory": "quantities",
    "SecuritySpec": "security",
    "ServicePort": "service", "ServiceSpec": "service",
}

__all__ = [
    "ContainerSpec",
    "ManifestError",
    "PortSpec",
    "ProbeSpec",
    "SecuritySpec",
    "ServicePort",
    "ServiceSpec",
    "WorkloadSpec",
    "load_manifest_file",
    "parse_manifests",
    "parse_quantity_cpu",
    "parse_quantity_memory",
]


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    globals()[name] = value
    return value
