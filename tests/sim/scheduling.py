"""Scheduling at scale: a burst of tasks auctioned by the real `Auctioneer` on every
participating machine, scored by the real `scoring.score`, over the engine's gossip model.

Design:
- A fleet of machines of varied capacity: cpu and memory totals drawn from a few sizes, free
  amounts 10-100 % of them, four sites, 10 % with a GPU label, 15 % aarch64, uptime and price
  random. Deploying a task takes its cpu and memory and adds a replica of its workload there,
  so later auctions of the burst see the fleet as it fills.
- A burst: `tasks` tasks (10 workloads, varied requests; a fifth ask for a site, a tenth for a
  GPU) published one every `spacing_s` by one machine and reaching each participant after the
  gossip hops of the fleet. Bids and Deployed go the same way. Lease hints (WriteLease and
  CheckLease) use one shared table with no delay (the DHT is not modelled). A deploy succeeds
  `deploy_s` after Deploy (container starts are not modelled).
- Who takes part: up to `full_limit` machines, every machine hears every task (the real
  thing). Above it the O(N)-per-task part is cut down: every machine's eligibility and score
  are still computed with the real functions (that is also the omniscient best fit), but only
  the `candidates` best-scoring eligible machines run the auction for that task. A worse
  machine bids later (its delay grows as its score falls), so once a better bid has reached
  it it stays silent; the result says how far down the candidate list the last bidder was
  (`lowest_bidder_rank`), and the truncation is safe only when that is well inside the list.
- Figures: placement latency (publication -> the first Deploy), bids per task (PublishBid
  actions), placement quality (the deployed score / the best score of any eligible machine at
  publication), tasks deployed on more than one machine, and whether every task was placed.
"""

from __future__ import annotations

import functools
import random
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

from beemesh import wire
from beemesh.scheduling.actions import (
    Action,
    CheckLease,
    Deploy,
    DropDuplicate,
    PublishBid,
    PublishDeployed,
    PublishFailed,
    WriteLease,
)
from beemesh.scheduling.auction import Auctioneer, Params
from beemesh.scheduling.scoring import LocalState, TaskRequest, ineligible_reason, score
from sim.engine import Net, Queue, hops, percentile

GIB = 2**30
MIB = 2**20
INF = float("inf")
SITES = ("berlin", "porto", "oslo", "riga")


def _timers(a: Auctioneer, task_id: str) -> tuple[Any, ...] | None:
    """What of a task's auction can move `next_deadline` (a bid that changes none of it needs
    no new tick: the simulator's shortcut, the auction is not changed)."""
    st = a.tasks.get(task_id)
    return None if st is None else (st.phase, st.round, st.bid_at, st.window_end, st.deadline,
                                    st.recheck_at, st.renew_at)


def make_fleet(n: int, rng: random.Random) -> dict[str, LocalState]:
    states: dict[str, LocalState] = {}
    for i in range(n):
        mid = f"s{i:06d}"
        cpu = rng.choice((2000, 4000, 8000, 16000))
        mem = rng.choice((2, 4, 8, 16, 32)) * GIB
        labels = {"site": rng.choice(SITES)}
        if rng.random() < 0.1:
            labels["gpu"] = "yes"
        states[mid] = LocalState(
            arch="aarch64" if rng.random() < 0.15 else "x86_64", labels=labels, cordoned=False,
            runtime_ok=True, cpu_milli_total=cpu, memory_bytes_total=mem,
            cpu_milli_free=int(cpu * rng.uniform(0.1, 1.0)),
            memory_bytes_free=int(mem * rng.uniform(0.1, 1.0)),
            uptime_s=rng.uniform(0, 7200), price=rng.random(), machine=mid)
    return states


