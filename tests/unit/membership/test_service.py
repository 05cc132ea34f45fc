"""`Membership.on_message`, the sync part of the membership service, with a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from machine_records_testlib import KEY_A, KEY_B, T0, envelope

from beemesh import wire
from beemesh.config import AgentConfig
from beemesh.events import EventLog
from beemesh.files import WriteBehind
from beemesh.identity import KeyPair
from beemesh.membership.lateness import Lateness
from beemesh.membership.liveness import Dead
from beemesh.membership.service import Membership
from beemesh.membership.view import MachineView
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics


def membership(tmp_path: Path) -> tuple[Membership, MachineView, Lateness]:
    view, lateness = MachineView(), Lateness()
    drops: list[tuple[str, str, str, str]] = []

    def on_drop(*args: Any) -> None:
        drops.append(args)

    m = Membership(key=KEY_A, cfg=AgentConfig(state_dir=tmp_path), mesh=cast(MeshHost, None),
                   view=view, metrics=Metrics(), authenticate=lambda _: None,  # type: ignore
                   on_drop=on_drop, files=WriteBehind(), lateness=lateness, events=EventLog())
    return m, view, lateness


def signed(key: KeyPair, ts: float) -> tuple[wire.Envelope, bytes]:
    env = envelope(key, ts)
    return env, wire.encode(env)


def test_feeding_lateness_with_stale_records(tmp_path: Path) -> None:
    """A record the view refuses (older than the one it holds: a replay, or a record held
    back on purpose) never times the mesh; only accepted records do."""
    m, view, lateness = membership(tmp_path)
    m.on_message(*signed(KEY_B, T0), T0 + 0.01)
    assert view.get(KEY_B.peer_id) is not None
    for i in range(1, 20):  # a rogue relays B's older records, each 25 s late
        m.on_message(*signed(KEY_B, T0 - i), T0 + 25)
    assert lateness.current(T0 + 25) == 0.0
    assert view.get(KEY_B.peer_id).ts == T0  # type: ignore[union-attr]
    m.on_message(*signed(KEY_B, T0 + 1), T0 + 1.02)  # a fresh record still times it
    assert 0 < lateness.current(T0 + 1.02) < 0.05


def test_a_verdict_and_a_return_are_events(tmp_path: Path) -> None:
    """`beemesh events` tells an operator when a machine was declared dead and when it came
    back, not only the agent's log."""
    m, view, _ = membership(tmp_path)
    m.on_message(*signed(KEY_B, T0), T0 + 0.01)
    m._act([Dead(KEY_B.peer_id, round(T0 * 1000))], T0 + 6)
    assert view.get(KEY_B.peer_id) is None
    m.on_message(*signed(KEY_B, T0), T0 + 7)  # the same record again: still dead
    assert view.get(KEY_B.peer_id) is None
    m.on_message(*signed(KEY_B, T0 + 8), T0 + 8.01)
    assert [(e.kind, e.machine) for e in m.events.since(0)] == [
        ("MachineDead", KEY_B.peer_id), ("MachineBack", KEY_B.peer_id)]
    m.on_message(*signed(KEY_B, T0 + 9), T0 + 9.01)  # back already: no second event
    assert len(m.events.since(0)) == 2
