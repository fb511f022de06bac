"""A real analytics worker on a real store behind nats-server with the shipped `deploy/nats/auth.conf`.

The worker runs in-process under the `analytics` user (its inbox prefix as deployed); the attacker and
honest clients connect as `query`, the role every browser gets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client

from tests.analytics.test_replay import tape, write_store
from tests.harness import Running, run_services, wait_for
from tests.operate.test_permissions import INBOX, secured_server
from tradetape.bus.subjects import query_subject
from tradetape.settings import Settings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass
class SecuredWorker:
    url: str
    passwords: dict[str, str]
    settings: Settings
    running: Running
    start_ms: int
    """The stored tape's first millisecond (BTCUSDT, 7 days before `end_ms`, about a trade a second)."""
    end_ms: int

    async def connect(self, role: str = "query") -> Client:
        return await nats.connect(
            self.url, user=role, password=self.passwords[role], inbox_prefix=INBOX[role], allow_reconnect=False
        )


async def _answers(nc: Client) -> bool:
    await nc.request(query_subject("coverage", "BTCUSDT"), b"{}", timeout=5)
    return True


@contextlib.asynccontextmanager
async def secured_worker(directory: Path, *, trades: int = 60_000, **overrides: object) -> AsyncIterator[SecuredWorker]:
    """The worker serving `trades` BTCUSDT trades over the last 7 days (2 days of hour segments are young windows)."""
    async with secured_server(directory) as (url, passwords):
        end_ms = int(time.time() * 1000)
        start_ms = end_ms - 7 * DAY_MS
        own = {"nats_user": "analytics", "nats_password": passwords["analytics"]}
        own["nats_inbox_prefix"] = INBOX["analytics"]
        settings = Settings(
            nats_url=url, data_dir=directory / "data", symbols=("BTCUSDT", "ETHUSDT"), **own, **overrides
        )
        write_store(settings.shard_dir, {"BTCUSDT": tape(trades, start_ms, 7 * DAY_MS, 11, 1)}, end_ms - 2 * HOUR_MS)
        async with run_services(settings, "analytics") as running:
            worker = SecuredWorker(url, passwords, settings, running, start_ms, end_ms)
            probe = await worker.connect()
            try:
                await wait_for(lambda: _answers(probe), timeout=30, running=running)
            finally:
                await probe.close()
            yield worker
