"""The agent's work-plane socket: what the work plane may ask, checked, and nobody else may ask.

A real agent (its work plane running) on loopback; requests go straight to the socket the work
plane uses, with the bad inputs a buggy or compromised work plane could send.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from beemesh.api.client import call
from beemesh.errors import UserError
from beemesh.lab.localmesh import LocalMesh, wait_for
from beemesh.workplane import sync

pytestmark = pytest.mark.mesh


@pytest.fixture
def agent_socket(cluster: LocalMesh) -> Path:
    a = cluster.start("w1", workplane=True)
    sock = a.state_dir / "link" / "agent.sock"
    wait_for(lambda: sock.exists(), 30, "the work-plane socket")
    return sock


def refused(sock: Path, target: str, body: object) -> str:
    with pytest.raises(UserError) as e:
        call(sock, "POST", target, body)
    return str(e.value)


REPORT = sync.Report(host=sync.WorkPlaneHost("12D3KooWtest", ("/ip4/127.0.0.1/tcp/1",)), records=(),
                     peers={}, synced=False)


def view(sock: Path, have: str = "", wait_s: int = 0) -> sync.ViewAnswer:
    return sync.ViewAnswer.from_json(call(sock, "POST", "/v1/work/view",
                                          sync.ViewRequest(have, wait_s).to_json(), timeout=60))


def test_the_view_lists_this_machine_and_no_replicas(agent_socket: Path,
                                                     cluster: LocalMesh) -> None:
    assert wait_for(lambda: call(agent_socket, "POST", "/v1/work/report", REPORT.to_json()) == {},
                    30, "a report")
    answer = view(agent_socket)
    assert answer.view is not None and answer.view.machine == cluster.agents["w1"].peer_id
    assert answer.view.replicas == () and answer.view.workloads == ()
    assert [m.peer_id for m in answer.view.machines] == [cluster.agents["w1"].peer_id]


def test_a_view_request_is_held_until_the_view_changes(agent_socket: Path,
                                                       cluster: LocalMesh) -> None:
    """The long poll: with the version it already has, the work plane hears nothing until the
    wait ends; a change (a second machine joins) answers at once with the new view."""
    def settled() -> sync.ViewAnswer | None:  # the agent's start-up changes have passed
        first = view(agent_socket)
        same = view(agent_socket, first.version, wait_s=2)
        return first if same.version == first.version and same.view is None else None

    first = wait_for(settled, 30, "a view that holds still for 2 s")
    answers: list[sync.ViewAnswer] = []
    waiting = threading.Thread(
        target=lambda: answers.append(view(agent_socket, first.version, wait_s=30)))
    waiting.start()
    w1 = cluster.agents["w1"]
    cluster.start("w2", bootstrap=[w1.addr], workplane=False)
    waiting.join(timeout=40)
    assert answers, "no answer within the wait"
    changed = answers[0]
    assert changed.version != first.version and changed.view is not None
    assert {m.peer_id for m in changed.view.machines} == {w1.peer_id,
                                                          cluster.agents["w2"].peer_id}


def test_bad_requests_get_a_clear_answer_and_change_nothing(agent_socket: Path) -> None:
    for ordinal in ("0", True, 1.5):
        assert "bad work-plane request: heal request.ordinal: expected an integer" in refused(
            agent_socket, "/v1/work/heal", {"workload_id": "w", "ordinal": ordinal, "epoch": ""})
    assert "report.host: missing" in refused(agent_socket, "/v1/work/report", {})
    assert "view request.wait_s" in refused(agent_socket, "/v1/work/view",
                                            {"have": "", "wait_s": 86400})
    assert "report.peers" in refused(agent_socket, "/v1/work/report",
                                     {**REPORT.to_json(), "peers": ["not", "a", "map"]})
    heal = call(agent_socket, "POST", "/v1/work/heal",
                {"workload_id": "deployment/default/nope", "ordinal": 0, "epoch": "orphan"})
    assert heal["state"] == "refused"  # settling after start, and no manifest of it anyway
    assert "no pod nope-0 runs on this machine" in refused(
        agent_socket, "/v1/work/certify", {"pod": "nope-0", "task": "t", "public_key": "00" * 32})
    assert "no pod ghost runs" in refused(agent_socket, "/v1/work/remove",
                                          {"pod": "ghost", "reason": "test"})


def test_another_uid_is_refused_even_with_access_to_the_socket_file(
        agent_socket: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to connect as another uid (run the tests as root)",
                    pytrace=False)
    # Open the way to the socket for uid 65534; the agent must still refuse it (SO_PEERCRED).
    for path in [*reversed(agent_socket.parents), agent_socket]:
        if path == Path("/"):
            continue
        os.chmod(path, os.stat(path).st_mode | (0o006 if path == agent_socket else 0o001))
    probe = "\n".join([
        "import socket, sys",
        "s = socket.socket(socket.AF_UNIX)",
        "s.connect(sys.argv[1])",
        "try:",
        "    s.sendall(b'POST /v1/work/report HTTP/1.1\\r\\nHost: x\\r\\n'",
        "              b'Content-Length: 2\\r\\n\\r\\n{}')",
        "    print(repr(s.recv(100)))",
        "except (ConnectionResetError, BrokenPipeError):  # closed before or while we wrote",
        "    print(repr(b''))",
    ])
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           sys.executable, "-c", probe, str(agent_socket)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr  # it could connect ...
    assert done.stdout.strip() == "b''", done.stdout  # ... and got nothing but a closed socket
