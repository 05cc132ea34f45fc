"""Real Podman, no mocks: each test module gets its own Podman "machine" in its own netns.

Every machine has its own storage, config and network namespace under a tmp dir, so modules
run in parallel (pytest-xdist) and never touch the host's Podman or /etc. Missing host tools
fail the tests (never skip) with the apt-get line that fixes it (`podman_tools`, tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from podman_testlib import start_machine

from beemesh.lab.podman_service import PodmanService
from beemesh.runtime.podman import PodmanRuntime


@pytest.fixture(scope="module")
def machine(podman_tools: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[PodmanService]:
    """One machine per test module, in its own network namespace."""
    svc = start_machine(tmp_path_factory)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def runtime(machine: PodmanService) -> PodmanRuntime:
    """The runtime the agent would use; a 1 s grace keeps replacements fast in tests."""
    return PodmanRuntime(machine.url, replace_grace_s=1)
