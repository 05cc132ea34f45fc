"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from beemesh.lab.localmesh import LocalMesh


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalMesh]:
    """Real agents as separate processes, stopped (SIGTERM, then SIGKILL) after the test."""
    mesh = LocalMesh.create(tmp_path)
    try:
        yield mesh
    finally:
        mesh.close()
