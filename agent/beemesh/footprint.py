"""What one process costs its machine: memory, CPU, threads and open files.

RSS counts every resident page, shared ones too; PSS splits each shared page between the
processes that map it; USS is what the process alone holds (its private pages: what ending
it would free). The machine cost of Beemesh is agent RSS + work plane USS when both share
code pages. Read from /proc/PID/smaps_rollup (one summary line per figure, cheap) and psutil.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psutil

_ROLLUP_FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "private",
                  "Private_Dirty": "private"}


@dataclass(frozen=True)
class Footprint:
    pid: int
    rss_bytes: int
    pss_bytes: int
    uss_bytes: int
    cpu_seconds: float
    threads: int
    open_files: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_rollup(text: str) -> dict[str, int]:
    """Bytes of rss, pss and private (= USS) from the text of /proc/PID/smaps_rollup."""
    out = {"rss": 0, "pss": 0, "private": 0}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        field = _ROLLUP_FIELDS.get(key.strip())
        parts = rest.split()
        if field and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[field] += int(parts[0]) * 1024
    return out


def measure(pid: int) -> Footprint | None:
    """The footprint of process `pid`, or None when it is gone or not ours to read."""
    try:
        proc = psutil.Process(pid)
        with open(f"/proc/{pid}/smaps_rollup") as f:
            mem = parse_rollup(f.read())
        cpu = proc.cpu_times()
        return Footprint(pid=pid, rss_bytes=mem["rss"], pss_bytes=mem["pss"],
                         uss_bytes=mem["private"], cpu_seconds=round(cpu.user + cpu.system, 2),
                         threads=proc.num_threads(), open_files=proc.num_fds())
    except (OSError, psutil.Error):
        return None
