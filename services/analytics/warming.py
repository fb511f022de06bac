"""What a worker does before it serves: its cache warmed with each served symbol's newest hours, numpy's first
calls made, and each query thread's malloc arena faulted in and kept.

Why: a fresh worker's first answers otherwise pay for decoding the segments they touch
(`tradetape.store.warm_up`), for modules imported on first use, and for a page fault on every page of their arrays.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tradetape.settings import Settings
from tradetape.store import DECODE_HELPER_THREADS, ShardReader, decode_helpers

logger = logging.getLogger(__name__)

HOUR_MS = 3_600_000
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
HEAP_KEEP_BYTES = 32 * 1024 * 1024
HEAP_WARM_BYTES = HEAP_KEEP_BYTES
"""What each query thread faults in before a worker serves: under glibc's trim threshold (2 x `HEAP_KEEP_BYTES`),
so kept. Measured (a 24 h market_profile 30m, its segments cached): a fresh thread's first answer 75 ms and 6,590
page faults, after 32 MB faulted in 9 ms and 61 faults, the same as its later answers."""
HEAP_WARM_PIECE = 4 * 1024 * 1024
"""Pieces under the mmap threshold (`HEAP_KEEP_BYTES`): they come from the thread's arena, which keeps them."""


async def before_serving(
    reader: ShardReader, symbols: tuple[str, ...], settings: Settings, threads: ThreadPoolExecutor
) -> None:
    """Everything a worker does before it serves: the store opened (the first query finds it open), what numpy
    does on a first call done (`first_calls`), the cache warmed (`warm_cache`), and each of the query `threads`'
    heap kept and faulted in (`keep_heap`, `warm_threads`), and the store's decoding helpers' too: they decode half of
    a read's values into their own arenas."""
    heap_kept = keep_heap()
    first_calls()
    await asyncio.to_thread(reader.open)
    await asyncio.to_thread(warm_cache, reader, symbols, settings.query_warm_hours)
    if heap_kept and settings.query_warm_hours > 0:
        await warm_threads(threads, settings.query_concurrency)
        await warm_threads(decode_helpers, DECODE_HELPER_THREADS)


def first_calls() -> None:
    """Pay now for what numpy does once a process, on a first call: numpy 2.4's `np.unique` imports `numpy.ma`
    then (measured: 15-35 ms of a fresh worker's first vwap answer, which was 2 x warm with its segments warmed)."""
    np.unique(np.zeros(2, dtype=np.int64))


def keep_heap(max_bytes: int = HEAP_KEEP_BYTES) -> bool:
    """Ask glibc to keep freed query arrays (each up to `max_bytes`) for the next query.

    Measured in bench/query.py: by default glibc returns each answer's large numpy
    temporaries to the kernel and faults them back in on the next query (about 6,000 page
    faults, half of a 1 h profile's 40 ms). Bounded, because each query thread's arena keeps
    what it freed: at 256 MB (trim at 1 GB) bench/flood.py's worker peaked at 1,505 MB, past
    `query_cache_mb + query_concurrency x query_memory_mb`; arrays above `max_bytes` (a long
    range's columns) are mapped and returned at once. True when set (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, max_bytes)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * max_bytes))
    except (OSError, AttributeError):
        return False


def warm_cache(reader: ShardReader, symbols: tuple[str, ...], hours: float) -> None:
    """Fill the cache with each of `symbols`' newest `hours` (`ShardReader.warm`); one `cache warmed` line."""
    span_ms = int(hours * HOUR_MS)
    if span_ms <= 0 or reader.cache.max_bytes <= 0:
        return
    started = time.monotonic()
    segments = corrupt = warmed = 0
    complete = True
    for symbol in symbols:
        done = reader.warm(symbol, span_ms)
        segments, corrupt, warmed = segments + done.segments, corrupt + done.corrupt, warmed + 1
        if not done.complete:
            complete = False
            break
    logger.info(
        "cache warmed",
        extra={
            "hours": hours,
            "symbols": warmed,
            "segments": segments,
            "cache_mb": round(reader.cache.held_bytes / 2**20, 1),
            "complete": complete,
            "corrupt": corrupt,
            "seconds": round(time.monotonic() - started, 2),
        },
    )


async def warm_threads(threads: ThreadPoolExecutor, count: int) -> None:
    """Fault in `HEAP_WARM_BYTES` of each of the `count` threads' own malloc arena, kept by glibc (`keep_heap`): a
    fresh thread's first answer otherwise pays a page fault for every page of its arrays."""
    barrier = threading.Barrier(count, timeout=10)  # one task a thread: each waits until all have started
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(threads, _touch_heap, barrier) for _ in range(count)))


def _touch_heap(barrier: threading.Barrier) -> None:
    """Allocate, write and free `HEAP_WARM_BYTES` in this thread, once every query thread is running one of these."""
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    pieces = [b"\x01" * HEAP_WARM_PIECE for _ in range(HEAP_WARM_BYTES // HEAP_WARM_PIECE)]  # malloc, written
    del pieces
