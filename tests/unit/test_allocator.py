"""allocator.give_back_loop: trims after start and then each minute; nothing without
malloc_trim; on this machine's glibc the real function is found."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from beemesh import allocator


def run_for(seconds: float) -> bool:
    """True when the loop returned by itself within `seconds` (of a mock clock)."""
    async def main() -> bool:
        with trio.move_on_after(seconds) as scope:
            await allocator.give_back_loop()
        return not scope.cancelled_caught
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_trims_after_start_then_every_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Trim:
        argtypes: tuple[object, ...] = ()

        def __call__(self, pad: int) -> int:
            calls.append(pad)
            return 1
    monkeypatch.setattr(allocator, "_malloc_trim", Trim)
    assert not run_for(allocator.FIRST_S + 2 * allocator.EVERY_S + 1)
    assert calls == [0, 0, 0]


def test_without_malloc_trim_it_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_malloc_trim", lambda: None)
    assert run_for(3600)


def test_glibc_has_it() -> None:
    assert allocator._malloc_trim() is not None
