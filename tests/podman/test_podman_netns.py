"""Several machines on one host: each Podman in its own network namespace.

Three replicas of a Deployment with hostPort 18080, one per machine, must not collide: each
machine's hostPort is bound inside its namespace and reached at the namespace's address.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
from podman_testlib import NETNS_PREFIX, http_get, start_machine, web

from beemesh.errors import UserError
from beemesh.lab.netns import Netns, delete_stale_rules, drop_between, remove_rules
from beemesh.runtime import RuntimeUnavailable
from beemesh.runtime.podman import PodmanRuntime


def test_two_machines_publish_the_same_host_port(podman_tools: None,
                                                 tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    machines = []
    try:
        machines = [start_machine(tmp_path_factory) for _ in range(2)]
        for i, m in enumerate(machines):
            info = PodmanRuntime(m.url).deploy(web(greeting=f"m{i}"), i, f"task-{i}")
            assert info.host_ports == (18080,)
        for i, m in enumerate(machines):
            assert http_get(f"http://{m.address}:18080/index.html") == f"hello from m{i}\n"
        assert machines[0].address != machines[1].address
    finally:
        for m in machines:
            m.stop()


def test_a_machine_in_the_host_namespace(podman_tools: None,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    with socket.socket() as s:  # a port free on the host right now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    machine = start_machine(tmp_path_factory, netns=False)
    bridges: set[str] = set()
    try:
        assert machine.netns is None and machine.address == "127.0.0.1"
        runtime = PodmanRuntime(machine.url)
        runtime.deploy(web("hostnet", greeting="host", host_port=port), 0, "task-h")
        assert http_get(f"http://127.0.0.1:{port}/index.html") == "hello from host\n"
        bridges = {json.loads(f.read_text())["plugins"][0]["bridge"]
                   for f in (machine.root_dir / "cni").glob("*.conflist")}
        assert bridges and "cni-podman0" not in bridges
    finally:
        machine.stop()
    for bridge in bridges:  # the machine's own bridge does not outlive it
        assert not Path(f"/sys/class/net/{bridge}").exists()


def test_stop_leaves_nothing_behind(podman_tools: None,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    machine = start_machine(tmp_path_factory)
    runtime = PodmanRuntime(machine.url)
    runtime.deploy(web(host_port=None), 0, "task-0")
    ns = machine.netns
    assert ns is not None and Netns.find(ns.name) == ns
    machine.stop()
    machine.stop()  # idempotent
    assert Netns.find(ns.name) is None
    assert not Path(f"/sys/class/net/{ns.host_if}").exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"{machine.root_dir}/" not in mounts
    assert not machine.runroot.exists()
    with pytest.raises(UserError, match="is stopped"):
        machine.run("ps")
    # A dead Podman is one clear line naming the socket and the fix, never a traceback.
    with pytest.raises(RuntimeUnavailable) as err:
        runtime.list_pods()
    assert str(machine.socket_path) in str(err.value)
    assert "systemctl start podman.socket" in str(err.value)


def test_partition_rules_are_removed_by_owner_and_when_stale(podman_tools: None) -> None:
    # Subnets no machine gets while this runs (indices are handed out from 1 upwards).
    a, b = Netns("unused-a", 253), Netns("unused-b", 254)
    exited = subprocess.Popen(["true"])
    exited.wait()
    mine, stale = f"{NETNS_PREFIX}{os.getpid()}-rules", f"{NETNS_PREFIX}{exited.pid}-rules"

    def tagged() -> list[str]:
        out = subprocess.run(["iptables", "-w", "10", "-S", "FORWARD"], capture_output=True,
                             text=True, check=True).stdout
        return sorted(re.findall(rf"--comment ({re.escape(NETNS_PREFIX)}\d+-rules) ", out))

    try:
        drop_between(a, b, mine)
        drop_between(a, b, stale)
        assert tagged() == sorted([mine, mine, stale, stale])
        assert delete_stale_rules(NETNS_PREFIX) == [stale]
        assert tagged() == [mine, mine]
        assert remove_rules(mine) == 2
        assert tagged() == []
    finally:
        remove_rules(mine)
        remove_rules(stale)
