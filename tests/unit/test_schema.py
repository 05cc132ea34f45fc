"""Structural schemas for message bodies: types, required/optional fields, bounds, paths."""

from __future__ import annotations

from typing import Any

import pytest

from beemesh.schema import (
    INT64_MAX,
    INT64_MIN,
    MAX_STR,
    Int,
    ListOf,
    MapOf,
    SchemaError,
    Struct,
    check,
)

CAPACITY = Struct(
    required={"cpu_milli": int, "memory_bytes": int},
    optional={"cgroup": str},
)
RECORD = Struct(
    required={
        "name": str,
        "capacity": CAPACITY,
        "addrs": ListOf(str, max_len=2),
        "labels": MapOf(str, str, max_len=2),
    },
    optional={"cordoned": bool, "weight": float, "blob": bytes},
)
GOOD: dict[str, Any] = {
    "name": "m1",
    "capacity": {"cpu_milli": 4000, "memory_bytes": 1 << 30},
    "addrs": ["/ip4/1.2.3.4/tcp/4001"],
    "labels": {"zone": "a"},
}


def error(value: Any, sch: Any, path: str = "body") -> str:
    with pytest.raises(SchemaError) as e:
        check(value, sch, path)
    return str(e.value)


def test_schema_error_is_value_error() -> None:
    assert issubclass(SchemaError, ValueError)


def test_good_record() -> None:
    check(GOOD, RECORD)
    check({**GOOD, "cordoned": True, "weight": 1.5, "blob": b"\x00"}, RECORD)
    check({**GOOD, "capacity": {**GOOD["capacity"], "cgroup": "/x"}}, RECORD)


# --- scalars ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, INT64_MAX, INT64_MIN])
def test_int_ok(value: int) -> None:
    check(value, int)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10**400])
def test_int_beyond_int64_rejected(value: int) -> None:
    with pytest.raises(SchemaError, match="outside"):
        check(value, int)


def test_bounded_int() -> None:
    port = Int(0, 65535)
    check(0, port)
    check(65535, port)
    for bad in (-1, 65536):
        with pytest.raises(SchemaError, match=r"body: .* is outside \[0, 65535\]"):
            check(bad, port)
    with pytest.raises(SchemaError, match="expected an integer"):
        check(True, port)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, b"1"])
def test_int_rejects(value: Any) -> None:
    assert error(value, int) == "body: expected an integer"


@pytest.mark.parametrize("value", [0, 1.5, -2.25, 10**18, 1.7e9])
def test_float_ok(value: float) -> None:
    check(value, float)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300, 10**20])
def test_float_not_finite_or_huge_rejected(value: float) -> None:
    with pytest.raises(SchemaError, match="finite"):
        check(value, float)


@pytest.mark.parametrize("value", [True, False, "1.5", None])
def test_float_rejects(value: Any) -> None:
    assert error(value, float) == "body: expected a number"


def test_str_ok_up_to_max() -> None:
    check("", str)
    check("x" * MAX_STR, str)


@pytest.mark.parametrize("value", ["x" * (MAX_STR + 1), b"x", 1, None])
def test_str_rejects(value: Any) -> None:
    assert error(value, str) == f"body: expected a string of at most {MAX_STR} characters"


def test_bytes() -> None:
    check(b"", bytes)
    check(b"\x00\xff", bytes)
    assert error("abc", bytes) == "body: expected bytes"
    assert error(bytearray(b"abc"), bytes) == "body: expected bytes"
    assert error([1], bytes) == "body: expected bytes"


def test_bool() -> None:
    check(True, bool)
    check(False, bool)
    assert error(1, bool) == "body: expected bool"
    assert error(0, bool) == "body: expected bool"
    assert error("true", bool) == "body: expected bool"
    assert error(None, bool) == "body: expected bool"


def test_unknown_schema_is_programming_error() -> None:
    with pytest.raises(TypeError):
        check(1, complex)


# --- structs ------------------------------------------------------------------------------


def test_struct_not_a_map() -> None:
    assert error([1], CAPACITY) == "body: expected a map"
    assert error(None, CAPACITY) == "body: expected a map"


