"""What a live write into 1-second windows costs persist, and what reading the young windows costs analytics.

Persist writes each fetched batch at once (group commit): at 2,000 trades/s about 285 writes
a second of ~7 trades, at 10,000 ~100 of ~100. Most go into a second that holds trades
already. For each of `--runs` (a rate and trades a write) this bench writes `--seconds` of
real-like BTCUSDT trades (`bench/tape_data.py`) through the real `ShardWriter` (`write_new`
without the fsync, as persist writes; persist fsyncs on another thread), and after each write
a RocksDB secondary (`ShardReader`, as an analytics worker holds it, heap kept as analytics keeps it)
catches up and answers `coverage` of the last 10 s, what `bench/pipeline.py` polls. Beside
them, in the same run: the ceiling of a write, its trades alone encoded as a window value and
put into a RocksDB of their own (what a write costs at least, whatever the second held before).
Prints the medians a write. Nothing here is part of the test run.

    python bench/windows.py                         # 2,000/s 7 a write, then 10,000/s 100 a write; 20 s each
    python bench/windows.py --runs 500:2 --seconds 60
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rocksdict import WriteOptions
from tape_data import SYMBOL, generate  # bench/tape_data.py

from tradetape.domain.columns import TradeColumns
from tradetape.services.analytics.warming import keep_heap
from tradetape.store import ShardReader, window_start
from tradetape.store.codec import encode_window
from tradetape.store.rocks import open_primary
from tradetape.store.windows import split_by
from tradetape.store.writer import ShardWriter

COVERAGE_MS = 10_000


def seconds_of_trades(rate: int, seconds: int, seed: int) -> TradeColumns:
    """`seconds` of real-like trades at `rate` a second: a day of `generate`'s squeezed into them."""
    trades = next(generate(1, rate * seconds, seed))
    start = int(trades.time[0])
    time_ms = start + (trades.time - start) * seconds // 86_400
    columns = trades.arrays()
    return TradeColumns.of_arrays([*columns[:5], time_ms, *columns[6:]])


def measure(root: Path, rate: int, per_write: int, seconds: int, seed: int) -> dict[str, float]:
    trades = seconds_of_trades(rate, seconds, seed)
    writer = ShardWriter(root / "shard")
    ceiling_db = open_primary(root / "ceiling")
    unsynced = WriteOptions()
    unsynced.sync = False
    reader: ShardReader | None = None
    writes, reads, alone = [], [], []
    try:
        for at in range(0, len(trades), per_write):
            part = trades.take(slice(at, at + per_write))
            windows = {(SYMBOL, start_ms): columns for start_ms, columns in split_by(part, window_start(part.time))}
            began = time.thread_time()
            writer.write_new(windows, sync=False)
            writes.append(time.thread_time() - began)
            began = time.thread_time()
            for (_, start_ms), columns in windows.items():
                ceiling_db.put(f"{start_ms}:{at}".encode(), encode_window(columns), unsynced)
            alone.append(time.thread_time() - began)
            if reader is None:
                reader = ShardReader(root / "shard", cache_bytes=256 << 20)
                reader.open()
            began = time.thread_time()
            reader.catch_up()
            newest = int(part.time[-1])
            reader.coverage(SYMBOL, (newest - COVERAGE_MS, newest + 1))
            reads.append(time.thread_time() - began)
    finally:
        if reader is not None:
            reader.close()
        writer.close()
        ceiling_db.close()
    return {
        "writes": len(writes),
        "write": statistics.median(writes) * 1e6,
        "alone": statistics.median(alone) * 1e6,
        "read": statistics.median(reads) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs", default="2000:7,10000:100",
        help="RATE:PER_WRITE pairs, trades a second and trades a write (default 2000:7,10000:100, group-committed)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=int, default=20, help="seconds of trades written a run (default 20)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    try:
        runs = [tuple(int(n) for n in run.split(":")) for run in args.runs.split(",")]
    except ValueError:
        parser.error("--runs takes RATE:PER_WRITE pairs, e.g. 2000:7,10000:100")
    if args.seconds < 1 or any(len(run) != 2 or min(run) < 1 for run in runs):
        parser.error("rates, trades a write and seconds must be positive")
    keep_heap()
    rows = []
    for rate, per_write in runs:
        print(f"[windows] {args.seconds} s at {rate:,} trades/s, {per_write} a write", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="tradetape-bench-windows-") as tmp:
            rows.append((rate, per_write, measure(Path(tmp), rate, per_write, args.seconds, args.seed)))
    print(f"live writes of {args.seconds} s of real-like BTCUSDT; medians a write, this thread's CPU")
    print(
        f"{'trades/s':>9} {'a write':>8} {'writes':>7} {'write µs':>9} {'ceiling µs':>11} {'x ceiling':>10}"
        f" {'read µs':>8}"
    )
    for rate, per_write, row in rows:
        print(
            f"{rate:>9,} {per_write:>8} {row['writes']:>7,.0f} {row['write']:>9.0f} {row['alone']:>11.0f}"
            f" {row['write'] / max(row['alone'], 0.01):>10.1f} {row['read']:>8.0f}"
        )
    print(
        "write: ShardWriter.write_new (unsynced, as persist writes); ceiling: the write's trades alone encoded and put"
        " into a RocksDB of their own; read: a secondary's catch-up and a coverage of the last 10 s after each write."
    )


if __name__ == "__main__":
    main()
