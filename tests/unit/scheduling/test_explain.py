"""Why a task finds no machine, counted over the fleet's records (beemesh.scheduling.explain),
and how `apply --wait` words it (beemesh.cli.operator_client)."""

from __future__ import annotations

from dataclasses import replace

from auction_sim import GIB, request

from beemesh.cli.operator_client import ruled_out, waiting_reason
from beemesh.membership.records import MachineRecord, RecordCapacity
from beemesh.scheduling.explain import MAX_REASONS, fleet_fit


def record(arch: str = "x86_64", labels: dict[str, str] | None = None, cpu: int = 4000,
           free: int = 4 * GIB, cordoned: bool = False) -> MachineRecord:
    return MachineRecord("m", (), arch, dict(labels or {}), RecordCapacity(cpu, 8 * GIB, free),
                         cordoned=cordoned)


def test_machines_are_counted_by_the_constraint_that_rules_them_out() -> None:
    req = request(cpu_milli=500, memory_bytes=GIB, node_selector={"zone": "a"})
    records = [record(labels={"zone": "a"}), record(labels={"zone": "b"}), record(),
               record(labels={"zone": "a"}, cordoned=True),
               record(labels={"zone": "a"}, free=GIB // 2),
               record(labels={"zone": "a"}, free=GIB // 4)]
    fit = fleet_fit(req, records)
    assert (fit.machines, fit.fit) == (6, 1)
    # Equal constraints count together: the machines' own figures are left out.
    assert dict(fit.refusals) == {"nodeSelector zone=a not matched": 2,
                                  "machine is cordoned": 1, f"needs {GIB} B memory": 2}
    assert fit.refusals[0][1] == 2  # most frequent first
    assert fit.to_dict()["fit"] == 1


def test_a_draining_machine_is_ruled_out_and_reasons_are_capped() -> None:
    draining = replace(record(), draining=True)
    assert fleet_fit(request(), [draining]).refusals == (("machine is cordoned", 1),)
    many = [record(labels={"k": str(i)}) for i in range(MAX_REASONS + 3)]
    fit = fleet_fit(request(node_selector={"k": "x"}), many)
    assert len(fit.refusals) == 1  # one selector, one reason, however many machines
    # Machines each missing another label: only the most frequent reasons are named.
    keys = [f"k{i}" for i in range(MAX_REASONS + 3)]
    req = request(node_selector=dict.fromkeys(keys, "x"))
    spread = [record(labels={k: "x" for k in keys if k != missing}) for missing in keys]
    fit = fleet_fit(req, spread)
    assert len(fit.refusals) == MAX_REASONS + 1 and fit.refusals[-1] == ("other reasons", 3)
    assert fleet_fit(request(), []).machines == 0


def test_apply_wait_names_the_constraint_the_count_and_this_machine() -> None:
    row = {"workload": "deployment/default/web", "replica": 1, "reason": "",
           "ineligible_here": "arch x86_64 != aarch64",
           "fleet": {"machines": 2, "fit": 0, "refusals": [["arch x86_64 != aarch64", 2]]}}
    text = waiting_reason(row)
    assert text == ("deployment/default/web[1]: no machine bid yet — of 2 other machine(s) in "
                    "view 0 fit; 2 arch x86_64 != aarch64 — this machine: arch x86_64 != "
                    "aarch64")
    assert ruled_out(row)
    # Machines that fit by their records may still have bid (or not, for an image): wait.
    assert not ruled_out({**row, "fleet": {"machines": 2, "fit": 1, "refusals": []}})
    assert not ruled_out({**row, "ineligible_here": ""})
    failed = {**row, "reason": "image pull failed"}
    assert waiting_reason(failed) == "deployment/default/web[1]: last failure: image pull failed"
    assert not ruled_out(failed)
    alone = {"workload": "w", "replica": 0, "reason": "", "ineligible_here": "",
             "fleet": {"machines": 0, "fit": 0, "refusals": []}}
    assert waiting_reason(alone) == "w[0]: no machine bid yet — no other machine in view"
