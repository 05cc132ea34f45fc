"""Service names inside pods: addresses, hosts file, env vars, listeners (sans-IO)."""

from __future__ import annotations

import ipaddress

from beemesh.manifest.service import ServicePort, ServiceSpec
from beemesh.workplane import names
from beemesh.workplane.names import Endpoints


def svc(name: str, ns: str = "default", headless: bool = False,
        ports: tuple[int, ...] = (80,)) -> ServiceSpec:
    return ServiceSpec(name, ns, (("app", name),),
                       tuple(ServicePort(f"p{p}" if len(ports) > 1 else "", p, p)
                             for p in ports), headless)


def test_addresses_are_loopback_stable_and_clear_of_the_usual_ones() -> None:
    a = names.address("default", "web")
    assert a == names.address("default", "web")
    assert a != names.address("other", "web") != names.address("default", "web", 0)
    for i in range(2000):
        ip = ipaddress.ip_address(names.address("ns", f"s{i}", i % 3 or None))
        assert ip.is_loopback and str(ip) not in ("127.0.0.1", names.HOSTNAME_ADDRESS)
        assert ip.packed[1] >= 64


def test_short_names_only_for_the_pods_own_namespace() -> None:
    plan = names.plan("web-0", "deployment/default/web",
                      [Endpoints(svc("db")), Endpoints(svc("q", "tools"))])
    hosts = {n[0]: n for _, n in plan.hosts}
    assert hosts["db"] == ["db", "db.default", "db.default.svc", "db.default.svc.cluster.local"]
    assert "q" not in hosts and "q.tools" in hosts
    text = names.hosts_text("web-0", plan)
    assert "127.0.0.1\tlocalhost" in text and f"{names.HOSTNAME_ADDRESS}\tweb-0" in text
    assert [li.port for li in plan.listeners] == [80, 80]


def test_headless_statefulset_has_a_name_and_listener_per_ordinal() -> None:
    e = Endpoints(svc("etcd", headless=True, ports=(2379, 2380)),
                  ((0, "etcd-0"), (1, "etcd-1")))
    plan = names.plan("etcd-0", "statefulset/default/etcd", [e])
    assert [n[0] for _, n in plan.hosts] == ["etcd", "etcd-0.etcd", "etcd-1.etcd"]
    by_ordinal = {(li.ordinal, li.port) for li in plan.listeners}
    assert by_ordinal == {(None, 2379), (None, 2380), (0, 2379), (0, 2380), (1, 2379),
                          (1, 2380)}
    addr1 = next(a for a, n in plan.hosts if n[0] == "etcd-1.etcd")
    assert addr1 == names.address("default", "etcd", 1)


def test_a_colliding_address_is_left_out_and_reported(monkeypatch) -> None:
    monkeypatch.setattr(names, "address", lambda ns, name, ordinal=None: "127.64.0.1")
    plan = names.plan("p-0", "deployment/default/p", [Endpoints(svc("a")), Endpoints(svc("b"))])
    assert [n[0] for _, n in plan.hosts] == ["a"]
    assert plan.collisions == ["service/default/b has the address of service/default/a"]


def test_env_vars_as_kubernetes_sets_them_for_its_own_namespace_only() -> None:
    env = names.env_vars("default", [svc("my-db", ports=(5432, 9187)), svc("x", "other"),
                                     svc("h", headless=True)])
    host = names.address("default", "my-db")
    assert env["MY_DB_SERVICE_HOST"] == host
    assert env["MY_DB_SERVICE_PORT"] == "5432"
    assert env["MY_DB_SERVICE_PORT_P9187"] == "9187"
    assert env["MY_DB_PORT"] == f"tcp://{host}:5432"
    assert env["MY_DB_PORT_9187_TCP"] == f"tcp://{host}:9187"
    assert not [k for k in env if k.startswith(("X_", "H_"))]


def test_listener_count_per_pod_is_capped() -> None:
    many = [Endpoints(svc(f"s{i}", ports=tuple(range(1, 33)))) for i in range(40)]
    assert len(names.plan("p-0", "deployment/default/p", many).listeners) == names.MAX_LISTENERS
