"""What bundle install does for admission (beemesh.rollout.admit): a certificate for the site
from the bundle's enrollment key, kept when still good; revocations merged, never lost."""

from __future__ import annotations

import time
from pathlib import Path

import cbor2
import pytest

from beemesh.errors import UserError
from beemesh.identity import KeyPair, save_key
from beemesh.membership.certs import check_cert, issue_enrollment, issue_machine_cert
from beemesh.rollout.admit import admit_installed, keep_revocations
from beemesh.rollout.changes import Changes

OPERATOR = KeyPair.generate()
TRUSTED = {OPERATOR.public_key: "ops"}


def stick(tmp_path: Path, days: float = 30, operator: KeyPair = OPERATOR) -> tuple[Path, Path]:
    now = time.time()
    enrollment = issue_enrollment(operator, "plant-a", now + days * 86_400, now)
    key, cert = tmp_path / "enrollment.key", tmp_path / "enrollment.cert"
    save_key(key, enrollment.key)
    cert.write_bytes(enrollment.cert)
    return key, cert


def test_install_admits_the_machine_for_the_bundles_site(tmp_path: Path) -> None:
    machine, out, lines = KeyPair.generate(), tmp_path / "machine.cert", []
    admit_installed(out, machine, *stick(tmp_path), TRUSTED, Changes(), lines.append)
    cert = check_cert(out.read_bytes(), TRUSTED, time.time())
    assert (cert.peer_id, dict(cert.labels)) == (machine.peer_id, {"site": "plant-a"})
    assert cert.expires <= time.time() + 30 * 86_400 + 1  # not beyond the enrollment
    assert "admitted this machine" in lines[-1]


def test_a_valid_certificate_is_kept(tmp_path: Path) -> None:
    machine, out, lines = KeyPair.generate(), tmp_path / "machine.cert", []
    now = time.time()
    held = issue_machine_cert(OPERATOR, machine.peer_id, {"zone": "a"}, now + 600, now)
    out.write_bytes(held)
    admit_installed(out, machine, *stick(tmp_path), TRUSTED, Changes(), lines.append)
    assert out.read_bytes() == held
    assert "keeping machine certificate" in lines[-1]


def test_another_machines_certificate_is_replaced_and_put_back_on_rollback(
        tmp_path: Path) -> None:
    machine, out = KeyPair.generate(), tmp_path / "machine.cert"
    now = time.time()
    other = issue_machine_cert(OPERATOR, KeyPair.generate().peer_id, {}, now + 600, now)
    out.write_bytes(other)
    changes = Changes()
    admit_installed(out, machine, *stick(tmp_path), TRUSTED, changes, lambda _: None)
    assert check_cert(out.read_bytes(), TRUSTED, now).peer_id == machine.peer_id
    changes.rollback()
    assert out.read_bytes() == other


def test_an_enrollment_the_machine_would_refuse_stops_install(tmp_path: Path) -> None:
    rogue = stick(tmp_path, operator=KeyPair.generate())  # not in the trust list
    with pytest.raises(UserError, match="cannot admit this machine") as exc:
        admit_installed(tmp_path / "machine.cert", KeyPair.generate(), *rogue, TRUSTED,
                        Changes(), lambda _: None)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "machine.cert").exists()


def test_revocations_are_merged_without_duplicates(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "revoked.cbor").write_bytes(cbor2.dumps([b"a", b"b"]))
    bundled = tmp_path / "bundled.cbor"
    bundled.write_bytes(cbor2.dumps([b"b", b"c"]))
    keep_revocations(state, bundled, Changes(), lambda _: None)
    assert cbor2.loads((state / "revoked.cbor").read_bytes()) == [b"a", b"b", b"c"]


def test_a_damaged_list_on_the_machine_does_not_stop_the_bundles(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "revoked.cbor").write_bytes(b"\xff\xff")
    bundled = tmp_path / "bundled.cbor"
    bundled.write_bytes(cbor2.dumps([b"c"]))
    keep_revocations(state, bundled, Changes(), lambda _: None)
    assert cbor2.loads((state / "revoked.cbor").read_bytes()) == [b"c"]
