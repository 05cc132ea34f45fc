"""Sealed copies arriving at the machine that waits for them (podconfig.holding.SecretCopies),
over an in-memory stand-in for the mesh: what it keeps, what it refuses, how it waits."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

from beemesh import wire
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.identity import KeyPair
from beemesh.manifest.config import SecretSpec
from beemesh.metrics import Metrics
from beemesh.podconfig.holding import SECRET_WANT, SecretCopies
from beemesh.podconfig.sealing import Opened, digest, digest_key, seal

OPERATOR, MACHINE = KeyPair.generate(), KeyPair.generate()
KEY = digest_key(OPERATOR, "secret/default/db")
VALUES = {"pw": b"s3cret"}
SPEC = SecretSpec("db", "default", (), "Opaque", ("pw",), digest(KEY, VALUES))


class Mesh:
    """Records what is published; streams are fed by the test."""

    def __init__(self) -> None:
        self.published: list[wire.Envelope] = []

    def handle(self, _protocol: str, _handler: Any) -> None:
        pass

    async def publish(self, _topic: str, data: bytes) -> None:
        self.published.append(wire.decode(data))


class Stream:
    def __init__(self, payload: dict[str, Any]) -> None:
        data = cbor2.dumps(payload)
        self.data = struct.pack(">I", len(data)) + data

    async def read(self, n: int) -> bytes:
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk

    async def close(self) -> None:
        pass


class Store:
    def secret(self, namespace: str, name: str) -> SecretSpec | None:
        return SPEC if (namespace, name) == ("default", "db") else None


class Tasks:
    def task_spec(self, _task_id: str) -> None:
        return None

    def picked(self, _task_id: str) -> frozenset[str]:
        return frozenset()


def copies(tmp_path: Path, mesh: Mesh) -> SecretCopies:
    return SecretCopies(key=MACHINE, mesh=mesh, secrets=Store(),  # type: ignore[arg-type]
                        tasks=Tasks(), directory=tmp_path / "secrets", events=EventLog(),
                        metrics=Metrics(), used=lambda: {"secret/default/db"})


def box(values: dict[str, bytes] = VALUES, key: bytes = KEY) -> dict[str, Any]:
    return {"secret": "secret/default/db", "digest": SPEC.digest,
            "box": seal(Opened(key, values), MACHINE.public_key)}


def test_a_wanted_copy_is_kept_and_every_waiting_deploy_gets_it(tmp_path: Path) -> None:
    trio.run(a_wanted_copy_is_kept, tmp_path)


async def a_wanted_copy_is_kept(tmp_path: Path) -> None:
    mesh = Mesh()
    held = copies(tmp_path, mesh)
    got: list[Opened] = []

    async def wait() -> None:
        got.append(await held.opened(SPEC, "t1", wait_s=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        nursery.start_soon(wait)
        await trio.sleep(0.05)
        assert mesh.published and mesh.published[0].kind == SECRET_WANT.name
        assert mesh.published[0].body == {"machine": MACHINE.peer_id,
                                          "secret": "secret/default/db",
                                          "digest": SPEC.digest, "task_id": "t1"}
        await held._receive(Stream(box()))
    assert [o.values for o in got] == [VALUES, VALUES]
    kept = list((tmp_path / "secrets").glob("*.cbor"))
    assert len(kept) == 1 and b"s3cret" not in kept[0].read_bytes()
    again = copies(tmp_path, Mesh())
    again.load()  # an agent restart finds it, still sealed
    assert again.local(SPEC) == Opened(KEY, VALUES)
    again.forget_unused(set())  # no pod here uses it any more: gone
    assert again.local(SPEC) is None and not list((tmp_path / "secrets").glob("*.cbor"))


def test_unwanted_and_forged_copies_are_refused(tmp_path: Path) -> None:
    trio.run(unwanted_and_forged_copies_are_refused, tmp_path)


async def unwanted_and_forged_copies_are_refused(tmp_path: Path) -> None:
    held = copies(tmp_path, Mesh())
    await held._receive(Stream(box()))  # nobody waits for it
    assert held.local(SPEC) is None
    held._waiting[("secret/default/db", SPEC.digest)] = (trio.Event(), 1)
    await held._receive(Stream(box({"pw": b"evil"}, bytes(32))))  # a rogue holder's values
    await held._receive(Stream({"secret": "secret/default/db", "digest": SPEC.digest,
                                "box": b"\x00" * 64}))
    await held._receive(Stream({"nonsense": 1}))
    assert held.local(SPEC) is None and not (tmp_path / "secrets").exists()


def test_a_deploy_that_gets_no_copy_fails_with_the_fix(tmp_path: Path) -> None:
    held = copies(tmp_path, Mesh())
    with pytest.raises(UserError, match="no copy of secret/default/db reached this machine"):
        trio.run(held.opened, SPEC, "t1", 0.1)
    assert held._waiting == {}  # a copy arriving now is not wanted
