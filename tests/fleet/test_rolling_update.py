"""Day 2 on real agents (real Podman, three machines): a changed template rolls the replicas
with never zero ready, every machine takes up a scale down and up, `rollout restart` rolls
again, and a rollout goes on when the machine it was applied on is killed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from healing_lib import (
    Sampler,
    apply,
    kill_machine,
    manifest,
    ready_records,
    real_pods,
    start_machines,
    wait_settled,
)

from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.slow

MACHINES = ("u1", "u2", "u3")
WEB = "deployment/default/web"


@pytest.fixture
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    mesh = start_machines(tmp_path_factory.mktemp("roll"), MACHINES)
    try:
        yield mesh
    finally:
        mesh.close()


def with_env(text: str, value: str) -> str:
    """The same manifest with one env value changed: a new pod template."""
    return text.replace("        resources:", f"        env: [{{name: COLOR, value: {value}}}]\n"
                        "        resources:")


def templates(mesh: LocalMesh, workload: str) -> dict[str, str]:
    """pod -> its beemesh.template label, across every Podman (running pods)."""
    out = {}
    for service in mesh.podmans.values():
        res = service.run("pod", "ps", "--format", "json", "--filter",
                          f"label=beemesh.workload={workload}")
        for pod in json.loads(res.stdout or "[]"):
            if str(pod.get("Status", "")).lower() == "running":
                out[pod["Name"]] = (pod.get("Labels") or {}).get("beemesh.template", "")
    return out


def row(mesh: LocalMesh, via: str) -> dict[str, object]:
    return next(r for r in mesh.agents[via].get_json("get", "workloads") if r["workload"] == WEB)


def all_know(mesh: LocalMesh, via: str) -> str:
    """The template the apply via `via` set, once every live agent keeps that apply (it
    travels on its own message: `beemesh get workloads` on any machine shows it)."""
    want = str(row(mesh, via)["template"])
    for name in mesh.agents:
        if mesh.agents[name].alive():
            wait_for(lambda name=name: row(mesh, name)["template"] == want, 30,
                     f"{name} to keep the new apply")
    return want


def rollout_status(mesh: LocalMesh, via: str, timeout: float = 240) -> None:
    done = mesh.operator(mesh.agents[via].api, "rollout", "status", "web", "--timeout",
                         str(timeout), timeout=timeout + 30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "successfully rolled out" in done.stdout


def test_rolling_update_scale_and_restart(mesh3: LocalMesh, tmp_path: Path) -> None:
    base = manifest("Deployment", "web", 3, host_port=None)
    apply(mesh3, tmp_path, "u1", base)
    wait_settled(mesh3, "u1", WEB, 3)
    old = set(templates(mesh3, WEB).values())
    assert len(old) == 1 and "" not in old

    # A changed template rolls, one surge replica at a time (25 %/25 % of 3: surge 1,
    # unavailable 0); ready replicas are sampled every 0.5 s and never reach zero.
    sampler = Sampler(lambda: len({r["ordinal"] for r in ready_records(mesh3, "u2", WEB)}),
                      interval=0.5)
    sampler.start()
    try:
        apply(mesh3, tmp_path, "u1", with_env(base, "blue"))
        blue = all_know(mesh3, "u1")
        rollout_status(mesh3, "u2")
    finally:
        samples = sampler.stop()
    ready_counts = [n for _, n in samples]
    print(json.dumps({"rolling_update_ready_min": min(ready_counts),
                      "samples": len(ready_counts)}))
    assert min(ready_counts) >= 2, ready_counts
    new = set(templates(mesh3, WEB).values())
    assert new == {blue} and new != old, (old, new)
    wait_settled(mesh3, "u3", WEB, 3)
    for name in MACHINES:
        r = row(mesh3, name)
        assert (r["desired"], r["up_to_date"], r["state"]) == (3, 3, "complete"), (name, r)

    # Scale down 3 -> 1: every machine takes it up (the highest ordinals go wherever they run).
    done = mesh3.operator(mesh3.agents["u3"].api, "scale", "web", "--replicas", "1")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: [p for _, p in real_pods(mesh3, WEB, running_only=True)] == ["web-0"], 90,
             "only web-0 to run after scaling to 1")
    for name in MACHINES:
        wait_for(lambda name=name: row(mesh3, name)["desired"] == 1, 30,
                 f"{name} to know web has 1 replica")
    # ... and up again to 2, on the newest template.
    done = mesh3.operator(mesh3.agents["u1"].api, "scale", "web", "--replicas", "2")
    assert done.returncode == 0, done.stderr
    wait_settled(mesh3, "u1", WEB, 2)
    assert set(templates(mesh3, WEB).values()) == new

    # `rollout restart` rolls every replica again; then the machine it was asked on is
    # killed while the next change rolls, and the rollout still completes.
    done = mesh3.operator(mesh3.agents["u1"].api, "rollout", "restart", "web")
    assert done.returncode == 0, done.stderr
    all_know(mesh3, "u1")
    rollout_status(mesh3, "u1")
    restarted = set(templates(mesh3, WEB).values())
    assert len(restarted) == 1 and restarted != new

    # `rollout history` lists the templates with what each changed; `rollout undo` goes back
    # to blue (a new apply of that template, with the current replicas).
    history = mesh3.agents["u1"].get_json("rollout", "history", "web")
    assert [h["template"] for h in history] == [*old, blue, *restarted], history
    assert "containers[main].env" in history[1]["change"], history
    assert history[-1]["current"] and "restarted_at" in history[-1]["change"], history
    done = mesh3.operator(mesh3.agents["u1"].api, "rollout", "undo", "web", "--to-revision",
                          "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all_know(mesh3, "u1") == blue
    rollout_status(mesh3, "u1")
    assert set(templates(mesh3, WEB).values()) == {blue}
    assert len(templates(mesh3, WEB)) == 2  # the replicas it had, not blue's 3
    apply(mesh3, tmp_path, "u1", with_env(manifest("Deployment", "web", 2, host_port=None),
                                          "green"))
    green = all_know(mesh3, "u1")
    kill_machine(mesh3, "u1")
    rollout_status(mesh3, "u2")
    final = templates(mesh3, WEB)
    assert len(final) == 2 and set(final.values()) == {green}, final



DB = "statefulset/default/db"


def first_seen(samples: list[tuple[float, dict[int, str]]], ordinal: int, template: str
               ) -> float | None:
    return next((t for t, seen in samples if seen.get(ordinal) == template), None)


def test_statefulset_rolls_down_from_the_top_and_a_never_ready_update_stalls(
        mesh3: LocalMesh, tmp_path: Path) -> None:
    """StatefulSet RollingUpdate: highest ordinal first, one at a time, each ready before
    the next, ordinals below `partition` left alone. Then a Deployment update whose new
    replicas never get ready stops at its progress deadline, says so, and its old replicas
    keep serving (maxUnavailable 0 of 3: never fewer than 3 ready); a Recreate update then
    replaces them all, old and new never ready together."""
    base = manifest("StatefulSet", "db", 3, host_port=None)
    apply(mesh3, tmp_path, "u1", base)
    wait_settled(mesh3, "u1", DB, 3)
    old = set(templates(mesh3, DB).values())
    assert len(old) == 1

    def ready_templates() -> dict[int, str]:
        return {r["ordinal"]: r["template"] for r in ready_records(mesh3, "u2", DB)}

    def db_status(via: str) -> None:
        done = mesh3.operator(mesh3.agents[via].api, "rollout", "status", "sts/db",
                              "--timeout", "240", timeout=270)
        assert done.returncode == 0, done.stdout + done.stderr

    sampler = Sampler(ready_templates, interval=0.5)
    sampler.start()
    try:
        partitioned = with_env(base, "blue").replace(
            "  serviceName: db", "  serviceName: db\n  updateStrategy: "
            "{type: RollingUpdate, rollingUpdate: {partition: 1}}")
        apply(mesh3, tmp_path, "u1", partitioned)
        blue = str(next(r for r in mesh3.agents["u1"].get_json("get", "sts")
                        if r["workload"] == DB)["template"])
        db_status("u3")
        wait_for(lambda: ready_templates() == {0: next(iter(old)), 1: blue, 2: blue}, 60,
                 "ordinals 1 and 2 ready on the new template, 0 on the old")
        # partition 0 (the strategy as Kubernetes defaults it): ordinal 0 follows.
        apply(mesh3, tmp_path, "u1", with_env(base, "blue"))
        db_status("u2")
        wait_for(lambda: ready_templates() == dict.fromkeys(range(3), blue), 60,
                 "every ordinal ready on the new template")
        wait_for(lambda: sampler.samples[-1][1] == dict.fromkeys(range(3), blue), 10,
                 "the sampler to see it too")
    finally:
        samples = sampler.stop()
    order = [first_seen(samples, o, blue) for o in (2, 1, 0)]
    assert None not in order and order == sorted(order), order  # 2, then 1, then 0
    fewest = min(len(seen) for _, seen in samples)
    print(json.dumps({"statefulset_ready_min": fewest, "samples": len(samples)}))
    assert fewest >= 2, samples  # one ordinal at a time
    # An ordinal never ran twice: one pod per ordinal on all machines together.
    assert sorted(p for _, p in real_pods(mesh3, DB, running_only=True)) == \
        ["db-0", "db-1", "db-2"]

    # A Deployment update that never gets ready: its readiness probe asks a port nobody
    # serves. With surge 1 and unavailable 0 the 3 old replicas keep serving; the rollout
    # stops at progressDeadlineSeconds and rollout status says so (exit 1).
    web = manifest("Deployment", "web", 3, host_port=None).replace(
        "  replicas: 3", "  replicas: 3\n  progressDeadlineSeconds: 20")
    apply(mesh3, tmp_path, "u1", web)
    wait_settled(mesh3, "u1", WEB, 3)
    good = set(templates(mesh3, WEB).values())
    sampler = Sampler(lambda: len(ready_records(mesh3, "u3", WEB)), interval=0.5)
    sampler.start()
    try:
        path = tmp_path / "never-ready.yaml"
        path.write_text(with_env(web, "bad").replace("port: 8080}", "port: 9999}"))
        done = mesh3.operator(mesh3.agents["u1"].api, "apply", "-f", str(path))
        assert done.returncode == 0, done.stderr
        done = mesh3.operator(mesh3.agents["u2"].api, "rollout", "status", "web", "--timeout",
                              "180", timeout=210)
    finally:
        ready_counts = [n for _, n in sampler.stop()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "progress deadline exceeded" in done.stderr, done.stderr
    assert "the old replicas keep serving" in done.stderr
    assert min(ready_counts) >= 3, ready_counts
    # Every machine judges the deadline from when it saw the update: u3 may say so a moment
    # after u2 did.
    wait_for(lambda: row(mesh3, "u3")["state"] == "stalled", 30, "u3 to see the stall too")
    ready_old = [r for r in ready_records(mesh3, "u3", WEB) if r["template"] in good]
    assert sorted(r["ordinal"] for r in ready_old) == [0, 1, 2], ready_old

    # Recreate: every old copy goes before new ones come; never old and new ready together.
    sampler = Sampler(lambda: {r["template"] for r in ready_records(mesh3, "u3", WEB)},
                      interval=0.5)
    sampler.start()
    try:
        # (the default progress deadline: heals bring the new copies, slower on a busy host)
        apply(mesh3, tmp_path, "u1", with_env(web, "fine").replace(
            "  progressDeadlineSeconds: 20", "  strategy: {type: Recreate}"))
        fine = all_know(mesh3, "u1")
        rollout_status(mesh3, "u3")
    finally:
        seen = [t for _, t in sampler.stop()]
    assert all(len(t) <= 1 for t in seen), seen
    assert set(templates(mesh3, WEB).values()) == {fine}
    wait_settled(mesh3, "u1", WEB, 3)


def test_a_missing_image_draws_no_bids_and_apply_says_which(tmp_path: Path) -> None:
    """No machine has the image and no registry serves localhost/: nobody bids (before,
    every machine bid, won, failed and bid again, round after round), and `apply --wait`
    names the image."""
    mesh = start_machines(tmp_path / "img", ("i1", "i2"))
    try:
        def bids(agent: object) -> int:
            return sum(agent.metrics().get("bids", {}).values())  # type: ignore[attr-defined]

        before = {n: bids(a) for n, a in mesh.agents.items()}
        text = manifest("Deployment", "ghost", 1, host_port=None).replace(
            "localhost/beemesh/busybox:latest", "localhost/beemesh/missing:1")
        path = tmp_path / "ghost.yaml"
        path.write_text(text)
        done = mesh.operator(mesh.agents["i1"].api, "apply", "-f", str(path), "--wait",
                             "--timeout", "15", timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr  # nothing could be placed
        assert "localhost/beemesh/missing:1" in done.stderr, done.stderr
        assert "waiting: " in done.stderr, done.stderr  # the reason, while it waited
        assert "of 1 other machine(s) in view 1 fit" in done.stderr, done.stderr
        shown = mesh.operator(mesh.agents["i2"].api, "describe", "deployment/ghost")
        assert shown.returncode == 0, shown.stderr
        assert "Replica 0:   not running:" in shown.stdout, shown.stdout
        assert "localhost/beemesh/missing:1" in shown.stdout, shown.stdout
        # ... with the fleet's count, as `apply --wait` says it (the other machine fits by
        # its record: a record does not list images)
        assert "of 1 other machine(s) in view 1 fit" in shown.stdout, shown.stdout
        for name, agent in mesh.agents.items():
            assert bids(agent) == before[name], name
            failed = [e for e in agent.get_json("events") if e["kind"] == "Failed"]
            assert not failed, (name, failed)
    finally:
        mesh.close()
