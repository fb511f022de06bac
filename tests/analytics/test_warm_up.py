"""A restarted analytics worker warms its cache with the newest `query_warm_hours`, and its query threads' heaps,
before it serves.

Before, a fresh worker decoded every segment its first queries touched (a 24 h `bars` answer
cold 91-188 ms against 30-42 warm over 16M trades); now the first query about recent data
finds every segment it reads in the cache: it looks none up in the store (`misses`). And each
query thread's first answer page-faulted in every page of its arrays (a 24 h market_profile:
6,590 faults, 75 ms against 12); now each thread's arena holds pages already faulted in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import nats
import numpy as np
import pytest
from nats.aio.client import Client

from tests.harness import Running, request, run_services, wait_for
from tests.store.synthetic import SYMBOL, T0, tape, write_rolled
from tradetape.api.registry import methods
from tradetape.settings import Settings
from tradetape.store.writer import ShardWriter

pytestmark = pytest.mark.timeout(90)

HOUR_MS = 3_600_000
HOURS = 30
TAPE_END = T0 + HOURS * HOUR_MS
RECENT = {"start": TAPE_END - 24 * HOUR_MS - 17 * 60_000, "end": TAPE_END - 13 * 60_000}
"""A day ending a little before the newest trade, ragged at both ends (edges decoded from segments' trades)."""
OLDER = {"start": T0 + HOUR_MS - 17 * 60_000, "end": T0 + 4 * HOUR_MS + 7 * 60_000}
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("bars", {**RECENT, "interval": "1m"}),
    ("flow", {**RECENT, "interval": "1m"}),
    ("vwap", {**RECENT, "interval": "1m"}),
    ("volume_profile", {**RECENT, "row_size": "10"}),
    ("footprint", {**RECENT, "interval": "5m", "row_size": "100"}),
    ("market_profile", {**RECENT, "period": "30m", "row_size": "100"}),
]


def write_tape(settings: Settings) -> None:
    store = ShardWriter(settings.shard_dir)
    try:
        write_rolled(store, tape(HOURS * 600, HOURS * HOUR_MS), chunk_ms=HOUR_MS)
    finally:
        store.close()


async def serving(client: Client, running: Running) -> None:
    async def listed() -> bool:
        msg = await client.request("$SRV.INFO.tradetape-analytics", b"", timeout=2)
        return len(json.loads(msg.data)["endpoints"]) == len(methods()) + 2  # the methods, tape.schema and replay

    await wait_for(listed, timeout=30, running=running)


async def misses_of(client: Client, running: Running, method: str, body: dict[str, Any]) -> int:
    """The store reads (cache misses) one query needed, after checking it answered."""
    cache = running.services["analytics"]._reader.cache
    before = cache.misses
    reply, _ = await request(client, f"tape.query.{method}.{SYMBOL}", body, timeout=30)
    assert "error" not in reply, reply
    return int(cache.misses - before)


async def test_the_first_queries_about_the_newest_day_read_no_segment_from_disk(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,))
    write_tape(settings)
    caplog.set_level(logging.INFO, logger="tradetape.services.analytics.warming")
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            await serving(client, running)
            for method, body in QUERIES:
                assert await misses_of(client, running, method, body) == 0, method
            assert running.services["analytics"]._reader.cache.hits > 0
            assert await misses_of(client, running, "bars", {**OLDER, "interval": "1m"}) > 0  # not warmed
        finally:
            await client.close()
    warmed = [r for r in caplog.records if r.getMessage() == "cache warmed"]
    assert len(warmed) == 1 and warmed[0].__dict__["complete"] is True
    assert warmed[0].__dict__["segments"] == 26  # the newest day's 25 segments and one more for ranges ending earlier


async def test_without_warming_the_first_query_reads_its_segments(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,), query_warm_hours=0)
    write_tape(settings)
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            await serving(client, running)
            assert await misses_of(client, running, "bars", {**RECENT, "interval": "1m"}) >= 25
        finally:
            await client.close()


def faults_allocating(barrier: threading.Barrier) -> int:
    """Page faults of this thread while it allocates and writes 32 MB in pieces of 4 MB (numpy, as a query does)."""
    barrier.wait()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    pieces = [np.ones(1 << 19) for _ in range(8)]
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    del pieces
    return faults


