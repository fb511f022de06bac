"""Hostile bulk-import batches against a real persist process: refused at once, memory bounded, the tape goes on.

A batch claiming 10M trades used to make persist allocate by the claim (RSS 120 MB → 2–3
GB), block its event loop for 10–15 s and store 10M trades of quantity 0. Here every
hostile batch of `tests.store.hostile` is answered `invalid` within seconds, the process's
peak RSS (`VmHWM`) grows by less than two legal batches, and live trades keep being stored.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import orjson
import pytest

from tests.harness import wait_for
from tests.history.test_import_live import wait_for_persist
from tests.processes import ServiceProcesses, service_env
from tests.store.hostile import hostile_batches, legal_trades
from tradetape.bus.provision import ensure_streams
from tradetape.bus.subjects import import_subject
from tradetape.history.bulk import BATCH_TRADES, ImportReply, encode_batch
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades

pytestmark = pytest.mark.timeout(180)

SYMBOL = "BTCUSDT"
LEGAL_BATCH_BYTES = BATCH_TRADES * (6 * 8 + 1)
"""A full legal batch decoded: six int64 columns and the buyer-maker flags."""
HISTORY_MS = 1_767_225_600_000
ANSWER_WITHIN_S = 5.0


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def live_trade(agg_id: int) -> bytes:
    now = int(time.time() * 1000)
    return orjson.dumps({"a": agg_id, "p": "100.5", "q": "0.25", "f": agg_id, "l": agg_id, "T": now, "m": False})


def stored_count(settings: Settings) -> int:
    secondary = SecondaryStore(settings.shard_dir)
    try:
        return len(read_all_trades(secondary.catch_up(), SYMBOL))
    finally:
        secondary.close()


@pytest.mark.slow
async def test_hostile_batches_are_refused_within_bounded_memory_while_live_trades_are_stored(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=(SYMBOL,), retention_days=3650)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        persist = processes.start(["persist"], service_env(settings))
        await wait_for_persist(settings)
        for agg_id in range(1, 101):
            await js.publish(f"tape.trades.binance.{SYMBOL}", live_trade(agg_id))
        legal = encode_batch("warm-up", legal_trades(BATCH_TRADES, 10_000_001, HISTORY_MS))
        warm = ImportReply.model_validate_json((await client.request(import_subject(SYMBOL), legal, timeout=60)).data)
        assert (warm.added, warm.error_code) == (BATCH_TRADES, None)
        await wait_for(lambda: _true(stored_count(settings) == BATCH_TRADES + 100), timeout=30)
        baseline_kib = memory_kib(persist.pid, "VmHWM")

        answers: dict[str, tuple[float, ImportReply]] = {}
        for name, body in hostile_batches().items():
            started = time.monotonic()
            msg = await client.request(import_subject(SYMBOL), body, timeout=60)
            answers[name] = (time.monotonic() - started, ImportReply.model_validate_json(msg.data))
        peak_kib = memory_kib(persist.pid, "VmHWM")

        for agg_id in range(101, 201):
            await js.publish(f"tape.trades.binance.{SYMBOL}", live_trade(agg_id))
        await wait_for(lambda: _true(stored_count(settings) == BATCH_TRADES + 200), timeout=30)
        assert persist.poll() is None, "persist is still running"
    finally:
        await client.close()
    for name, (seconds, reply) in answers.items():
        assert reply.error_code == "invalid" and reply.added == 0, (name, reply)
        assert seconds < ANSWER_WITHIN_S, (name, seconds)
    assert "quantity must be positive" in (answers["quantities of 0"][1].error or "")
    grown = (peak_kib - baseline_kib) * 1024
    print(f"peak RSS {peak_kib / 1024:.1f} MiB, grown by {grown / 2**20:.1f} MiB under hostile batches")
    assert grown <= 2 * LEGAL_BATCH_BYTES, f"peak RSS grew by {grown / 2**20:.1f} MiB"


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
