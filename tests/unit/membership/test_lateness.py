"""Lateness: a backlog shows as lateness, clock offsets between machines do not."""

from __future__ import annotations

import pytest

from beemesh.membership.lateness import Lateness

T0 = 1_700_000_000.0


def test_on_time_messages_are_not_late() -> None:
    lateness = Lateness()
    for i in range(100):
        lateness.observe("a", T0 + i, T0 + i + 0.02)
    assert lateness.current(T0 + 100) == pytest.approx(0.0)


def test_clock_offset_is_absorbed() -> None:
    """A sender whose clock runs 8 s behind looks 8 s 'delayed' on every message, not late."""
    lateness = Lateness()
    for i in range(50):
        assert lateness.observe("slow-clock", T0 + i - 8, T0 + i + 0.01) == pytest.approx(0.0)
        lateness.observe("good-clock", T0 + i, T0 + i + 0.01)
    assert lateness.current(T0 + 50) == pytest.approx(0.0)


def test_backlog_is_late_and_recovery_clears_it() -> None:
    lateness = Lateness(window_s=15)
    for i in range(10):
        lateness.observe("a", T0 + i, T0 + i + 0.05)
    # A backlog: every message waits longer than the one before.
    for i in range(10, 20):
        lateness.observe("a", T0 + i, T0 + i + 0.05 + (i - 9) * 1.5)
    assert lateness.current(T0 + 35) == pytest.approx(15.0)
    # On time again: the late ones leave the window after window_s.
    for i in range(36, 60):
        lateness.observe("a", T0 + i, T0 + i + 0.05)
    assert lateness.current(T0 + 60) == pytest.approx(0.0)


def test_one_late_sender_among_on_time_ones_is_not_enough() -> None:
    """One sender late alone (its own queue, or a rogue signing records ever further behind:
    each newer than the last, within the skew) does not make the mesh late; most senders late
    (a backlog here delays them all) does."""
    lateness = Lateness()
    for s in ("a", "b", "c"):
        lateness.observe(s, T0, T0 + 0.1)
    for i in range(1, 10):  # "c" creeps: its signed time advances slower than the clock
        lateness.observe("c", T0 + i * 0.2, T0 + i + 0.1)
        lateness.observe("a", T0 + i, T0 + i + 0.1)
    assert lateness.current(T0 + 10) == pytest.approx(0.0)
    lateness.observe("b", T0 + 3, T0 + 9.1)  # now "b" is late too: two of three
    assert lateness.current(T0 + 10) == pytest.approx(6.0)


def test_a_lone_sender_heard_late_is_late() -> None:
    lateness = Lateness()
    lateness.observe("b", T0, T0 + 0.1)
    lateness.observe("b", T0 + 3, T0 + 9.1)
    assert lateness.current(T0 + 10) == pytest.approx(6.0)


def test_baseline_forgets_old_minima() -> None:
    """A sender's clock steps back 5 s (NTP): late for a while, then the new baseline holds."""
    lateness = Lateness(baseline_s=600, window_s=15)
    for i in range(0, 120, 3):
        lateness.observe("a", T0 + i, T0 + i + 0.1)
    assert lateness.observe("a", T0 + 120 - 5, T0 + 120.1) == pytest.approx(5.0)
    for i in range(123, 800, 3):
        lateness.observe("a", T0 + i - 5, T0 + i + 0.1)
    assert lateness.current(T0 + 800) == pytest.approx(0.0)


def test_senders_remembered_are_bounded() -> None:
    """Records from ever new keys cannot grow the table without end; the sender heard from
    least recently is forgotten first."""
    from beemesh.membership.lateness import MAX_SENDERS

    lateness = Lateness()
    for i in range(MAX_SENDERS + 10):
        lateness.observe(f"s{i}", T0 + i * 60, T0 + i * 60 + 0.01)
    assert len(lateness._minima) == MAX_SENDERS
    assert "s0" not in lateness._minima and f"s{MAX_SENDERS + 9}" in lateness._minima


def test_machines_that_sent_nothing_count_as_on_time() -> None:
    """A quiet fleet sends no records; a rogue signing ever further behind is then the only
    sender heard, and must not make this agent late for everyone."""
    quiet = Lateness(window_s=15, others=lambda: 4)
    alone = Lateness(window_s=15)
    for i in range(30):
        for lateness in (quiet, alone):
            lateness.observe("rogue", T0 + i * 0.001, T0 + i)  # its clock crawls
    assert alone.current(T0 + 30) > 20
    assert quiet.current(T0 + 30) == 0.0
    busy = Lateness(window_s=15, others=lambda: 4)
    for i in range(30):  # a backlog here: every sender heard, all late
        for s in ("a", "b", "c", "d"):
            busy.observe(s, T0 + i, T0 + i + (0 if i < 10 else i - 10))
    assert busy.current(T0 + 30) > 15
