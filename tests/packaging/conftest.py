"""Fixtures for the .pyz tests (tests/packaging). They build the files with `make pyz` when
missing or stale, and fail with the command to run when a tool is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyz_support import ensure_built, require_arm


@pytest.fixture(scope="session")
def pyz_files() -> dict[str, Path]:
    return ensure_built()


@pytest.fixture(scope="session")
def pyz_x86(pyz_files: dict[str, Path]) -> Path:
    return pyz_files["x86_64"]


@pytest.fixture(scope="session")
def pyz_arm(pyz_files: dict[str, Path]) -> Path:
    return pyz_files["aarch64"]


@pytest.fixture(scope="session")
def arm_python(pyz_files: dict[str, Path]) -> Path:
    return require_arm()


@pytest.fixture(scope="session")
def x86_pex_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One extraction dir shared by the x86_64 tests (the first run fills it)."""
    return tmp_path_factory.mktemp("pex-root-x86_64")


@pytest.fixture(scope="session")
def arm_pex_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One extraction dir shared by the aarch64 tests (first run ~20 s under qemu)."""
    return tmp_path_factory.mktemp("pex-root-aarch64")
