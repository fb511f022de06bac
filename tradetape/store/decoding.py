"""Several stored values of one read decoded at once: half on the reading thread, half on one shared helper thread.

Why: a fresh worker's first answer about a range it did not warm decodes every segment layer
the range spans (a day: 25 second-bar values and 2 edge segments, ~20 ms of CPU), while the
worker's other core often idles. zstd inflates with the GIL released, and numpy releases it
in its loops, so two threads decode a read's values in less wall time than one.

Bounded: one helper thread a process (`DECODE_HELPER_THREADS`), shared by every query thread; a
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

DECODE_HELPER_THREADS = 1
"""Threads besides the reading one: two cores' worth with it (the deployment this is measured on)."""
DECODE_THREADS = DECODE_HELPER_THREADS + 1
"""Values decoded side by side: a read that must not hold many large values at once asks for this many at a time."""
MIN_SHARED = 2
"""Fewer values than this are decoded on the reading thread alone (handing one over costs ~50 µs)."""

decode_helpers = ThreadPoolExecutor(DECODE_HELPER_THREADS, thread_name_prefix="decode")
"""Its own malloc arena, as each query thread's: a worker faults it in before it serves (measured on an older day's
first read: 4,785 page faults and ~10 ms more CPU with it cold, 37 with it faulted in)."""


def decoded_all(items: Sequence[tuple[bytes, bytes]], decode: Callable[[bytes], T]) -> list[T]:
    """`decoded(key, value, decode)` of each of `items`, in their order; the first `StoreCorruptError` raised."""
    if len(items) < MIN_SHARED:
        return _decoded_each(items, decode)
    half = len(items) // 2
    helper = decode_helpers.submit(_decoded_each, items[half:], decode)
    try:
        mine = _decoded_each(items[:half], decode)
    finally:
        cancelled = helper.cancel()
    return mine + (_decoded_each(items[half:], decode) if cancelled else helper.result())


def _decoded_each(items: Sequence[tuple[bytes, bytes]], decode: Callable[[bytes], T]) -> list[T]:
    return [decoded(key, value, decode) for key, value in items]
