"""Ed25519 key files, Peer IDs (checked against py-libp2p itself) and signatures."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from beemesh.errors import UserError
from beemesh.identity import (
    KEY_PREFIX,
    KeyPair,
    b58encode,
    fingerprint,
    load_key,
    peer_id,
    public_key_from_peer_id_bytes,
    read_private_file,
    save_key,
    verify,
)

SEEDS = [
    bytes(32),
    b"\x01" * 32,
    b"\xff" * 32,
    bytes(range(32)),
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
]
FIX = "create it with `beemesh init`"


def load(path: Path) -> KeyPair:
    return load_key(path, "machine key", FIX)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.hex()[:8])
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    libp2p_pair = create_new_key_pair(seed)
    ours = KeyPair(seed)
    assert ours.public_key == libp2p_pair.public_key.to_bytes()
    expected = ID.from_pubkey(libp2p_pair.public_key).to_base58()
    assert peer_id(ours.public_key) == expected
    assert ours.peer_id == expected
    assert expected.startswith("12D3KooW")


def test_peer_id_of_generated_keys_matches_libp2p() -> None:
    for _ in range(5):
        key = KeyPair.generate()
        assert key.peer_id == ID.from_pubkey(create_new_key_pair(key.seed).public_key).to_base58()


def test_peer_id_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        peer_id(b"\x01" * 31)
    with pytest.raises(ValueError):
        peer_id(b"\x01" * 33)


def test_b58encode_known_values() -> None:
    assert b58encode(b"") == ""
    assert b58encode(b"\x00") == "1"
    assert b58encode(b"\x00\x00\x01") == "112"
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"


def test_fingerprint_is_stable_and_short() -> None:
    a, b = KeyPair(SEEDS[0]).public_key, KeyPair(SEEDS[1]).public_key
    assert fingerprint(a) == fingerprint(a)
    assert len(fingerprint(a)) == 12
    assert fingerprint(a) != fingerprint(b)


def test_public_key_from_peer_id_bytes_round_trip() -> None:
    """A binary Ed25519 Peer ID is 38 bytes: 0x00 0x24 (identity multihash, 36 bytes) + the
    4-byte protobuf prefix + the 32-byte key. The agent uses this to learn the pub/sub origin."""
    for seed in SEEDS:
        pub = create_new_key_pair(seed).public_key
        raw = ID.from_pubkey(pub).to_bytes()
        assert len(raw) == 38
        assert public_key_from_peer_id_bytes(raw) == pub.to_bytes(), seed.hex()
        assert public_key_from_peer_id_bytes(raw) == KeyPair(seed).public_key
        # Two trailing bytes more is not a Peer ID, and certainly not a 34-byte "key".
        assert public_key_from_peer_id_bytes(raw + b"\x00\x00") is None


def test_public_key_from_peer_id_bytes_none_for_other_keys() -> None:
    # A secp256k1 peer id: identity multihash of PublicKey{Type: 2, Data: 33-byte point}.
    secp_raw = b"\x00\x25\x08\x02\x12\x21\x02" + bytes(32)
    assert public_key_from_peer_id_bytes(secp_raw) is None
    ed_raw = ID.from_pubkey(create_new_key_pair(SEEDS[1]).public_key).to_bytes()
    assert public_key_from_peer_id_bytes(b"") is None
    assert public_key_from_peer_id_bytes(ed_raw[:-1]) is None
    assert public_key_from_peer_id_bytes(ed_raw + b"\x00") is None
    # A sha2-256 multihash (how RSA peer ids look) of the same length is not an Ed25519 key.
    assert public_key_from_peer_id_bytes(b"\x12\x20" + bytes(38)) is None
    # Right length, key type 2 (secp256k1) in the protobuf instead of 1 (Ed25519).
    assert public_key_from_peer_id_bytes(b"\x00\x24\x08\x02\x12\x20" + bytes(32)) is None


def test_save_load_round_trip(tmp_path: Path) -> None:
    key = KeyPair(SEEDS[3])
    path = tmp_path / "sub" / "machine.key"
    save_key(path, key)
    assert path.read_text() == KEY_PREFIX + SEEDS[3].hex() + "\n"
    loaded = load(path)
    assert loaded == key
    assert loaded.peer_id == key.peer_id


def test_saved_key_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        save_key(path, KeyPair.generate())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    first = KeyPair(SEEDS[1])
    save_key(path, first)
    with pytest.raises(UserError, match="already exists"):
        save_key(path, KeyPair(SEEDS[2]))
    assert load(path) == first


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    with pytest.raises(UserError) as e:
        load(path)
    assert str(path) in str(e.value)
    assert "not found" in str(e.value)
    assert FIX in str(e.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "machine.key"
    save_key(path, KeyPair(SEEDS[1]))
    path.chmod(mode)
    with pytest.raises(UserError) as e:
        load(path)
    msg = str(e.value)
    assert f"chmod 600 {path}" in msg
    assert f"{mode:04o}" in msg


@pytest.mark.parametrize(
    "content",
    [
        "",
        "garbage\n",
        SEEDS[1].hex() + "\n",  # no prefix
        KEY_PREFIX + SEEDS[1].hex()[:-2] + "\n",  # 31 bytes
        KEY_PREFIX + SEEDS[1].hex() + "00\n",  # 33 bytes
        KEY_PREFIX + "zz" * 32 + "\n",  # not hex
        "rsa:" + SEEDS[1].hex() + "\n",
    ],
)
def test_load_malformed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "machine.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(UserError) as e:
        load(path)
    assert str(path) in str(e.value)
    assert "malformed" in str(e.value)


def test_load_tolerates_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    path.write_text("\n  " + KEY_PREFIX + SEEDS[2].hex() + "  \n\n")
    path.chmod(0o600)
    assert load(path) == KeyPair(SEEDS[2])


def test_load_non_utf8_names_path(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    path.write_bytes(b"\xff\xfe\x00garbage")
    path.chmod(0o600)
    with pytest.raises(UserError) as e:
        load(path)
    assert str(path) in str(e.value)


def test_load_directory_instead_of_file(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    path.mkdir(mode=0o700)
    with pytest.raises(UserError) as e:
        load(path)
    assert str(path) in str(e.value)
    assert "not a regular file" in str(e.value)


# --- unreadable files ---------------------------------------------------------------------
# Root reads anything, so as root the check runs in a forked child that drops to `nobody`.


def _run_unprivileged(fn: Callable[[], str]) -> str:
    """Run `fn` as an unprivileged user and return what it returned (or the error text)."""
    if os.geteuid() != 0:
        try:
            return fn()
        except UserError as e:
            return f"UserError: {e}"
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                out = fn()
            except UserError as e:
                out = f"UserError: {e}"
            except BaseException as e:
                out = f"{type(e).__name__}: {e}"
            os.write(w, out.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user can traverse (tmp_path's parents are 0700 when run as root)."""
    d = Path(tempfile.mkdtemp(prefix="beemesh-test-"))
    d.chmod(0o755)
    yield d
    for p in d.rglob("*"):
        if p.is_dir():
            p.chmod(0o700)
    shutil.rmtree(d)


