"""Kubernetes resource quantities: cpu in millicores, memory in bytes, and back for messages.

Parsing rounds up, as Kubernetes does, and refuses anything beyond int64 so every amount stays
a plain integer in JSON and CBOR.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, NoReturn

from beemesh.manifest.checks import MAX_INT, Fail, ManifestError, describe

_QUANTITY = re.compile(r"\+?(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>.*)\Z")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+\Z")
_MEMORY_SUFFIX = {
    "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def _number(value: Any, path: str, what: str, fix: str, fail: Fail) -> tuple[Decimal, str]:
    """Split a Kubernetes quantity into (number, suffix); shared by cpu and memory."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        fail(path, f"{what} must be a quantity, got {describe(value)}", fix)
    if isinstance(value, float) and not math.isfinite(value):
        fail(path, f"{what} {value} is not a quantity", fix)
    if isinstance(value, int | float):
        if value < 0:
            fail(path, f"{what} must not be negative, got {value}", fix)
        return Decimal(repr(value)), ""
    match = _QUANTITY.match(value)
    if match is None:
        if value.strip().startswith("-"):
            fail(path, f"{what} must not be negative, got {value!r}", fix)
        fail(path, f"{what} {value!r} is not a quantity", fix)
    return Decimal(match["num"]), match["suffix"]


def _scale(number: Decimal, factor: int, path: str, what: str, shown: Any, fix: str,
           fail: Fail) -> int:
    """number * factor rounded up to an int, refusing anything beyond int64."""
    try:
        if number > MAX_INT:
            raise OverflowError
        result = (number * factor).to_integral_value(rounding=ROUND_CEILING)
        if result > MAX_INT:
            raise OverflowError
    except (ArithmeticError, InvalidOperation):
        fail(path, f"{what} {shown!r} is too large", fix)
    return int(result)


def _apply_exponent(number: Decimal, suffix: str) -> tuple[Decimal, str]:
    """Fold a decimal exponent ("1e3") into the number; clamped so huge ones just overflow."""
    if _EXPONENT.match(suffix):
        return number.scaleb(max(-100, min(100, int(suffix[1:])))), ""
    return number, suffix


def cpu_milli(value: Any, path: str, fail: Fail) -> int:
    """A CPU quantity in millicores, rounded up; errors go to fail."""
    fix = "use cores like 1.5 or millicores like 500m"
    number, suffix = _apply_exponent(*_number(value, path, "cpu", fix, fail))
    if suffix == "m":
        return _scale(number, 1, path, "cpu", value, fix, fail)
    if suffix == "":
        return _scale(number, 1000, path, "cpu", value, fix, fail)
    fail(path, f"cpu {value!r} is not a quantity", fix)


def memory_bytes(value: Any, path: str, fail: Fail) -> int:
    """A memory quantity in bytes, rounded up; errors go to fail."""
    fix = "use bytes with a suffix like 64Mi, 1Gi or 128M"
    number, suffix = _apply_exponent(*_number(value, path, "memory", fix, fail))
    if suffix == "m":
        fail(path, f"memory {value!r} means milli-bytes", f"did you mean {value[:-1]}Mi?")
    factor = _MEMORY_SUFFIX.get(suffix)
    if factor is None:
        fail(path, f"memory {value!r} is not a quantity", fix)
    return _scale(number, factor, path, "memory", value, fix, fail)


def _plain_fail(path: str | None, problem: str, fix: str) -> NoReturn:
    raise ManifestError(f"{path}: {problem}; {fix}" if path else f"{problem}; {fix}")


def parse_quantity_cpu(value: str | int | float, path: str) -> int:
    """CPU quantity in millicores, rounded up: "500m" -> 500, "1" -> 1000, 0.5 -> 500."""
    return cpu_milli(value, path, _plain_fail)


def parse_quantity_memory(value: str | int, path: str) -> int:
    """Memory quantity in bytes, rounded up: "64Mi", "1Gi", "128M", "1e3", "512Ki", "1k"."""
    return memory_bytes(value, path, _plain_fail)


def show_cpu(milli: int) -> str:
    """Millicores as the quantity a manifest would say: 250m."""
    return f"{milli}m"


def show_memory(size: int) -> str:
    """Bytes in the largest binary suffix that divides them: 64Mi, or plain bytes."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = _MEMORY_SUFFIX[suffix]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)
