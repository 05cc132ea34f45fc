"""A hostile fleet member: joins with the right network key, then publishes bad messages.

Run as its own process: `python injector.py FLEET_DIR TARGET_MULTIADDR VICTIM_PUBKEY_HEX`.
Prints one JSON line: the cases it published and how many times each.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cbor2
import trio
from libp2p.peer.id import ID

from beemesh import wire
from beemesh.fleet import Fleet
from beemesh.identity import KeyPair
from beemesh.manifest import parse_manifests
from beemesh.membership.certs import issue_machine_cert
from beemesh.mesh.host import HostSettings, MeshHost
from beemesh.scheduling.messages import task_id
from beemesh.topics import TOPIC_EVENTS, TOPIC_PROPOSALS, TOPIC_TASKS

POD_YAML = """
apiVersion: v1
kind: Pod
metadata: {name: rogue}
spec:
  containers: [{name: main, image: localhost/beemesh/busybox:latest, command: [sleep, "60"]}]
"""


def record_body(key: KeyPair, peer: str | None = None, cert: bytes | None = None) -> dict:
    return {**({"cert": cert} if cert else {}),
        "peer_id": peer or key.peer_id,
        "addrs": [],
        "arch": "x86_64",
        "labels": {"injected": "yes"},
        "capacity": {"cpu_milli": 1000, "memory_bytes": 1 << 30,
                     "memory_available_bytes": 1 << 30},
        "protocol": 1,
    }


def cases(me: KeyPair, victim: bytes, cert: bytes) -> list[tuple[str, str, bytes]]:
    """(expected drop reason, topic, payload) for each class of bad input. The injector is an
    admitted machine: its first, good record carries its certificate."""
    now = time.time()
    good = wire.seal(me, "MachineRecord", record_body(me, cert=cert), now)
    raw = cbor2.loads(good)
    unsigned = cbor2.dumps({k: v for k, v in raw.items() if k != "sig"})
    forged = cbor2.dumps({**raw, "sender": victim})  # claims the victim sent it
    from beemesh.identity import peer_id

    impersonation = wire.seal(me, "MachineRecord", record_body(me, peer_id(victim)), now)
    stale = wire.seal(me, "MachineRecord", record_body(me), now - 120)
    oversized = wire.seal(me, "MachineRecord", {**record_body(me), "pad": b"x" * 300_000}, now)
    schema_bad = wire.seal(me, "MachineRecord", {"peer_id": me.peer_id}, now)
    unknown = wire.seal(me, "Nonsense", {"x": 1}, now)
    # A well-formed Task whose embedded workload was signed by a key no operator trusts.
    spec = parse_manifests(POD_YAML)[0]
    rogue = wire.seal(KeyPair.generate(), "Workload", {"spec": spec.to_dict()}, now)
    rogue_ts = wire.decode(rogue).ts_ms
    rogue_task = wire.seal(me, "Task", {
        "task_id": task_id(spec.workload_id, 0, rogue_ts), "workload_id": spec.workload_id,
        "ordinal": 0, "origin": me.peer_id, "workload": rogue}, now)
    wrong_topic = wire.seal(me, "MachineRecord", record_body(me), now)
    return [
        ("accepted", TOPIC_EVENTS, good),
        ("malformed", TOPIC_EVENTS, b"\x00\xffgarbage that is not CBOR"),
        ("malformed", TOPIC_TASKS, cbor2.dumps(["a", "list", "not", "a", "map"])),
        ("unsigned", TOPIC_EVENTS, unsigned),
        ("bad_signature", TOPIC_EVENTS, forged),
        ("untrusted", TOPIC_EVENTS, impersonation),
        ("stale", TOPIC_EVENTS, stale),
        ("oversized", TOPIC_EVENTS, oversized),
        ("schema", TOPIC_EVENTS, schema_bad),
        ("unknown_kind", TOPIC_PROPOSALS, unknown),
        ("unknown_kind", TOPIC_TASKS, wrong_topic),
        ("untrusted", TOPIC_TASKS, rogue_task),
        ("replayed", TOPIC_EVENTS, good),  # same bytes again: a new pub/sub message, old nonce
    ]


def admitted_member(fleet: Fleet) -> tuple[KeyPair, bytes, MeshHost]:
    """A new machine key, its certificate from the fleet's operator (label injected=yes, as
    `record_body` claims) and a mesh host with that key."""
    me = KeyPair.generate()
    now = time.time()
    cert = issue_machine_cert(fleet.operator_key(), me.peer_id, {"injected": "yes"}, now + 600,
                              now)
    return me, cert, MeshHost(HostSettings(me, fleet.psk_hex, ["/ip4/127.0.0.1/tcp/0"],
                                           "/beemesh/machine", {}))


async def join(host: MeshHost, target: str, topics: tuple[str, ...]) -> ID:
    """Connect to `target` and wait until it has joined each of `topics` (15 s at most)."""
    peer = await host.connect(target)
    with trio.fail_after(15):
        while not all(peer in host.pubsub.peer_topics.get(t, set()) for t in topics):
            await trio.sleep(0.1)
    return peer


async def main(fleet_dir: str, target: str, victim_hex: str) -> None:
    me, cert, host = admitted_member(Fleet.load(Path(fleet_dir)))
    async with host.running():
        await join(host, target, (TOPIC_EVENTS, TOPIC_TASKS, TOPIC_PROPOSALS))
        sent: dict[str, int] = {}
        for reason, topic, payload in cases(me, bytes.fromhex(victim_hex), cert):
            await host.publish(topic, payload)
            sent[reason] = sent.get(reason, 0) + 1
            await trio.sleep(0.05)
        # A burst of garbage: the agent must keep up and keep serving.
        for i in range(200):
            await host.publish(TOPIC_EVENTS, b"junk-%d" % i)
        sent["malformed"] += 200
        await trio.sleep(1.5)
        print(json.dumps({"peer_id": me.peer_id, "sent": sent}), flush=True)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
