"""The CLI run in the test's process for tests whose services answer on the test's event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import pytest

from tests.cli_in_process import Cli


class Tradetape(Protocol):
    async def __call__(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]: ...


@pytest.fixture
def tradetape(cli: Cli, tmp_path: Path) -> Tradetape:
    """The CLI in this process, on a thread: the in-process services keep answering on the test's event loop."""

    async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return await asyncio.to_thread(cli, tmp_path, *args, **(env or {}))

    return run
