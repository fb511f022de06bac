"""Stores that several modules only read, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.store.synthetic import rolled_store, tape

HOUR = 3_600_000
BUSY_HOURS = 10


@pytest.fixture(scope="session")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten hours of 200,000 trades (about 5.5 a second), rolled up; tests only open readers on it."""
    return rolled_store(tmp_path_factory.mktemp("busy") / "busy", tape(200_000, BUSY_HOURS * HOUR, seed=11))


@pytest.fixture
def busy_copy(busy: Path, tmp_path: Path) -> Path:
    """A copy of `busy` of the test's own, for a test that changes the store (a closed RocksDB dir copies as files)."""
    return Path(shutil.copytree(busy, tmp_path / "busy"))
