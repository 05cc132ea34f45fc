"""Probe bookkeeping (beemesh.probes) driven with a fake clock: kubelet rules, one per test."""

from __future__ import annotations

import pytest

from beemesh.manifest import ContainerSpec, ProbeSpec
from beemesh.node.health import ContainerHealth, Outcome, PodHealth, RestartBackoff

S, F, U = Outcome.SUCCESS, Outcome.FAILURE, Outcome.UNKNOWN


def probe(**timing: int) -> ProbeSpec:
    return ProbeSpec(action="tcp", port=80, **timing)


def run(health: ContainerHealth, which: str, outcomes: list[Outcome], now: float) -> float:
    """Start and report `which` once per outcome, each when it is due; returns the time after."""
    for outcome in outcomes:
        limit = now + 1000
        while which not in health.due(now):  # timings in these tests are whole seconds
            now += 1.0
            assert now < limit, f"{which} never became due"
        health.start(which, now)
        health.report(which, outcome)
    return now


def container(name: str, **probes: ProbeSpec) -> ContainerSpec:
    return ContainerSpec(name=name, image="busybox", command=(), args=(), env=(), ports=(),
                         cpu_request_milli=0, memory_request_bytes=0, cpu_limit_milli=None,
                         memory_limit_bytes=None, **probes)


# ---- schedule -------------------------------------------------------------------------------


def test_no_probes_ready_at_once_and_nothing_to_run() -> None:
    h = ContainerHealth(None, None, None, started_at=100.0)
    assert h.ready
    assert h.restart_reason is None
    assert h.due(1e9) == []
    assert h.next_due() is None


def test_first_run_waits_for_initial_delay() -> None:
    h = ContainerHealth(None, probe(initial_delay_s=5), None, started_at=100.0)
    assert h.next_due() == 105.0
    assert h.due(104.9) == []
    assert h.due(105.0) == ["readiness"]


def test_due_does_not_mark_as_run() -> None:
    h = ContainerHealth(None, None, probe(), started_at=0.0)
    assert h.due(0.0) == ["liveness"]
    assert h.due(1.0) == ["liveness"]


def test_period_is_measured_from_one_start_to_the_next() -> None:
    h = ContainerHealth(None, probe(period_s=10), None, started_at=0.0)
    h.start("readiness", 2.0)
    h.report("readiness", S)  # reported later than started: the schedule stays start-based
    assert h.next_due() == 12.0
    assert h.due(11.9) == []
    assert h.due(12.0) == ["readiness"]


def test_in_flight_probe_is_not_due_again() -> None:
    h = ContainerHealth(None, probe(period_s=10), None, started_at=0.0)
    h.start("readiness", 0.0)
    assert h.due(30.0) == []
    assert h.next_due() is None
    h.report("readiness", S)
    assert h.due(30.0) == ["readiness"]


def test_every_probe_has_its_own_schedule() -> None:
    h = ContainerHealth(None, probe(initial_delay_s=1), probe(initial_delay_s=3), started_at=0.0)
    assert h.due(2.0) == ["readiness"]
    assert h.due(3.0) == ["readiness", "liveness"]
    h.start("liveness", 3.0)
    assert h.due(3.0) == ["readiness"]
    assert h.next_due() == 1.0


# ---- readiness ------------------------------------------------------------------------------


def test_not_ready_until_the_readiness_probe_succeeds() -> None:
    h = ContainerHealth(None, probe(), None, started_at=0.0)
    assert not h.ready
    run(h, "readiness", [S], 0.0)
    assert h.ready


def test_readiness_needs_consecutive_successes() -> None:
    h = ContainerHealth(None, probe(success_threshold=2), None, started_at=0.0)
    now = run(h, "readiness", [S, F, S], 0.0)
    assert not h.ready  # the failure broke the run
    run(h, "readiness", [S], now)
    assert h.ready


def test_unready_after_failure_threshold_consecutive_failures() -> None:
    h = ContainerHealth(None, probe(failure_threshold=3), None, started_at=0.0)
    now = run(h, "readiness", [S, F, F, S, F, F], 0.0)
    assert h.ready  # the success broke the run of failures
    now = run(h, "readiness", [F], now)
    assert not h.ready
    assert h.restart_reason is None  # readiness never restarts a container
    run(h, "readiness", [S], now)
    assert h.ready


