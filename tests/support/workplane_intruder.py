"""A hostile host with real keys, run as its own process against a real mesh's planes.

Three attacks, one per mode (see tests/fleet/test_workplane.py):

- `machine-key-on-workplane FLEET MACHINE_KEY TARGET WORKLOAD`: a copy of a machine's key and
  the fleet's work-plane network key dial a work plane (TARGET) for `--seconds`, re-dialling
  whenever the connection drops, and publish a ServiceRecord signed by the machine key (with a
  certificate signed by the same key) whenever the target is seen subscribed. Reports how the
  connections went.
- `workload-key-on-machine-plane FLEET WORKLOAD_KEY TARGET`: a replica's workload key and the
  fleet's swarm key join the machine plane at an agent (TARGET) and publish, signed by that
  workload key, a MachineRecord naming itself and a Bid; the record also goes into the
  Machine DHT.
- `stolen-workplane-host FLEET HOST_KEY MACHINE_KEY TARGET GHOST REAL`: a machine's
  work-plane host key (admitted by every work plane) and that machine's key. First a valid
  record for workload GHOST (a positive control: the target must accept it), then, on "next"
  from stdin, a series of bad work-plane messages and a valid sentinel record after them, then,
  on "next", withdrawals of the two valid records. REAL is `workload:ordinal:peer id` of a
  replica another machine runs: a withdrawal of it is forged.

- `stream-open FLEET HOST_KEY TARGET SERVICE REPLICA`: a host with HOST_KEY and the fleet's
  work-plane network key dials a work plane (TARGET) and opens a workload stream to Service
  SERVICE's replica REPLICA (a workload Peer ID), with a StreamOpen signed by a fresh key whose
  certificate HOST_KEY signed itself. Reports whether it connected and the server's answer.

Every phase prints one JSON line and (except the last) waits for a line on stdin before the
next, so the test can look at the mesh while this host stays connected.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.records.validator import Validator
from multiaddr import Multiaddr

from beemesh import wire
from beemesh.fleet import Fleet, load_workplane_psk
from beemesh.identity import KeyPair, load_key
from beemesh.mesh.host import HostSettings, MeshHost

WP_TOPIC = "workplane-events"
MACHINE_EVENTS = "scheduler-events"
MACHINE_PROPOSALS = "scheduler-proposals"
LISTEN = ["/ip4/0.0.0.0/tcp/0"]


class AnyValue(Validator):
    """Our own DHT stores whatever we put: the targets' validators are what is under test."""

    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def emit(phase: str, **fields: Any) -> None:
    print(json.dumps({"phase": phase, **fields}), flush=True)


async def next_phase() -> None:
    """Block until the test writes a line (or closes stdin)."""
    await trio.to_thread.run_sync(sys.stdin.readline)


def cert(signer: KeyPair, machine: str, peer: str, workload: str, ordinal: int, pod: str,
         task: str, now: float) -> bytes:
    body = {"machine": machine, "peer_id": peer, "workload_id": workload, "ordinal": ordinal,
            "pod": pod, "task": task}
    return wire.seal(signer, "WorkloadCert", body, now)


def record(key: KeyPair, workload: str, ordinal: int, pod: str, task: str, certificate: bytes,
           now: float, *, peer: str | None = None, ttl_s: int = 60, **extra: Any) -> bytes:
    body = {"workload_id": workload, "ordinal": ordinal, "peer_id": peer or key.peer_id,
            "pod": pod, "task": task, "addrs": ["10.99.99.99"],
            "ports": [{"name": "web", "port": 80, "host_port": 18099, "protocol": "TCP"}],
            "ready": True, "retiring": False, "version": int(now * 1000), "ttl_s": ttl_s,
            "cert": certificate, **extra}
    return wire.seal(key, "ServiceRecord", body, now)


