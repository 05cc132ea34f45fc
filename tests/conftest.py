"""Shared fixtures, and how the suite is spread over pytest-xdist workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from podman_testlib import NETNS_PREFIX
from xdist.scheduler import LoadFileScheduling

from beemesh.errors import UserError
from beemesh.lab.host_tools import require_host_tools
from beemesh.lab.localmesh import LocalMesh
from beemesh.lab.netns import delete_stale

FLEET_TESTS = "tests/fleet/"


class FleetsOneAtATime(LoadFileScheduling):
    """Each file runs whole on one worker (module fixtures are shared), and the files under
    tests/fleet/ run one after another on the same worker: each starts several machines with
    an agent, a work plane and a Podman, and two such fleets at once saturate a 2-core host
    until messages arrive tens of seconds late, so a test would measure the overload rather
    than Beemesh."""

    def _split_scope(self, nodeid: str) -> str:
        return FLEET_TESTS if nodeid.startswith(FLEET_TESTS) else super()._split_scope(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> FleetsOneAtATime:
    return FleetsOneAtATime(config, log)


@pytest.fixture(scope="session")
def podman_tools() -> None:
    """Fail every Podman test with one clear line if this host cannot run them."""
    try:
        require_host_tools(netns=True)
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)
    delete_stale(NETNS_PREFIX)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalMesh]:
    """Real agents as separate processes, stopped (SIGTERM, then SIGKILL) after the test."""
    mesh = LocalMesh.create(tmp_path)
    try:
        yield mesh
    finally:
        mesh.close()
