"""A mesh of machines that run Podman, each in its own network namespace, for fleet tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from beemesh.lab.localmesh import AgentProc, LocalMesh, wait_for


@contextmanager
def podman_mesh(prefix: str, logs: Path, machines: dict[str, list[str]]) -> Iterator[LocalMesh]:
    """`machines`: name -> extra agent arguments; the first is the others' bootstrap. Yields
    once every machine lists every other and has a working runtime; the agents' logs are
    copied to `logs` at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    mesh = LocalMesh.create(root)
    try:
        mesh.prepare_podmans(machines)
        seed = None
        for name, extra in machines.items():  # the others start side by side
            agent = mesh.start(name, podman=True, extra=extra, wait=seed is None,
                               bootstrap=[seed.addr] if seed is not None else None)
            seed = seed or agent
        ids = {a.peer_id for a in mesh.agents.values()}
        def ready(a: AgentProc) -> bool:
            for other in mesh.agents.values():  # started without waiting: fail at an exit
                other.ensure_alive()
            return a.api.exists() and a.node_ids() == ids and a.status()["runtime"] == "ok"

        for a in mesh.agents.values():
            wait_for(lambda a=a: ready(a), 120,
                     f"{a.name} to see all machines with a working runtime")
        yield mesh
    finally:
        mesh.close()
        for log in root.glob("*.log"):
            shutil.copyfile(log, logs / log.name)
        shutil.rmtree(root, ignore_errors=True)
