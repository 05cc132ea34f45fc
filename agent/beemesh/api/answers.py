"""What both API clients (the CLI's blocking one, `client`, and the work plane's trio one,
`trio_client`) make of the agent's answers, and of failing to reach it: one UserError line
naming the problem and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from beemesh.errors import UserError


def unreachable(path: Path, error: OSError) -> UserError | None:
    """The UserError for failing to connect to the agent's socket (None: not one we explain)."""
    if isinstance(error, (FileNotFoundError, ConnectionRefusedError)):
        return UserError(
            f"no agent is running at {path}; start one with `beemesh agent`, or point "
            "--api / BEEMESH_API at its socket")
    if isinstance(error, PermissionError):
        return UserError(f"permission denied on {path}; run as the agent's user or root")
    return None


def timed_out(path: Path, timeout: float | None) -> UserError:
    return UserError(f"the agent at {path} did not answer within {timeout or 0:.0f} s")


def decode(status: int, content_type: str, raw: bytes) -> Any:
    """An answer's body (JSON or text); UserError with the agent's reason for a refusal."""
    data: Any = json.loads(raw) if content_type.startswith("application/json") and raw \
        else raw.decode(errors="replace")
    if status >= 400:
        message = data.get("error") if isinstance(data, dict) else data
        raise UserError(f"agent refused: {message}")
    return data
