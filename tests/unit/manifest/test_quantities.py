"""Kubernetes quantities (beemesh.manifest.quantities): cpu and memory, and their errors."""

from __future__ import annotations

from typing import Any

import pytest
from manifest_testlib import MI, assert_one_line

from beemesh.manifest import ManifestError, parse_quantity_cpu, parse_quantity_memory

# --- quantities -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "milli"),
    [
        ("500m", 500), ("1", 1000), (1, 1000), (0.5, 500), ("1.5", 1500), ("0", 0), (0, 0),
        ("2.25", 2250), ("0.1", 100), (0.1, 100), ("100m", 100), ("1e1", 10000),
        ("0.0001", 1), ("+2", 2000), (".5", 500),
    ],
)
def test_cpu_quantities(value: str | int | float, milli: int) -> None:
    assert parse_quantity_cpu(value, "cpu") == milli


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("64Mi", 64 * MI), ("1Gi", 1024**3), ("128M", 128 * 10**6), ("1G", 10**9),
        ("1000", 1000), (1000, 1000), ("1e3", 1000), ("1E3", 1000), ("512Ki", 512 * 1024),
        ("1k", 1000), ("1.5Gi", 3 * 512 * MI), ("1Ti", 1024**4), ("1E", 10**18),
        ("1Ei", 2**60), ("0", 0), ("0.5", 1),
    ],
)
def test_memory_quantities(value: str | int, size: int) -> None:
    assert parse_quantity_memory(value, "memory") == size


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("lots", "is not a quantity"), ("-1", "must not be negative"),
        (-0.5, "must not be negative"), ("1Gi", "is not a quantity"), ("", "is not a quantity"),
        (True, "must be a quantity"), (None, "must be a quantity"), ([1], "must be a quantity"),
        (float("nan"), "is not a quantity"), ("1e999", "too large"), ("1 m", "is not a quantity"),
    ],
)
def test_bad_cpu_quantities(value: Any, problem: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_quantity_cpu(value, "x.cpu")
    assert_one_line(exc, "x.cpu: ", problem)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("12XB", "is not a quantity"), ("64MB", "is not a quantity"),
        ("-64Mi", "must not be negative"), (-1, "must not be negative"),
        ("lots", "is not a quantity"), ("128m", "milli-bytes"), ("Mi", "is not a quantity"),
        ("99999999Ei", "too large"), (False, "must be a quantity"),
    ],
)
def test_bad_memory_quantities(value: Any, problem: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_quantity_memory(value, "x.memory")
    assert_one_line(exc, "x.memory: ", problem)


def test_memory_milli_suffix_suggests_mi() -> None:
    with pytest.raises(ManifestError, match="did you mean 128Mi"):
        parse_quantity_memory("128m", "m")
