"""Reservations: what this machine has promised to tasks, against its capacity."""

from __future__ import annotations

import pytest

from beemesh.node.capacity import Capacity
from beemesh.node.reservations import Reservations

GIB = 1 << 30


def small() -> Capacity:
    return Capacity(cpu_milli=2000, memory_bytes=4 * GIB, memory_available_bytes=GIB, cgroup="v2")


def test_reservations_fit_and_refuse() -> None:
    res = Reservations(small())
    assert res.reserve("a", 1500, GIB)
    assert res.free() == (500, 3 * GIB)
    assert not res.reserve("b", 600, GIB)  # cpu does not fit
    assert not res.reserve("c", 100, 4 * GIB)  # memory does not fit
    assert "b" not in res and "c" not in res
    assert res.reserve("d", 500, 3 * GIB)  # exactly fills
    assert res.free() == (0, 0)
    assert len(res) == 2


def test_reservations_release() -> None:
    res = Reservations(small())
    assert res.reserve("a", 2000, 4 * GIB)
    assert not res.reserve("b", 1, 0)
    assert res.release("a")
    assert not res.release("a")
    assert res.free() == (2000, 4 * GIB)
    assert res.reserve("b", 1, 0)


def test_reservations_replace_and_explicit_capacity() -> None:
    res = Reservations()
    cap = small()
    assert res.reserve("a", 1000, GIB, cap)
    assert res.reserve("a", 2000, 2 * GIB, cap)  # judged net of the old reservation
    assert not res.reserve("a", 2001, GIB, cap)
    assert res.reserved() == (2000, 2 * GIB)  # failed replace keeps the old one
    assert res.free(cap) == (0, 2 * GIB)
    with pytest.raises(ValueError):
        res.reserve("x", -1, 0, cap)
