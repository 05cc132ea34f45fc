"""Signed CBOR envelopes: sealing, and every reason the Verifier drops a message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
import pytest

from beemesh import schema, wire
from beemesh.identity import KeyPair

NOW = 1_700_000_000.0
MACHINE_A = KeyPair(b"\x01" * 32)
MACHINE_B = KeyPair(b"\x02" * 32)
OPERATOR = KeyPair(b"\x03" * 32)
STRANGER = KeyPair(b"\x04" * 32)

PING = wire.Kind(
    "Ping",
    wire.MACHINE,
    schema.Struct(
        required={"seq": int, "tags": schema.ListOf(str, max_len=3)},
        optional={"note": str},
    ),
)
DEPLOY = wire.Kind(
    "Deploy",
    wire.OPERATOR,
    schema.Struct(required={"name": str, "replicas": int}),
)
KINDS = {k.name: k for k in (PING, DEPLOY)}
PING_BODY: dict[str, Any] = {"seq": 7, "tags": ["a", "b"]}
DEPLOY_BODY: dict[str, Any] = {"name": "web", "replicas": 3}


def make_verifier(**kwargs: Any) -> wire.Verifier:
    return wire.Verifier(KINDS, lambda: {OPERATOR.public_key: "ops"}, **kwargs)


def rejected(verifier: wire.Verifier, data: bytes, now: float = NOW,
             origin: bytes | None = None) -> str:
    with pytest.raises(wire.Rejected) as e:
        verifier.check(data, now, origin)
    assert e.value.reason in wire.REJECT_REASONS
    assert str(e.value).startswith(e.value.reason + ": ")
    return e.value.reason


def raw_envelope(data: bytes) -> dict[str, Any]:
    raw = cbor2.loads(data)
    assert isinstance(raw, dict)
    return raw


def reencode(raw: Mapping[str, Any]) -> bytes:
    return cbor2.dumps(dict(raw), canonical=True)


def resign(key: KeyPair, raw: dict[str, Any]) -> bytes:
    """Re-sign an envelope whose fields were changed, so only the change is wrong."""
    signed = cbor2.dumps(
        [raw["v"], raw["kind"], raw["sender"], raw["ts"], raw["nonce"], raw["body"]],
        canonical=True,
    )
    return reencode({**raw, "sig": key.sign(signed)})


# --- round trip ---------------------------------------------------------------------------


def test_seal_check_round_trip() -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=b"n" * 16)
    env = make_verifier().check(data, NOW, origin=MACHINE_A.public_key)
    assert env.version == wire.VERSION
    assert env.kind == "Ping"
    assert env.sender == MACHINE_A.public_key
    assert env.ts_ms == int(NOW * 1000)
    assert env.nonce == b"n" * 16
    assert env.body == PING_BODY
    assert len(env.signature) == 64


def test_seal_operator_round_trip_any_origin() -> None:
    # Operator messages are relayed by machines: the pub/sub origin is not the signer.
    data = wire.seal(OPERATOR, "Deploy", DEPLOY_BODY, NOW)
    env = make_verifier().check(data, NOW, origin=MACHINE_B.public_key)
    assert env.body == DEPLOY_BODY
    assert env.sender == OPERATOR.public_key


def test_seal_envelope_shape() -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    raw = raw_envelope(data)
    assert set(raw) == {"v", "kind", "sender", "ts", "nonce", "body", "sig"}
    assert len(raw["nonce"]) == 16
    assert raw["ts"] == int(NOW * 1000)
    # Fresh random nonce each time.
    assert raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))["nonce"] != raw["nonce"]


def test_optional_body_field_accepted() -> None:
    data = wire.seal(MACHINE_A, "Ping", {**PING_BODY, "note": "hi"}, NOW)
    assert make_verifier().check(data, NOW).body["note"] == "hi"


def test_decode_does_not_check_signature() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw["sig"] = b"\x00" * 64
    env = wire.decode(reencode(raw))
    assert env.signature == b"\x00" * 64


# --- oversized ----------------------------------------------------------------------------


def test_oversized() -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    assert make_verifier(max_bytes=len(data)).check(data, NOW).kind == "Ping"  # at the cap
    assert rejected(make_verifier(max_bytes=len(data) - 1), data) == "oversized"


def test_oversized_default_cap() -> None:
    big = wire.seal(MACHINE_A, "Ping", {**PING_BODY, "note": "x" * 10}, NOW)
    padded = big + b"\x00" * (wire.MAX_ENVELOPE_BYTES + 1 - len(big))
    assert len(padded) == wire.MAX_ENVELOPE_BYTES + 1
    assert rejected(make_verifier(), padded) == "oversized"


# --- malformed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xff\xff", b"\x1f", b"garbage bytes here", b"\xa1"],
    ids=["empty", "ff", "1f", "text", "truncated-map"],
)
def test_malformed_garbage(data: bytes) -> None:
    assert rejected(make_verifier(), data) == "malformed"


@pytest.mark.parametrize("value", [[1, 2, 3], "a string", 42, b"bytes", None])
def test_malformed_not_a_map(value: Any) -> None:
    assert rejected(make_verifier(), cbor2.dumps(value)) == "malformed"


@pytest.mark.parametrize("field", ["v", "kind", "sender", "ts", "nonce", "body"])
def test_malformed_missing_field(field: str) -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    del raw[field]
    assert rejected(make_verifier(), reencode(raw)) == "malformed"


def test_malformed_extra_field() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw["extra"] = 1
    assert rejected(make_verifier(), reencode(raw)) == "malformed"


def test_malformed_extra_non_string_key() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    data = cbor2.dumps({**raw, 5: "x"})
    assert rejected(make_verifier(), data) == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", "1"),
        ("v", 1.0),
        ("v", True),  # bool where an int is expected
        ("kind", b"Ping"),
        ("kind", 1),
        ("sender", "not bytes"),
        ("ts", "now"),
        ("ts", 1.5),
        ("ts", False),
        ("nonce", "n" * 16),
        ("body", [1, 2]),
        ("body", "body"),
        ("sig", "sig"),
        ("sig", None),
    ],
)
def test_malformed_wrong_types(field: str, value: Any) -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw[field] = value
    assert rejected(make_verifier(), reencode(raw)) == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [("sender", b"\x01" * 31), ("sender", b"\x01" * 33), ("nonce", b"n" * 7),
     ("nonce", b"n" * 65), ("nonce", b"")],
)
def test_malformed_sizes(field: str, value: bytes) -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw[field] = value
    assert rejected(make_verifier(), reencode(raw)) == "malformed"


@pytest.mark.parametrize("size", [8, 64])
def test_nonce_size_bounds_accepted(size: int) -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=b"n" * size)
    assert make_verifier().check(data, NOW).nonce == b"n" * size


# --- version, kind, schema ----------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 99])
def test_version(version: int) -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw["v"] = version
    assert rejected(make_verifier(), resign(MACHINE_A, raw)) == "version"


def test_unknown_kind() -> None:
    data = wire.seal(MACHINE_A, "Pong", PING_BODY, NOW)
    assert rejected(make_verifier(), data) == "unknown_kind"


def test_kind_accepted_only_where_registered() -> None:
    data = wire.seal(OPERATOR, "Deploy", DEPLOY_BODY, NOW)
    only_ping = wire.Verifier({"Ping": PING}, lambda: {OPERATOR.public_key: "ops"})
    assert rejected(only_ping, data) == "unknown_kind"


@pytest.mark.parametrize(
    "body",
    [
        {"tags": []},  # missing field
        {"seq": 1, "tags": [], "extra": 1},  # extra field
        {"seq": "1", "tags": []},  # wrong type
        {"seq": True, "tags": []},  # bool is not an int
        {"seq": 1, "tags": ["a", "b", "c", "d"]},  # list too long
        {"seq": 1, "tags": [1]},  # wrong item type
        {"seq": 1, "tags": [], "note": 5},  # optional field of the wrong type
    ],
)
def test_schema(body: dict[str, Any]) -> None:
    data = wire.seal(MACHINE_A, "Ping", body, NOW)
    with pytest.raises(wire.Rejected) as e:
        make_verifier().check(data, NOW)
    assert e.value.reason == "schema"
    assert e.value.detail.startswith("body")


def test_schema_detail_names_field() -> None:
    data = wire.seal(MACHINE_A, "Ping", {"tags": []}, NOW)
    with pytest.raises(wire.Rejected) as e:
        make_verifier().check(data, NOW)
    assert e.value.detail == "body.seq: missing"


# --- signatures and trust -----------------------------------------------------------------


def test_unsigned() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    del raw["sig"]
    assert rejected(make_verifier(), reencode(raw)) == "unsigned"


def test_unsigned_empty_sig() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw["sig"] = b""
    assert rejected(make_verifier(), reencode(raw)) == "unsigned"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", {"seq": 8, "tags": ["a", "b"]}),
        ("ts", int(NOW * 1000) + 1),
        ("nonce", b"m" * 16),
        ("sender", MACHINE_B.public_key),
    ],
)
def test_bad_signature_after_alteration(field: str, value: Any) -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=b"n" * 16))
    raw[field] = value
    assert rejected(make_verifier(), reencode(raw)) == "bad_signature"


def test_bad_signature_other_key_same_sender() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    forged = resign(MACHINE_B, raw)  # signed by B, still claims to be A
    assert raw_envelope(forged)["sender"] == MACHINE_A.public_key
    assert rejected(make_verifier(), forged) == "bad_signature"


def test_bad_signature_garbage() -> None:
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW))
    raw["sig"] = b"\x00" * 64
    assert rejected(make_verifier(), reencode(raw)) == "bad_signature"


def test_bad_signature_on_operator_kind_from_trusted_sender() -> None:
    raw = raw_envelope(wire.seal(OPERATOR, "Deploy", DEPLOY_BODY, NOW))
    raw["body"] = {"name": "web", "replicas": 300}
    assert rejected(make_verifier(), reencode(raw)) == "bad_signature"


def test_untrusted_operator_kind() -> None:
    data = wire.seal(STRANGER, "Deploy", DEPLOY_BODY, NOW)
    assert rejected(make_verifier(), data) == "untrusted"
    # A machine key is not an operator key either.
    assert rejected(make_verifier(), wire.seal(MACHINE_A, "Deploy", DEPLOY_BODY, NOW)) == (
        "untrusted"
    )


def test_trust_list_is_consulted_on_every_check() -> None:
    trusted: dict[bytes, str] = {}
    verifier = wire.Verifier(KINDS, lambda: trusted)
    assert rejected(verifier, wire.seal(OPERATOR, "Deploy", DEPLOY_BODY, NOW)) == "untrusted"
    trusted[OPERATOR.public_key] = "ops"
    assert verifier.check(wire.seal(OPERATOR, "Deploy", DEPLOY_BODY, NOW), NOW).kind == "Deploy"
    trusted.clear()
    assert rejected(verifier, wire.seal(OPERATOR, "Deploy", DEPLOY_BODY, NOW)) == "untrusted"


def test_untrusted_machine_kind_relayed_under_other_name() -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    assert rejected(make_verifier(), data, origin=MACHINE_B.public_key) == "untrusted"
    # No origin known (e.g. a DHT value): the signature alone decides.
    assert make_verifier().check(data, NOW, origin=None).sender == MACHINE_A.public_key


# --- clock skew ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-31.0, 31.0, -3600.0, 3600.0])
def test_stale(offset: float) -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW + offset)
    assert rejected(make_verifier(), data) == "stale"


@pytest.mark.parametrize("offset", [-29.0, 29.0, 0.0, -30.0, 30.0])
def test_within_skew_ok(offset: float) -> None:
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW + offset)
    assert make_verifier().check(data, NOW).kind == "Ping"


def test_authenticate_ignores_clock() -> None:
    # Stored DHT values are authenticated without a freshness check.
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW - 10_000)
    assert make_verifier().authenticate(data).kind == "Ping"


# --- replay -------------------------------------------------------------------------------


def test_replayed_same_bytes() -> None:
    verifier = make_verifier()
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    verifier.check(data, NOW)
    assert rejected(verifier, data, now=NOW + 1) == "replayed"
    assert rejected(verifier, data, now=NOW + 29) == "replayed"


def test_replayed_same_nonce_different_body() -> None:
    verifier = make_verifier()
    verifier.check(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=b"n" * 16), NOW)
    again = wire.seal(MACHINE_A, "Ping", {"seq": 8, "tags": []}, NOW + 1, nonce=b"n" * 16)
    assert rejected(verifier, again, now=NOW + 1) == "replayed"


def test_same_nonce_other_sender_is_not_a_replay() -> None:
    verifier = make_verifier()
    verifier.check(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=b"n" * 16), NOW)
    other = wire.seal(MACHINE_B, "Ping", PING_BODY, NOW, nonce=b"n" * 16)
    assert verifier.check(other, NOW).sender == MACHINE_B.public_key


def test_replay_accepted_again_after_window() -> None:
    # A wide skew tolerance isolates the replay window from the freshness check.
    verifier = make_verifier(max_skew_s=10_000)
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    verifier.check(data, NOW)
    assert rejected(verifier, data, now=NOW + wire.REPLAY_WINDOW_S - 1) == "replayed"
    assert rejected(verifier, data, now=NOW + wire.REPLAY_WINDOW_S) == "replayed"
    assert verifier.check(data, NOW + wire.REPLAY_WINDOW_S + 1).kind == "Ping"
    assert rejected(verifier, data, now=NOW + wire.REPLAY_WINDOW_S + 2) == "replayed"


def test_replay_window_outlasts_clock_skew() -> None:
    """With default settings a message is stale before the replay cache can forget it."""
    assert wire.REPLAY_WINDOW_S > 2 * wire.MAX_CLOCK_SKEW_S
    verifier = make_verifier()
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW + 30)  # as early as allowed
    verifier.check(data, NOW)
    for later in (NOW + 30, NOW + 60, NOW + wire.REPLAY_WINDOW_S + 1):
        assert rejected(verifier, data, now=later) in ("replayed", "stale")


def test_authenticate_does_not_consume_replay_cache() -> None:
    verifier = make_verifier()
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    verifier.authenticate(data)
    verifier.authenticate(data)
    assert verifier.check(data, NOW).kind == "Ping"
    assert rejected(verifier, data) == "replayed"
    # authenticate() still accepts it: it never looks at the cache.
    assert verifier.authenticate(data).kind == "Ping"


def test_stale_message_not_recorded() -> None:
    verifier = make_verifier()
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    assert rejected(verifier, data, now=NOW + 100) == "stale"
    assert verifier.check(data, NOW).kind == "Ping"


@pytest.mark.parametrize("origin_mismatch", [True, False])
def test_rejected_messages_not_recorded(origin_mismatch: bool) -> None:
    verifier = make_verifier()
    nonce = b"n" * 16
    if origin_mismatch:
        data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=nonce)
        assert rejected(verifier, data, origin=MACHINE_B.public_key) == "untrusted"
    else:
        raw = raw_envelope(wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=nonce))
        raw["sig"] = b"\x00" * 64
        assert rejected(verifier, reencode(raw)) == "bad_signature"
    good = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW, nonce=nonce)
    assert verifier.check(good, NOW).nonce == nonce


def test_shared_replay_guard() -> None:
    guard = wire.ReplayGuard()
    data = wire.seal(MACHINE_A, "Ping", PING_BODY, NOW)
    make_verifier(replay=guard).check(data, NOW)
    assert rejected(make_verifier(replay=guard), data) == "replayed"


def test_replay_guard_window() -> None:
    guard = wire.ReplayGuard(window_s=10)
    assert guard.seen(b"s", b"n1", 100.0) is False
    assert guard.seen(b"s", b"n1", 105.0) is True
    assert guard.seen(b"s", b"n1", 110.0) is True
    assert guard.seen(b"s", b"n1", 110.5) is False  # forgotten, then remembered afresh
    assert guard.seen(b"s", b"n1", 111.0) is True


def test_replay_guard_bounded() -> None:
    guard = wire.ReplayGuard(max_entries=5)
    for i in range(50):
        assert guard.seen(b"s", bytes([i]), NOW) is False
        assert len(guard._seen) <= 5
    assert len(guard._seen) == 5
    # The newest are remembered, the oldest were evicted.
    assert guard.seen(b"s", bytes([49]), NOW) is True
    assert guard.seen(b"s", bytes([0]), NOW) is False


def test_replay_guard_default_bound() -> None:
    assert wire.ReplayGuard().max_entries == wire.MAX_REPLAY_ENTRIES
    assert make_verifier().replay.max_entries == wire.MAX_REPLAY_ENTRIES


# --- ordering of checks -------------------------------------------------------------------


def test_schema_checked_before_signature() -> None:
    # Cheap checks first: a bad body is a schema drop even though the signature is garbage.
    raw = raw_envelope(wire.seal(MACHINE_A, "Ping", {"seq": "x", "tags": []}, NOW))
    raw["sig"] = b"\x00" * 64
    assert rejected(make_verifier(), reencode(raw)) == "schema"


def test_rejected_carries_detail() -> None:
    e = wire.Rejected("stale", "timestamp 40 s away")
    assert e.reason == "stale"
    assert e.detail == "timestamp 40 s away"
    assert str(e) == "stale: timestamp 40 s away"
