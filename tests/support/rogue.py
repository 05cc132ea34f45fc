"""An admitted but rogue machine: the operator signed its certificate, and it lies.

Run as its own process (see tests/fleet/test_rogue_member.py):
    python rogue.py FLEET_DIR TARGET_MULTIADDR[,TARGET_MULTIADDR...]
It joins every target with the fleet key and a record carrying its certificate, prints one JSON
line ({"phase": "joined", "peer_id": ...}), then reads commands from stdin, one JSON object a
line, and answers each with one JSON line:

- {"do": "attack", "invent": [WORKLOAD, ORDINAL]}: the abuses that need no auction running:
  a forged `Deployed` (score SCORE_MAX) for every replica the honest records list; its own
  record, from then on republished every few seconds, claiming each of those pods (their real
  tasks) and replica ORDINAL of WORKLOAD under an invented task id, and listing 16 black-hole
  addresses; records with stale (past) timestamps; a record claiming labels its certificate
  does not grant; ten throwaway keys (no certificate) publishing one record each; another
  admitted key publishing one record that lists 16 black-hole addresses, then gone; on every
  honest work plane, as the work plane its record names, a ServiceRecord it certifies for
  each pod it claims of replica ORDINAL of WORKLOAD (the real one, the invented one). From then
  on, every Task seen (an apply or a heal) draws bids of SCORE_MAX, lease hints an hour ahead
  on pub/sub and lease records in the Machine DHT, for a while.
- {"do": "creep"}: records whose signed time advances far slower than the clock (each one
  newer than the last, all within the skew window), to make every agent think messages queue.
- {"do": "stop"}: prints what it sent and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import trio
from injector import record_body
from libp2p.abc import INetStream
from workplane_intruder import WP_TOPIC, AnyValue, cert, join, record

from beemesh import wire
from beemesh.fleet import Fleet, load_workplane_psk
from beemesh.identity import KeyPair
from beemesh.membership import catch_up
from beemesh.membership.certs import issue_machine_cert
from beemesh.membership.dht import machine_dht_key
from beemesh.membership.probing import PROBE_PROTOCOL
from beemesh.membership.records import MACHINE_RECORD
from beemesh.mesh.framing import read_exactly
from beemesh.mesh.host import HostSettings, MeshHost
from beemesh.scheduling.leases import lease_key
from beemesh.scheduling.messages import BID, DEPLOYED, LEASE, TASK
from beemesh.scheduling.scoring import SCORE_MAX
from beemesh.topics import TOPIC_EVENTS, TOPIC_PROPOSALS, TOPIC_TASKS

LABELS = {"injected": "yes"}
LISTEN = ["/ip4/0.0.0.0/tcp/0"]
# TEST-NET-3 addresses nobody answers: a dialer that waits for each in turn waits 16 x 5 s.
BLACK_HOLES = [f"/ip4/203.0.113.{i}/tcp/4001" for i in range(1, 17)]
THROWAWAYS = 10
STALE = 5
TASK_ABUSE_S = 15.0  # how long each Task seen draws bids and lease hints
REPUBLISH_S = 3.0


class Rogue:
    def __init__(self, fleet: Fleet, targets: list[str]) -> None:
        self.fleet = fleet
        self.targets = targets
        self.key = KeyPair.generate()
        now = time.time()
        self.cert = issue_machine_cert(fleet.operator_key(), self.key.peer_id, LABELS,
                                       now + 3600, now)
        self.host = MeshHost(HostSettings(self.key, fleet.psk_hex, LISTEN, "/beemesh/machine",
                                          {"machine": AnyValue(), "lease": AnyValue()}))
        self.records: dict[str, dict[str, Any]] = {}  # honest machine -> its record's body
        self.claims: list[dict[str, Any]] = []
        self.addrs: list[str] = []
        self.attacking = False
        self.sent: dict[str, int] = {}
        self.tasks_seen: set[str] = set()
        self.throwaways: list[str] = []
        self.ghost_id = ""
        self.wp_key = KeyPair.generate()  # its work plane's host key, in its record
        self.wp_host = MeshHost(HostSettings(
            self.wp_key, load_workplane_psk(fleet.directory / "workplane.key"), LISTEN,
            "/beemesh/workload", {"svc": AnyValue()}))
        self.workplane: dict[str, Any] | None = None
        self.service_records: list[str] = []  # workload peer ids of the forged records
        self.nursery: trio.Nursery | None = None
        self.peers: list[str] = []  # its targets' peer ids

    def count(self, what: str, n: int = 1) -> None:
        self.sent[what] = self.sent.get(what, 0) + n

    async def publish(self, topic: str, kind: str, body: dict[str, Any], what: str,
                      ts: float | None = None) -> None:
        await self.host.publish(topic, wire.seal(self.key, kind, body,
                                                 time.time() if ts is None else ts))
        self.count(what)

    def record(self, **extra: Any) -> dict[str, Any]:
        wp = {"workplane": self.workplane} if self.workplane else {}
        return {**record_body(self.key, cert=self.cert), "addrs": self.addrs,
                "pods": self.claims, **wp, **extra}

    # ---- joining and listening ---------------------------------------------------------------

    async def join(self, host: MeshHost, topics: tuple[str, ...]) -> None:
        peers = [await host.connect(t) for t in self.targets]
        if host is self.host:
            self.peers = [p.to_base58() for p in peers]
        with trio.fail_after(20):
            while not all(p in host.pubsub.peer_topics.get(t, set())
                          for p in peers for t in topics):
                await trio.sleep(0.1)

    async def listen(self, topic: str) -> None:
        sub = await self.host.subscribe(topic, lambda _peer, _msg: True)
        while True:
            msg = await sub.get()
            try:
                env = wire.decode(msg.data)
            except wire.Rejected:
                continue
            if env.kind == MACHINE_RECORD.name and env.sender != self.key.public_key:
                self.records[env.body["peer_id"]] = env.body
            elif env.kind == TASK.name and self.attacking and \
                    env.body["task_id"] not in self.tasks_seen:
                self.tasks_seen.add(env.body["task_id"])
                assert self.nursery is not None
                self.nursery.start_soon(self.abuse_task, env.body["task_id"])

    async def answer_probes(self, stream: INetStream) -> None:
        """It answers its monitors like an honest agent: a rogue wants to stay in the fleet."""
        with contextlib.suppress(Exception):
            while True:
                await stream.write(await read_exactly(stream, 8))

    async def pull_records(self) -> None:
        """Honest records go out only when they change: it asks its peers for them
        (`membership.catch_up`), as a joining agent does."""
        while True:
            for peer in self.peers:
                with contextlib.suppress(Exception):
                    digest = catch_up.decode_digest(await self.host.ask(
                        peer, catch_up.RECORDS_PROTOCOL, catch_up.encode_request(catch_up.BARE_ASK),
                        catch_up.MAX_DIGEST_BYTES, 5))
                    wanted = sorted(set(digest.held) - {self.key.peer_id})
                    for data in catch_up.decode_records(await self.host.ask(
                            peer, catch_up.RECORDS_PROTOCOL, catch_up.encode_request(wanted),
                            catch_up.MAX_ANSWER_BYTES, 5)):
                        env = wire.decode(data)
                        self.records[env.body["peer_id"]] = env.body
            await trio.sleep(2)

    async def republish(self) -> None:
        while True:
            await self.publish(TOPIC_EVENTS, MACHINE_RECORD.name, self.record(), "record")
            await trio.sleep(REPUBLISH_S)

    # ---- the abuses ------------------------------------------------------------------------

    async def abuse_task(self, tid: str) -> None:
        """(1) bids of SCORE_MAX, (2) lease hints of a task it did not win, on pub/sub (an hour
        ahead) and in the Machine DHT (an hour ahead, and within the validator's 60 s)."""
        me = self.key.peer_id
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.dht_leases, tid)
            end = trio.current_time() + TASK_ABUSE_S
            while trio.current_time() < end:
                await self.publish(TOPIC_EVENTS, LEASE.name, {
                    "task_id": tid, "machine": me,
                    "expires_ms": int((time.time() + 3600) * 1000)}, "lease_hint")
                for round_ in range(3):
                    await self.publish(TOPIC_PROPOSALS, BID.name, {
                        "task_id": tid, "round": round_, "score": SCORE_MAX, "machine": me},
                        "bid_max")
                await trio.sleep(0.2)

    async def dht_leases(self, tid: str) -> None:
        for ahead, what in ((3600.0, "dht_lease_far"), (50.0, "dht_lease_near")):
            body = {"task_id": tid, "machine": self.key.peer_id,
                    "expires_ms": int((time.time() + ahead) * 1000)}
            with trio.move_on_after(5):
                try:
                    await self.host.put(lease_key(tid), wire.seal(self.key, LEASE.name, body,
                                                                  time.time()))
                    self.count(what)
                except Exception:  # refused by the peers' validators
                    self.count(f"{what}_refused")

    async def attack(self, invent: list[Any]) -> None:
        step("attack")
        me = self.key.peer_id
        honest = [(peer, pod) for peer, body in self.records.items() for pod in body["pods"]]
        # (3) a forged Deployed with the highest score, for every running replica
        for _peer, pod in honest:
            await self.publish(TOPIC_EVENTS, DEPLOYED.name, {
                "task_id": pod["task"], "workload_id": pod["workload"],
                "ordinal": pod["replica"], "machine": me, "score": SCORE_MAX,
                "pod": pod["pod"]}, "deployed_forged")
        step("forged Deployed sent")
        # (4) claims of pods it does not run, (7) addresses nobody answers
        workload, ordinal = invent
        self.claims = [{**pod, "state": "running"} for _, pod in honest] + [{
            "workload": workload, "replica": ordinal, "task": "tinvented" + "x" * 17,
            "pod": f"{workload.rsplit('/', 1)[-1]}-invented", "state": "running",
            "created": time.time()}]
        self.addrs = BLACK_HOLES
        self.workplane = {"peer_id": self.wp_key.peer_id, "addrs": self.wp_host.addrs()[:4]}
        self.count("claims", len(self.claims))
        await self.publish(TOPIC_EVENTS, MACHINE_RECORD.name, self.record(), "record")
        with trio.move_on_after(5):  # the same record in the Machine DHT
            try:
                await self.host.put(machine_dht_key(me), wire.seal(
                    self.key, MACHINE_RECORD.name, self.record(), time.time()))
                self.count("dht_record")
            except Exception:
                self.count("dht_record_refused")
        step("claims published")
        # (6) stale records: past timestamps, to feed lateness
        for i in range(STALE):
            await self.publish(TOPIC_EVENTS, MACHINE_RECORD.name, self.record(), "stale",
                               ts=time.time() - 120 - i)
        # labels beyond the certificate
        await self.publish(TOPIC_EVENTS, MACHINE_RECORD.name,
                           self.record(labels={**LABELS, "site": "hq"}), "labels")
        step("stale and labels sent")
        # (5) throwaway keys, one record each
        async with trio.open_nursery() as nursery:
            for _ in range(THROWAWAYS):
                nursery.start_soon(self.throwaway)
        self.ghost_id = await self.ghost()
        # (8) ServiceRecords it certifies for the pods it claims, of `invent`'s replica
        await self.forge_service_records([c for c in self.claims
                                          if (c["workload"], c["replica"]) == tuple(invent)])
        self.attacking = True
        step("throwaways and ghost done")

    async def forge_service_records(self, pods: list[dict[str, Any]]) -> None:
        """Join the honest work planes as the work plane its record names, and publish a
        ServiceRecord for each pod, certified by this machine (which claims them)."""
        planes = [body["workplane"] for body in self.records.values() if "workplane" in body]
        joined = 0
        for plane in planes:
            addr = plane["addrs"][0]
            target = addr if "/p2p/" in addr else f"{addr}/p2p/{plane['peer_id']}"
            joined += await join(self.wp_host, target, [WP_TOPIC]) is not None
        self.count("workplanes_joined", joined)
        for pod in pods:
            key, now = KeyPair.generate(), time.time()
            certificate = cert(self.key, self.key.peer_id, key.peer_id, pod["workload"],
                               pod["replica"], pod["pod"], pod["task"], now)
            await self.wp_host.publish(WP_TOPIC, record(
                key, pod["workload"], pod["replica"], pod["pod"], pod["task"], certificate,
                now))
            self.count("service_record_forged")
            self.service_records.append(key.peer_id)

    async def throwaway(self) -> None:
        key = KeyPair.generate()
        if await self.one_record(key, record_body(key)):
            self.count("unadmitted")
            self.throwaways.append(key.peer_id)

    async def ghost(self) -> str:
        """(7) another admitted key that says once it listens on 16 black-hole addresses and
        leaves: agents dial them until liveness declares it dead."""
        key = KeyPair.generate()
        now = time.time()
        cert = issue_machine_cert(self.fleet.operator_key(), key.peer_id, LABELS, now + 3600,
                                  now)
        body = {**record_body(key, cert=cert), "addrs": BLACK_HOLES}
        if await self.one_record(key, body):
            self.count("ghost")
        return key.peer_id

    async def one_record(self, key: KeyPair, body: dict[str, Any]) -> bool:
        """Join the targets as `key`, publish one record, leave. False: it took over 30 s."""
        host = MeshHost(HostSettings(key, self.fleet.psk_hex, LISTEN, "/beemesh/machine",
                                     {"machine": AnyValue(), "lease": AnyValue()}))
        with trio.move_on_after(30):
            async with host.running():
                await self.join(host, (TOPIC_EVENTS,))
                await host.publish(TOPIC_EVENTS, wire.seal(key, MACHINE_RECORD.name, body,
                                                            time.time()))
                await trio.sleep(1.0)
                return True
        self.count("timeout")
        return False

    async def creep(self, seconds: float = 24.0, every: float = 2.0) -> None:
        """Records signed as if time had stopped: each newer than the last by 1 ms."""
        base = time.time()
        end = base + seconds
        i = 0
        while time.time() < end:
            i += 1
            await self.publish(TOPIC_EVENTS, MACHINE_RECORD.name, self.record(),
                               "creep", ts=base + i / 1000)
            await trio.sleep(every)

    # ---- the process -----------------------------------------------------------------------

    async def run(self) -> None:
        async with self.host.running(), self.wp_host.running(), \
                trio.open_nursery() as nursery:
            self.nursery = nursery
            self.host.handle(PROBE_PROTOCOL, self.answer_probes)
            await self.join(self.host, (TOPIC_EVENTS, TOPIC_TASKS, TOPIC_PROPOSALS))
            nursery.start_soon(self.pull_records)
            nursery.start_soon(self.listen, TOPIC_EVENTS)
            nursery.start_soon(self.listen, TOPIC_TASKS)
            republishing = trio.CancelScope()

            async def republish() -> None:
                with republishing:
                    await self.republish()

            nursery.start_soon(republish)
            await trio.sleep(1.0)
            say({"phase": "joined", "peer_id": self.key.peer_id})
            stdin = trio.wrap_file(sys.stdin)
            while (line := await stdin.readline()):
                cmd = json.loads(line)
                if cmd["do"] == "attack":
                    await self.attack(cmd["invent"])
                    say({"phase": "attacking", "records": len(self.records), "sent": self.sent,
                         "throwaways": self.throwaways, "ghost": self.ghost_id,
                         "service_records": self.service_records})
                elif cmd["do"] == "creep":
                    republishing.cancel()
                    await self.creep()
                    say({"phase": "crept", "sent": self.sent})
                elif cmd["do"] == "stop":
                    break
            say({"phase": "done", "sent": self.sent, "tasks": sorted(self.tasks_seen)})
            nursery.cancel_scope.cancel()


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def step(text: str) -> None:
    """Where it is, on stderr (the test shows stderr's tail when a phase never ends)."""
    print(f"rogue: {text}", file=sys.stderr, flush=True)


def main(fleet_dir: str, targets: str) -> None:
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # its DHT chatter hides our steps
    trio.run(Rogue(Fleet.load(Path(fleet_dir)), targets.split(",")).run)


if __name__ == "__main__":
    main(*sys.argv[1:3])
