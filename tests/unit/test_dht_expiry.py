"""Spent DHT values go (mesh/dht_expiry.py): the pure choice, and a real host's sweep."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import trio

from beemesh.identity import KeyPair
from beemesh.mesh import dht_expiry, host
from beemesh.mesh.host import HostSettings, MeshHost


@dataclass
class Record:  # what py-libp2p's ValueStore keeps (the part read here)
    value: bytes


class Until:
    """A validator whose values say when they expire: b"<unix time>"."""

    def validate(self, key: str, value: bytes) -> None:
        float(value)

    def select(self, key: str, values: list[bytes]) -> int:
        return 0

    def kept_until(self, key: str, value: bytes) -> float | None:
        return float(value)


def test_spent_values_by_their_namespace() -> None:
    store = {b"/t/old": (Record(b"100"), 1e12), b"/t/new": (Record(b"300"), 1e12),
             b"/other/x": (Record(b"100"), 1e12), b"/nons": (Record(b"100"), 1e12),
             b"\xff/t/x": (Record(b"100"), 1e12)}
    validators = {"t": Until(), "other": object()}
    assert dht_expiry.spent(store, validators, now=200) == [b"/t/old"]


def test_a_host_forgets_spent_values_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "FORGET_EVERY_S", 0.2)
    mesh = MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="cd" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/expiry",
                                 dht_validators={"t": Until()}))

    async def main() -> list[bytes]:
        async with mesh.running():
            now = time.time()
            for name, until in (("soon", now + 0.3), ("later", now + 3600)):
                with trio.move_on_after(2):  # no peers to store it at: it is kept here
                    await mesh.put(f"/t/{name}", str(until).encode())
            await trio.sleep(1.0)
            return sorted(mesh.dht.value_store.store)

    assert trio.run(main) == [b"/t/later"]
