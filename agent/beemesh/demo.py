"""`beemesh demo`: a local 3-machine mesh on loopback, for a first look (`make run`)."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

from beemesh.localmesh import LocalMesh, wait_for
from beemesh.output import emit


def run_demo(machines: int, workdir: Path | None) -> int:
    from beemesh.cli import NODE_COLUMNS

    root = workdir or Path(tempfile.mkdtemp(prefix="beemesh-demo-"))
    mesh = LocalMesh.create(root)
    print(f"[demo] state, logs and sockets under {root}")
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        seed = mesh.start("machine-1", extra=["--labels", "zone=a"])
        print(f"[demo] machine-1 up: {seed.peer_id}")
        for i in range(2, machines + 1):
            a = mesh.start(f"machine-{i}", bootstrap=[seed.addr],
                           extra=["--labels", f"zone={'ab'[i % 2]}"])
            print(f"[demo] machine-{i} up: {a.peer_id}")
        expected = {a.peer_id for a in mesh.agents.values()}
        print(f"[demo] waiting for all {machines} machines to see each other ...")
        wait_for(lambda: all(a.node_ids() == expected for a in mesh.agents.values()), 30,
                 "the machines to find each other")
        print(f"[demo] beemesh nodes --api {seed.api}")
        emit(seed.nodes(), NODE_COLUMNS, "table")
        print(f"[demo] try: BEEMESH_API={seed.api} beemesh nodes -o json")
        print("[demo] running; press Ctrl-C to stop")
        while not stop and all(a.alive() for a in mesh.agents.values()):
            time.sleep(0.2)
    finally:
        print("[demo] stopping agents ...")
        mesh.close()
        print("[demo] stopped")
    return 0
