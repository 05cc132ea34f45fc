"""`beemesh status` shows each process's footprint on one line (operator_cmds)."""

from __future__ import annotations

from beemesh.cli.operator_cmds import _footprint_line


def test_a_running_process_is_one_line_in_megabytes() -> None:
    line = _footprint_line({"pid": 7, "rss_bytes": 68 * 2**20, "pss_bytes": 49 * 2**20,
                            "uss_bytes": 47 * 2**20, "cpu_seconds": 12.34, "threads": 3,
                            "open_files": 19})
    assert line == ("rss 68.0 MB, pss 49.0 MB, uss 47.0 MB, cpu 12.3 s, 3 threads, 19 fds")


def test_a_process_not_running_says_so() -> None:
    assert _footprint_line(None) == "not running"
