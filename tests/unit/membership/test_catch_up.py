"""catch_up: what to pull from a peer's digest, and the codec refusing what is not it."""

from __future__ import annotations

import cbor2
import pytest

from beemesh.membership.catch_up import (
    BARE_ASK,
    MAX_WANTED,
    Digest,
    DigestAsk,
    DigestError,
    decode_digest,
    decode_records,
    decode_request,
    encode_digest,
    encode_records,
    encode_request,
    plan,
)

ME = "me"


def test_wants_what_is_newer_or_unknown_and_not_what_it_holds_gone() -> None:
    mine = Digest({ME: 50, "a": 10, "b": 20}, {"dead": 30})
    theirs = Digest({ME: 50, "a": 11, "b": 20, "c": 5, "dead": 30, "back": 40}, {})
    todo = plan(mine, theirs, ME, 50)
    assert todo.wanted == ["a", "back", "c"]  # b: same; dead: not newer than the verdict
    assert todo.announce is False


@pytest.mark.parametrize(("theirs", "announce"), [
    (Digest({}, {ME: 50}), True), (Digest({}, {ME: 40}), True),  # held dead
    (Digest({ME: 50}, {ME: 40}), False),  # back already
    (Digest({}, {}), False), (Digest({ME: 49}, {}), False)])  # merely lacking: it pulls
def test_announces_again_only_when_the_peer_holds_this_machine_dead(
        theirs: Digest, announce: bool) -> None:
    assert plan(Digest({ME: 50}, {}), theirs, ME, 50).announce is announce


@pytest.mark.parametrize(("ask", "above"), [
    (DigestAsk(50, -1), None),  # holds the current record
    (DigestAsk(49, -1), None),  # an older one: it pulls the current one from the digest
    (DigestAsk(-1, -1), None),  # none: likewise
    (DigestAsk(-1, 50), 50),  # dead at the current record: sign a newer one
    (DigestAsk(-1, 40), 40),  # dead before it, and the current one not there
    (DigestAsk(50, 40), None),  # back already
    (BARE_ASK, None)])  # an older agent says nothing
def test_the_asked_machine_announces_again_when_the_asker_holds_it_dead(
        ask: DigestAsk, above: int | None) -> None:
    assert ask.announce_above(50) == above


def test_never_wants_more_than_one_request_carries() -> None:
    theirs = Digest({f"p{i:04d}": 1 for i in range(MAX_WANTED + 10)}, {})
    assert len(plan(Digest({}, {}), theirs, ME, 1).wanted) == MAX_WANTED


def test_round_trips() -> None:
    d = Digest({"a": 1}, {"b": 2})
    assert decode_digest(encode_digest(d)) == d
    assert decode_request(encode_request(BARE_ASK)) == BARE_ASK
    assert decode_request(encode_request(DigestAsk(5, -1))) == DigestAsk(5, -1)
    assert decode_request(encode_request(["a", "b"])) == ["a", "b"]
    assert decode_records(encode_records([b"x", b"y"])) == [b"x", b"y"]


@pytest.mark.parametrize("data", [
    b"\xff", cbor2.dumps([1]), cbor2.dumps({"held": {}}), cbor2.dumps({"held": [], "gone": {}}),
    cbor2.dumps({"held": {"a": -1}, "gone": {}}), cbor2.dumps({"held": {"a": 1.5}, "gone": {}}),
    cbor2.dumps({"held": {"a": True}, "gone": {}}),
    cbor2.dumps({"held": {"x" * 200: 1}, "gone": {}}),
    cbor2.dumps({"held": {}, "gone": {}, "more": 1}),
    cbor2.dumps(cbor2.CBORTag(258, [1]))])
def test_a_digest_that_is_not_one_is_refused(data: bytes) -> None:
    with pytest.raises(DigestError):
        decode_digest(data)


@pytest.mark.parametrize("data", [
    b"", cbor2.dumps({"digest": False}), cbor2.dumps({"want": "a"}),
    cbor2.dumps({"want": [1]}), cbor2.dumps({"want": ["a"] * (MAX_WANTED + 1)}),
    cbor2.dumps({"want": [], "digest": True}), cbor2.dumps({"digest": True, "held": 1}),
    cbor2.dumps({"digest": True, "held": -2, "gone": -1}),
    cbor2.dumps({"digest": True, "held": 1.5, "gone": -1}),
    cbor2.dumps({"digest": True, "held": True, "gone": -1}),
    cbor2.dumps({"digest": True, "held": 1, "gone": -1, "more": 1})])
def test_a_request_that_is_not_one_is_refused(data: bytes) -> None:
    with pytest.raises(DigestError):
        decode_request(data)


@pytest.mark.parametrize("data", [cbor2.dumps({"a": 1}), cbor2.dumps(["text"]),
                                  cbor2.dumps([b"x"] * (MAX_WANTED + 1))])
def test_records_that_are_not_a_list_of_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(DigestError):
        decode_records(data)
