"""An agent whose Podman goes away keeps running, stops bidding, and recovers when it is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from beemesh.lab.busybox import ensure_busybox_image
from beemesh.lab.localmesh import LocalMesh, wait_for
from beemesh.lab.podman_service import PodmanService

pytestmark = pytest.mark.slow


def test_agent_survives_podman_outage_and_recovers(tmp_path: Path) -> None:
    mesh = LocalMesh.create(tmp_path)
    try:
        agent = mesh.start("r1", podman=True)
        wait_for(lambda: agent.status()["runtime"] == "ok", 30, "the runtime to be up")
        service = mesh.podmans["r1"]
        netns = service.netns.name if service.netns else None
        service.stop()

        down = wait_for(lambda: (s := agent.status()["runtime"]) != "ok" and s, 15,
                        "the agent to notice Podman is gone")
        assert "Podman is not reachable" in down and str(service.socket_path) in down
        assert agent.alive()
        kinds = [e["kind"] for e in agent.get_json("events")]
        assert "RuntimeDown" in kinds

        mesh.podmans["r1"] = PodmanService(service.root_dir, netns=netns)
        ensure_busybox_image(mesh.podmans["r1"])
        wait_for(lambda: agent.status()["runtime"] == "ok", 15, "the agent to recover")
        assert [e["kind"] for e in agent.get_json("events")].count("RuntimeUp") == 2
    finally:
        mesh.close()
