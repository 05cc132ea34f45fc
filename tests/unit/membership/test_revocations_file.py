"""Revocations on disk (beemesh.membership.revocations_file): kept, checked again, never lost to
a damaged file."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from beemesh import wire
from beemesh.files import WriteBehind
from beemesh.identity import KeyPair
from beemesh.membership import revocations_file
from beemesh.membership.admission import REVOKE, Revocation, revocation

NOW = 1_800_000_000.0
OPERATOR = KeyPair.generate()
OPERATORS = {OPERATOR.public_key: "ops"}
VERIFIER = wire.Verifier({REVOKE.name: REVOKE}, lambda: OPERATORS)


def check(data: bytes) -> Revocation:
    return revocation(VERIFIER.authenticate(data), OPERATORS)


def signed(peer: str, key: KeyPair = OPERATOR) -> bytes:
    return wire.seal(key, REVOKE.name, {"peer_id": peer, "reason": "stolen"}, NOW)


def test_saved_revocations_load_again(tmp_path: Path) -> None:
    peers = [KeyPair.generate().peer_id for _ in range(3)]
    files = WriteBehind()
    revocations_file.save(files, tmp_path, [check(signed(p)) for p in peers])
    files.flush()
    assert [r.peer_id for r in revocations_file.load(tmp_path, check)] == peers


def test_no_file_is_no_revocation(tmp_path: Path) -> None:
    assert revocations_file.load(tmp_path, check) == []


def test_a_forged_entry_is_skipped_and_the_rest_kept(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    good = KeyPair.generate().peer_id
    items = [signed(KeyPair.generate().peer_id, KeyPair.generate()), signed(good)]
    (tmp_path / revocations_file.FILE_NAME).write_bytes(cbor2.dumps(items))
    assert [r.peer_id for r in revocations_file.load(tmp_path, check)] == [good]
    assert "no longer checks out" in caplog.text


@pytest.mark.parametrize("data", [b"\xff\xfe", cbor2.dumps({"a": 1}), cbor2.dumps([1, 2]),
                                  b"x" * (revocations_file.MAX_FILE_BYTES + 1)])
def test_a_damaged_file_is_set_aside_with_one_warning(tmp_path: Path, data: bytes,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / revocations_file.FILE_NAME
    path.write_bytes(data)
    assert revocations_file.load(tmp_path, check) == []
    assert not path.exists() and path.with_suffix(".bad").exists()
    assert "is damaged" in caplog.text and "come back from peers" in caplog.text
