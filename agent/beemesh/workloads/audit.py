"""The audit trail's entries, their bound and their file format (sans-IO).

Every operator request an agent accepts (an operator-signed message whose signature it
checked: apply, delete, cordon, drain, logs, ...) becomes one `AuditEntry`: what was asked,
of what, who signed it (the operator's name in `operators.trust` and its key's fingerprint),
when it was signed and when this agent accepted it. `AuditTrail` knows the newest entries
within `max_entries` and `max_bytes` (the oldest go first) and gives each new one's JSON line;
the agent appends it to its file (`machine/audit_log.py`). `parse` reads such a file
back without trusting it: each line is checked, bad ones are skipped and counted.

A new operator kind is audited by one line in `ACTIONS`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from beemesh import wire
from beemesh.identity import fingerprint

# Operator kind -> the action the audit trail names (one line per kind).
ACTIONS: dict[str, str] = {
    "Workload": "apply",
    "Delete": "delete",
    "Cordon": "cordon",
    "Drain": "drain",
    "LogsRequest": "logs",
    "ExecRequest": "exec",
    "Revoke": "revoke",
}

MAX_ENTRIES = 2000
MAX_BYTES = 512 * 1024
MAX_FIELD = 200  # characters kept of any one field (a target, an operator's name)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: float  # when this agent accepted it (its clock)
    signed_at: float  # the request's signed timestamp (the operator's clock)
    action: str
    target: str
    signer: str  # the operator's name in the trust list ("" if it has none)
    key: str  # fingerprint of the operator key that signed it
    ref: str  # names the signed request (signer and nonce): one entry per request

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_line(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode() + b"\n"

    @property
    def text(self) -> str:
        who = f"{self.signer} ({self.key})" if self.signer else f"key {self.key}"
        return f"{self.action} {self.target} by {who}".replace("  ", " ")


def describe(body: Mapping[str, Any]) -> str:
    """The scalar fields of a request's body, e.g. `machine=12D3... cordoned=False`."""
    return " ".join(f"{k}={v}" for k, v in sorted(body.items())
                    if isinstance(v, str | int | float | bool))[:MAX_FIELD]


def entry_for(env: wire.Envelope, signer: str, now: float, target: str = "") -> AuditEntry | None:
    """The entry for an accepted operator request (None: a kind the trail does not name).
    `target` overrides what is read from the body (an apply names its workload)."""
    action = ACTIONS.get(env.kind)
    if action is None:
        return None
    ref = hashlib.sha256(env.sender + env.nonce).hexdigest()[:16]
    return AuditEntry(ts=now, signed_at=env.ts_ms / 1000, action=action,
                      target=(target or describe(env.body))[:MAX_FIELD],
                      signer=signer[:MAX_FIELD], key=fingerprint(env.sender), ref=ref)


class AuditTrail:
    """Which requests the trail holds: the newest entries within `max_entries` and
    `max_bytes` (their lines' size). The lines themselves are on disk only (appended,
    `files.WriteBehind.append`): in memory each entry is its reference and its size."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._kept: deque[tuple[str, int]] = deque()  # (ref, size of its line)
        self._refs: set[str] = set()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, entry: AuditEntry) -> bytes | None:
        """The line to append for `entry` (None: this request is in the trail already, e.g.
        a Delete accepted from the CLI and then again from the topic)."""
        if entry.ref in self._refs:
            return None
        line = entry.to_line()
        self._kept.append((entry.ref, len(line)))
        self._refs.add(entry.ref)
        self._bytes += len(line)
        while len(self._kept) > self.max_entries or (
                self._bytes > self.max_bytes and len(self._kept) > 1):
            old_ref, size = self._kept.popleft()
            self._refs.discard(old_ref)
            self._bytes -= size
        return line

    def refs(self) -> list[str]:
        """The requests held, oldest first."""
        return [ref for ref, _ in self._kept]


_FIELDS = {f.name for f in fields(AuditEntry)}


def _entry(raw: Any) -> AuditEntry:
    if not isinstance(raw, dict) or set(raw) != _FIELDS:
        raise ValueError("not an audit entry")
    for name in ("ts", "signed_at"):
        v = raw[name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} is not a time")
    for name in ("action", "target", "signer", "key", "ref"):
        if not isinstance(raw[name], str) or len(raw[name]) > MAX_FIELD:
            raise ValueError(f"{name} is not a short string")
    return AuditEntry(float(raw["ts"]), float(raw["signed_at"]), raw["action"], raw["target"],
                      raw["signer"], raw["key"], raw["ref"])


def parse(data: bytes) -> tuple[list[AuditEntry], list[str]]:
    """The entries of an audit file, and what was wrong with the lines that were skipped."""
    entries: list[AuditEntry] = []
    problems: list[str] = []
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            entries.append(_entry(json.loads(line)))
        except (ValueError, RecursionError) as e:  # JSON, UTF-8 and shape errors
            problems.append(f"line {n}: {str(e)[:80]}")
    return entries, problems
