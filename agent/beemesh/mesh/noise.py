"""libp2p's Noise secure channel (`/noise`) on libsodium.

Why our own: py-libp2p's Noise runs on the `noise` package, whose backend (and
`noise.connection` itself) loads `cryptography`'s Rust extension, 11.2 MB RSS (3.6 MB of it
private) in each process, for three primitives. libsodium (PyNaCl, loaded for our identities
anyway) has X25519 and ChaCha20-Poly1305, hashlib has SHA-256.

The wire is libp2p's Noise spec: Noise_XX_25519_ChaChaPoly_SHA256 (Noise spec rev. 34) with an
empty prologue; every Noise message is sent after its length (2 bytes, big-endian; at most
65,535); the second and third handshake messages carry a NoiseHandshakePayload (protobuf,
py-libp2p's `messages.py`): the sender's libp2p public key and its signature of
"noise-libp2p-static-key:" + its static X25519 key. Larger writes are cut into messages of at
most 65,519 plaintext bytes. tests/unit/test_noise.py shakes hands with py-libp2p's own Noise
(the `noise` package) in both roles.

`Handshake` is the protocol (sans-IO: messages in, messages out); `NoiseTransport` moves its
messages over a raw connection. Whatever a peer sends that does not fit (short message, failed
tag, low-order key, bad signature, unreadable payload) ends the handshake with HandshakeFailure.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from libp2p.abc import IRawConnection, ISecureConn, ISecureTransport
from libp2p.crypto.keys import KeyPair, PublicKey
from libp2p.custom_types import TProtocol
from libp2p.io.abc import EncryptedMsgReadWriter
from libp2p.io.msgio import FixedSizeLenMsgReadWriter
from libp2p.peer.id import ID
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.messages import SIGNED_DATA_PREFIX, NoiseHandshakePayload
from libp2p.security.secure_session import SecureSession
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_box_keypair,
    crypto_scalarmult,
)
from nacl.exceptions import CryptoError

PROTOCOL_ID = TProtocol("/noise")
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"  # 32 bytes: it is the initial hash
KEY_LEN = 32  # X25519 keys, DH outputs, SHA-256 digests, cipher keys
TAG_LEN = 16
MAX_MESSAGE = 65535
MAX_PLAINTEXT = MAX_MESSAGE - TAG_LEN
MAX_NONCE = 2**64 - 1  # reserved by the Noise spec: a cipher that reaches it is spent
SIGNED_PREFIX = SIGNED_DATA_PREFIX.encode()


class NoiseError(HandshakeFailure):
    """A Noise message that does not fit: the connection ends."""


def _hkdf(chaining_key: bytes, material: bytes) -> tuple[bytes, bytes]:
    temp = hmac.digest(chaining_key, material, "sha256")
    first = hmac.digest(temp, b"\x01", "sha256")
    return first, hmac.digest(temp, first + b"\x02", "sha256")


def _dh(private: bytes, public: bytes) -> bytes:
    try:
        return crypto_scalarmult(private, public)
    except CryptoError as e:  # libsodium refuses keys of small order (an all-zero result)
        raise NoiseError("the peer's X25519 key is of small order") from e


class CipherState:
    """One direction's ChaCha20-Poly1305 key and message counter (no key: plaintext)."""

    __slots__ = ("key", "nonce")

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key
        self.nonce = 0

    def _next_nonce(self) -> bytes:
        if self.nonce >= MAX_NONCE:
            raise NoiseError("this connection's cipher has sent 2^64 - 1 messages")
        return b"\x00\x00\x00\x00" + self.nonce.to_bytes(8, "little")

    def encrypt(self, ad: bytes | None, plaintext: bytes) -> bytes:
        if self.key is None:
            return plaintext
        sealed = crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, self._next_nonce(),
                                                           self.key)
        self.nonce += 1
        return sealed

    def decrypt(self, ad: bytes | None, ciphertext: bytes) -> bytes:
        if self.key is None:
            return ciphertext
        try:
            opened = crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad,
                                                               self._next_nonce(), self.key)
        except CryptoError as e:
            raise NoiseError("a Noise message failed its authentication tag") from e
        self.nonce += 1
        return opened


