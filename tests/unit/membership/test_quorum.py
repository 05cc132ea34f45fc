"""Quorum: who counts as a member, majority and outnumbered, and how long each has held."""

from __future__ import annotations

from machine_records_testlib import FOUR, KEY_A, KEY_B, KEY_C, KEY_D, T0, lost, seen

from beemesh.membership.quorum import Quorum, Streak, has_majority, is_outnumbered
from beemesh.membership.view import MachineView

# --- membership and quorum ------------------------------------------------------------------

MEMORY_S = 600.0


def quorum(view: MachineView, now: float) -> tuple[tuple[int, int], bool, bool]:
    visible, known = view.membership(now, MEMORY_S)
    return (visible, known), has_majority(visible, known), is_outnumbered(visible, known)


def test_membership_all_visible() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    assert quorum(view, T0 + 1) == ((4, 4), True, False)


def test_three_of_four_keep_majority_lone_one_outnumbered() -> None:
    big, lone = MachineView(), MachineView()
    seen(big, FOUR, T0)
    seen(lone, FOUR, T0)
    # D is cut off: A, B and C keep hearing each other, D hears only itself.
    assert quorum(big, T0 + 9) == ((4, 4), True, False)  # no verdict on D yet
    lost(big, (KEY_D,), T0, T0 + 10)
    lost(lone, (KEY_A, KEY_B, KEY_C), T0, T0 + 10)
    assert quorum(big, T0 + 12) == ((3, 4), True, False)  # D still counts as a member
    assert quorum(lone, T0 + 12) == ((1, 4), False, True)


def test_lone_machine_not_outnumbered_while_it_sees_the_others() -> None:
    lone = MachineView()
    seen(lone, FOUR, T0)
    lost(lone, (KEY_B, KEY_C), T0, T0 + 10)
    assert quorum(lone, T0 + 12) == ((2, 4), False, False)


def test_even_split_nobody_has_majority_nobody_outnumbered() -> None:
    left, right = MachineView(), MachineView()
    seen(left, FOUR, T0)
    seen(right, FOUR, T0)
    lost(left, (KEY_C, KEY_D), T0, T0 + 10)
    lost(right, (KEY_A, KEY_B), T0, T0 + 10)
    for view in (left, right):
        assert quorum(view, T0 + 12) == ((2, 4), False, False)


def test_withdrawn_machine_no_longer_counts() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    view.withdraw(KEY_D.peer_id, T0 + 1, T0 + 1)
    assert quorum(view, T0 + 1) == ((3, 3), True, False)
    # Two of the remaining three vanish without withdrawing: A alone is outnumbered.
    lost(view, (KEY_B, KEY_C), T0, T0 + 10)
    assert quorum(view, T0 + 12) == ((1, 3), False, True)


def test_withdrawn_then_back_counts_again() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    view.withdraw(KEY_D.peer_id, T0 + 1, T0 + 1)
    seen(view, (KEY_D,), T0 + 2)
    assert view.membership(T0 + 3, MEMORY_S) == (4, 4)


def test_vanished_members_forgotten_after_memory() -> None:
    view = MachineView()
    seen(view, FOUR, T0)
    lost(view, (KEY_B, KEY_C, KEY_D), T0, T0 + 10)
    # B, C, D were declared dead at T0 + 10 and are remembered for MEMORY_S after that.
    assert view.membership(T0 + 10 + MEMORY_S - 1, MEMORY_S) == (1, 4)
    assert quorum(view, T0 + 10 + MEMORY_S - 1)[2] is True
    assert view.membership(T0 + 10 + MEMORY_S, MEMORY_S) == (1, 1)
    # Forgotten members no longer count: the survivor is a majority of one.
    assert quorum(view, T0 + 10 + MEMORY_S)[1:] == (True, False)


def test_memory_counts_from_the_verdict_and_a_machine_in_sight_never_lapses() -> None:
    view = MachineView()
    seen(view, (KEY_A, KEY_B), T0)
    lost(view, (KEY_B,), T0, T0 + 25)  # B declared dead at T0 + 25
    assert view.membership(T0 + 25 + 50, 60) == (1, 2)
    assert view.membership(T0 + 25 + 60, 60) == (1, 1)
    assert view.membership(T0 + 10 * 60, 60) == (1, 1)  # A: no news is good news


def test_empty_view_has_no_majority() -> None:
    view = MachineView()
    assert quorum(view, T0) == ((0, 0), False, False)




# --- the clocks --------------------------------------------------------------------------------


def test_streak_measures_an_unbroken_run_of_samples() -> None:
    streak = Streak()
    assert streak.update(False, T0) == 0.0
    assert streak.update(True, T0 + 1) == 0.0  # starts at the first sample that holds
    assert streak.update(True, T0 + 4) == 3.0
    assert streak.update(False, T0 + 5) == 0.0  # one sample without it breaks the run
    assert streak.update(True, T0 + 6) == 0.0
    assert streak.update(True, T0 + 16) == 10.0


def test_quorum_clocks_follow_a_partition_and_its_end() -> None:
    """D is cut off at T0 + 8: it is outnumbered from the verdicts on its peers, and its
    majority clock restarts from zero when the partition ends."""
    lone = MachineView()
    clock = Quorum(lone, MEMORY_S)
    seen(lone, FOUR, T0)
    s = clock.sample(T0 + 1)
    assert (s.majority, s.outnumbered, s.majority_for) == (True, False, 0.0)
    assert clock.sample(T0 + 9).majority_for == 8.0
    lost(lone, (KEY_A, KEY_B, KEY_C), T0, T0 + 10)
    s = clock.sample(T0 + 11)  # A, B, C declared dead at T0 + 10
    assert (s.visible, s.known, s.majority, s.outnumbered) == (1, 4, False, True)
    assert (s.majority_for, s.outnumbered_for) == (0.0, 0.0)
    assert clock.sample(T0 + 14).outnumbered_for == 3.0
    seen(lone, (KEY_A, KEY_B, KEY_C), T0 + 15)
    s = clock.sample(T0 + 15)
    assert (s.majority, s.outnumbered_for, s.majority_for) == (True, 0.0, 0.0)
    assert clock.sample(T0 + 17).majority_for == 2.0


def test_even_split_runs_neither_clock() -> None:
    left = MachineView()
    clock = Quorum(left, MEMORY_S)
    seen(left, FOUR, T0)
    lost(left, (KEY_C, KEY_D), T0, T0 + 10)
    for t in (T0 + 11, T0 + 14, T0 + 17):
        s = clock.sample(t)
        assert (s.majority_for, s.outnumbered_for, s.majority, s.outnumbered) == (
            0.0, 0.0, False, False)
