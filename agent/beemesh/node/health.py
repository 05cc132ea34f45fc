"""Probe bookkeeping with the kubelet's semantics (sans-IO: the caller passes `now` in).

The shell asks `due(now)` which probes to run, calls `start` when it launches one and `report`
with its `Outcome`; these classes only count results and keep the schedule, so the rules below
are tested with a fake clock and the shell stays a thin loop (see `beemesh.node.checks` for the IO).

Rules, as the kubelet applies them:
- every probe first runs at `started_at + initial_delay_s`, then every `period_s`, measured from
  one start to the next (a slow probe does not push the schedule back; it never overlaps itself);
- until the startup probe (if any) has passed, readiness and liveness are not run; once it has
  passed it is not run again, and the others run as soon as their initial delay is over;
- `success_threshold` consecutive successes make a probe pass, `failure_threshold` consecutive
  failures make it fail; a startup or liveness probe failing means the container needs a restart;
- UNKNOWN (the check could not be run) counts neither way and does not break a run of equal
  results, as the kubelet throws such a result away.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

from beemesh.manifest import ContainerSpec, ProbeSpec

__all__ = ["PROBES", "ContainerHealth", "Outcome", "PodHealth", "RestartBackoff"]

PROBES = ("startup", "readiness", "liveness")


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"  # not run: the runtime did not answer, the container is mid-restart


@dataclass
class _Probe:
    """One probe's schedule and its run of equal results."""

    spec: ProbeSpec
    next_at: float
    passing: bool  # the thresholded result
    last: Outcome | None = None
    run: int = 0  # consecutive results equal to `last`
    in_flight: bool = False

    @property
    def failed(self) -> bool:
        return self.last is Outcome.FAILURE and self.run >= self.spec.failure_threshold

    def record(self, outcome: Outcome) -> None:
        if outcome is Outcome.UNKNOWN:
            return
        self.run = self.run + 1 if outcome is self.last else 1
        self.last = outcome
        if outcome is Outcome.SUCCESS and self.run >= self.spec.success_threshold:
            self.passing = True
        elif self.failed:
            self.passing = False


class ContainerHealth:
    """The startup, readiness and liveness probes of one running container."""

    def __init__(self, startup: ProbeSpec | None, readiness: ProbeSpec | None,
                 liveness: ProbeSpec | None, started_at: float) -> None:
        specs = {"startup": startup, "readiness": readiness, "liveness": liveness}
        self.specs: dict[str, ProbeSpec] = {k: s for k, s in specs.items() if s is not None}
        self.reset(started_at)

    @classmethod
    def for_container(cls, spec: ContainerSpec, started_at: float) -> ContainerHealth:
        return cls(spec.startup, spec.readiness, spec.liveness, started_at)

    def reset(self, started_at: float) -> None:
        """The container (re)started at `started_at`: back to not started, not ready.

        Results of probes still in flight from before are dropped when they are reported.
        """
        self._probes = {
            which: _Probe(spec, started_at + spec.initial_delay_s, passing=which == "liveness")
            for which, spec in self.specs.items()
        }

    @property
    def started(self) -> bool:
        """The startup probe passed, or there is none."""
        startup = self._probes.get("startup")
        return startup is None or startup.passing

    @property
    def ready(self) -> bool:
        """Fit for traffic: started, readiness passing (or no probe), and no restart pending."""
        readiness = self._probes.get("readiness")
        return (self.started and self.restart_reason is None
                and (readiness is None or readiness.passing))

    @property
    def restart_reason(self) -> str | None:
        """Why the container must be restarted, once its startup or liveness probe failed."""
        for which in ("startup", "liveness"):
            probe = self._probes.get(which)
            if probe is not None and probe.failed:
                return f"{which} probe failed {probe.run} times in a row"
        return None

    def due(self, now: float) -> list[str]:
        """Probes to launch now; asking does not mark them as launched (see `start`)."""
        return [which for which, p in self._waiting() if now >= p.next_at]

    def next_due(self) -> float | None:
        """When a probe next becomes due; None while none can (all in flight, restart pending)."""
        return min((p.next_at for _, p in self._waiting()), default=None)

    def start(self, which: str, now: float) -> None:
        """The shell launched `which`: not due again until reported and `period_s` has passed."""
        probe = self._probes[which]
        probe.in_flight = True
        probe.next_at = now + probe.spec.period_s

    def report(self, which: str, outcome: Outcome) -> None:
        """The result of a launched probe; ignored if `reset` came in between."""
        probe = self._probes[which]
        if probe.in_flight:
            probe.in_flight = False
            probe.record(outcome)

    def _waiting(self) -> Iterator[tuple[str, _Probe]]:
        """Probes not in flight that may run: startup until it passes, the others after."""
        if self.restart_reason is not None:
            return
        for which, probe in self._probes.items():
            gated = self.started if which == "startup" else not self.started
            if not gated and not probe.in_flight:
                yield which, probe


class PodHealth(Mapping[str, ContainerHealth]):
    """Container name -> ContainerHealth for one pod, in manifest order."""

    def __init__(self, containers: Mapping[str, ContainerHealth]) -> None:
        self._containers = dict(containers)

    @classmethod
    def for_containers(cls, specs: Iterable[ContainerSpec], started_at: float) -> PodHealth:
        return cls({c.name: ContainerHealth.for_container(c, started_at) for c in specs})

    def __getitem__(self, name: str) -> ContainerHealth:
        return self._containers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._containers)

    def __len__(self) -> int:
        return len(self._containers)

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self._containers.values())

    @property
    def restart_reason(self) -> str | None:
        """The first container needing a restart, as "container <name>: <reason>"."""
        for name, c in self._containers.items():
            reason = c.restart_reason
            if reason is not None:
                return f"container {name}: {reason}"
        return None

    def due(self, now: float) -> list[tuple[str, str, ProbeSpec]]:
        """(container, probe, spec) to launch now; launch with `pod[container].start(...)`."""
        return [(name, which, c.specs[which])
                for name, c in self._containers.items() for which in c.due(now)]

    def next_due(self) -> float | None:
        return min((t for c in self._containers.values() if (t := c.next_due()) is not None),
                   default=None)

    def reset(self, started_at: float) -> None:
        """The whole pod was restarted."""
        for c in self._containers.values():
            c.reset(started_at)


class RestartBackoff:
    """CrashLoopBackOff for one replica: wait 10 s, 20 s, 40 s ... at most 300 s to restart.

    A replica that ran `reset_after_s` since its last restart before going down again starts
    over at `initial_s`, so an occasional crash is restarted quickly while a crash loop does
    not hammer the machine.
    """

    def __init__(self, initial_s: float = 10.0, cap_s: float = 300.0,
                 reset_after_s: float = 600.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.reset_after_s = reset_after_s
        self._restarted_at: float | None = None
        self._delay_s = initial_s  # the wait before the next restart
        self._down_since: float | None = None

    def allowed_at(self, now: float) -> float:
        """The replica is down (exited, or probes asked for a restart): when it may restart.

        The first call after a (re)start fixes the time it went down; later calls, say one per
        reconcile pass, return the same answer.
        """
        if self._down_since is None:
            self._down_since = now
            if self._restarted_at is None or now - self._restarted_at >= self.reset_after_s:
                self._delay_s = self.initial_s
        return self._down_since + self._delay_s

    def restarted(self, now: float) -> None:
        """The replica was restarted at `now`: the next wait doubles, up to `cap_s`."""
        self._restarted_at = now
        self._down_since = None
        self._delay_s = min(self._delay_s * 2, self.cap_s)