def make_tasks(count: int, rng: random.Random) -> list[tuple[str, TaskRequest]]:
    tasks = []
    for i in range(count):
        w = i % 10
        selector: dict[str, str] = {}
        if w in (1, 2):
            selector["site"] = SITES[w]
        if w == 3:
            selector["gpu"] = "yes"
        req = TaskRequest(workload_id=f"w{w}", cpu_milli=rng.choice((100, 250, 500, 1000, 2000)),
                          memory_bytes=rng.choice((128, 256, 512, 1024, 4096)) * MIB,
                          arch="x86_64" if w == 4 else None, node_selector=selector,
                          host_ports=[], ordinal=i // 10)
        tasks.append((f"task-{i:03d}", req))
    return tasks


class Burst:
    def __init__(self, n: int, seed: int, tasks: int = 50, full_limit: int = 2000,
                 candidates: int = 1000, spacing_s: float = 0.01, deploy_s: float = 0.5,
                 latency_ms: float = 20.0) -> None:
        self.n, self.seed = n, seed
        rng = random.Random(seed)
        self.states = make_fleet(n, rng)
        self.ids = list(self.states)
        self.tasks = make_tasks(tasks, rng)
        self.requests = dict(self.tasks)
        self.full = n <= full_limit
        self.candidates = candidates
        self.spacing_s, self.deploy_s = spacing_s, deploy_s
        self.net = Net(seed, latency_ms=latency_ms)
        self.q = Queue()
        self.params = Params()
        self.auction: dict[str, Auctioneer] = {}
        self.local = {m: functools.partial(self._local, m) for m in self.ids}
        self.running: dict[tuple[str, int, str], set[str]] = defaultdict(set)  # from records
        self._sched: dict[str, float] = {}
        self.part: dict[str, list[str]] = {}  # task -> machines taking part
        self.rank: dict[str, dict[str, int]] = {}  # task -> machine -> rank by score
        self.published: dict[str, float] = {}
        self.best: dict[str, int | None] = {}
        self.eligible: dict[str, int] = {}
        self.bids: Counter[str] = Counter()
        self.bidders: dict[str, set[str]] = defaultdict(set)
        self.deploys: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
        self.dropped: Counter[str] = Counter()
        self.leases: dict[str, tuple[str, float]] = {}
        self.refused: Counter[str] = Counter()
        self.early_bids = 0  # bid deliveries that reached a machine before the task did

    def _auctioneer(self, m: str) -> Auctioneer:
        a = self.auction.get(m)
        if a is None:
            rng = random.Random(f"{self.seed}/{m}")
            a = self.auction[m] = Auctioneer(m, rng, self.params)
            self._sched[m] = INF
        return a

    def run(self, until_s: float = 30.0) -> dict[str, Any]:
        publisher = self.ids[0]
        for i, (task_id, req) in enumerate(self.tasks):
            self.q.push(i * self.spacing_s, ("publish", task_id, req, publisher))
        for at, ev in self.q.pop_until(until_s):
            self._event(at, ev)
        return self.figures()

    def _event(self, at: float, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "publish":
            _, task_id, req, src = ev
            self._publish(at, task_id, req, src)
        elif kind == "task":
            _, task_id, m = ev
            req = self.requests[task_id]
            self._act(m, self._auctioneer(m).task(task_id, req, at, self.local[m]))
        elif kind == "tick":
            m = ev[1]
            if self._sched[m] != at:
                return
            self._sched[m] = INF
            self._act(m, self.auction[m].tick(at, self.local[m]))
        elif kind == "bid":
            _, task_id, round_, s, src, r = ev
            a = self._auctioneer(r)
            if task_id not in a.tasks:
                self.early_bids += 1  # the auction drops it: the task has not reached r yet
            before = _timers(a, task_id)
            out = a.bid(task_id, round_, s, src, at, self.local[r])
            if out or _timers(a, task_id) != before:
                self._act(r, out)
        elif kind == "deployed":
            _, task_id, src, r = ev
            try:
                self._act(r, self._auctioneer(r).deployed(task_id, src, at))
            except wire.Rejected as e:
                self.refused[e.reason] += 1
        elif kind == "deploy_done":
            _, m, task_id = ev
            self._act(m, self.auction[m].deploy_result(task_id, True, "", at))
            self._record(m, task_id, +1)
        elif kind == "record":
            _, m, key, sign = ev
            if sign > 0:
                self.running[key].add(m)
            else:
                self.running[key].discard(m)

    def _publish(self, at: float, task_id: str, req: TaskRequest, src: str) -> None:
        """Publication: the omniscient view (every machine's real score), then who takes part."""
        self.published[task_id] = at
        scored = []
        for m, st in self.states.items():
            if ineligible_reason(req, st) is None:
                scored.append((score(req, st), m))
        scored.sort(reverse=True)
        self.best[task_id] = scored[0][0] if scored else None
        self.eligible[task_id] = len(scored)
        self.rank[task_id] = {m: i for i, (_, m) in enumerate(scored)}
        part = self.ids if self.full else [m for _, m in scored[:self.candidates]]
        self.part[task_id] = part
        gossip_n = self.n
        self.q.push_many([(at + (0.0 if m == src else self.net.gossip_s(gossip_n)),
                            ("task", task_id, m)) for m in part])

    def _wake(self, m: str) -> None:
        nd = self.auction[m].next_deadline()
        if nd is not None and nd < self._sched[m]:
            nd = max(nd, self.q.now)
            self._sched[m] = nd
            self.q.push(nd, ("tick", m))

    def _broadcast(self, task_id: str, src: str, ev: tuple[Any, ...]) -> None:
        now, n, gossip = self.q.now, self.n, self.net.gossip_s
        self.q.push_many([(now + gossip(n), (*ev, r)) for r in self.part[task_id] if r != src])

    def _act(self, m: str, actions: list[Action]) -> None:
        now = self.q.now
        a = self.auction[m]
        for act in actions:
            if isinstance(act, PublishBid):
                self.bids[act.task_id] += 1
                self.bidders[act.task_id].add(m)
                self._broadcast(act.task_id, m, ("bid", act.task_id, act.round, act.score, m))
            elif isinstance(act, Deploy):
                req = self.requests[act.task_id]
                self.deploys[act.task_id].append((now, m, act.score))
                self._reserve(m, req, +1)
                self.q.push(now + self.deploy_s, ("deploy_done", m, act.task_id))
            elif isinstance(act, PublishDeployed):
                self._broadcast(act.task_id, m, ("deployed", act.task_id, m))
            elif isinstance(act, DropDuplicate):
                self.dropped[act.task_id] += 1
                self._reserve(m, self.requests[act.task_id], -1)
                self._record(m, act.task_id, -1)
            elif isinstance(act, WriteLease):
                self.leases[act.task_id] = (m, now + act.ttl_s)
            elif isinstance(act, CheckLease):
                holder, expires = self.leases.get(act.task_id, (None, 0.0))
                live = holder if holder is not None and expires > now else None
                self._act(m, a.lease_result(act.task_id, live, expires, now, self.local[m]))
            elif isinstance(act, PublishFailed):
                raise AssertionError("deploys do not fail in this model")
        self._wake(m)

    def _local(self, m: str) -> LocalState:
        """The machine's own state, plus the replicas other machines' records say they run."""
        st = self.states[m]
        elsewhere = frozenset(k for k, ms in self.running.items() if ms - {m})
        return replace(st, running_elsewhere=elsewhere) if elsewhere else st

    def _record(self, m: str, task_id: str, sign: int) -> None:
        """m's record lists (or no longer lists) the replica: everyone knows after one
        broadcast (one delay for all: the simulator's shortcut)."""
        req = self.requests[task_id]
        key = (req.workload_id, req.ordinal, req.template)
        self.q.push(self.q.now + self.net.gossip_s(self.n), ("record", m, key, sign))

    def _reserve(self, m: str, req: TaskRequest, sign: int) -> None:
        st = self.states[m]
        here = dict(st.replicas_here)
        here[req.workload_id] = here.get(req.workload_id, 0) + sign
        ordinals = (st.ordinals_here | {(req.workload_id, req.ordinal)} if sign > 0
                    else st.ordinals_here - {(req.workload_id, req.ordinal)})
        self.states[m] = replace(st, cpu_milli_free=st.cpu_milli_free - sign * req.cpu_milli,
                                 memory_bytes_free=st.memory_bytes_free
                                 - sign * req.memory_bytes,
                                 replicas_here=here, ordinals_here=frozenset(ordinals))

    def figures(self) -> dict[str, Any]:
        latency, quality, lowest = [], [], []
        placed = duplicates = 0
        for task_id, _ in self.tasks:
            deps = self.deploys.get(task_id, [])
            if deps:
                placed += 1
                latency.append(deps[0][0] - self.published[task_id])
                best = self.best[task_id]
                if best:
                    quality.append(deps[0][2] / best)
            if len({m for _, m, _ in deps}) > 1:
                duplicates += 1
            ranks = [self.rank[task_id].get(m, -1) for m in self.bidders[task_id]]
            if ranks:
                lowest.append(max(ranks))
        bids = [self.bids[t] for t, _ in self.tasks]
        return {"machines": self.n, "tasks": len(self.tasks), "placed": placed,
                "mode": "full" if self.full else f"top-{self.candidates} candidates",
                "gossip_hops": hops(self.n, self.net.degree),
                "latency_s_p50": percentile(latency, 50), "latency_s_p99": percentile(latency, 99),
                "bids_per_task_mean": sum(bids) / len(bids), "bids_per_task_max": max(bids),
                "bids_per_task_p50": percentile([float(b) for b in bids], 50),
                "quality_mean": sum(quality) / len(quality) if quality else None,
                "quality_min": min(quality, default=None),
                "within_5pct": sum(q >= 0.95 for q in quality),
                "duplicate_deployments": duplicates, "duplicates_dropped": sum(
                    self.dropped.values()),
                "eligible_per_task_p50": percentile([float(e) for e in self.eligible.values()],
                                                    50),
                "lowest_bidder_rank": max(lowest, default=None), "refused": dict(self.refused),
                "bids_before_task": self.early_bids}
