"""What `beemesh apply` does with ConfigMaps and Secrets before it signs (cli.config_apply)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from beemesh.cli import config_apply
from beemesh.identity import KeyPair
from beemesh.manifest import WorkloadSpec, parse_manifests
from beemesh.manifest.config import SecretSpec

OPERATOR = KeyPair.generate()
FILE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {A: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {pw: s3cret}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {beemesh.io/roll-on-config-change: "true"}
    spec:
      containers:
      - name: web
        image: x:1
        env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]
        envFrom: [{configMapRef: {name: c}}]
"""


def fake_api(monkeypatch: pytest.MonkeyPatch, objects: list[dict[str, Any]],
             workloads: list[dict[str, Any]]) -> None:
    answers = {"/v1/objects": objects, "/v1/workloads": workloads}
    monkeypatch.setattr(config_apply, "call", lambda _api, _m, target, *a: answers[target])


def test_secrets_are_signed_without_values_and_workloads_record_their_configs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api(monkeypatch, [], [])
    plan = config_apply.plan(Path("api"), OPERATOR, parse_manifests(FILE), lambda w: None)
    secret = next(s for s in plan.specs if isinstance(s, SecretSpec))
    assert secret.values is None and len(secret.digest) == 64
    assert plan.values["secret/default/db"][1].values == {"pw": b"s3cret"}
    web = next(s for s in plan.specs if isinstance(s, WorkloadSpec))
    assert len(web.config_digest) == 64 and plan.rolled == []
    again = config_apply.plan(Path("api"), OPERATOR, parse_manifests(FILE), lambda w: None)
    assert next(s for s in again.specs if isinstance(s, WorkloadSpec)) == web  # same values
    changed = config_apply.plan(Path("api"), OPERATOR, parse_manifests(
        FILE.replace("pw: s3cret", "pw: other")), lambda w: None)
    assert next(s for s in changed.specs if isinstance(s, WorkloadSpec)) != web


def test_a_changed_config_map_alone_rolls_the_stored_workloads_that_ask(
        monkeypatch: pytest.MonkeyPatch) -> None:
    web = next(s for s in parse_manifests(FILE) if isinstance(s, WorkloadSpec))
    quiet = dataclasses.replace(web, name="quiet", roll_on_config=False)
    stored = {web.workload_id: web, quiet.workload_id: quiet}
    rows = [{"workload": w.workload_id, "namespace": "default",
             "uses": ["configmap/default/c", "secret/default/db"]} for w in stored.values()]
    fake_api(monkeypatch, [{"object": "configmap/default/c", "digest": "old"},
                           {"object": "secret/default/db", "digest": "d"}], rows)
    only_map = FILE.split("---")[0]
    plan = config_apply.plan(Path("api"), OPERATOR, parse_manifests(only_map), stored.get)
    assert [wid for wid, _ in plan.rolled] == [web.workload_id]
    rolled = plan.rolled[0][1](web)
    assert rolled.config_digest and rolled.template_hash != web.template_hash
    fake_api(monkeypatch, [{"object": "configmap/default/c",
                            "digest": parse_manifests(only_map)[0].digest}], rows)
    assert config_apply.plan(Path("api"), OPERATOR, parse_manifests(only_map),
                             stored.get).rolled == []  # unchanged: nothing rolls