def test_without_readiness_probe_ready_while_liveness_passes() -> None:
    h = ContainerHealth(None, None, probe(), started_at=0.0)
    assert h.ready


# ---- liveness -------------------------------------------------------------------------------


def test_liveness_failure_threshold_asks_for_restart() -> None:
    h = ContainerHealth(None, None, probe(failure_threshold=3), started_at=0.0)
    now = run(h, "liveness", [F, F, S, F, F], 0.0)
    assert h.restart_reason is None
    assert h.ready
    run(h, "liveness", [F], now)
    assert h.restart_reason == "liveness probe failed 3 times in a row"
    assert not h.ready


def test_no_probes_run_while_a_restart_is_pending() -> None:
    h = ContainerHealth(None, probe(), probe(failure_threshold=1), started_at=0.0)
    run(h, "liveness", [F], 0.0)
    assert h.due(1e9) == []
    assert h.next_due() is None


# ---- startup --------------------------------------------------------------------------------


def test_startup_gates_readiness_and_liveness() -> None:
    h = ContainerHealth(probe(period_s=1), probe(), probe(), started_at=0.0)
    assert h.due(100.0) == ["startup"]
    assert not h.ready
    now = run(h, "startup", [F, F], 0.0)
    assert h.due(now + 100) == ["startup"]
    run(h, "startup", [S], now)
    assert h.due(now + 1) == ["readiness", "liveness"]  # delays are over: due at once
    assert not h.ready  # still waiting for readiness


def test_startup_success_lets_ready_follow_without_readiness_probe() -> None:
    h = ContainerHealth(probe(), None, None, started_at=0.0)
    assert not h.ready
    run(h, "startup", [S], 0.0)
    assert h.ready
    assert h.due(1e9) == []  # startup is not run again once passed


def test_initial_delays_count_from_container_start_not_from_startup() -> None:
    h = ContainerHealth(probe(), probe(initial_delay_s=10), None, started_at=100.0)
    run(h, "startup", [S], 102.0)
    assert h.next_due() == 110.0
    assert h.due(109.0) == []
    assert h.due(110.0) == ["readiness"]


def test_startup_failure_threshold_asks_for_restart() -> None:
    h = ContainerHealth(probe(failure_threshold=2), None, probe(), started_at=0.0)
    run(h, "startup", [F, F], 0.0)
    assert h.restart_reason == "startup probe failed 2 times in a row"
    assert h.due(1e9) == []


# ---- unknown --------------------------------------------------------------------------------


def test_unknown_counts_neither_way() -> None:
    h = ContainerHealth(None, probe(), probe(failure_threshold=3), started_at=0.0)
    now = run(h, "readiness", [U, U], 0.0)
    assert not h.ready
    now = run(h, "liveness", [F, F, U, U], now)
    assert h.restart_reason is None
    run(h, "liveness", [F], now)  # unknowns did not break the run of failures
    assert h.restart_reason == "liveness probe failed 3 times in a row"


def test_unknown_keeps_the_state_and_the_schedule() -> None:
    h = ContainerHealth(None, probe(success_threshold=2, period_s=5), None, started_at=0.0)
    now = run(h, "readiness", [S, U], 0.0)
    assert h.next_due() == now + 5
    assert not h.ready
    run(h, "readiness", [S], now)
    assert h.ready


# ---- reset ----------------------------------------------------------------------------------


def test_reset_restores_the_initial_state() -> None:
    h = ContainerHealth(probe(), probe(), probe(failure_threshold=2, initial_delay_s=4),
                        started_at=0.0)
    now = run(h, "startup", [S], 0.0)
    now = run(h, "readiness", [S], now)
    run(h, "liveness", [F, F], now)
    assert h.restart_reason is not None
    h.reset(started_at=500.0)
    assert h.restart_reason is None
    assert not h.ready
    assert h.due(500.0) == ["startup"]
    run(h, "startup", [S], 500.0)
    assert h.next_due() == 500.0
    assert not h.ready  # readiness starts over
    run(h, "liveness", [F], 504.0)
    assert h.restart_reason is None  # the failure count started over too


