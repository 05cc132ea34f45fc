"""The agent's audit trail on disk: every operator request it accepted, kept across restarts.

The services that accept operator-signed requests (`requests`: apply, delete, cordon, drain;
`logs`; `inbound`: a Delete, or a Cordon or Drain of this machine, arriving on the topic)
call `accepted` once the signature has been checked. The entry (`workloads.audit`) goes into
the event log at once (`Audit` events, with the signer) and its line is queued to be appended
to `STATE_DIR/audit.jsonl` (`files.WriteBehind.append`; the file is cut to its newest
`MAX_BYTES` once it holds twice that): a full disk never stops a handler, it shows in
`beemesh status` like any state write. At start the file is read back into the event
log, so `beemesh events` shows who asked for what after a restart. A damaged file costs one
warning line: its good entries are kept and the file is set aside as `audit.jsonl.bad`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from beemesh import wire
from beemesh.events import EventLog
from beemesh.files import WriteBehind, newest_lines
from beemesh.workloads.audit import MAX_BYTES, AuditEntry, AuditTrail, entry_for, parse

log = logging.getLogger("beemesh.audit")

FILE_NAME = "audit.jsonl"

Audit = Callable[[wire.Envelope, float, str], None]  # `AuditLog.accepted`: what services get


class AuditLog:
    def __init__(self, state_dir: Path, files: WriteBehind, events: EventLog,
                 operators: Callable[[], Mapping[bytes, str]], machine: str) -> None:
        """`operators`: the trust list, operator key -> name."""
        self.path = state_dir / FILE_NAME
        self.files = files
        self.events = events
        self.operators = operators
        self.machine = machine
        self.trail = AuditTrail()

    def accepted(self, env: wire.Envelope, now: float, target: str = "") -> None:
        """An operator-signed request this agent checked and acts on."""
        entry = entry_for(env, self.operators().get(env.sender, ""), now, target)
        line = None if entry is None else self.trail.add(entry)
        if entry is None or line is None:
            return
        self._event(entry)
        self.files.append(self.path, line, 0o600, MAX_BYTES)

    def restore(self) -> None:
        """Read the trail an earlier run kept into the event log; never raises."""
        try:
            with self.path.open("rb") as f:
                data = f.read(2 * MAX_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cannot read the audit trail %s (%s); it starts empty", self.path,
                        e.strerror or e)
            return
        entries, problems = parse(data[:2 * MAX_BYTES])
        if len(data) > 2 * MAX_BYTES:
            problems.append(f"longer than {2 * MAX_BYTES} bytes; the rest was not read")
        kept = []
        for entry in sorted(entries, key=lambda e: e.ts):
            line = self.trail.add(entry)
            if line is not None:
                self._event(entry)
                kept.append(line)
        if problems:
            bad = self.path.with_name(FILE_NAME + ".bad")
            with contextlib.suppress(OSError):
                self.path.replace(bad)
            self.files.write(self.path, newest_lines(b"".join(kept), MAX_BYTES), 0o600)
            log.warning("audit trail %s is damaged: %d entr%s skipped (%s); %d kept; the file "
                        "was set aside as %s", self.path, len(problems),
                        "y" if len(problems) == 1 else "ies", problems[0], len(entries),
                        bad.name)

    def _event(self, entry: AuditEntry) -> None:
        self.events.add(entry.ts, "Audit", entry.text, machine=self.machine,
                        signer=entry.signer or entry.key)
