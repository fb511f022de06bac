"""Several stored values of one read decoded at once: half on the reading thread, half on one shared helper thread.

Why: a fresh worker's first answer about a range it did not warm decodes every segment layer
the range spans (a day: 25 second-bar values and 2 edge segments, ~20 ms of CPU), while the
worker's other core often idles. zstd inflates with the GIL released, and numpy releases it
in its loops, so two threads decode a read's values in less wall time than one.

Bounded: one helper thread a process (`HELPER_THREADS`), shared by every query thread; a
read whose helper share has not started when the reading thread is done with its own decodes
it itself (`Future.cancel`), so a read never waits behind another read's values. Decoding
allocates what the values' own checks allow (the caller bounded them), the same whether one
thread or two do it. The decode functions keep no state but this thread's zstd objects
(`tradetape.store.packing`): safe on any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tradetape.store.sealed import decoded

T = TypeVar("T")

HELPER_THREADS = 1
"""Threads besides the reading one: two cores' worth with it (the deployment this is measured on)."""
DECODE_THREADS = HELPER_THREADS + 1
"""Values decoded side by side: a read that must not hold many large values at once asks for this many at a time."""
MIN_SHARED = 2
"""Fewer values than this are decoded on the reading thread alone (handing one over costs ~50 µs)."""

_helpers = ThreadPoolExecutor(HELPER_THREADS, thread_name_prefix="decode")


def decoded_all(items: Sequence[tuple[bytes, bytes]], decode: Callable[[bytes], T]) -> list[T]:
    """`decoded(key, value, decode)` of each of `items`, in their order; the first `StoreCorruptError` raised."""
    if len(items) < MIN_SHARED:
        return _decoded_each(items, decode)
    half = len(items) // 2
    helper = _helpers.submit(_decoded_each, items[half:], decode)
    try:
        mine = _decoded_each(items[:half], decode)
    finally:
        cancelled = helper.cancel()
    return mine + (_decoded_each(items[half:], decode) if cancelled else helper.result())


def _decoded_each(items: Sequence[tuple[bytes, bytes]], decode: Callable[[bytes], T]) -> list[T]:
    return [decoded(key, value, decode) for key, value in items]
