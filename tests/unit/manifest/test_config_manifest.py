"""ConfigMap and Secret documents, and what a pod takes from them (beemesh.manifest.config)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from manifest_testlib import (
    C0,
    CT,
    DEPLOYMENT,
    EXAMPLES,
    TS,
    dump,
    field_error,
    mutated,
    parse_one,
    set_in,
)

from beemesh.manifest import ManifestError, WorkloadSpec, load_manifest_file, parse_manifests
from beemesh.manifest.config import CONFIG_MAP, MAX_SECRET_BYTES, SECRET, ConfigMapSpec, SecretSpec
from beemesh.manifest.references import ConfigFiles, EnvFrom, KeyRef


def doc(kind: str, **top: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": "cfg"}, **top}


def test_a_config_map_keeps_text_and_binary_values_and_round_trips() -> None:
    (cm,) = parse_manifests(dump(doc("ConfigMap", data={"A": "1", "app.ini": "x = 1\n"},
                                     binaryData={"logo": base64.b64encode(b"\x00\xff").decode()},
                                     immutable=True)))
    assert isinstance(cm, ConfigMapSpec) and cm.object_id == "configmap/default/cfg"
    assert cm.values() == {"A": b"1", "app.ini": b"x = 1\n", "logo": b"\x00\xff"}
    assert cm.immutable and ConfigMapSpec.from_dict(cm.to_dict()) == cm
    changed = parse_manifests(dump(doc("ConfigMap", data={"A": "2"})))[0]
    assert changed.digest != cm.digest


def test_a_secret_never_carries_its_values_on_the_wire() -> None:
    (s,) = parse_manifests(dump(doc("Secret", data={"pw": base64.b64encode(b"old").decode()},
                                    stringData={"pw": "new", "user": "admin"})))
    assert isinstance(s, SecretSpec) and s.type == "Opaque"
    assert s.values == {"pw": b"new", "user": b"admin"}  # stringData wins, as in Kubernetes
    assert s.keys == ("pw", "user")
    wire = s.to_dict()
    assert "values" not in wire and b"new" not in repr(wire).encode()
    with pytest.raises(ManifestError, match="digest: must be 64 hex digits"):
        SecretSpec.from_dict(wire)  # unsealed: the CLI fills the digest before signing
    sealed = SecretSpec.from_dict({**wire, "digest": "ab" * 32})
    assert sealed.values is None and sealed.keys == s.keys


@pytest.mark.parametrize("kind, top, fragments", [
    ("ConfigMap", {"binaryData": {"k": "not base64!"}}, ("binaryData.k: is not base64",)),
    ("ConfigMap", {"data": {"k": "1"}, "binaryData": {"k": "MQ=="}},
     ("key k is also under data",)),
    ("ConfigMap", {"data": {"a/b": "1"}}, ("'a/b' is not a valid key",)),
    ("ConfigMap", {"data": {"k": 1}}, ("data.k: must be a string, got number 1", "quote it")),
    ("ConfigMap", {"spec": {"x": 1}}, ("spec: not supported",)),
    ("Secret", {"stringData": {"k": "x" * (MAX_SECRET_BYTES + 1)}},
     (f"more than {MAX_SECRET_BYTES}",)),
    ("Secret", {"immutable": "yes"}, ("immutable: must be true or false",)),
])
def test_bad_objects_are_refused_with_the_field_and_fix(kind: str, top: dict[str, Any],
                                                         fragments: tuple[str, ...]) -> None:
    field_error(doc(kind, **top), *fragments)


def test_env_and_volumes_take_from_config_maps_and_secrets() -> None:
    spec = parse_one(mutated(DEPLOYMENT, lambda d: (
        set_in((*CT, "env"), [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "MODE", "value": "prod"},
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "x",
                                                             "optional": True}}}])(d),
        set_in((*CT, "envFrom"), [{"configMapRef": {"name": "c"}, "prefix": "C_"},
                                  {"secretRef": {"name": "db", "optional": True}}])(d),
        set_in((*CT, "volumeMounts"), [{"name": "s", "mountPath": "/s"}])(d),
        set_in((*TS, "volumes"), [{"name": "s", "secret": {
            "secretName": "db", "defaultMode": 0o400,
            "items": [{"key": "pw", "path": "conf/pw", "mode": 0o440}]}}])(d))))
    c = spec.containers[0]
    assert c.env == (("MODE", "prod"),)
    assert c.env_refs == (KeyRef("PW", SECRET, "db", "pw"), KeyRef("X", CONFIG_MAP, "c", "x",
                                                                     True))
    assert c.env_from == (EnvFrom(CONFIG_MAP, "c", "C_"), EnvFrom(SECRET, "db", "", True))
    assert spec.volumes[0].files == ConfigFiles(SECRET, "db", (("pw", "conf/pw", 0o440),),
                                                0o400)
    assert spec.config_refs() == {(SECRET, "db"), (CONFIG_MAP, "c")}
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("change, fragments", [
    (set_in((*CT, "env"), [{"name": "A", "value": "1", "valueFrom": {
        "secretKeyRef": {"name": "s", "key": "k"}}}]), (f"{C0}.env[0]: has both value",)),
    (set_in((*CT, "env"), [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
     ("secretKeyRef.key: null is not a valid key",)),
    (set_in((*CT, "envFrom"), [{"configMapRef": {"name": "c"}, "prefix": "1="}]),
     (f"{C0}.envFrom[0].prefix",)),
    (set_in((*TS, "volumes"), [{"name": "v", "configMap": {"name": "c", "defaultMode": 0o1777}}]),
     ("defaultMode: must be a file mode from 0 to 0777",)),
    (set_in((*TS, "volumes"), [{"name": "v", "secret": {"secretName": "s", "items": [
        {"key": "k", "path": "/etc/k"}]}}]), ("items[0].path", "relative path")),
    (set_in(("spec", "template", "metadata", "annotations"),
            {"beemesh.io/roll-on-config-change": "yes"}), ('must be "true" or "false"',)),
])
def test_bad_references_are_refused(change: Any, fragments: tuple[str, ...]) -> None:
    field_error(mutated(DEPLOYMENT, change), *fragments)


def test_the_roll_rule_is_asked_for_by_the_pod_template() -> None:
    spec = parse_one(mutated(DEPLOYMENT, set_in(("spec", "template", "metadata", "annotations"),
                                                {"beemesh.io/roll-on-config-change": "true"})))
    assert spec.roll_on_config and not parse_one(DEPLOYMENT).roll_on_config
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec
    assert "roll_on_config" not in parse_one(DEPLOYMENT).to_dict()  # old wire form kept


@pytest.mark.parametrize("tamper", [
    lambda d: d["volumes"].__setitem__(0, {**d["volumes"][0], "files": None}),
    lambda d: d["volumes"][0]["files"].__setitem__("source", "ConfigMap"),
    lambda d: d["volumes"][0]["files"].__setitem__("items", [["k", "../x", None]]),
    lambda d: d["containers"][0].__setitem__("env_refs", [{"env": "A", "source": "Pod",
                                                           "name": "x", "key": "k",
                                                           "optional": False}]),
    lambda d: d.__setitem__("config_digest", "zz"),
])
def test_the_wire_form_is_checked_again(tamper: Any) -> None:
    spec = parse_one(mutated(DEPLOYMENT, lambda d: (
        set_in((*TS, "volumes"), [{"name": "s", "secret": {"secretName": "db"}}])(d),
        set_in((*CT, "volumeMounts"), [{"name": "s", "mountPath": "/s"}])(d))))
    wire = spec.to_dict()
    tamper(wire)
    with pytest.raises(ManifestError):
        WorkloadSpec.from_dict(wire)


def test_the_example_parses() -> None:
    cm, secret, web = load_manifest_file(EXAMPLES / "config.yaml")
    assert isinstance(cm, ConfigMapSpec) and isinstance(secret, SecretSpec)
    assert isinstance(web, WorkloadSpec) and web.roll_on_config and web.warnings == ()
    assert web.config_refs() == {(CONFIG_MAP, "greeter-config"), (SECRET, "greeter-secret")}