class Handshake:
    """The XX pattern: -> e; <- e, ee, s, es; -> s, se. Then `split()` gives the ciphers."""

    def __init__(self, initiator: bool, static: tuple[bytes, bytes],
                 ephemeral: tuple[bytes, bytes] | None = None) -> None:
        """`static` and `ephemeral` are (public, private) X25519 keys; the ephemeral one is made
        here unless a test gives it."""
        self.initiator = initiator
        self._static = static
        self._ephemeral = ephemeral
        self._remote_ephemeral = b""
        self.remote_static = b""
        self.step = 0  # handshake messages done
        self._hash = PROTOCOL_NAME
        self._chaining_key = PROTOCOL_NAME
        self._cipher = CipherState()
        self._mix_hash(b"")  # the empty prologue

    @property
    def finished(self) -> bool:
        return self.step == 3

    def _mix_hash(self, data: bytes) -> None:
        self._hash = hashlib.sha256(self._hash + data).digest()

    def _mix_key(self, material: bytes) -> None:
        self._chaining_key, key = _hkdf(self._chaining_key, material)
        self._cipher = CipherState(key)

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        sealed = self._cipher.encrypt(self._hash, plaintext)
        self._mix_hash(sealed)
        return sealed

    def _decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        opened = self._cipher.decrypt(self._hash, ciphertext)
        self._mix_hash(ciphertext)
        return opened

    def _turn(self, writing: bool) -> None:
        if self.finished or writing != (self.initiator == (self.step % 2 == 0)):
            raise NoiseError(f"handshake message {self.step + 1} out of turn")

    def write_message(self, payload: bytes) -> bytes:
        self._turn(writing=True)
        parts = []
        if self.step < 2:  # e
            if self._ephemeral is None:
                self._ephemeral = crypto_box_keypair()
            parts.append(self._ephemeral[0])
            self._mix_hash(self._ephemeral[0])
        if self.step == 1:  # ee, s, es (the responder's es is DH(s, re))
            self._mix_key(_dh(self._ephemeral[1], self._remote_ephemeral))  # type: ignore[index]
            parts.append(self._encrypt_and_hash(self._static[0]))
            self._mix_key(_dh(self._static[1], self._remote_ephemeral))
        elif self.step == 2:  # s, se (the initiator's se is DH(s, re))
            parts.append(self._encrypt_and_hash(self._static[0]))
            self._mix_key(_dh(self._static[1], self._remote_ephemeral))
        parts.append(self._encrypt_and_hash(payload))
        self.step += 1
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        self._turn(writing=False)
        need = {0: KEY_LEN, 1: 2 * KEY_LEN + 2 * TAG_LEN, 2: KEY_LEN + 2 * TAG_LEN}[self.step]
        if not need <= len(message) <= MAX_MESSAGE:
            raise NoiseError(f"handshake message {self.step + 1} has {len(message)} bytes")
        rest = message
        if self.step < 2:  # e
            self._remote_ephemeral, rest = rest[:KEY_LEN], rest[KEY_LEN:]
            self._mix_hash(self._remote_ephemeral)
        if self.step == 1:  # ee, s, es (the initiator's es is DH(e, rs))
            ephemeral = self._ephemeral[1]  # type: ignore[index]
            self._mix_key(_dh(ephemeral, self._remote_ephemeral))
            sealed, rest = rest[:KEY_LEN + TAG_LEN], rest[KEY_LEN + TAG_LEN:]
            self.remote_static = self._decrypt_and_hash(sealed)
            self._mix_key(_dh(ephemeral, self.remote_static))
        elif self.step == 2:  # s, se (the responder's se is DH(e, rs))
            sealed, rest = rest[:KEY_LEN + TAG_LEN], rest[KEY_LEN + TAG_LEN:]
            self.remote_static = self._decrypt_and_hash(sealed)
            self._mix_key(_dh(self._ephemeral[1], self.remote_static))  # type: ignore[index]
        payload = self._decrypt_and_hash(rest)
        self.step += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """(sending, receiving) ciphers of the finished handshake."""
        if not self.finished:
            raise NoiseError("the handshake has not finished")
        to_responder, to_initiator = (CipherState(k) for k in _hkdf(self._chaining_key, b""))
        return (to_responder, to_initiator) if self.initiator else (to_initiator, to_responder)


