"""A hostile process driven phase by phase: it prints one JSON line per phase and waits for a
line on stdin before the next, so a test can look at the mesh while the process stays
connected (tests/support/workplane_intruder.py, tests/support/rogue.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


class Phased:
    def __init__(self, script: Path, *argv: str) -> None:
        self.name = script.stem
        self.proc = subprocess.Popen([sys.executable, str(script), *argv],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def phase(self, timeout: float = 60) -> dict[str, Any]:
        """The next JSON line it prints (AssertionError, with its stderr, if none comes)."""
        got: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not got or not got[0]:
            self.proc.kill()
            raise AssertionError(f"{self.name} said nothing within {timeout:.0f} s; stderr:\n"
                                 f"{self.proc.communicate(timeout=10)[1][-3000:]}")
        out = json.loads(got[0])
        assert out["phase"] != "error", out
        return out

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def next(self) -> None:
        self.send("next")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
