"""A fresh analytics worker opens its store before it serves, so its first query does not pay for the opening."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nats
import pytest

from tests.harness import request, run_services, wait_for
from tests.store.synthetic import SYMBOL, T0, tape, write_rolled
from tradetape.api.registry import methods
from tradetape.settings import Settings
from tradetape.store.reader import SECONDARY_DIR_PREFIX
from tradetape.store.writer import ShardWriter

pytestmark = pytest.mark.timeout(60)


def secondaries_of_this_process() -> set[Path]:
    """The secondary instances' directories this process has open (`tradetape.ground.scratch` names them by pid)."""
    return set(Path(tempfile.gettempdir()).glob(f"{SECONDARY_DIR_PREFIX}{os.getpid()}-*"))


async def test_the_store_is_open_before_the_first_query(nats_url: str, tmp_path: Path) -> None:
    """Before, the worker opened its RocksDB secondary on the first query (25-70 ms of that query's time on a day's
    store); now it is open once the worker lists its endpoints."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,))
    store = ShardWriter(settings.shard_dir)
    try:
        write_rolled(store, tape(2_000, 3_600_000))
    finally:
        store.close()
    before = secondaries_of_this_process()
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:

            async def serving() -> bool:
                msg = await client.request("$SRV.INFO.tradetape-analytics", b"", timeout=2)
                return len(json.loads(msg.data)["endpoints"]) == len(methods()) + 2

            await wait_for(serving, timeout=20, running=running)
            assert len(secondaries_of_this_process() - before) == 1  # opened, and no query asked yet
            answer, _ = await request(client, f"tape.query.coverage.{SYMBOL}", {"start": T0, "end": T0 + 3_600_000})
            assert answer["trade_count"] == 2_000
        finally:
            await client.close()
    assert secondaries_of_this_process() == before  # closed with the worker
