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


# What a failed fleet test shows of its agents' logs: the lines that say what went wrong
# between machines (a CI run keeps nothing else of them).
NOTABLE = (" WARNING ", " ERROR ", " CRITICAL ", "accused", "is dead", "joined the mesh")
NOTABLE_LINES = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.when == "call":
        for mesh in {id(v): v for v in getattr(item, "funcargs", {}).values()
                     if isinstance(v, LocalMesh)}.values():
            for agent in mesh.agents.values():
                report.sections.append((f"agent {agent.name} ({agent.peer_id[-6:]})",
                                        notable_lines(agent.log)))
    return report


def notable_lines(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join([line for line in lines if any(n in line for n in NOTABLE)]
                     [-NOTABLE_LINES:])