def test_struct_missing_required() -> None:
    assert error({"cpu_milli": 1}, CAPACITY) == "body.memory_bytes: missing"


def test_struct_unexpected_field() -> None:
    value = {"cpu_milli": 1, "memory_bytes": 2, "gpu": 1}
    assert error(value, CAPACITY) == "body.gpu: unexpected field"


def test_struct_optional_absent_ok_present_checked() -> None:
    check({"cpu_milli": 1, "memory_bytes": 2}, CAPACITY)
    value = {"cpu_milli": 1, "memory_bytes": 2, "cgroup": 5}
    assert error(value, CAPACITY).startswith("body.cgroup: expected a string")


def test_nested_path_names() -> None:
    bad = {**GOOD, "capacity": {"cpu_milli": "4", "memory_bytes": 1}}
    assert error(bad, RECORD) == "body.capacity.cpu_milli: expected an integer"
    bad = {**GOOD, "capacity": {"cpu_milli": True, "memory_bytes": 1}}
    assert error(bad, RECORD) == "body.capacity.cpu_milli: expected an integer"
    bad = {**GOOD, "capacity": {"cpu_milli": 1}}
    assert error(bad, RECORD) == "body.capacity.memory_bytes: missing"
    bad = {**GOOD, "capacity": {"cpu_milli": 1, "memory_bytes": 1, "x": 0}}
    assert error(bad, RECORD) == "body.capacity.x: unexpected field"


def test_custom_root_path() -> None:
    assert error({"cpu_milli": 1}, CAPACITY, "msg") == "msg.memory_bytes: missing"


def test_struct_default_optional_is_empty() -> None:
    s = Struct(required={"a": int})
    assert s.optional == {}
    assert error({"a": 1, "b": 2}, s) == "body.b: unexpected field"


# --- lists and maps -----------------------------------------------------------------------


def test_list_ok_and_max_len() -> None:
    check([], ListOf(int, max_len=2))
    check([1, 2], ListOf(int, max_len=2))
    assert error([1, 2, 3], ListOf(int, max_len=2)) == (
        "body: expected a list of at most 2 items"
    )


def test_list_default_max_len() -> None:
    assert ListOf(int).max_len == 256
    check([0] * 256, ListOf(int))
    assert error([0] * 257, ListOf(int)) == "body: expected a list of at most 256 items"


def test_list_rejects_non_list() -> None:
    assert error((1, 2), ListOf(int)) == "body: expected a list of at most 256 items"
    assert error("ab", ListOf(str)) == "body: expected a list of at most 256 items"


def test_list_item_path() -> None:
    assert error([1, 2, "3"], ListOf(int)) == "body[2]: expected an integer"
    bad = {**GOOD, "addrs": ["ok", 5]}
    assert error(bad, RECORD).startswith("body.addrs[1]: expected a string")


def test_map_ok_and_max_len() -> None:
    check({}, MapOf(str, int, max_len=2))
    check({"a": 1, "b": 2}, MapOf(str, int, max_len=2))
    assert error({"a": 1, "b": 2, "c": 3}, MapOf(str, int, max_len=2)) == (
        "body: expected a map of at most 2 entries"
    )
    assert MapOf(str, int).max_len == 256


def test_map_rejects_non_map() -> None:
    assert error([("a", 1)], MapOf(str, int)) == "body: expected a map of at most 256 entries"


def test_map_key_and_value_paths() -> None:
    assert error({1: 1}, MapOf(str, int)).startswith("body key: expected a string")
    assert error({"a": "x"}, MapOf(str, int)) == "body['a']: expected an integer"
    bad = {**GOOD, "labels": {"zone": 1}}
    assert error(bad, RECORD).startswith("body.labels['zone']: expected a string")


def test_deeply_nested() -> None:
    sch = Struct(required={"items": ListOf(Struct(required={"tags": MapOf(str, ListOf(int))}))})
    check({"items": [{"tags": {"a": [1, 2]}}]}, sch)
    value = {"items": [{"tags": {"a": [1]}}, {"tags": {"b": [1, False]}}]}
    assert error(value, sch) == "body.items[1].tags['b'][1]: expected an integer"
