"""What the work plane publishes for the replicas it runs (`workplane.local`): records that
pass the receivers' checks, versions that move only when what they say changes, and the
signed withdrawal."""

from __future__ import annotations

import dataclasses

from test_service_records import HOST_A, MACHINE_A, REPLICA, T0, convert, make_cert

from beemesh import wire
from beemesh.workplane import sync
from beemesh.workplane.local import Local, content, sealed_record, sealed_withdrawal
from beemesh.workplane.records import KINDS, SERVICE_WITHDRAW

WID = "deployment/default/web"
READY = sync.Replica("web-0", WID, 0, "t-one", "running", True, False, False,
                     (sync.Port("http", 8080, 18080, "TCP"),))
STATE = sync.AgentView(machine=MACHINE_A.peer_id, addrs=("10.0.0.1",), replicas=(READY,),
                       workloads=(), deleted=frozenset(), machines=(), statefulset_margin_s=10)


def mine(cert: bytes | None = None) -> Local:
    return Local("web-0", WID, 0, "t-one", REPLICA, cert=cert or make_cert())


def received(data: bytes | None, now: float) -> wire.Envelope:
    assert data is not None
    return wire.Verifier(KINDS, dict).check(data, now)


def test_a_record_says_what_the_agent_lists_and_passes_the_receivers_checks() -> None:
    rec = convert(received(sealed_record(mine(), STATE, T0), T0), T0, host=HOST_A)
    assert (rec.pod, rec.task, rec.addrs, rec.ready) == ("web-0", "t-one", ("10.0.0.1",), True)
    assert rec.ports == ({"name": "http", "port": 8080, "host_port": 18080, "protocol": "TCP"},)
    assert rec.version == int(T0 * 1000)


def test_the_version_moves_when_the_content_changes_not_with_each_refresh() -> None:
    m = mine()
    sealed_record(m, STATE, T0)
    assert received(sealed_record(m, STATE, T0 + 5), T0 + 5).body["version"] == int(T0 * 1000)
    retiring = dataclasses.replace(STATE, replicas=(dataclasses.replace(READY, retiring=True),))
    later = received(sealed_record(m, retiring, T0 + 10), T0 + 10).body
    assert later["version"] == int((T0 + 10) * 1000) and later["retiring"] is True


def test_nothing_to_publish_uncertified_or_unlisted() -> None:
    uncertified = dataclasses.replace(mine(), cert=None)
    assert sealed_record(uncertified, STATE, T0) is None
    unlisted = dataclasses.replace(STATE, replicas=())
    assert content(mine(), unlisted) == () and sealed_record(mine(), unlisted, T0) is None


def test_a_withdrawal_is_signed_by_the_replica_and_names_it() -> None:
    env = received(sealed_withdrawal(mine(), T0), T0)
    assert env.kind == SERVICE_WITHDRAW.name and env.sender == REPLICA.public_key
    assert (env.body["workload_id"], env.body["ordinal"]) == (WID, 0)
    assert env.body["peer_id"] == REPLICA.peer_id
