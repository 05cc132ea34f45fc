"""Update strategies: parsed like Kubernetes, resolved like Kubernetes, carried on the wire."""

from __future__ import annotations

from typing import Any

import pytest
from manifest_testlib import DEPLOYMENT, field_error, mutated, parse_one

from beemesh.manifest import WorkloadSpec
from beemesh.manifest.strategy import DEFAULT_STRATEGY, RECREATE, UpdateStrategy


def with_spec(**fields: Any) -> dict[str, Any]:
    return mutated(DEPLOYMENT, lambda d: d["spec"].update(fields))


def sts(**fields: Any) -> dict[str, Any]:
    def change(d: dict[str, Any]) -> None:
        d["kind"] = "StatefulSet"
        d["spec"].update(fields)
    return mutated(DEPLOYMENT, change)


@pytest.mark.parametrize(("surge", "unavailable", "replicas", "budget"), [
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 3, (1, 0)),  # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    ("0", "25%", 2, (0, 1)),  # both 0 after rounding: one may be unavailable
    ("2", "0", 10, (2, 0)),
    ("100%", "50%", 3, (3, 1)),
])
def test_budget_resolves_like_kubernetes(surge: str, unavailable: str, replicas: int,
                                        budget: tuple[int, int]) -> None:
    assert UpdateStrategy(max_surge=surge, max_unavailable=unavailable).budget(replicas) == budget


def test_deployment_strategy_parsed() -> None:
    spec = parse_one(with_spec(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": 1, "maxUnavailable": "0%"}}, minReadySeconds=3))
    assert spec.strategy == UpdateStrategy(max_surge="1", max_unavailable="0%", min_ready_s=3)
    assert parse_one(with_spec(strategy={"type": "Recreate"})).strategy.type == RECREATE
    assert parse_one(DEPLOYMENT).strategy == DEFAULT_STRATEGY


def test_statefulset_strategy_parsed() -> None:
    spec = parse_one(sts(updateStrategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"partition": 2}}))
    assert spec.strategy.partition == 2
    assert parse_one(sts(updateStrategy={"type": "OnDelete"})).strategy.type == "OnDelete"


@pytest.mark.parametrize(("manifest", "path"), [
    (with_spec(strategy={"type": "OnDelete"}), "spec.strategy.type"),
    (with_spec(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
     "spec.strategy.rollingUpdate"),
    (with_spec(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
     "spec.strategy.rollingUpdate"),
    (with_spec(strategy={"rollingUpdate": {"maxSurge": "150%"}}),
     "spec.strategy.rollingUpdate.maxSurge"),
    (with_spec(strategy={"rollingUpdate": {"maxSurge": -1}}),
     "spec.strategy.rollingUpdate.maxSurge"),
    (with_spec(strategy={"rollingUpdate": {"partition": 1}}),
     "spec.strategy.rollingUpdate.partition"),
    (with_spec(minReadySeconds=-1), "spec.minReadySeconds"),
    (with_spec(progressDeadlineSeconds=0), "spec.progressDeadlineSeconds"),
    (sts(updateStrategy={"type": "Recreate"}), "spec.updateStrategy.type"),
    (sts(updateStrategy={"rollingUpdate": {"partition": "1"}}),
     "spec.updateStrategy.rollingUpdate.partition"),
])
def test_bad_strategies_name_the_field(manifest: dict[str, Any], path: str) -> None:
    field_error(manifest, path)


def test_strategy_round_trips_and_is_not_part_of_the_template() -> None:
    spec = parse_one(with_spec(strategy={"type": "Recreate"}, minReadySeconds=2))
    again = WorkloadSpec.from_dict(spec.to_dict())
    assert again == spec
    assert spec.template_hash == parse_one(DEPLOYMENT).template_hash
    assert "strategy" not in parse_one(DEPLOYMENT).to_dict()  # default: the old wire form


def test_template_hash_follows_what_replicas_run() -> None:
    base = parse_one(DEPLOYMENT)
    scaled = parse_one(with_spec(replicas=7))
    assert scaled.template_hash == base.template_hash
    changed = parse_one(mutated(DEPLOYMENT, lambda d: d["spec"]["template"]["spec"][
        "containers"][0].update(env=[{"name": "COLOR", "value": "blue"}])))
    assert changed.template_hash != base.template_hash
    restarted = parse_one(mutated(DEPLOYMENT, lambda d: d["spec"]["template"]["metadata"].update(
        annotations={"kubectl.kubernetes.io/restartedAt": "2026-12-06T11:00:00Z"})))
    assert restarted.template_hash != base.template_hash
    assert WorkloadSpec.from_dict(restarted.to_dict()) == restarted


def test_wire_strategy_is_rechecked() -> None:
    from beemesh.manifest import ManifestError

    d = parse_one(with_spec(strategy={"type": "Recreate"})).to_dict()
    d["strategy"]["max_surge"] = "9999%"
    with pytest.raises(ManifestError, match=r"strategy\.max_surge"):
        WorkloadSpec.from_dict(d)
    d = parse_one(DEPLOYMENT).to_dict() | {"strategy": {"type": "OnDelete"}}
    with pytest.raises(ManifestError, match="strategy"):
        WorkloadSpec.from_dict(d)


def test_template_changes_name_the_fields() -> None:
    from beemesh.manifest.strategy import template_changes

    base = parse_one(DEPLOYMENT)
    env = parse_one(mutated(DEPLOYMENT, lambda d: d["spec"]["template"]["spec"][
        "containers"][0].update(env=[{"name": "COLOR", "value": "blue"}])))
    image = parse_one(mutated(DEPLOYMENT, lambda d: d["spec"]["template"]["spec"][
        "containers"][0].update(image="nginx:2")))
    assert template_changes(base, env) == "containers[web].env"
    old = base.containers[0].image
    assert template_changes(base, image) == f"containers[web].image: {old} -> nginx:2"
    assert template_changes(base, parse_one(with_spec(replicas=9))) == ""
