"""`tradetape exchange --from-store` with a range no worker would replay: refused at start with the reason, not a
simulator that listens, serves nothing and logs the refusal once a first bot has connected."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


async def exchange_from_store(tmp_path: Path, start: str, end: str) -> tuple[int | None, str]:
    """The command's exit code and stderr; None when it was still running after 20 s (then killed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradetape.cli",
        "exchange",
        "--from-store",
        "--start",
        start,
        "--end",
        end,
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        env={**os.environ, "NATS_URL": "nats://127.0.0.1:1"},  # never asked: the range is refused first
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        return None, ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("2026-12-02T00:00Z", "2026-12-01T00:00Z", "start must be before end"),
        ("2026-10-01T00:00Z", "2026-12-01T00:00Z", "range_too_large"),
    ],
)
async def test_a_range_no_worker_replays_is_refused_at_start(tmp_path: Path, start: str, end: str, says: str) -> None:
    code, err = await exchange_from_store(tmp_path, start, end)
    assert code == 2 and says in err, (code, err)
