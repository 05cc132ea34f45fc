"""How a workload's replicas move to a new pod template: the update strategy (Kubernetes').

A Deployment's `spec.strategy` is `RollingUpdate` (default: `maxSurge` and `maxUnavailable`
25 %, an integer or a percentage of the replicas; surge rounds up, unavailable down, and if
both come to 0 one replica may be unavailable, as in Kubernetes) or `Recreate`. A
StatefulSet's `spec.updateStrategy` is `RollingUpdate` (highest ordinal first, one at a time,
only ordinals >= `partition`) or `OnDelete`. `minReadySeconds` (a new replica counts once
ready that long) and `progressDeadlineSeconds` (Deployment; default 600) apply to both here.

The strategy travels inside the signed workload (`to_dict`, only when not the default, so a
workload without one keeps its wire form and digest) and is not part of the pod template:
changing it rolls nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from beemesh.manifest.checks import MAX_INT, Fail, describe, join

ROLLING, RECREATE, ON_DELETE = "RollingUpdate", "Recreate", "OnDelete"
TYPES = {"Deployment": (ROLLING, RECREATE), "StatefulSet": (ROLLING, ON_DELETE), "Pod": ()}
DEFAULT_DEADLINE_S = 600
_PERCENT = re.compile(r"^(0|[1-9][0-9]{0,2})%$")


@dataclass(frozen=True)
class UpdateStrategy:
    type: str = ROLLING
    max_surge: str = "25%"  # "N" or "N%": as the manifest said, resolved against replicas
    max_unavailable: str = "25%"
    partition: int = 0  # StatefulSet: ordinals below it keep their template
    min_ready_s: int = 0
    progress_deadline_s: int = DEFAULT_DEADLINE_S

    def budget(self, replicas: int) -> tuple[int, int]:
        """(surge, unavailable) in replicas for a workload of `replicas`."""
        surge = _resolve(self.max_surge, replicas, math.ceil)
        unavailable = _resolve(self.max_unavailable, replicas, math.floor)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "max_surge": self.max_surge,
                "max_unavailable": self.max_unavailable, "partition": self.partition,
                "min_ready_s": self.min_ready_s, "progress_deadline_s": self.progress_deadline_s}


DEFAULT_STRATEGY = UpdateStrategy()
_KEYS = tuple(DEFAULT_STRATEGY.to_dict())


def _resolve(value: str, replicas: int, rounding: Any) -> int:
    if value.endswith("%"):
        return int(rounding(replicas * int(value[:-1]) / 100))
    return int(value)


def _int_or_percent(value: Any, path: str, fail: Fail) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
        return str(value)
    if isinstance(value, str) and (_PERCENT.match(value) or (value.isdigit() and len(value) < 10)):
        if value.endswith("%") and int(value[:-1]) > 100:
            fail(path, f"{value} is more than 100%", "use a percentage up to 100%")
        return value
    fail(path, f"must be a whole number or a percentage, got {describe(value)}",
         'write it like 1 or "25%"')
    raise AssertionError("unreachable")


def _seconds(value: Any, path: str, fail: Fail, default: int, minimum: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 86400:
        fail(path, f"must be a whole number of seconds from {minimum} to 86400, got "
             f"{describe(value)}", "use a number like 30")
    return value


def parse_strategy(kind: str, spec: dict[Any, Any], fail: Fail) -> UpdateStrategy:
    """The update strategy of a Deployment's or StatefulSet's `spec` (validated)."""
    if kind == "Pod":
        return DEFAULT_STRATEGY
    field = "strategy" if kind == "Deployment" else "updateStrategy"
    raw = spec.get(field)
    raw = {} if raw is None else raw
    path = f"spec.{field}"
    if not isinstance(raw, dict):
        fail(path, f"must be a mapping, got {describe(raw)}", "check the indentation")
    kind_type = raw.get("type", ROLLING)
    if kind_type not in TYPES[kind]:
        fail(join(path, "type"), f"{describe(kind_type)} is not a {kind} strategy",
             f"use one of {', '.join(TYPES[kind])}")
    rolling = raw.get("rollingUpdate")
    rolling = {} if rolling is None else rolling
    if not isinstance(rolling, dict):
        fail(join(path, "rollingUpdate"), f"must be a mapping, got {describe(rolling)}",
             "check the indentation")
    known = {"Deployment": ("maxSurge", "maxUnavailable"), "StatefulSet": ("partition",)}[kind]
    for key in rolling:
        if key not in known:
            fail(join(join(path, "rollingUpdate"), str(key)), "not supported by beemesh",
                 f"use {' or '.join(known)}")
    if rolling and kind_type != ROLLING:
        fail(join(path, "rollingUpdate"), f"only applies to type {ROLLING}",
             "remove it, or set type: RollingUpdate")
    for key in raw:
        if key not in ("type", "rollingUpdate"):
            fail(join(path, str(key)), "not supported by beemesh", "remove it")
    where = join(path, "rollingUpdate")
    surge = _int_or_percent(rolling.get("maxSurge", "25%"), join(where, "maxSurge"), fail)
    unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"),
                                  join(where, "maxUnavailable"), fail)
    if surge in ("0", "0%") and unavailable in ("0", "0%"):
        fail(where, "maxSurge and maxUnavailable may not both be 0",
             "allow one extra replica (maxSurge: 1) or one unavailable (maxUnavailable: 1)")
    partition = rolling.get("partition", 0)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        fail(join(where, "partition"), f"must be a non-negative integer, got "
             f"{describe(partition)}", "use a replica ordinal like 2")
    return UpdateStrategy(
        type=kind_type, max_surge=surge, max_unavailable=unavailable, partition=partition,
        min_ready_s=_seconds(spec.get("minReadySeconds"), "spec.minReadySeconds", fail, 0),
        progress_deadline_s=_seconds(spec.get("progressDeadlineSeconds"),
                                     "spec.progressDeadlineSeconds", fail,
                                     DEFAULT_DEADLINE_S, minimum=1))


def strategy_from_dict(raw: Any, path: str, kind: str, fail: Fail) -> UpdateStrategy:
    """Rebuild from `to_dict` output, re-checked: it arrives over the network."""
    if not isinstance(raw, dict) or sorted(raw) != sorted(_KEYS):
        fail(path, f"expected the fields {', '.join(_KEYS)}, got {describe(raw)}",
             "send WorkloadSpec.to_dict() output")
    if raw["type"] not in TYPES[kind]:
        fail(join(path, "type"), f"{describe(raw['type'])} is not a {kind} strategy",
             "send WorkloadSpec.to_dict() output")
    for key in ("max_surge", "max_unavailable"):
        if not isinstance(raw[key], str):
            fail(join(path, key), f"expected a string, got {describe(raw[key])}",
                 "send WorkloadSpec.to_dict() output")
        _int_or_percent(raw[key], join(path, key), fail)
    ints = {"partition": 0, "min_ready_s": 0, "progress_deadline_s": 1}
    for key, minimum in ints.items():
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= (
                MAX_INT if key == "partition" else 86400):
            fail(join(path, key), f"out of range: {describe(value)}",
                 "send WorkloadSpec.to_dict() output")
    return UpdateStrategy(raw["type"], raw["max_surge"], raw["max_unavailable"],
                          raw["partition"], raw["min_ready_s"], raw["progress_deadline_s"])


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # the pod template annotation
MAX_RESTARTED_AT = 64


def restarted_at(value: Any, path: str, fail: Fail) -> str:
    """The template's restart stamp (`rollout restart` sets it): a short string."""
    if not isinstance(value, str) or len(value) > MAX_RESTARTED_AT:
        fail(path, f"must be a string of at most {MAX_RESTARTED_AT} characters, got "
             f"{describe(value)}", "use a timestamp like 2026-12-06T11:00:00Z")
    return value


def template_changes(old: Any, new: Any) -> str:
    """What differs between two workloads' pod templates (`rollout history`'s CHANGE):
    the fields by path, an image with its old and new reference."""
    a, b = _template_fields(old), _template_fields(new)
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    shown = [f"{k}: {a.get(k)} -> {b.get(k)}" if k.endswith(".image") else k
             for k in changed[:4]]
    return ", ".join(shown) + (f" (+{len(changed) - 4} more)" if len(changed) > 4 else "")


def _template_fields(spec: Any) -> dict[str, Any]:
    d = spec.to_dict()
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key in ("replicas", "warnings", "strategy"):
            continue
        if key == "containers":
            for c in value:
                out.update({f"containers[{c['name']}].{k}": v for k, v in c.items()})
        else:
            out[key] = value
    return out
