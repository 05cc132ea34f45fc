"""Revocations kept on disk (`STATE_DIR/revoked.cbor`), so a revoked machine stays out through
restarts of every agent. The file is a CBOR list of the operator-signed Revoke envelopes, each
checked again when it is read: a damaged file is set aside (`.bad`) with one warning, and what
could be read of it is kept."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import cbor2

from beemesh import cbor, wire
from beemesh.files import WriteBehind
from beemesh.membership.admission import MAX_REVOKED, Revocation

log = logging.getLogger(__name__)

FILE_NAME = "revoked.cbor"
MAX_FILE_BYTES = MAX_REVOKED * 1024


def load(state_dir: Path, check: Callable[[bytes], Revocation]) -> list[Revocation]:
    """Every revocation in the file that still checks out (`check` raises wire.Rejected)."""
    path = state_dir / FILE_NAME
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as e:
        log.warning("cannot read %s (%s); revocations made while this agent was away come back "
                    "from its peers when it connects", path, e)
        return []
    out: list[Revocation] = []
    try:
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"over {MAX_FILE_BYTES} bytes")
        items = cbor.loads(data)
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise ValueError("not a list of signed revocations")
        for item in items:
            try:
                out.append(check(item))
            except wire.Rejected as e:
                log.warning("%s: a revocation no longer checks out (%s); skipped", path, e)
    except (ValueError, cbor.CBORError) as e:
        bad = path.with_suffix(".bad")
        with contextlib.suppress(OSError):
            path.replace(bad)
        log.warning("%s is damaged (%s); moved to %s; revocations come back from peers", path, e,
                    bad.name)
    return out


def save(files: WriteBehind, state_dir: Path, revocations: Iterable[Revocation]) -> None:
    files.write(state_dir / FILE_NAME, cbor2.dumps([r.data for r in revocations]))
