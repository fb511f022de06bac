"""`tradetape status --watch` into a pipe: every screen whole, as it comes."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import nats
import pytest

from tests.cluster.topology import child_env
from tradetape.bus.replies import ReplyGuard
from tradetape.runtime.metrics import announce
from tradetape.settings import Settings
from tradetape.store.shards import write_manifest

pytestmark = pytest.mark.timeout(90)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "1000SHIBUSDT")


@pytest.mark.slow
async def test_watch_into_a_pipe_prints_each_screen_with_full_columns(nats_url: str, tmp_path: Path) -> None:
    """Piped, `--watch` printed nothing until Ctrl-C, then one screen cut to 80 columns (`B…`)."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=SYMBOLS)
    write_manifest(settings.shard_dir, "main", SYMBOLS)
    client = await nats.connect(nats_url)
    presence = await announce(client, "persist", {"symbols": ",".join(SYMBOLS), "shard": "main"}, ReplyGuard("p"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradetape.cli",
        "status",
        "--watch",
        "0.3",
        env=child_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        screens: list[str] = []
        lines: list[str] = []
        while len(screens) < 2:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "status exited"
            if line.startswith("tradetape status") and lines:
                screens.append("".join(lines))
                lines = []
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
        await presence.stop()
        await client.close()
    for screen in screens:
        assert max(len(line) for line in screen.splitlines()) > 80 and "…" not in screen, screen
        assert "tradetape-persist" in screen and "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT +2" in screen, screen
        assert all(symbol in screen for symbol in SYMBOLS), screen
