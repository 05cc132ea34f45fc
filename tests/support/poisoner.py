"""A hostile fleet member with poison pills: an admitted machine (the operator's certificate
in its first record), then publishes messages that used to crash, stall or fool an agent, on
the real topics and into the Machine DHT.

Run as its own process:
    python poisoner.py FLEET_DIR TARGET_MULTIADDR WORKLOAD_ID
WORKLOAD_ID names a workload the target runs (for the replays). Prints one JSON line: the
cases published by expected drop reason, and how many of each.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import trio
from injector import admitted_member, join, record_body

from beemesh import wire
from beemesh.fleet import Fleet
from beemesh.identity import KeyPair
from beemesh.manifest import WorkloadSpec
from beemesh.membership.dht import machine_dht_key
from beemesh.scheduling.leases import lease_key
from beemesh.scheduling.messages import task_id
from beemesh.topics import TOPIC_EVENTS, TOPIC_TASKS

FLOOD = 300  # fresh epochs of one signed manifest: all but a handful are refused


def raw_envelope(key: KeyPair, kind: str, body: Any, ts: Any = None) -> bytes:
    """Bytes cbor2 will write whatever the body holds (bignums, NaN, tags), correctly signed
    over what the old decoder would have read back."""
    ts_ms = int(time.time() * 1000) if ts is None else ts
    nonce = b"p" * 8 + time.time_ns().to_bytes(8, "big")
    signed = cbor2.dumps([wire.VERSION, kind, key.public_key, ts_ms, nonce, body],
                         canonical=True)
    return cbor2.dumps({"v": wire.VERSION, "kind": kind, "sender": key.public_key, "ts": ts_ms,
                        "nonce": nonce, "body": body, "sig": key.sign(signed)}, canonical=True)


def cases(me: KeyPair, operator: KeyPair, spec: WorkloadSpec) -> list[tuple[str, str, bytes]]:
    now = time.time()
    record = record_body(me)
    nan_pod = {"workload": spec.workload_id, "replica": 0, "task": "t", "pod": "x-0",
               "state": "running", "created": math.nan}
    cycle: list[Any] = []
    cycle.append(cycle)
    cyclic_workload = cbor2.dumps({"v": 1, "kind": "Workload", "sender": operator.public_key,
                                   "ts": 1, "nonce": b"n" * 16, "body": {"spec": cycle},
                                   "sig": b"s" * 64}, value_sharing=True)
    old = wire.seal(operator, "Workload", {"spec": spec.to_dict()}, now - 30 * 86400)
    old_gen = wire.decode(old).ts_ms
    return [
        ("malformed", TOPIC_EVENTS, raw_envelope(me, "MachineRecord", record, ts=10**400)),
        ("malformed", TOPIC_EVENTS, raw_envelope(
            me, "MachineRecord", {**record, "pods": [nan_pod]})),
        ("malformed", TOPIC_EVENTS, raw_envelope(
            me, "MachineRecord", {**record, "capacity": {**record["capacity"],
                                                         "cpu_milli": 10**400}})),
        ("malformed", TOPIC_EVENTS, raw_envelope(
            me, "MachineRecord", {**record, "arch": cbor2.CBORTag(35, "(a+)+" * 48_000)})),
        ("malformed", TOPIC_EVENTS, raw_envelope(
            me, "LeaseHint", {"task_id": "t1", "machine": me.peer_id, "expires_ms": 10**400})),
        ("malformed", TOPIC_TASKS, wire.seal(me, "Task", {
            "task_id": "tx", "workload_id": spec.workload_id, "ordinal": 0,
            "origin": me.peer_id, "workload": cyclic_workload}, now)),
        ("stale", TOPIC_TASKS, wire.seal(me, "Task", {
            "task_id": task_id(spec.workload_id, 0, old_gen, "tfresh"),
            "workload_id": spec.workload_id, "ordinal": 0, "origin": me.peer_id,
            "workload": old, "epoch": "tfresh"}, now)),
    ]


def flood(me: KeyPair, stored: bytes, spec: WorkloadSpec) -> list[bytes]:
    """Fresh epochs of the workload's current signed manifest: each a valid Task."""
    gen = wire.decode(stored).ts_ms
    return [wire.seal(me, "Task", {
        "task_id": task_id(spec.workload_id, 0, gen, f"tflood{i}"),
        "workload_id": spec.workload_id, "ordinal": 0, "origin": me.peer_id,
        "workload": stored, "epoch": f"tflood{i}"}, time.time()) for i in range(FLOOD)]


async def main(fleet_dir: str, target: str, manifest_path: str) -> None:
    fleet = Fleet.load(Path(fleet_dir))
    operator = fleet.operator_key()
    stored = Path(manifest_path).read_bytes()  # the operator-signed Workload the target holds
    spec = WorkloadSpec.from_dict(wire.decode(stored).body["spec"])
    me, cert, host = admitted_member(fleet)
    async with host.running():
        peer = await join(host, target, (TOPIC_EVENTS, TOPIC_TASKS))
        await host.publish(TOPIC_EVENTS, wire.seal(me, "MachineRecord",
                                                   record_body(me, cert=cert), time.time()))
        sent: dict[str, int] = {"accepted": 1}
        await trio.sleep(0.2)
        for reason, topic, payload in cases(me, operator, spec):
            await host.publish(topic, payload)
            sent[reason] = sent.get(reason, 0) + 1
            await trio.sleep(0.05)
        for payload in flood(me, stored, spec):
            await host.publish(TOPIC_TASKS, payload)
            await trio.sleep(0.005)
        sent["flood"] = FLOOD
        # The same poison as Machine DHT values: refused by every validator that sees them.
        await host.dht.add_peer(peer)
        record = record_body(me)
        for key, value in (
                (machine_dht_key(me.peer_id), raw_envelope(
                    me, "MachineRecord", {**record, "pods": [{"created": math.nan}]})),
                (lease_key("t1"), raw_envelope(
                    me, "LeaseHint", {"task_id": "t1", "machine": me.peer_id,
                                      "expires_ms": 10**400}))):
            with trio.move_on_after(5):
                try:
                    await host.put(key, value)
                except Exception as e:  # refused by the peers (and maybe by ourselves)
                    sent[f"dht refused: {type(e).__name__}"] = 1
        await trio.sleep(1.5)
        print(json.dumps({"peer_id": me.peer_id, "sent": sent}), flush=True)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
