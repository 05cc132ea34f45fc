"""Shared manifests and helpers for the tests of beemesh.manifest."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from beemesh.errors import UserError
from beemesh.manifest import ManifestError, WorkloadSpec, parse_manifests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MI = 1024**2

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "localhost/beemesh/busybox:latest",
                        "command": ["httpd"],
                        "args": ["-f", "-p", "8080"],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "ports": [{"containerPort": 8080, "hostPort": 18080}],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "32Mi"},
                            "limits": {"cpu": "250m", "memory": "64Mi"},
                        },
                    }
                ]
            },
        },
    },
}
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "one", "namespace": "edge", "labels": {"app": "one"}},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}
C0 = "spec.template.spec.containers[0]"


def dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def parse_one(doc: dict[str, Any]) -> WorkloadSpec:
    (spec,) = parse_manifests(dump(doc), "test.yaml")
    return spec


def mutated(base: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    change(doc)
    return doc


def container(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][i]


def template_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def assert_one_line(exc: pytest.ExceptionInfo[ManifestError], *fragments: str) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, UserError)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def field_error(doc: dict[str, Any], *fragments: str) -> str:
    """The one-line error that parsing doc as app.yaml raises; every error carries a fix."""
    with pytest.raises(ManifestError) as exc:
        parse_manifests(dump(doc), "app.yaml")
    message = assert_one_line(exc, *fragments)
    assert "; " in message  # every error carries a fix
    return message


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


TS = ("spec", "template", "spec")
CT = (*TS, "containers", 0)
