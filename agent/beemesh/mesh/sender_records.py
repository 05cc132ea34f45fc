"""Check a peer's signed peer record once, not on every pub/sub RPC.

py-libp2p's pub/sub attaches the sender's signed peer record (an Envelope: protobuf and an
Ed25519 signature) to every RPC it sends, and checks it on every RPC it receives
(`libp2p.pubsub.utils.maybe_consume_signed_record`), twice for an RPC that carries control
messages (Pubsub reads it, GossipSub.handle_rpc checks it again): about an eighth of an idle
agent's CPU (py-spy). A sender reuses the same envelope bytes until its addresses change.

`install()` puts a wrapper in the modules that call the check by name. The wrapper remembers,
per peer (the connection's Noise-authenticated peer), the envelope bytes that last passed, and
lets the same bytes from the same peer through without checking them again for REVERIFY_S (so
the peerstore's certified addresses, kept 2 h by each check, stay fresh). Any other bytes are
checked in full; a failed check forgets the peer's entry. At most MAX_PEERS entries are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import libp2p.pubsub.gossipsub
import libp2p.pubsub.pubsub
from libp2p.pubsub import utils

from beemesh.mesh.recent import Recent

REVERIFY_S = 600.0
MAX_PEERS = 4096
CALLERS = (libp2p.pubsub.pubsub, libp2p.pubsub.gossipsub)  # call the check by name

Check = Callable[[Any, Any, Any], bool]


class SenderRecords:
    """The check with its memory of what passed (clock injected for tests)."""

    def __init__(self, check: Check, clock: Callable[[], float] = time.monotonic) -> None:
        self.check = check
        self.clock = clock
        self.passed = Recent(MAX_PEERS)  # peer -> (record bytes, checked at)
        self.skipped = 0

    def __call__(self, msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        record = msg.senderRecord
        seen = self.passed.get(peer_id)
        now = self.clock()
        if seen is not None and seen[0] == record and now - seen[1] < REVERIFY_S:
            self.skipped += 1
            return True
        ok = self.check(msg, host, peer_id)
        if ok:
            self.passed.renew(peer_id, (record, now))
        else:
            self.passed.pop(peer_id, None)
        return ok


def install() -> SenderRecords:
    """Wrap py-libp2p's check where pub/sub calls it (once; later calls return the same)."""
    current = CALLERS[0].maybe_consume_signed_record
    if isinstance(current, SenderRecords):
        return current
    wrapper = SenderRecords(utils.maybe_consume_signed_record)
    for module in CALLERS:
        if module.maybe_consume_signed_record is not utils.maybe_consume_signed_record:
            raise RuntimeError(f"{module.__name__} no longer calls maybe_consume_signed_record "
                               "by name: check beemesh/mesh/sender_records.py")
        module.maybe_consume_signed_record = wrapper  # type: ignore[attr-defined]
    return wrapper