async def faults_per_query_thread(running: Running, threads: int) -> list[int]:
    """Each query thread's faults allocating 32 MB (a barrier makes every thread take one task)."""
    service = running.services["analytics"]
    barrier = threading.Barrier(threads, timeout=20)
    loop = asyncio.get_running_loop()
    tasks = [loop.run_in_executor(service._threads, faults_allocating, barrier) for _ in range(threads)]
    return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("warm_hours", [24.0, 0.0], ids=["warmed", "not-warmed"])
async def test_each_query_thread_starts_with_its_heap_faulted_in(
    nats_url: str, tmp_path: Path, warm_hours: float
) -> None:
    settings = Settings(
        nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,), query_warm_hours=warm_hours, query_concurrency=3
    )
    write_tape(settings)
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            await serving(client, running)
            faults = await faults_per_query_thread(running, 3)
        finally:
            await client.close()
    if warm_hours:
        assert max(faults) < 1_000, faults  # ~4,100 faults without: all but a few pages were faulted in before serving
    else:
        assert min(faults) > 2_000, faults


FIRST_ANSWERS = """
import asyncio, json, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import orjson

from tradetape.api.registry import methods
from tradetape.services.analytics.service import AnalyticsService
from tradetape.services.analytics.warming import before_serving
from tradetape.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), symbols=(sys.argv[2],))
service = AnalyticsService(settings, SimpleNamespace(max_payload=1 << 20))
registered = methods()  # as a worker does before it serves: each endpoint named
threads = ThreadPoolExecutor(settings.query_concurrency)
asyncio.run(before_serving(service._reader, settings.symbols, settings, threads))
imported = {}
for name, body in json.loads(sys.argv[3]):
    before = set(sys.modules)
    service.answer(registered[name], sys.argv[2], orjson.dumps(body))
    imported[name] = sorted(set(sys.modules) - before)
threads.shutdown()
service._reader.close()
print(json.dumps(imported))
"""


@pytest.mark.slow
def test_no_first_answer_of_a_fresh_worker_imports_a_module(tmp_path: Path) -> None:
    """Found: numpy 2.4's `np.unique` imports `numpy.ma` on its first call, ~15-35 ms of a fresh worker's first
    vwap answer (its cold figure 2 x warm with every segment warmed). A worker pays for it before it serves."""
    settings = Settings(data_dir=tmp_path, symbols=(SYMBOL,))
    write_tape(settings)
    done = subprocess.run(
        [sys.executable, "-c", FIRST_ANSWERS, str(tmp_path), SYMBOL, json.dumps(QUERIES)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.splitlines()[-1])
    assert set(imported) == {name for name, _ in QUERIES}
    assert {name: modules for name, modules in imported.items() if modules} == {}


HELPER_FAULTS = """
import asyncio, resource, sys, threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tradetape.services.analytics.warming import before_serving
from tradetape.settings import Settings
from tradetape.store import DECODE_HELPER_THREADS, ShardReader, decode_helpers

settings = Settings(data_dir=Path(sys.argv[1]), symbols=(sys.argv[2],))
reader = ShardReader(settings.shard_dir, cache_bytes=settings.query_cache_mb * 2**20)
threads = ThreadPoolExecutor(settings.query_concurrency)
asyncio.run(before_serving(reader, settings.symbols, settings, threads))
barrier = threading.Barrier(DECODE_HELPER_THREADS, timeout=20)

def faults() -> int:
    barrier.wait()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    pieces = [np.ones(1 << 19) for _ in range(8)]
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

print(max(future.result() for future in [decode_helpers.submit(faults) for _ in range(DECODE_HELPER_THREADS)]))
threads.shutdown()
reader.close()
"""


@pytest.mark.slow
def test_the_store_decoding_helpers_start_with_their_heap_faulted_in(tmp_path: Path) -> None:
    """Found: a read's values decoded on a helper thread (`tradetape.store.decoding`) land in its own malloc arena,
    which a fresh worker had not faulted in: an older day's first read took 4,785 page faults (~10 ms of CPU)."""
    settings = Settings(data_dir=tmp_path, symbols=(SYMBOL,))
    write_tape(settings)
    done = subprocess.run(
        [sys.executable, "-c", HELPER_FAULTS, str(tmp_path), SYMBOL], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.splitlines()[-1]) < 1_000  # ~4,100 faults without: all but a few pages faulted in before
