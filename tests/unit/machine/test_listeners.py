"""The agent's hosts files for pods (machine/listeners.py): written before a deploy, kept in
place (containers bind-mount the file), removed when the pod is gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from store_testlib import OPERATOR, add_apply, make_store, spec

from beemesh import wire
from beemesh.machine.listeners import Listeners
from beemesh.manifest import ServicePort, ServiceSpec
from beemesh.metrics import Metrics
from beemesh.workloads.messages import SERVICE
from beemesh.workplane.names import address


def add_object(store, name: str, ts: float) -> None:
    svc = ServiceSpec(name, "default", (("app", "web"),), (ServicePort("", 80, 8080),))
    blob = wire.seal(OPERATOR, SERVICE.name, {"spec": svc.to_dict()}, ts)
    store.add_object(blob, wire.decode(blob))
    store.files.flush()


@pytest.fixture
def listeners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Listeners:
    store = make_store(tmp_path / "store")
    add_apply(store, spec("web", 1), 1000.0)
    add_object(store, "backend", 1001.0)
    ls = Listeners(runtime=None, store=store, directory=tmp_path / "names",  # type: ignore
                   running=list, deploying=set, metrics=Metrics())
    ls.enabled = True  # the unit test is not about root
    return ls


def test_a_deploy_gets_a_hosts_file_and_env_vars(listeners: Listeners) -> None:
    net = listeners.network_for(spec("web", 1), 0)
    assert net is not None and net.hosts_file == listeners.directory / "web-0.hosts"
    text = net.hosts_file.read_text()
    assert f"{address('default', 'backend')}\tbackend backend.default" in text
    assert dict(net.env)["BACKEND_SERVICE_PORT"] == "80"
    assert oct(net.hosts_file.stat().st_mode & 0o777) == "0o644"


def test_a_new_service_rewrites_the_file_in_place(listeners: Listeners) -> None:
    net = listeners.network_for(spec("web", 1), 0)
    assert net is not None
    inode = net.hosts_file.stat().st_ino
    add_object(listeners.store, "cache", 1002.0)
    listeners.network_for(spec("web", 1), 0)
    assert net.hosts_file.stat().st_ino == inode
    assert "cache cache.default" in net.hosts_file.read_text()


def test_files_of_gone_pods_are_removed_and_links_are_not_followed(
        listeners: Listeners, tmp_path: Path) -> None:
    listeners.network_for(spec("web", 1), 0)
    (listeners.directory / "old-0.hosts").write_text("x")
    listeners.step([], {"web-0"}, [])
    assert sorted(os.listdir(listeners.directory)) == ["web-0.hosts"]
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.unlink(listeners.directory / "web-0.hosts")
    os.symlink(target, listeners.directory / "web-0.hosts")
    with pytest.raises(Exception, match="hosts file"):
        listeners.network_for(spec("web", 1), 0)
    assert target.read_text() == "keep"


def test_nat_rules_lead_each_service_port_to_its_listener() -> None:
    from beemesh.machine import pod_netns
    from beemesh.workplane.names import Listener

    a = Listener("web-0", "service/default/db", "127.64.0.9", 5432)
    b = Listener("web-0", "service/default/api", "127.70.1.2", 80, 1)
    text = pod_netns.rules([(b, 61001), (a, 61000)])
    assert text.splitlines() == [
        "*nat", ":BEEMESH-SVC - [0:0]", "-F BEEMESH-SVC",
        "-A BEEMESH-SVC -d 127.64.0.9/32 -p tcp -m tcp --dport 5432 -j DNAT "
        "--to-destination 127.64.0.9:61000",
        "-A BEEMESH-SVC -d 127.70.1.2/32 -p tcp -m tcp --dport 80 -j DNAT "
        "--to-destination 127.70.1.2:61001",
        "COMMIT"]
    assert pod_netns.LOCAL_PORTS.start > 60999  # above Linux's default ephemeral range
