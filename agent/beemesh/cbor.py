"""Strict CBOR decoding for everything that arrives from the network or from disk (sans-IO).

cbor2 builds whatever a message describes before anyone checks a signature: semantic tags
(regular expressions, Decimal, Fraction, sets, bignums of any size, shared references that
make cycles), indefinite lengths, duplicate map keys. Beemesh's messages need none of that, so
this decoder accepts only plain data and refuses the rest before building anything big:

- integers within int64; floats (16, 32, 64 bit) that are finite; true, false, null;
- byte and UTF-8 text strings, arrays and maps of definite length, map keys that are text and
  unique, at most `max_depth` levels deep;
- nothing after the top-level item.

Everything else raises `CBORError` (a ValueError) naming what was refused. Encoding stays
cbor2's (canonical): what we encode ourselves is plain data.
"""

from __future__ import annotations

import math
import struct
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 16

_HALF = struct.Struct(">e")
_SINGLE = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")


class CBORError(ValueError):
    """Bytes that are not the plain CBOR Beemesh accepts; the text says what was refused."""


def loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """One plain CBOR item, the whole of `data`."""
    decoder = _Decoder(bytes(data), max_depth)
    value = decoder.item(0)
    if decoder.pos != len(decoder.data):
        raise CBORError(f"{len(decoder.data) - decoder.pos} bytes after the item")
    return value


class _Decoder:
    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise CBORError("truncated")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def _head(self) -> tuple[int, int, int]:
        """(major type, additional info, argument)."""
        if self.pos >= len(self.data):
            raise CBORError("truncated")
        initial = self.data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info == 24:
            return major, info, self._take(1)[0]
        if info == 25:
            return major, info, int.from_bytes(self._take(2), "big")
        if info == 26:
            return major, info, int.from_bytes(self._take(4), "big")
        if info == 27:
            return major, info, int.from_bytes(self._take(8), "big")
        if info == 31:
            raise CBORError("indefinite lengths are refused")
        raise CBORError(f"reserved additional information {info}")

    def _length(self, n: int, unit: int = 1) -> int:
        """A definite length, no larger than what is left (each item takes at least `unit`)."""
        if n * unit > len(self.data) - self.pos:
            raise CBORError("length beyond the end of the data")
        return n

    def item(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise CBORError(f"nested deeper than {self.max_depth} levels")
        major, info, arg = self._head()
        if major == 0:
            if arg > INT64_MAX:
                raise CBORError("integer beyond int64")
            return arg
        if major == 1:
            if arg > INT64_MAX:
                raise CBORError("integer beyond int64")
            return -1 - arg
        if major == 2:
            return self._take(self._length(arg))
        if major == 3:
            raw = self._take(self._length(arg))
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CBORError("text string is not UTF-8") from None
        if major == 4:
            return [self.item(depth + 1) for _ in range(self._length(arg))]
        if major == 5:
            out: dict[str, Any] = {}
            for _ in range(self._length(arg, 2)):
                key = self.item(depth + 1)
                if not isinstance(key, str):
                    raise CBORError("map keys must be text")
                if key in out:
                    raise CBORError(f"duplicate map key {key[:40]!r}")
                out[key] = self.item(depth + 1)
            return out
        if major == 6:
            raise CBORError(f"semantic tag {arg} is refused")
        return self._simple(info, arg)

    def _simple(self, info: int, arg: int) -> Any:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info in (25, 26, 27):
            fmt = {25: _HALF, 26: _SINGLE, 27: _DOUBLE}[info]
            value = fmt.unpack(arg.to_bytes(fmt.size, "big"))[0]
            if not math.isfinite(value):
                raise CBORError("floats must be finite")
            return value
        raise CBORError(f"simple value {arg} is refused")
