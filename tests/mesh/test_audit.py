"""The audit trail on a real agent: the operator's requests it accepted (apply, cordon, logs,
delete), with who signed them and when, shown by `beemesh events` after a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from beemesh.identity import fingerprint, load_key
from beemesh.lab.localmesh import LocalMesh, wait_for

pytestmark = pytest.mark.mesh

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: audited
spec:
  replicas: 1
  selector:
    matchLabels:
      app: audited
  template:
    metadata:
      labels:
        app: audited
    spec:
      containers:
        - name: main
          image: localhost/beemesh/busybox:latest
"""


def audits(cluster: LocalMesh, api: Path) -> list[dict]:
    done = cluster.operator(api, "events", "-o", "json")
    assert done.returncode == 0, done.stderr
    return [e for e in json.loads(done.stdout) if e["kind"] == "Audit"]


def test_operator_requests_are_audited_across_a_restart(cluster: LocalMesh,
                                                        tmp_path: Path) -> None:
    a = cluster.start("a")
    manifest = tmp_path / "audited.yaml"
    manifest.write_text(MANIFEST)
    started = time.time()
    for args in (("apply", "-f", str(manifest)), ("cordon", a.peer_id),
                 ("logs", "nosuchpod"), ("delete", "deployment", "audited")):
        done = cluster.operator(a.api, *args)
        assert args[0] == "logs" or done.returncode == 0, (args, done.stderr)
    operator = load_key(cluster.fleet / "operator.key", "operator key", "")
    key = fingerprint(operator.public_key)
    expected = ["apply", "cordon", "logs", "delete"]

    def actions(rows: list[dict]) -> list[str]:
        return [r["text"].split()[0] for r in rows]

    wait_for(lambda: actions(audits(cluster, a.api)) == expected, 15, "four audit events")
    before = audits(cluster, a.api)
    wait_for(lambda: (a.state_dir / "audit.jsonl").exists(), 10, "the trail on disk")

    cluster.stop("a")
    a = cluster.start("a")
    after = audits(cluster, a.api)
    assert actions(after) == expected
    for old, new in zip(before, after, strict=True):
        assert (new["ts"], new["text"], new["signer"]) == (old["ts"], old["text"], old["signer"])
        assert started - 1 <= new["ts"] <= time.time()
        assert new["signer"] and key in new["text"]
    assert "deployment/default/audited" in after[0]["text"]
    assert a.peer_id in after[1]["text"]
    assert "pod=nosuchpod" in after[2]["text"]
