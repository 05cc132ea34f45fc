"""Image references as Podman names stored images, and Kubernetes' default pull policy."""

from __future__ import annotations

import pytest

from beemesh.manifest.model import ContainerSpec
from beemesh.runtime import image_name, local_only


@pytest.mark.parametrize(("ref", "name"), [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("library/nginx:1.27", "docker.io/library/nginx:1.27"),
    ("quay.io/prometheus/node-exporter", "quay.io/prometheus/node-exporter:latest"),
    ("registry.local:5000/app:2", "registry.local:5000/app:2"),
    ("localhost/beemesh/busybox:latest", "localhost/beemesh/busybox:latest"),
    ("localhost/x", "localhost/x:latest"),
    ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
])
def test_image_name(ref: str, name: str) -> None:
    assert image_name(ref) == name
    assert image_name(name) == name  # already spelled out: unchanged


def test_local_only() -> None:
    assert local_only("localhost/x") and not local_only("nginx")


def container(image: str, policy: str = "") -> ContainerSpec:
    return ContainerSpec("c", image, (), (), (), (), 0, 0, None, None, image_pull_policy=policy)


@pytest.mark.parametrize(("image", "policy", "resolved"), [
    ("nginx", "", "Always"),
    ("nginx:latest", "", "Always"),
    ("nginx:1.27", "", "IfNotPresent"),
    ("nginx@sha256:abc", "", "IfNotPresent"),
    ("registry.local:5000/app", "", "Always"),
    ("nginx:1.27", "Never", "Never"),
])
def test_pull_policy_defaults_like_kubernetes(image: str, policy: str, resolved: str) -> None:
    assert container(image, policy).pull_policy == resolved
