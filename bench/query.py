"""How fast the tape answers over long ranges: RocksDB range read + volume profile.

Writes `--hours` of synthetic BTCUSDT trades at `--rate` trades/s into a temporary shard
through the real `WindowStore` (1-second windows), then times, through the same code the
analytics service runs, a coverage read and a volume profile for 15 min, 1 h and the
whole range. Prints one line per figure; nothing here is part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

from tradetape.domain.columns import TradeColumns
from tradetape.domain.gaps import coverage
from tradetape.domain.profile import volume_profile
from tradetape.store.reader import SecondaryStore, read_trades
from tradetape.store.writer import WindowStore

START_MS = 1_767_225_600_000
SYMBOL = "BTCUSDT"


def synthetic_second(rng: np.random.Generator, second: int, rate: int, first_id: int) -> TradeColumns:
    ids = np.arange(first_id, first_id + rate, dtype=np.int64)
    price = 8_700_000_000_000 + (np.cumsum(rng.integers(-1, 2, rate)) * 1_000_000).astype(np.int64)
    qty = (rng.pareto(1.5, rate) * 100_000 + 1_000).astype(np.int64)
    times = START_MS + second * 1000 + np.sort(rng.integers(0, 1000, rate)).astype(np.int64)
    return TradeColumns(ids, price, qty, ids, ids, times, rng.random(rate) < 0.5)


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    runs = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - started)
    return result, statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=300, help="trades per second written")
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="tradetape-bench-query-") as tmp:
        path = Path(tmp) / "shard"
        store = WindowStore(path)
        started = time.perf_counter()
        next_id = 1
        for chunk in range(0, seconds, 60):
            windows = {}
            for second in range(chunk, min(chunk + 60, seconds)):
                windows[(SYMBOL, START_MS + second * 1000)] = synthetic_second(rng, second, args.rate, next_id)
                next_id += args.rate
            store.write(windows)
        write_s = time.perf_counter() - started
        total = seconds * args.rate
        print(f"wrote {total:,} trades in {seconds:,} windows: {total / write_s:,.0f} trades/s (WindowStore.write)")
        reader = SecondaryStore(path)
        db = reader.catch_up()
        for label, span_s in (("15 min", 900), ("1 h", 3600), (f"{args.hours:g} h", seconds)):
            end = START_MS + seconds * 1000
            begin = end - span_s * 1000
            trades, read_s = timed(lambda b=begin, e=end: read_trades(db, SYMBOL, b, e))
            _, cov_s = timed(lambda t=trades: coverage(t.agg_id, t.time))
            _, prof_s = timed(
                lambda t=trades: volume_profile(t.price, t.qty, t.buyer_maker, 1_000_000_000, Decimal("0.7"))
            )
            print(
                f"{label:>7}: {len(trades):>10,} trades, {span_s:>6,} keys  read {read_s * 1000:8.1f} ms"
                f"  coverage {cov_s * 1000:6.1f} ms  volume profile (row 10) {prof_s * 1000:7.1f} ms"
            )
        reader.close()
        store.close()


if __name__ == "__main__":
    main()
