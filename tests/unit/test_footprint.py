"""The footprint read from /proc: parsing smaps_rollup, and a live process measured."""

from __future__ import annotations

import os
import subprocess
import sys

from beemesh import footprint

ROLLUP = """\
55d0a0a00000-7ffd7b5fe000 ---p 00000000 00:00 0                          [rollup]
Rss:               61440 kB
Pss:               40960 kB
Pss_Anon:          20480 kB
Shared_Clean:      20480 kB
Shared_Dirty:          0 kB
Private_Clean:      8192 kB
Private_Dirty:     32768 kB
Referenced:        61440 kB
Swap:                  0 kB
"""


def test_rollup_gives_rss_pss_and_private_pages_in_bytes() -> None:
    assert footprint.parse_rollup(ROLLUP) == {
        "rss": 61440 * 1024, "pss": 40960 * 1024, "private": (8192 + 32768) * 1024}


def test_a_garbled_rollup_counts_nothing_rather_than_failing() -> None:
    assert footprint.parse_rollup("Rss: lots\nPss: 12 MB\nPrivate_Dirty:\n") == {
        "rss": 0, "pss": 0, "private": 0}


def test_this_process_is_measured() -> None:
    f = footprint.measure(os.getpid())
    assert f is not None
    assert 0 < f.uss_bytes <= f.rss_bytes and 0 < f.pss_bytes <= f.rss_bytes
    assert f.threads >= 1 and f.open_files >= 3 and f.cpu_seconds > 0


def test_a_process_that_has_ended_measures_as_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert footprint.measure(child.pid) is None
