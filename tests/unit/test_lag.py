"""DeliveryLag: a backlog shows as lateness, clock offsets between machines do not."""

from __future__ import annotations

import pytest

from beemesh.lag import DeliveryLag

T0 = 1_700_000_000.0


def test_on_time_messages_are_not_late() -> None:
    lag = DeliveryLag()
    for i in range(100):
        lag.observe("a", T0 + i, T0 + i + 0.02)
    assert lag.behind_s(T0 + 100) == pytest.approx(0.0)


def test_clock_offset_is_absorbed() -> None:
    """A sender whose clock runs 8 s behind looks 8 s 'delayed' on every message, not late."""
    lag = DeliveryLag()
    for i in range(50):
        assert lag.observe("slow-clock", T0 + i - 8, T0 + i + 0.01) == pytest.approx(0.0)
        lag.observe("good-clock", T0 + i, T0 + i + 0.01)
    assert lag.behind_s(T0 + 50) == pytest.approx(0.0)


def test_backlog_is_late_and_recovery_clears_it() -> None:
    lag = DeliveryLag(window_s=15)
    for i in range(10):
        lag.observe("a", T0 + i, T0 + i + 0.05)
    # A backlog: every message waits longer than the one before.
    for i in range(10, 20):
        lag.observe("a", T0 + i, T0 + i + 0.05 + (i - 9) * 1.5)
    assert lag.behind_s(T0 + 35) == pytest.approx(15.0)
    # On time again: the late ones leave the window after window_s.
    for i in range(36, 60):
        lag.observe("a", T0 + i, T0 + i + 0.05)
    assert lag.behind_s(T0 + 60) == pytest.approx(0.0)


def test_one_late_sender_is_enough() -> None:
    lag = DeliveryLag()
    lag.observe("a", T0, T0 + 0.1)
    lag.observe("b", T0, T0 + 0.1)
    lag.observe("b", T0 + 3, T0 + 9.1)
    assert lag.behind_s(T0 + 10) == pytest.approx(6.0)


def test_baseline_forgets_old_minima() -> None:
    """A sender's clock steps back 5 s (NTP): late for a while, then the new baseline holds."""
    lag = DeliveryLag(baseline_s=600, window_s=15)
    for i in range(0, 120, 3):
        lag.observe("a", T0 + i, T0 + i + 0.1)
    assert lag.observe("a", T0 + 120 - 5, T0 + 120.1) == pytest.approx(5.0)
    for i in range(123, 800, 3):
        lag.observe("a", T0 + i - 5, T0 + i + 0.1)
    assert lag.behind_s(T0 + 800) == pytest.approx(0.0)
