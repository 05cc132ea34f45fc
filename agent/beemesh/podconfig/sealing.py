"""A Secret's values sealed to one machine (sans-IO).

- **Digest.** The Secret every machine keeps (`manifest.config.SecretSpec`, operator-signed)
  names its keys and a digest of its values: BLAKE2b keyed with a 32-byte key derived from the
  operator's private key and the Secret's id (`digest_key`), so the same values applied again
  give the same digest (nothing rolls), and a machine without the key cannot test guesses of
  the values against it.
- **Copy.** The values travel only as a sealed box (libsodium `crypto_box_seal`, X25519 from
  the recipient machine's Ed25519 identity key) holding the digest key and the values: only
  that machine can open it, and whoever sealed it (the operator's `apply`, or another machine
  that held the Secret) cannot make it say anything the operator did not sign, because the
  opened values must match the signed digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import cbor2
from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey, VerifyKey

from beemesh import cbor
from beemesh.identity import KeyPair
from beemesh.manifest.config import MAX_KEYS, MAX_SECRET_BYTES, SecretSpec

KEY_CONTEXT = b"beemesh secret digest key v1\0"
MAX_BOX_BYTES = MAX_SECRET_BYTES + 16 * MAX_KEYS + 1024  # values, CBOR framing, the box


class SealError(ValueError):
    """A copy that cannot be used: str() says why."""


@dataclass(frozen=True)
class Opened:
    """A Secret's values, in memory only."""

    key: bytes  # the digest key
    values: dict[str, bytes]


def digest_key(operator: KeyPair, secret_id: str) -> bytes:
    return hashlib.blake2b(KEY_CONTEXT + secret_id.encode(), digest_size=32,
                           key=bytes(operator.signing_key)).digest()


def digest(key: bytes, values: Mapping[str, bytes]) -> str:
    data = cbor2.dumps(dict(sorted(values.items())), canonical=True)
    return hashlib.blake2b(data, digest_size=32, key=key).hexdigest()


def seal(opened: Opened, recipient: bytes) -> bytes:
    """A box only the machine whose Ed25519 public key is `recipient` can open."""
    public = VerifyKey(recipient).to_curve25519_public_key()
    plain = cbor2.dumps({"key": opened.key, "values": opened.values}, canonical=True)
    return SealedBox(public).encrypt(plain)


def open_box(box: bytes, machine: SigningKey, spec: SecretSpec) -> Opened:
    """The values in a box sealed to this machine, checked against the signed Secret."""
    if len(box) > MAX_BOX_BYTES:
        raise SealError(f"copy of {len(box)} bytes, over the {MAX_BOX_BYTES} cap")
    try:
        plain = SealedBox(machine.to_curve25519_private_key()).decrypt(box)
        data = cbor.loads(plain)
    except (CryptoError, ValueError) as e:
        raise SealError(f"copy does not open here ({e})") from None
    if not isinstance(data, dict) or set(data) != {"key", "values"} \
            or not isinstance(data["key"], bytes) or len(data["key"]) != 32 \
            or not isinstance(data["values"], dict) \
            or not all(isinstance(v, bytes) for v in data["values"].values()):
        raise SealError("copy is not a key and values")
    opened = Opened(data["key"], data["values"])
    if tuple(sorted(opened.values)) != spec.keys or digest(opened.key, opened.values) \
            != spec.digest:
        raise SealError(f"copy does not match Secret {spec.object_id} as the operator signed it")
    return opened
