"""A tiny in-memory driver for `Auctioneer`s: fake clock, in-memory bus, in-memory lease table.

Not a test module (no `test_` prefix). Everything is deterministic: machines are visited in
node-id order, messages are delivered in send order, randomness comes from seeded `Random`s.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from beemesh import wire
from beemesh.scheduling.actions import (
    Action,
    CheckLease,
    Deploy,
    PublishBid,
    PublishDeployed,
    PublishFailed,
    WriteLease,
)
from beemesh.scheduling.auction import (
    Auctioneer,
    Params,
)
from beemesh.scheduling.scoring import LocalState, TaskRequest

GIB = 1024**3


def request(workload_id: str = "web", cpu_milli: int = 500, memory_bytes: int = GIB,
            arch: str | None = None, node_selector: dict[str, str] | None = None,
            host_ports: list[tuple[int, str]] | None = None) -> TaskRequest:
    return TaskRequest(workload_id, cpu_milli, memory_bytes, arch, dict(node_selector or {}),
                       list(host_ports or []))


def machine(cpu_free: int = 4000, mem_free: int = 8 * GIB, *, cpu_total: int = 4000,
            mem_total: int = 8 * GIB, arch: str = "x86_64", labels: dict[str, str] | None = None,
            cordoned: bool = False, runtime_ok: bool = True,
            replicas_here: dict[str, int] | None = None,
            used_host_ports: frozenset[tuple[int, str]] = frozenset(), uptime_s: float = 0.0,
            price: float = 0.5) -> LocalState:
    return LocalState(arch=arch, labels=dict(labels or {}), cordoned=cordoned,
                      runtime_ok=runtime_ok, cpu_milli_total=cpu_total,
                      memory_bytes_total=mem_total, cpu_milli_free=cpu_free,
                      memory_bytes_free=mem_free, replicas_here=dict(replicas_here or {}),
                      used_host_ports=used_host_ports, uptime_s=uptime_s, price=price)


@dataclass
class Machine:
    machine_id: str
    auction: Auctioneer
    state: LocalState
    alive: bool = True

    def local(self) -> LocalState:
        return self.state


@dataclass
class Sent:
    """One action a machine returned, with when and who."""

    at: float
    machine: str
    action: Action


@dataclass
class Bus:
    """Machines sharing one fake clock and one pub/sub bus (optionally with latency)."""

    params: Params = field(default_factory=Params)
    latency_s: float = 0.0
    heard_late_s: float = 0.0  # what each machine's lateness meter reports
    now: float = 0.0
    machines: dict[str, Machine] = field(default_factory=dict)
    log: list[Sent] = field(default_factory=list)
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)  # task -> holder, expiry
    blocked: set[frozenset[str]] = field(default_factory=set)  # partitioned pairs
    refused: list[tuple[str, str]] = field(default_factory=list)  # (receiver, reason)
    _queue: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, machine_id: str, state: LocalState, seed: int | None = None,
            rng: random.Random | None = None) -> Machine:
        if rng is None:
            rng = random.Random(seed if seed is not None else len(self.machines) + 1)
        m = Machine(machine_id, Auctioneer(machine_id, rng, self.params,
                                        lambda _now: self.heard_late_s), state)
        self.machines[machine_id] = m
        return m

    def auction(self, machine_id: str) -> Auctioneer:
        return self.machines[machine_id].auction

    def live(self) -> list[Machine]:
        return [self.machines[n] for n in sorted(self.machines) if self.machines[n].alive]

    def crash(self, machine_id: str) -> None:
        self.machines[machine_id].alive = False

    def sent(self, kind: type, task_id: str | None = None) -> list[Sent]:
        return [s for s in self.log if isinstance(s.action, kind)
                and (task_id is None or getattr(s.action, "task_id", None) == task_id)]

    # ---- inputs ---------------------------------------------------------------------------

    def publish_task(self, task_id: str, req: TaskRequest) -> None:
        for m in self.live():
            self._run(m, m.auction.task(task_id, req, self.now, m.local))

    def deploy_result(self, machine_id: str, task_id: str, ok: bool, reason: str = "") -> None:
        m = self.machines[machine_id]
        self._run(m, m.auction.deploy_result(task_id, ok, reason, self.now))

    def run_until(self, until: float) -> None:
        """Fire every timer and delivery due up to `until` (in time order), then set now=until."""
        while True:
            due = [d for m in self.live() if (d := m.auction.next_deadline()) is not None]
            if self._queue:
                due.append(self._queue[0][0])
            t = min(due, default=None)
            if t is None or t > until:
                break
            self.now = max(self.now, t)
            while self._queue and self._queue[0][0] <= self.now:
                heapq.heappop(self._queue)[2]()
            for m in self.live():
                d = m.auction.next_deadline()
                if d is not None and d <= self.now:
                    self._run(m, m.auction.tick(self.now, m.local))
        self.now = max(self.now, until)

    # ---- plumbing ---------------------------------------------------------------------------

    def _run(self, src: Machine, actions: list[Action]) -> None:
        for action in actions:
            self.log.append(Sent(self.now, src.machine_id, action))
            if isinstance(action, WriteLease):
                self.leases[action.task_id] = (src.machine_id, self.now + action.ttl_s)
            elif isinstance(action, CheckLease):
                holder, expires = self.leases.get(action.task_id, (None, 0.0))
                live = holder if holder is not None and expires > self.now else None
                self._run(src, src.auction.lease_result(action.task_id, live, expires, self.now,
                                                        src.local))
            elif isinstance(action, PublishBid | PublishDeployed | PublishFailed):
                self._broadcast(src, action)
            # Deploy / DropDuplicate / Note: recorded only; tests answer Deploy via deploy_result().

    def _broadcast(self, src: Machine, action: Action) -> None:
        for dst in self.live():
            if dst is src or frozenset((src.machine_id, dst.machine_id)) in self.blocked:
                continue
            if self.latency_s > 0:
                at = self.now + self.latency_s
                heapq.heappush(self._queue, (at, next(self._seq),
                                             lambda s=src, d=dst, a=action: self._deliver(s, d, a)))
            else:
                self._deliver(src, dst, action)

    def _deliver(self, src: Machine, dst: Machine, action: Action) -> None:
        if not dst.alive:
            return
        au = dst.auction
        if isinstance(action, PublishBid):
            out = au.bid(action.task_id, action.round, action.score, src.machine_id, self.now,
                         dst.local)
        elif isinstance(action, PublishDeployed):
            try:
                out = au.deployed(action.task_id, src.machine_id, self.now)
            except wire.Rejected as e:  # the driver's caller counts it (machine/inbound)
                self.refused.append((dst.machine_id, e.reason))
                return
        else:
            assert isinstance(action, PublishFailed)
            out = au.failed(action.task_id, src.machine_id, action.reason, self.now, dst.local)
        self._run(dst, out)


def deploys(bus: Bus, task_id: str) -> list[str]:
    """Machines that were told to deploy `task_id`, in order."""
    return [s.machine for s in bus.sent(Deploy, task_id)]