class _Packets(FixedSizeLenMsgReadWriter):
    size_len_bytes = 2


class NoiseConnection(EncryptedMsgReadWriter):
    """A finished handshake's messages on the raw connection: what SecureSession reads."""

    def __init__(self, conn: IRawConnection, ciphers: tuple[CipherState, CipherState]) -> None:
        super().__init__(conn)
        self._packets = _Packets(conn)  # type: ignore[arg-type]
        self._send, self._receive = ciphers

    def encrypt(self, data: bytes) -> bytes:
        return self._send.encrypt(None, data)

    def decrypt(self, data: bytes) -> bytes:
        return self._receive.decrypt(None, data)

    async def write_msg(self, msg: bytes) -> None:
        for start in range(0, max(len(msg), 1), MAX_PLAINTEXT):
            await self._packets.write_msg(self.encrypt(msg[start:start + MAX_PLAINTEXT]))

    async def read_msg(self) -> bytes:
        return self.decrypt(await self._packets.read_msg())

    async def close(self) -> None:
        await self._packets.close()


class NoiseTransport(ISecureTransport):
    """libp2p's `/noise` security: mutual authentication by libp2p key, then encryption.

    With a `gate`, a connection ends right after the handshake when the gate refuses the peer
    it authenticated (`refused` is told), so a refused peer never becomes a connection
    (py-libp2p gates by IP only)."""

    def __init__(self, libp2p_keypair: KeyPair, gate: Callable[[ID], bool] | None = None,
                 refused: Callable[[], None] | None = None) -> None:
        self._gate = gate
        self._refused = refused
        self._private = libp2p_keypair.private_key
        self.local_peer = ID.from_pubkey(libp2p_keypair.public_key)
        self._static = crypto_box_keypair()  # new at every start, as py-libp2p's
        self._payload = NoiseHandshakePayload(
            libp2p_keypair.public_key, self._private.sign(SIGNED_PREFIX + self._static[0]),
        ).serialize()

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        handshake = Handshake(initiator=False, static=self._static)
        packets = _Packets(conn)  # type: ignore[arg-type]
        handshake.read_message(await packets.read_msg())
        await packets.write_msg(handshake.write_message(self._payload))
        remote = _authenticate(handshake, handshake.read_message(await packets.read_msg()))
        return await self._admitted(self._session(conn, handshake, remote))

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID | None) -> ISecureConn:
        handshake = Handshake(initiator=True, static=self._static)
        packets = _Packets(conn)  # type: ignore[arg-type]
        await packets.write_msg(handshake.write_message(b""))
        remote = _authenticate(handshake, handshake.read_message(await packets.read_msg()))
        if peer_id is not None and ID.from_pubkey(remote) != peer_id:
            raise NoiseError(f"dialed {peer_id} but {ID.from_pubkey(remote)} answered")
        await packets.write_msg(handshake.write_message(self._payload))
        return await self._admitted(self._session(conn, handshake, remote))

    async def _admitted(self, session: SecureSession) -> SecureSession:
        peer = session.get_remote_peer()
        if self._gate is not None and not self._gate(peer):
            if self._refused is not None:
                self._refused()
            await session.close()
            raise HandshakeFailure(f"peer {peer} is refused by this host")
        return session

    def _session(self, conn: IRawConnection, handshake: Handshake,
                 remote: PublicKey) -> SecureSession:
        return SecureSession(local_peer=self.local_peer, local_private_key=self._private,
                             remote_peer=ID.from_pubkey(remote),
                             remote_permanent_pubkey=remote, is_initiator=handshake.initiator,
                             conn=NoiseConnection(conn, handshake.split()))


def _authenticate(handshake: Handshake, payload: bytes) -> PublicKey:
    """The libp2p key that signed the peer's static Noise key, or NoiseError."""
    try:
        signed = NoiseHandshakePayload.deserialize(payload)
        valid = signed.id_pubkey.verify(SIGNED_PREFIX + handshake.remote_static, signed.id_sig)
    except Exception as e:  # a payload py-libp2p cannot read (its key types raise many kinds)
        raise NoiseError(f"unreadable Noise handshake payload: {e}") from e
    if not valid:
        raise NoiseError("the peer's Noise handshake payload is not signed by its libp2p key")
    return signed.id_pubkey
