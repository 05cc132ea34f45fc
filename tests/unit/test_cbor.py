"""Strict CBOR: plain data decodes as cbor2 would; anything else is refused before it is built."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import cbor2
import pytest

from beemesh.cbor import INT64_MAX, INT64_MIN, MAX_DEPTH, CBORError, loads


def plain(rng: random.Random, depth: int = 0) -> Any:
    """A random value of the kinds Beemesh messages hold."""
    kinds = ["int", "bigint", "float", "str", "bytes", "bool", "none"]
    if depth < 4:
        kinds += ["list", "map"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-1000, 1000)
    if kind == "bigint":
        return rng.choice([INT64_MIN, INT64_MAX, 2**32, -(2**32) - 1, 23, 24, 255, 256])
    if kind == "float":
        return rng.choice([0.0, -1.5, 1e300, 3.25, 2.0**-20])
    if kind == "str":
        return "".join(rng.choice("aé🐝 \n\"") for _ in range(rng.randint(0, 8)))
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 40))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [plain(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}": plain(rng, depth + 1) for i in range(rng.randint(0, 4))}


def test_plain_data_round_trips_like_cbor2() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        value = plain(rng)
        data = cbor2.dumps(value, canonical=True)
        assert loads(data) == cbor2.loads(data) == value


def test_floats_of_every_width_decode() -> None:
    assert loads(b"\xf9\x3c\x00") == 1.0  # half
    assert loads(b"\xfa" + struct.pack(">f", 0.5)) == 0.5  # single
    assert loads(b"\xfb" + struct.pack(">d", -2.25)) == -2.25  # double


@pytest.mark.parametrize(("data", "said"), [
    pytest.param(cbor2.dumps(cbor2.CBORTag(35, "a+" * 1000)), "semantic tag 35", id="regex"),
    pytest.param(cbor2.dumps(10**400), "semantic tag 2", id="bignum"),
    pytest.param(cbor2.dumps(-(10**400)), "semantic tag 3", id="negative-bignum"),
    pytest.param(b"\xd8\x1c\x81\xd8\x1d\x00", "semantic tag 28", id="shared-reference-cycle"),
    pytest.param(cbor2.dumps(cbor2.CBORTag(4, [-2, 27315])), "semantic tag 4", id="decimal"),
    pytest.param(cbor2.dumps(cbor2.CBORTag(30, [1, 3])), "semantic tag 30", id="fraction"),
    pytest.param(cbor2.dumps(cbor2.CBORTag(258, [1, 2])), "semantic tag 258", id="set"),
    pytest.param(cbor2.dumps(cbor2.CBORTag(0, "2026-01-01T00:00:00Z")), "semantic tag 0",
                 id="datetime"),
    pytest.param(b"\xd9\xd9\xf7\x01", "semantic tag 55799", id="self-describe"),
    pytest.param(b"\x9f\x01\xff", "indefinite", id="indefinite-array"),
    pytest.param(b"\xbf\x61a\x01\xff", "indefinite", id="indefinite-map"),
    pytest.param(b"\x5f\x41a\xff", "indefinite", id="indefinite-bytes"),
    pytest.param(b"\x7f\x61a\xff", "indefinite", id="indefinite-text"),
    pytest.param(b"\xa2\x61a\x01\x61a\x02", "duplicate map key 'a'", id="duplicate-key"),
    pytest.param(b"\xa1\x01\x02", "map keys must be text", id="int-key"),
    pytest.param(b"\xa1\x80\x02", "map keys must be text", id="list-key"),
    pytest.param(b"\xf9\x7e\x00", "finite", id="half-nan"),
    pytest.param(b"\xfa\x7f\x80\x00\x00", "finite", id="single-inf"),
    pytest.param(b"\xfb" + struct.pack(">d", -math.inf), "finite", id="double-minus-inf"),
    pytest.param(b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", "beyond int64", id="uint64-max"),
    pytest.param(b"\x1b\x80\x00\x00\x00\x00\x00\x00\x00", "beyond int64", id="int64-max+1"),
    pytest.param(b"\x3b\x80\x00\x00\x00\x00\x00\x00\x00", "beyond int64", id="int64-min-1"),
    pytest.param(b"\xf7", "simple value 23", id="undefined"),
    pytest.param(b"\xf8\xff", "simple value 255", id="simple-255"),
    pytest.param(b"\xe0", "simple value 0", id="simple-0"),
    pytest.param(b"\x1c", "reserved", id="reserved-info"),
    pytest.param(b"\x62\xc3\x28", "UTF-8", id="bad-utf8"),
    pytest.param(b"", "truncated", id="empty"),
    pytest.param(b"\x19\x01", "truncated", id="truncated-int"),
    pytest.param(b"\x44ab", "beyond the end", id="truncated-bytes"),
    pytest.param(b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff", "beyond the end", id="huge-length"),
    pytest.param(b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff", "beyond the end", id="huge-array"),
    pytest.param(b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff", "beyond the end", id="huge-map"),
    pytest.param(b"\x01\x02", "1 bytes after the item", id="trailing"),
])
def test_refused(data: bytes, said: str) -> None:
    with pytest.raises(CBORError) as e:
        loads(data)
    assert said in str(e.value)


def test_boundaries_are_accepted() -> None:
    assert loads(cbor2.dumps(INT64_MAX)) == INT64_MAX
    assert loads(cbor2.dumps(INT64_MIN)) == INT64_MIN
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert loads(cbor2.dumps(deep)) == deep


def test_nesting_is_bounded() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CBORError, match="deeper"):
        loads(cbor2.dumps(deep))
    with pytest.raises(CBORError, match="deeper"):
        loads(b"\x81" * 100_000)  # never recursion depth: refused at the limit


def test_decoding_cost_does_not_depend_on_what_a_length_claims() -> None:
    """A claimed length is checked against what is left before anything is allocated."""
    for prefix in (b"\x5b", b"\x7b", b"\x9b", b"\xbb"):
        with pytest.raises(CBORError):
            loads(prefix + (2**62).to_bytes(8, "big"))
