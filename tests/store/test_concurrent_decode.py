"""Decoding stored segments from many threads at once returns exactly what one thread does.

The analytics worker answers queries in threads (`query_concurrency`). One zstd
decompressor shared between them returned wrong bytes or "Data corruption detected"
within seconds (and crashed the worker); each thread now has its own.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.store.synthetic import same, tape
from tradetape.domain.columns import TradeColumns
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.segments import decode_histogram, decode_segment, encode_histogram, encode_segment

THREADS = 6
ROUNDS = 40


def test_threads_decoding_different_segments_get_their_own_trades() -> None:
    segments = [tape(20_000 + 997 * i, 3_600_000, seed=i, first_id=1 + 10**6 * i) for i in range(12)]
    encoded = [encode_segment(s) for s in segments]
    histograms = [PriceLevels.of_trades(s) for s in segments]
    encoded_levels = [encode_histogram(levels) for levels in histograms if levels is not None]
    assert len(encoded_levels) == len(segments)
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def hammer(worker: int) -> None:
        start.wait()
        for round_ in range(ROUNDS):
            i = (worker * 5 + round_) % len(encoded)
            try:
                decoded: TradeColumns = decode_segment(encoded[i])
                levels = decode_histogram(encoded_levels[i])
            except ValueError as exc:
                failures.append(f"thread {worker} segment {i}: {exc}")
                continue
            if not same(decoded, segments[i]):
                failures.append(f"thread {worker} segment {i}: wrong trades")
            expected = histograms[i]
            if expected is None or not all(map(np.array_equal, levels.arrays(), expected.arrays())):
                failures.append(f"thread {worker} histogram {i}: wrong levels")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(hammer, range(THREADS)))
    assert not failures, f"{len(failures)} bad decodes, e.g. {failures[:3]}"


def test_threads_encoding_at_once_write_segments_that_decode_to_their_trades() -> None:
    segments = [tape(15_000 + 331 * i, 3_600_000, seed=100 + i) for i in range(THREADS * 2)]

    def encode(i: int) -> bytes:
        return encode_segment(segments[i])

    with ThreadPoolExecutor(THREADS) as pool:
        encoded = list(pool.map(encode, range(len(segments))))
    assert all(same(decode_segment(e), s) for e, s in zip(encoded, segments, strict=True))