async def wait_subscribed(host: MeshHost, peer: ID, topics: list[str], timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while not all(peer in host.pubsub.peer_topics.get(t, set()) for t in topics):
            await trio.sleep(0.05)
        return True
    return False


async def join(host: MeshHost, target: str, topics: list[str], attempts: int = 4) -> ID | None:
    """Connect and wait until the target shows its subscriptions; reconnect if it does not
    (a peer that still holds a dying pub/sub stream under our Peer ID greets us only on a
    fresh connection)."""
    for _ in range(attempts):
        try:
            with trio.fail_after(10):
                peer = await host.connect(target)
        except Exception:  # not up yet, or the old connection is still being torn down
            await trio.sleep(1)
            continue
        if await wait_subscribed(host, peer, topics, 8):
            return peer
        await host.host.disconnect(peer)
        await trio.sleep(1)
    return None


# ---- machine key on a work plane ------------------------------------------------------------


async def machine_key_on_workplane(args: argparse.Namespace) -> None:
    me = load_key(Path(args.key), "machine key", "")
    psk = load_workplane_psk(Path(args.fleet) / "workplane.key")
    host = MeshHost(HostSettings(me, psk, LISTEN, "/beemesh/workload", {"svc": AnyValue()}))
    target = info_from_p2p_addr(Multiaddr(args.target)).peer_id
    report: dict[str, Any] = {"peer_id": me.peer_id, "dials": 0, "dial_errors": [],
                              "connected_checks": 0, "still_connected_after_2s": 0,
                              "saw_subscription": False, "published": 0}
    async with host.running():
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            report["dials"] += 1
            try:
                with trio.fail_after(5):
                    await host.connect(args.target)
            except Exception as e:  # refused or reset dials are the expected outcome
                report["dial_errors"].append(type(e).__name__ + ": " + str(e)[:120])
                await trio.sleep(0.5)
                continue
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                if target in host.pubsub.peer_topics.get(WP_TOPIC, set()):
                    report["saw_subscription"] = True
                    now = time.time()
                    c = cert(me, me.peer_id, me.peer_id, args.workload, 0, "forged-0", "t0", now)
                    await host.publish(WP_TOPIC, record(me, args.workload, 0, "forged-0", "t0",
                                                        c, now))
                    report["published"] += 1
                await trio.sleep(0.1)
            report["connected_checks"] += 1
            if target in host.connected():
                report["still_connected_after_2s"] += 1
        emit("done", **report)


# ---- workload key on the machine plane --------------------------------------------------------


async def workload_key_on_machine_plane(args: argparse.Namespace) -> None:
    me = load_key(Path(args.key), "workload key", "")
    fleet = Fleet.load(Path(args.fleet))
    host = MeshHost(HostSettings(me, fleet.psk_hex, LISTEN, "/beemesh/machine",
                                 {"machine": AnyValue()}))
    async with host.running():
        peer = await join(host, args.target, [MACHINE_EVENTS, MACHINE_PROPOSALS])
        if peer is None:
            emit("error", error="the agent never showed its topic subscriptions")
            return
        sent = {"MachineRecord": 0, "Bid": 0}
        rec = b""
        for _ in range(3):
            now = time.time()
            rec = wire.seal(me, "MachineRecord", {
                "peer_id": me.peer_id, "addrs": host.addrs(), "arch": "x86_64",
                "labels": {"intruder": "workload-key"},
                "capacity": {"cpu_milli": 64000, "memory_bytes": 1 << 40,
                             "memory_available_bytes": 1 << 40},
                "protocol": 1}, now)
            await host.publish(MACHINE_EVENTS, rec)
            sent["MachineRecord"] += 1
            bid = wire.seal(me, "Bid", {"task_id": "intruder-task", "round": 0,
                                        "score": 1_000_000, "machine": me.peer_id}, now)
            await host.publish(MACHINE_PROPOSALS, bid)
            sent["Bid"] += 1
            await trio.sleep(0.3)
        stored = "ok"
        try:
            with trio.fail_after(10):
                await host.put(f"/machine/{me.peer_id[-40:]}", rec)
        except Exception as e:  # report it: the test judges
            stored = f"{type(e).__name__}: {e}"[:200]
        emit("published", peer_id=me.peer_id, sent=sent, dht_put=stored)
        await next_phase()
        emit("done", connected=peer in host.connected())


# ---- a stolen work-plane host identity ----------------------------------------------------------


def bad_cases(machine_key: KeyPair, ghost: str, real: str, now: float
              ) -> list[tuple[str, str, bytes]]:
    """(expected drop reason, what it is, payload), in publication order."""
    machine = machine_key.peer_id
    rogue = KeyPair.generate()  # a key no machine of the fleet has

    forged_key = KeyPair.generate()  # certificate "from" our machine, signed by a stranger
    forged_cert = cert(rogue, machine, forged_key.peer_id, ghost, 1, "ghost-1", "t1", now)
    forged = record(forged_key, ghost, 1, "ghost-1", "t1", forged_cert, now)

    other_key = KeyPair.generate()  # a genuine certificate, but for ordinal 0: claims ordinal 2
    other_cert = cert(machine_key, machine, other_key.peer_id, ghost, 0, "ghost-0", "t2", now)
    other_ordinal = record(other_key, ghost, 2, "ghost-0", "t2", other_cert, now)

    theft_key = KeyPair.generate()  # genuine certificate of another key: signs for it
    theft_cert = cert(machine_key, machine, other_key.peer_id, ghost, 3, "ghost-3", "t3", now)
    theft = record(theft_key, ghost, 3, "ghost-3", "t3", theft_cert, now)

    big_key = KeyPair.generate()
    big_cert = cert(machine_key, machine, big_key.peer_id, ghost, 4, "ghost-4", "t4", now)
    oversized = record(big_key, ghost, 4, "ghost-4", "t4", big_cert, now,
                       addrs=["x" * 1000] * 300)

    stale_key = KeyPair.generate()
    stale_cert = cert(machine_key, machine, stale_key.peer_id, ghost, 5, "ghost-5", "t5", now)
    stale = record(stale_key, ghost, 5, "ghost-5", "t5", stale_cert, now - 120)

    # A withdrawal of a real replica of another machine, signed by a stranger (with a
    # certificate our machine made up for that replica's key).
    real_workload, real_ordinal, real_peer = real.rsplit(":", 2)
    withdraw = wire.seal(rogue, "ServiceWithdraw", {
        "workload_id": real_workload, "ordinal": int(real_ordinal), "peer_id": real_peer,
        "cert": cert(machine_key, machine, real_peer, real_workload, int(real_ordinal), "x",
                     "y", now)}, now)

    unknown = wire.seal(machine_key, "WorkloadCert", cbor2.loads(other_cert)["body"], now)
    return [
        ("malformed", "garbage bytes", b"\x00\xffgarbage that is not CBOR"),
        ("malformed", "a CBOR list, not an envelope", cbor2.dumps(["not", "a", "map"])),
        ("untrusted", "certificate signed by a key that is not the machine it names", forged),
        ("untrusted", "record for ordinal 2 with the certificate of ordinal 0", other_ordinal),
        ("untrusted", "record signed by a key other than the certified one", theft),
        ("oversized", "record over 256 KiB", oversized),
        ("stale", "record 120 s old", stale),
        ("untrusted", "withdrawal of a real replica, signed by a stranger", withdraw),
        ("unknown_kind", "a WorkloadCert on the records topic", unknown),
    ]


async def stolen_workplane_host(args: argparse.Namespace) -> None:
    host_key = load_key(Path(args.host_key), "work-plane host key", "")
    machine_key = load_key(Path(args.machine_key), "machine key", "")
    psk = load_workplane_psk(Path(args.fleet) / "workplane.key")
    host = MeshHost(HostSettings(host_key, psk, LISTEN, "/beemesh/workload",
                                 {"svc": AnyValue()}))
    machine = machine_key.peer_id

    def valid(ordinal: int, pod: str, task: str) -> tuple[KeyPair, bytes, bytes]:
        key, now = KeyPair.generate(), time.time()
        c = cert(machine_key, machine, key.peer_id, args.ghost, ordinal, pod, task, now)
        return key, c, record(key, args.ghost, ordinal, pod, task, c, now)

    async with host.running():
        peer = await join(host, args.target, [WP_TOPIC])
        if peer is None:
            emit("error", error="the work plane never showed its topic subscription")
            return
        control_key, control_cert, control = valid(10, "ghost-10", "control")
        await host.publish(WP_TOPIC, control)
        emit("control", peer_id=host_key.peer_id, control=control_key.peer_id)
        await next_phase()

        sent: list[dict[str, str]] = []
        for reason, what, payload in [
                ("replayed", "the control record's bytes again", control),
                *bad_cases(machine_key, args.ghost, args.real, time.time())]:
            await host.publish(WP_TOPIC, payload)
            sent.append({"reason": reason, "what": what})
            await trio.sleep(0.05)
        # The control again, newer (its first copy may near its 60 s TTL on a slow host),
        # then the sentinel.
        now = time.time()
        await host.publish(WP_TOPIC, record(control_key, args.ghost, 10, "ghost-10", "control",
                                            control_cert, now))
        sentinel_key, sentinel_cert, sentinel = valid(11, "ghost-11", "sentinel")
        await host.publish(WP_TOPIC, sentinel)
        emit("bad", sent=sent, sentinel=sentinel_key.peer_id)
        await next_phase()

        now = time.time()
        for key, ordinal, c in ((control_key, 10, control_cert),
                                (sentinel_key, 11, sentinel_cert)):
            await host.publish(WP_TOPIC, wire.seal(key, "ServiceWithdraw", {
                "workload_id": args.ghost, "ordinal": ordinal, "peer_id": key.peer_id,
                "cert": c}, now))
        await trio.sleep(1.0)  # let the withdrawals leave the socket
        emit("withdrawn", connected=peer in host.connected())


# ---- a workload stream from outside ---------------------------------------------------------


async def stream_open(args: argparse.Namespace) -> None:
    from beemesh.mesh.framing import read_request, send_request
    from beemesh.workplane import handshake

    me = load_key(Path(args.host_key), "host key", "")
    psk = load_workplane_psk(Path(args.fleet) / "workplane.key")
    host = MeshHost(HostSettings(me, psk, LISTEN, "/beemesh/workload", {"svc": AnyValue()}))
    target = info_from_p2p_addr(Multiaddr(args.target)).peer_id
    report: dict[str, Any] = {"peer_id": me.peer_id, "connected": False, "answer": None}
    async with host.running():
        try:
            with trio.fail_after(5):
                await host.connect(args.target)
            await trio.sleep(1.0)  # a refused peer is closed right after Noise
            report["connected"] = target in host.connected()
            with trio.fail_after(5):
                stream = await host.open_stream(target.to_base58(), handshake.PROTOCOL)
                key, now = KeyPair.generate(), time.time()
                c = cert(me, me.peer_id, key.peer_id, "deployment/default/intruder", 0,
                         "intruder-0", "t0", now)
                hello = handshake.open_message(key, c, args.service, 80, args.replica,
                                               me.peer_id, target.to_base58(), now, None)
                await send_request(stream, hello)
                answer = cbor2.loads(await read_request(stream))
                report["answer"] = answer.get("refused", "accepted") if isinstance(
                    answer, dict) else "accepted"
        except Exception as e:  # refused dials and reset streams are the expected outcome
            report["error"] = type(e).__name__ + ": " + str(e)[:120]
    emit("done", **report)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("machine-key-on-workplane")
    for name in ("fleet", "key", "target", "workload"):
        sp.add_argument(name)
    sp.add_argument("--seconds", type=float, default=10.0)
    sp.set_defaults(run=machine_key_on_workplane)
    sp = sub.add_parser("workload-key-on-machine-plane")
    for name in ("fleet", "key", "target"):
        sp.add_argument(name)
    sp.set_defaults(run=workload_key_on_machine_plane)
    sp = sub.add_parser("stolen-workplane-host")
    for name in ("fleet", "host_key", "machine_key", "target", "ghost", "real"):
        sp.add_argument(name)
    sp.set_defaults(run=stolen_workplane_host)
    sp = sub.add_parser("stream-open")
    for name in ("fleet", "host_key", "target", "service", "replica"):
        sp.add_argument(name)
    sp.set_defaults(run=stream_open)
    args = p.parse_args()
    trio.run(args.run, args)


if __name__ == "__main__":
    main()
