"""Ed25519 key files and libp2p Peer IDs.

A machine's libp2p Peer ID is derived from the same Ed25519 key that signs its messages, so
"who signed this" and "who is on the other end of this stream" are one question. Key files
are small text files (`ed25519:<64 hex digits of the seed>`) with mode 0600; anything else is
refused with an error that names the file and the fix, never replaced silently.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from beemesh.errors import UserError

KEY_PREFIX = "ed25519:"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# libp2p PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 (Data) = 32 bytes.
_PB_ED25519_PREFIX = b"\x08\x01\x12\x20"


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (what libp2p uses for Peer IDs)."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def peer_id(public_key: bytes) -> str:
    """The libp2p Peer ID of an Ed25519 public key (identity multihash, base58)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    encoded = _PB_ED25519_PREFIX + public_key
    return b58encode(bytes([0x00, len(encoded)]) + encoded)


def is_peer_id(text: str) -> bool:
    """Whether `text` looks like the Peer ID of an Ed25519 key (the only kind Beemesh uses)."""
    return (len(text) == 52 and text.startswith("12D3KooW")
            and all(c in _B58 for c in text))


def fingerprint(public_key: bytes) -> str:
    """Short, stable label for logs and tables."""
    return hashlib.sha256(public_key).hexdigest()[:12]


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair held in memory; `seed` never leaves the machine that made it."""

    seed: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(bytes(SigningKey.generate()))

    # Derived once per key (each derivation is an Ed25519 key expansion, ~0.1 ms): an idle work
    # plane asked its Peer ID four times a second.
    @cached_property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @cached_property
    def peer_id(self) -> str:
        return peer_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data).signature


def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    try:
        VerifyKey(public_key).verify(data, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def write_private_file(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the first byte on; refuse to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(
            f"{path} already exists; refusing to overwrite a key (move it away first "
            "if you really want a new one)"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(text)


def save_key(path: Path, key: KeyPair) -> None:
    write_private_file(path, KEY_PREFIX + key.seed.hex() + "\n")


def read_private_file(path: Path, what: str, fix_missing: str) -> str:
    """Read a secret file after checking it exists, is readable and is not group/world-readable."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found; {fix_missing}") from None
    except PermissionError:
        raise UserError(
            f"cannot access {what} {path} (permission denied); run as the user that owns it"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {path} is not a regular file; {fix_missing}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UserError(
            f"{what} {path} is readable by others (mode {mode:04o}); "
            f"run `chmod 600 {path}` and check nobody copied it"
        )
    try:
        return path.read_text()
    except PermissionError:
        raise UserError(
            f"cannot read {what} {path} (permission denied); run as the user that owns it "
            f"or fix its owner with chown"
        ) from None
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"cannot read {what} {path} ({e}); {fix_missing}") from None


def load_key(path: Path, what: str, fix_missing: str) -> KeyPair:
    """Load a key file, or raise a UserError naming the file and the fix."""
    text = read_private_file(path, what, fix_missing).strip()
    body = text.removeprefix(KEY_PREFIX)
    try:
        seed = bytes.fromhex(body)
    except ValueError:
        seed = b""
    if not text.startswith(KEY_PREFIX) or len(seed) != 32:
        raise UserError(
            f"{what} {path} is malformed (expected one line 'ed25519:' + 64 hex digits); "
            f"restore it from a backup, or {fix_missing}"
        )
    return KeyPair(seed)


def public_key_from_peer_id_bytes(raw: bytes) -> bytes | None:
    """The Ed25519 key inside a binary Peer ID, or None for other key types."""
    prefix = bytes([0x00, 36]) + _PB_ED25519_PREFIX
    if len(raw) == len(prefix) + 32 and raw.startswith(prefix):
        return raw[len(prefix):]
    return None
