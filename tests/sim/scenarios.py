"""The membership scenarios: idle traffic (with and without loss), killed machines, and a 50/50
partition followed by a heal. Each builds a fresh `Fleet` (same seed: same ring, same links)
and returns plain figures for the table and the JSON.

Measurements start after a warm-up of `WARMUP_S` so the first probes of every machine (which
all start within one probe period) do not count.
"""

from __future__ import annotations

import math
import random
from typing import Any

from beemesh.membership.liveness import Params, ring_key
from sim.engine import Net, hops, percentile
from sim.membership import T0, Fleet, diff, snapshot
from sim.wiresize import sizes

WARMUP_S = 3.0


def _fleet(size: int, fleet: int, seed: int, params: Params, loss: float = 0.0,
           latency_ms: float = 20.0) -> Fleet:
    return Fleet(size, fleet, Net(seed, latency_ms=latency_ms, loss=loss), params, seed)


def idle(size: int, fleet: int, seed: int, params: Params, loss: float,
         seconds: float) -> dict[str, Any]:
    """Nothing fails on purpose; `loss` of the probes and acks are lost."""
    f = _fleet(size, fleet, seed, params, loss)
    f.run(WARMUP_S)
    before = snapshot(f.counts)
    f.run(WARMUP_S + seconds)
    c = diff(f.counts, before)
    targets = {t for _, _, t in f.false_dead}
    machine_hours = size * seconds / 3600
    return {"loss": loss, "seconds": seconds, "machines": size,
            "per_machine_per_s": f.per_machine_s(c, seconds),
            "accusations": c.accusations, "refutations": c.refutes, "confirms": c.confirms,
            "lost_messages": c.lost, "refused": dict(c.refused),
            "false_dead_verdicts": len(f.false_dead), "false_dead_machines": len(targets),
            "false_dead_machines_per_machine_hour": len(targets) / machine_hours,
            "accusations_per_machine_hour": c.accusations / machine_hours}


def kill(size: int, fleet: int, seed: int, params: Params, k: int,
         cap_s: float = 60.0) -> dict[str, Any]:
    """Kill `k` machines at once (silently); time until every live machine has the verdict."""
    f = _fleet(size, fleet, seed, params)
    f.run(WARMUP_S)
    victims = random.Random(seed + 1).sample(f.ids, k)
    for m in victims:
        f.kill(m)
    live = [m for m in f.ids if f.up[m]]
    t = WARMUP_S
    while t < WARMUP_S + cap_s and not all(len(f.dead[v]) >= len(live) for v in victims):
        t += 0.5
        f.run(t)
    times = []
    for v in victims:
        seen = [f.dead[v].get(m) for m in live]
        if all(s is not None for s in seen):
            times.append(max(s for s in seen if s is not None) - T0 - WARMUP_S)
    return {"killed": k, "all_detected": len(times) == k,
            "detect_s_p50": percentile(times, 50), "detect_s_max": max(times, default=None),
            "false_dead_verdicts": len(f.false_dead),
            "gossip_hops": hops(fleet, f.net.degree)}


def broken_link(size: int, fleet: int, seed: int, params: Params,
                seconds: float = 30.0) -> dict[str, Any]:
    """One monitor cannot reach one of its targets (a firewall, a NAT gone wrong) while every
    other link and the mesh work: what that costs the fleet."""
    f = _fleet(size, fleet, seed, params)
    f.run(WARMUP_S)
    monitor = f.ids[0]
    target = f.live[monitor].targets()[0]
    f.net.broken.add(frozenset((monitor, target)))
    before = snapshot(f.counts)
    f.run(WARMUP_S + seconds)
    c = diff(f.counts, before)
    return {"seconds": seconds, "accusations": c.accusations, "refutations": c.refutes,
            "broadcasts_per_s": c.broadcasts / seconds,
            "receptions_per_machine_per_s": c.broadcasts / seconds * f.net.degree,
            "target_dead_anywhere": len(f.dead[target]) > 0,
            "false_dead_verdicts": len(f.false_dead)}


