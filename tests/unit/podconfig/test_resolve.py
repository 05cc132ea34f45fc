"""Resolving a pod's references to ConfigMaps and Secrets (beemesh.podconfig.resolve)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from manifest_testlib import CT, DEPLOYMENT, TS, mutated, parse_one, set_in

from beemesh.manifest import WorkloadSpec
from beemesh.podconfig.resolve import Missing, resolve

VALUES = {("ConfigMap", "c"): {"MODE": b"from-map", "A": b"a", "bad name": b"x",
                               "blob": b"\xff", "app.ini": b"[x]\n"},
          ("Secret", "db"): {"pw": b"s3cret", "bin": b"\xff\x00"}}


def spec(env: list[Any] | None = None, env_from: list[Any] | None = None,
         volumes: list[Any] | None = None) -> WorkloadSpec:
    def change(d: dict[str, Any]) -> None:
        if env is not None:
            set_in((*CT, "env"), env)(d)
        if env_from is not None:
            set_in((*CT, "envFrom"), env_from)(d)
        if volumes is not None:
            set_in((*TS, "volumes"), volumes)(d)
            set_in((*CT, "volumeMounts"), [{"name": v["name"], "mountPath": f"/{v['name']}"}
                                           for v in volumes])(d)
    return parse_one(mutated(DEPLOYMENT, change))


def lookup(source: str, name: str) -> dict[str, bytes] | None:
    return VALUES.get((source, name))


def test_env_from_then_literals_then_references() -> None:
    s = spec(env=[{"name": "MODE", "value": "literal"},
                  {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                  {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "A"}}}],
             env_from=[{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "db"},
                                                         "prefix": "S_"}])
    got = resolve(s, lookup)
    env = dict(got.env["web"])
    assert env["MODE"] == "literal" and env["PW"] == "s3cret" and env["A"] == "a"
    assert env["S_pw"] == "s3cret" and "S_bin" not in env and "bad name" not in env
    assert sorted(got.skipped) == ["ConfigMap default/c key bad name: not a variable name",
                                   "ConfigMap default/c key blob: not UTF-8",
                                   "Secret default/db key bin: not UTF-8"]


@pytest.mark.parametrize("env, fragment", [
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
     "Secret default/gone not found; apply the Secret"),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "nope"}}}],
     "ConfigMap default/c has no key nope (variable X of container web)"),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "bin"}}}],
     "key bin is not UTF-8 text"),
])
def test_what_cannot_be_honoured_is_named(env: list[Any], fragment: str) -> None:
    with pytest.raises(Missing, match=re.escape(fragment)):
        resolve(spec(env=env), lookup)


def test_optional_references_to_missing_objects_and_keys_are_skipped() -> None:
    s = spec(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {
        "name": "gone", "key": "k", "optional": True}}}, {"name": "Y", "valueFrom": {
            "configMapKeyRef": {"name": "c", "key": "nope", "optional": True}}}],
        env_from=[{"secretRef": {"name": "gone", "optional": True}}],
        volumes=[{"name": "v", "configMap": {"name": "gone", "optional": True}}])
    got = resolve(s, lookup)
    assert "X" not in dict(got.env["web"]) and got.files == {"v": ()}


def test_volume_files_take_items_and_modes() -> None:
    got = resolve(spec(volumes=[
        {"name": "all", "secret": {"secretName": "db", "defaultMode": 0o400}},
        {"name": "some", "configMap": {"name": "c", "items": [
            {"key": "app.ini", "path": "conf/app.ini", "mode": 0o600}]}}]), lookup)
    assert got.files["all"] == (("bin", b"\xff\x00", 0o400), ("pw", b"s3cret", 0o400))
    assert got.files["some"] == (("conf/app.ini", b"[x]\n", 0o600),)
    with pytest.raises(Missing, match=re.escape("has no key nope (volume some)")):
        resolve(spec(volumes=[{"name": "some", "configMap": {"name": "c", "items": [
            {"key": "nope", "path": "x"}]}}]), lookup)