def test_load_unreadable_file(public_dir: Path) -> None:
    path = public_dir / "machine.key"
    save_key(path, KeyPair(SEEDS[1]))
    if os.geteuid() != 0:
        path.chmod(0o000)
    # As root: the file is 0600 and owned by root, so `nobody` can stat it but not open it.
    out = _run_unprivileged(lambda: repr(load(path)))
    assert out.startswith("UserError: cannot read machine key"), out
    assert str(path) in out
    assert "permission denied" in out
    if os.geteuid() == 0:  # the file itself is fine: its owner can load it
        assert load(path) == KeyPair(SEEDS[1])


def test_load_file_in_inaccessible_directory(public_dir: Path) -> None:
    locked = public_dir / "locked"
    locked.mkdir()
    path = locked / "machine.key"
    save_key(path, KeyPair(SEEDS[1]))
    locked.chmod(0o700 if os.geteuid() == 0 else 0o000)
    out = _run_unprivileged(lambda: read_private_file(path, "machine key", FIX))
    assert out.startswith("UserError: cannot access machine key"), out
    assert str(path) in out
    assert "permission denied" in out


def test_unprivileged_helper_really_drops_privileges(public_dir: Path) -> None:
    """Guard for the two tests above: the child must not be able to read a 0600 root file."""
    path = public_dir / "secret"
    path.write_text("x")
    path.chmod(0o600 if os.geteuid() == 0 else 0o000)

    def try_read() -> str:
        try:
            return path.read_text()
        except PermissionError:
            return "denied"

    assert _run_unprivileged(try_read) == "denied"


# --- signatures ---------------------------------------------------------------------------


def test_sign_verify() -> None:
    key = KeyPair(SEEDS[1])
    data = b"hello fleet"
    sig = key.sign(data)
    assert len(sig) == 64
    assert verify(key.public_key, data, sig)


def test_verify_rejects_wrong_key() -> None:
    data = b"hello fleet"
    sig = KeyPair(SEEDS[1]).sign(data)
    assert not verify(KeyPair(SEEDS[2]).public_key, data, sig)


def test_verify_rejects_altered_data() -> None:
    key = KeyPair(SEEDS[1])
    sig = key.sign(b"hello fleet")
    assert not verify(key.public_key, b"hello fleeT", sig)
    assert not verify(key.public_key, b"hello fleet ", sig)


@pytest.mark.parametrize(
    "sig", [b"", b"\x00" * 64, b"\xff" * 64, b"short", b"\x00" * 65], ids=repr
)
def test_verify_rejects_garbage_signature(sig: bytes) -> None:
    key = KeyPair(SEEDS[1])
    assert not verify(key.public_key, b"hello fleet", sig)


def test_verify_rejects_flipped_signature_bit() -> None:
    key = KeyPair(SEEDS[1])
    sig = bytearray(key.sign(b"data"))
    sig[10] ^= 0x01
    assert not verify(key.public_key, b"data", bytes(sig))


@pytest.mark.parametrize("pub", [b"", b"\x01" * 31, b"\x01" * 33], ids=len)
def test_verify_bad_public_key_is_false_not_exception(pub: bytes) -> None:
    sig = KeyPair(SEEDS[1]).sign(b"data")
    assert verify(pub, b"data", sig) is False