def partition(size: int, fleet: int, seed: int, params: Params, changed_share: float = 0.0,
              cap_s: float = 240.0, heal_cap_s: float = 60.0) -> dict[str, Any]:
    """Cut the fleet into two random halves; then heal and count what coming back costs.
    `changed_share` of the machines publish a new record (their pods changed) during the cut."""
    f = _fleet(size, fleet, seed, params)
    f.run(WARMUP_S)
    order = f.ids[:]
    random.Random(seed + 2).shuffle(order)
    side = {m: (0 if i < size // 2 else 1) for i, m in enumerate(order)}
    members = {s: [m for m in f.ids if side[m] == s] for s in (0, 1)}
    crossed: dict[str, set[str]] = {m: set() for m in f.ids}
    done: dict[str, float] = {}
    same_side_dead: list[tuple[str, str]] = []

    def on_dead(observer: str, target: str, now: float) -> None:
        if side[observer] == side[target]:
            same_side_dead.append((observer, target))
            return
        crossed[observer].add(target)
        if len(crossed[observer]) == len(members[1 - side[observer]]):
            done.setdefault(observer, now - T0 - WARMUP_S)

    f.on_dead = on_dead
    f.net.partition(side)
    t = WARMUP_S
    while t < WARMUP_S + cap_s and len(done) < size:
        t += 1.0
        f.run(t)
    changed = random.Random(seed + 3).sample(f.ids, int(changed_share * size))
    for m in changed:
        f.announce(m)
    f.run(t + 1.0)
    declared = {s: max((done[m] for m in members[s] if m in done), default=None)
                if all(m in done for m in members[s]) else None for s in (0, 1)}
    # ---- heal ----
    f.on_dead = None
    f.net.heal()
    heal_at = f.now()
    before = snapshot(f.counts)
    republished = list(dict.fromkeys(f.confirms_log))
    for accuser, target, inc in republished:
        f.counts.confirms += 1
        f.broadcast(accuser, ("accuse", accuser, target, inc, True))
    whole_at = None
    t = heal_at
    while t < heal_at + heal_cap_s:
        t += 0.25
        f.run(t)
        if all(len(f.live[m].live()) == size - 1 for m in f.ids):
            whole_at = t - heal_at
            break
    c = diff(f.counts, before)
    missing = sum(size - 1 - len(f.live[m].live()) for m in f.ids)
    size_b = sizes()
    scale = fleet / size  # fleet-wide broadcasts per window broadcast
    per_machine_msgs = c.broadcasts * scale * f.net.degree
    per_machine_bytes = ((c.accusations + c.confirms) * size_b["accuse"]
                         + c.refutes * size_b["record"]) * scale * f.net.degree
    return {"declared_other_side_dead_s": declared,
            "same_side_false_dead": len(same_side_dead),
            "longest_same_side_run": _longest_run(f, side),
            "expected_longest_run_at_fleet": round(math.log2(fleet), 1),
            "heal_whole_again_s": whole_at,
            "heal_broadcasts_window": {"confirms_republished": c.confirms,
                                       "refutations": c.refutes,
                                       "accusations": c.accusations},
            "heal_broadcasts_fleet": c.broadcasts * scale,
            "heal_receptions_per_machine": per_machine_msgs,
            "heal_mb_per_machine": per_machine_bytes / 2**20,
            "false_dead_after_heal": len(f.false_dead),
            "changed_during_cut": len(changed),
            "still_dead_somewhere_after_heal": missing}


def _longest_run(f: Fleet, side: dict[str, int]) -> int:
    """Longest run of same-side machines on the ring (what paces the partition's verdicts)."""
    ring = sorted(f.ids, key=lambda p: (ring_key(p), p))
    best = run = 0
    prev = None
    for p in ring + ring:
        run = run + 1 if side[p] == prev else 1
        prev = side[p]
        best = max(best, min(run, len(ring)))
    return best
