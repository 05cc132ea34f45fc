"""A peer's signed peer record is checked once per REVERIFY_S, not on every pub/sub RPC
(beemesh/mesh/sender_records.py): same bytes from the same peer pass unchecked, anything
else is checked in full, a failure is never remembered."""

from __future__ import annotations

from dataclasses import dataclass

import libp2p.pubsub.gossipsub
import libp2p.pubsub.pubsub

from beemesh.mesh import sender_records
from beemesh.mesh.sender_records import REVERIFY_S, SenderRecords


@dataclass
class Msg:
    senderRecord: bytes = b""

    def HasField(self, name: str) -> bool:
        return name == "senderRecord" and bool(self.senderRecord)


class Check:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str]] = []
        self.bad: set[bytes] = set()

    def __call__(self, msg: Msg, _host: object, peer: str) -> bool:
        self.calls.append((msg.senderRecord, peer))
        return msg.senderRecord not in self.bad


def make() -> tuple[SenderRecords, Check, list[float]]:
    check, now = Check(), [1000.0]
    return SenderRecords(check, clock=lambda: now[0]), check, now


def test_the_same_record_from_the_same_peer_is_checked_once() -> None:
    records, check, _ = make()
    assert all(records(Msg(b"rec-a"), None, "peer-a") for _ in range(5))
    assert check.calls == [(b"rec-a", "peer-a")]
    assert records.skipped == 4


def test_another_peer_or_changed_bytes_are_checked_in_full() -> None:
    records, check, _ = make()
    records(Msg(b"rec-a"), None, "peer-a")
    records(Msg(b"rec-a"), None, "peer-b")  # peer-b replays peer-a's record
    records(Msg(b"rec-a2"), None, "peer-a")  # peer-a's addresses changed
    assert check.calls == [(b"rec-a", "peer-a"), (b"rec-a", "peer-b"), (b"rec-a2", "peer-a")]


def test_a_failed_record_is_checked_every_time_and_forgets_the_good_one() -> None:
    records, check, _ = make()
    check.bad = {b"forged"}
    assert records(Msg(b"good"), None, "p")
    assert not records(Msg(b"forged"), None, "p")
    assert not records(Msg(b"forged"), None, "p")
    assert records(Msg(b"good"), None, "p")
    assert len(check.calls) == 4


def test_a_record_is_checked_again_after_the_reverify_interval() -> None:
    records, check, now = make()
    records(Msg(b"r"), None, "p")
    now[0] += REVERIFY_S - 1
    records(Msg(b"r"), None, "p")
    now[0] += 2
    records(Msg(b"r"), None, "p")
    assert len(check.calls) == 2


def test_an_rpc_without_a_record_passes_and_memory_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(sender_records, "MAX_PEERS", 3)
    records, check, _ = make()
    assert records(Msg(), None, "p")
    for i in range(10):
        records(Msg(b"r"), None, f"p{i}")
    assert list(records.passed) == ["p7", "p8", "p9"] and check.calls[0] == (b"r", "p0")


def test_install_wraps_the_check_where_pubsub_and_gossipsub_call_it() -> None:
    wrapper = sender_records.install()
    assert sender_records.install() is wrapper
    assert libp2p.pubsub.pubsub.maybe_consume_signed_record is wrapper
    assert libp2p.pubsub.gossipsub.maybe_consume_signed_record is wrapper
