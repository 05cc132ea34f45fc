"""A Secret's values sealed to one machine (beemesh.podconfig.sealing)."""

from __future__ import annotations

import dataclasses

import pytest

from beemesh.identity import KeyPair
from beemesh.manifest.config import SecretSpec
from beemesh.podconfig.sealing import (
    MAX_BOX_BYTES,
    Opened,
    SealError,
    digest,
    digest_key,
    open_box,
    seal,
)

OPERATOR, OTHER_OPERATOR = KeyPair.generate(), KeyPair.generate()
MACHINE, STRANGER = KeyPair.generate(), KeyPair.generate()
VALUES = {"pw": b"s3cret", "user": b"admin"}


def secret(values: dict[str, bytes] = VALUES) -> tuple[SecretSpec, Opened]:
    key = digest_key(OPERATOR, "secret/default/db")
    spec = SecretSpec("db", "default", (), "Opaque", tuple(sorted(values)),
                      digest(key, values))
    return spec, Opened(key, dict(values))


def test_only_the_machine_sealed_for_opens_it() -> None:
    spec, opened = secret()
    box = seal(opened, MACHINE.public_key)
    assert open_box(box, MACHINE.signing_key, spec) == opened
    assert b"s3cret" not in box
    with pytest.raises(SealError, match="does not open here"):
        open_box(box, STRANGER.signing_key, spec)


def test_the_digest_is_stable_per_operator_and_secret_and_hides_guesses() -> None:
    assert digest_key(OPERATOR, "secret/default/db") == digest_key(OPERATOR, "secret/default/db")
    assert digest_key(OPERATOR, "secret/default/db") != digest_key(OPERATOR, "secret/x/db")
    assert digest_key(OPERATOR, "secret/default/db") != digest_key(OTHER_OPERATOR,
                                                                  "secret/default/db")
    key = digest_key(OPERATOR, "secret/default/db")
    assert digest(key, VALUES) == digest(key, dict(reversed(VALUES.items())))
    assert digest(key, VALUES) != digest(bytes(32), VALUES)  # a guess needs the key


def test_a_holder_cannot_make_a_copy_say_something_else() -> None:
    spec, _ = secret()
    forged = Opened(bytes(32), {"pw": b"evil", "user": b"admin"})  # a rogue holder's values
    with pytest.raises(SealError, match="does not match Secret secret/default/db"):
        open_box(seal(forged, MACHINE.public_key), MACHINE.signing_key, spec)
    _, real = secret()
    other_keys = dataclasses.replace(spec, keys=("pw",))
    with pytest.raises(SealError, match="does not match"):
        open_box(seal(real, MACHINE.public_key), MACHINE.signing_key, other_keys)


@pytest.mark.parametrize("box", [b"", b"\x00" * 100, b"\x00" * (MAX_BOX_BYTES + 1)])
def test_garbage_is_refused(box: bytes) -> None:
    spec, _ = secret()
    with pytest.raises(SealError):
        open_box(box, MACHINE.signing_key, spec)
