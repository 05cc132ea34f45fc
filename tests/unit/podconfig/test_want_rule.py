"""Who may be given a sealed copy of a Secret (beemesh.podconfig.holding.want_refusal)."""

from __future__ import annotations

import dataclasses

from manifest_testlib import CT, DEPLOYMENT, mutated, parse_one, set_in

from beemesh.manifest.config import SecretSpec
from beemesh.podconfig.holding import Want, want_refusal

SECRET = SecretSpec("db", "default", (), "Opaque", ("pw",), "ab" * 32)
USES = parse_one(mutated(DEPLOYMENT, set_in((*CT, "env"), [
    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}])))
WANT = Want("m2", b"k" * 32, "secret/default/db", "ab" * 32, "t1", 0.0)


def test_a_machine_picked_for_a_replica_that_uses_it_is_given_it() -> None:
    assert want_refusal(WANT, SECRET, USES, frozenset({"m2"})) is None


def test_everyone_else_is_refused() -> None:
    picked = frozenset({"m2"})
    assert want_refusal(WANT, None, USES, picked) == "no such Secret here"
    assert want_refusal(dataclasses.replace(WANT, digest="cd" * 32), SECRET, USES, picked) \
        == "not the Secret's current values"
    assert want_refusal(WANT, SECRET, None, picked) == "a task this machine does not follow"
    assert "does not use secret/default/db" in want_refusal(WANT, SECRET, parse_one(DEPLOYMENT),
                                                           picked)
    other_ns = dataclasses.replace(USES, namespace="other")
    assert "does not use" in want_refusal(WANT, SECRET, other_ns, picked)
    assert want_refusal(WANT, SECRET, USES, frozenset({"m3"})) == \
        "no auction round here picked the asking machine"
