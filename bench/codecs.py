"""What a stored value costs to encode and decode, checksums included: one real-like busy hour of BTCUSDT.

Generates a day of real-like trades (`tape_data.generate`, 2.3M a day), takes its first hour
(~96k trades) and times, as the store does them: the hour's segment, histogram and summary,
a minute of 1-second windows, and the completeness index, each sealed (CRC-32,
`tradetape.store.sealed`) and the segment's zstd frame with its content checksum. Prints
the median of repeated runs in µs, beside the CRC-32 alone over the segment's bytes.
Nothing here is part of the test run.
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable

from tape_data import generate  # bench/tape_data.py

from tradetape.domain.id_runs import IdRuns
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.codec import decode_windows, encode_window
from tradetape.store.index import decode_runs, encode_runs
from tradetape.store.keys import window_start
from tradetape.store.segments import (
    SEGMENT_MS,
    SegmentSummary,
    decode_histogram,
    decode_stored_segment,
    encode_histogram,
    encode_stored_segment,
)
from tradetape.store.windows import split_by


def median_us(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1e6


def main() -> None:
    day = next(generate(1, 2_300_000, 7))
    first = int(day.time[0])
    hour = day.take(day.time < first - first % SEGMENT_MS + SEGMENT_MS)
    minute = hour.take(hour.time < first + 60_000)
    levels = PriceLevels.of_trades(hour)
    assert levels is not None
    segment, histogram = encode_stored_segment(hour), encode_histogram(levels)
    summary, index = SegmentSummary.of(0, hour).encode(), encode_runs(IdRuns.of_ids(hour.agg_id))
    windows = [encode_window(part) for _, part in split_by(minute, window_start(minute.time))]
    print(f"{len(hour)} trades in the hour; segment {len(segment)} B, histogram {len(histogram)} B,"
          f" {len(windows)} windows {sum(map(len, windows))} B")
    rows: list[tuple[str, Callable[[], object], int]] = [
        ("segment encode (1 h)", lambda: encode_stored_segment(hour), 10),
        ("segment decode (1 h)", lambda: decode_stored_segment(segment), 30),
        ("crc32 of the segment", lambda: zlib.crc32(segment), 300),
        ("histogram encode", lambda: encode_histogram(levels), 50),
        ("histogram decode", lambda: decode_histogram(histogram), 200),
        ("summary decode", lambda: SegmentSummary.decode(summary), 5000),
        ("60 windows encode", lambda: [encode_window(p) for _, p in split_by(minute, window_start(minute.time))], 30),
        ("60 windows decode", lambda: decode_windows(windows), 200),
        ("index decode", lambda: decode_runs(index), 5000),
    ]
    for name, fn, repeat in rows:
        print(f"{name:24s} {median_us(fn, repeat):10.1f} µs")


if __name__ == "__main__":
    main()