def test_result_of_a_probe_started_before_reset_is_dropped() -> None:
    h = ContainerHealth(None, None, probe(failure_threshold=1), started_at=0.0)
    h.start("liveness", 0.0)
    h.reset(started_at=50.0)
    h.report("liveness", F)
    assert h.restart_reason is None
    assert h.due(50.0) == ["liveness"]


# ---- pod ------------------------------------------------------------------------------------


def pod() -> PodHealth:
    return PodHealth.for_containers(
        [container("web", readiness=probe(initial_delay_s=2)),
         container("side"),
         container("db", liveness=probe(failure_threshold=1, initial_delay_s=1))],
        started_at=0.0,
    )


def test_pod_is_a_mapping_in_manifest_order() -> None:
    p = pod()
    assert list(p) == ["web", "side", "db"]
    assert len(p) == 3
    assert isinstance(p["web"], ContainerHealth)


def test_pod_ready_when_every_container_is() -> None:
    p = pod()
    assert not p.ready
    run(p["web"], "readiness", [S], 0.0)
    assert p.ready


def test_pod_due_lists_container_probe_and_spec() -> None:
    p = pod()
    assert p.due(1.0) == [("db", "liveness", probe(failure_threshold=1, initial_delay_s=1))]
    assert [(c, w) for c, w, _ in p.due(2.0)] == [("web", "readiness"), ("db", "liveness")]
    assert p.next_due() == 1.0
    p["db"].start("liveness", 1.0)
    assert p.next_due() == 2.0


def test_pod_restart_reason_names_the_first_failing_container() -> None:
    p = PodHealth.for_containers(
        [container("a"), container("b", liveness=probe(failure_threshold=1)),
         container("c", startup=probe(failure_threshold=1))],
        started_at=0.0,
    )
    assert p.restart_reason is None
    run(p["c"], "startup", [F], 0.0)
    assert p.restart_reason == "container c: startup probe failed 1 times in a row"
    run(p["b"], "liveness", [F], 0.0)
    assert p.restart_reason == "container b: liveness probe failed 1 times in a row"
    assert not p.ready


def test_pod_reset_resets_every_container() -> None:
    p = pod()
    run(p["web"], "readiness", [S], 0.0)
    run(p["db"], "liveness", [F], 0.0)
    p.reset(started_at=100.0)
    assert p.restart_reason is None
    assert not p.ready
    assert p.next_due() == 101.0


def test_empty_pod_has_nothing_to_run() -> None:
    p = PodHealth({})
    assert p.ready
    assert p.due(0.0) == []
    assert p.next_due() is None


# ---- restart back-off -----------------------------------------------------------------------


def test_first_restart_waits_initial_delay_from_first_sighting() -> None:
    b = RestartBackoff()
    assert b.allowed_at(100.0) == 110.0
    assert b.allowed_at(105.0) == 110.0  # later passes see the same answer


def test_backoff_doubles_up_to_the_cap() -> None:
    b = RestartBackoff()
    now, delays = 0.0, []
    for _ in range(8):
        allowed = b.allowed_at(now)
        delays.append(allowed - now)
        b.restarted(allowed)
        now = allowed + 1.0  # crashes one second after each restart
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_backoff_stays_capped_over_many_restarts() -> None:
    b = RestartBackoff()
    for i in range(5000):
        b.restarted(float(i))
    assert b.allowed_at(5000.0) == 5300.0


def test_backoff_resets_after_running_long_enough() -> None:
    b = RestartBackoff()
    for t in (0.0, 20.0, 60.0):
        b.restarted(t)  # next wait would be 80 s
    assert b.allowed_at(60.0 + 599.0) == 659.0 + 80.0
    b.restarted(739.0)
    assert b.allowed_at(739.0 + 600.0) == 1339.0 + 10.0


@pytest.mark.parametrize(("initial", "cap", "expected"), [(1.0, 3.0, [1, 2, 3, 3]),
                                                          (5.0, 5.0, [5, 5, 5, 5])])
def test_backoff_parameters(initial: float, cap: float, expected: list[float]) -> None:
    b = RestartBackoff(initial_s=initial, cap_s=cap, reset_after_s=100.0)
    now, delays = 0.0, []
    for _ in expected:
        allowed = b.allowed_at(now)
        delays.append(allowed - now)
        b.restarted(allowed)
        now = allowed
    assert delays == expected
