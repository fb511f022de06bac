"""What a live roll-up costs persist's store thread as its hour segment fills, beside encoding the new trades alone.

Persist rolls up every symbol's windows older than `rollup_age_s` every 10 s, on the thread
that writes live trades: a roll-up merges those 10 s of windows into the hour segment they
belong to, as a block of its own (store format 5; before, it decoded and encoded the whole
hour again, with its histogram and aggregate layer), and the roll-up that passes the hour's
end joins the hour's blocks into one body. This bench measures a roll-up at several fills of
the hour: a store holding the hour's first part in its segment (imported), then live
writes of 10 s of trades at `--rate` (one write a second of trades) and the roll-up of
them (and at the hour's end the join's read and put; the join itself runs beside the store
thread, as in persist: `services/persist/maintenance.py`), timed (wall and this thread's
CPU), `--repeat` times a fill. Beside it, in the same run: encoding those 10 s of trades
alone as a segment, what a roll-up would cost if it did not rewrite what the hour held
already (the ceiling). The last column is the share of each 10 s the store thread spends
in the roll-up, during which no live write is stored: trades arriving then wait for it,
which is what a latency bench on a fresh store never shows.
Real-like BTCUSDT trades (`bench/tape_data.py`). Nothing here is part of the test run.

    python bench/rollup.py                   # 2,000 trades/s, fills 0-60 min, about a minute
    python bench/rollup.py --rate 200 --fills 0,30,59
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tape_data import SYMBOL, generate  # bench/tape_data.py

from tradetape.domain.columns import TradeColumns
from tradetape.services.persist.maintenance import MAINTENANCE_SLICE_S, store_slice
from tradetape.store import window_start
from tradetape.store.segments import encode_stored_segment
from tradetape.store.windows import split_by
from tradetape.store.writer import ShardWriter

HOUR_MS = 3_600_000
ROLLUP_EVERY_MS = 10_000


def hour_of_trades(rate: int, seed: int) -> TradeColumns:
    """An hour of real-like trades at `rate` a second, from the hour: a day's worth of `generate`'s squeezed into it."""
    trades = next(generate(1, rate * 3_600, seed))
    start = int(trades.time[0]) - int(trades.time[0]) % HOUR_MS
    time = start + (trades.time - start) // 24
    columns = trades.arrays()
    return TradeColumns.of_arrays([*columns[:5], time, *columns[6:]])


def measure(directory: Path, hour: TradeColumns, fill_ms: int, repeat: int) -> dict[str, float]:
    """Roll-ups of 10 s into a segment already holding the hour's first `fill_ms`: wall and CPU ms, and the ceiling.
    A fill of 60 min is the hour's last 10 s rolled up past its end: the roll-up that also joins the hour's blocks."""
    start = int(hour.time[0]) - int(hour.time[0]) % HOUR_MS
    store = ShardWriter(directory)
    try:
        closing = fill_ms == HOUR_MS
        fill_ms -= ROLLUP_EVERY_MS if closing else 0
        held = hour.between(start, start + fill_ms)
        if len(held):
            store.import_trades(SYMBOL, held, roll_up_before_ms=start + fill_ms)
        walls, cpus, alone = [], [], []
        for k in range(1 if closing else repeat):
            lower = start + fill_ms + k * ROLLUP_EVERY_MS
            live = hour.between(lower, lower + ROLLUP_EVERY_MS)
            for _, second in split_by(live, window_start(live.time)):
                store.write({(SYMBOL, window_start(int(second.time[0]))): second})
            started, cpu = time.perf_counter(), time.thread_time()
            store.roll_up(SYMBOL, lower + ROLLUP_EVERY_MS + (1_000 if closing else 0), join=False)
            wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
            if closing:  # as persist joins the closed hour: read and put on the store thread, joined beside it
                wall, cpu, joins = join_beside(store, wall, cpu)
            walls.append(wall * 1000)
            cpus.append(cpu * 1000)
            cpu = time.thread_time()
            encode_stored_segment(live)
            alone.append((time.thread_time() - cpu) * 1000)
        return {
            "held": len(held),
            "new": len(live),
            "wall": statistics.median(walls),
            "cpu": statistics.median(cpus),
            "alone": statistics.median(alone),
            "join": joins * 1000 if closing else 0.0,
        }
    finally:
        store.close()


def join_beside(store: ShardWriter, wall: float, cpu: float) -> tuple[float, float, float]:
    """The closed hour joined as persist joins it (`StoreMaintenance`): the store thread's wall and CPU s with the
    join's read and put added, and the join's own CPU s, spent beside the store thread."""
    (segment,) = store.take_unjoined()
    started, on_thread = time.perf_counter(), time.thread_time()
    found = store.segment_join(*segment)
    assert found is not None, "the closed hour is in blocks"
    wall, cpu = wall + time.perf_counter() - started, cpu + time.thread_time() - on_thread
    beside = time.thread_time()
    joined = found.joined()
    beside = time.thread_time() - beside
    started, on_thread = time.perf_counter(), time.thread_time()
    assert store.put_join(found, joined)
    return wall + time.perf_counter() - started, cpu + time.thread_time() - on_thread, beside


def symbols_pass(directory: Path, hour: TradeColumns, count: int) -> tuple[int, float, float]:
    """A roll-up pass over `count` symbols sharing the hour's first 10 s of trades, as persist's upkeep makes it: the
    windows rolled up, the whole pass's ms (what a live write asked at its start waited, when the pass was one change
    of the store) and its longest slice's (what one waits for now)."""
    start = int(hour.time[0]) - int(hour.time[0]) % HOUR_MS
    live = hour.between(start, start + ROLLUP_EVERY_MS)
    symbols = tuple(f"S{i:04d}USDT" for i in range(count))
    owner = np.arange(len(live)) % count
    store = ShardWriter(directory)
    try:
        for i, symbol in enumerate(symbols):
            mine = live.take(owner == i)
            store.write({(symbol, second): trades for second, trades in split_by(mine, window_start(mine.time))})
        slices: list[float] = []
        done: list[int] = []
        began = time.perf_counter()
        while len(done) < count:
            started = time.perf_counter()
            done += store_slice(store, symbols[len(done) :], lambda s, symbol: s.roll_up(symbol, start + HOUR_MS))
            slices.append((time.perf_counter() - started) * 1000)
        return sum(done), (time.perf_counter() - began) * 1000, max(slices)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=2_000, help="trades a second (default 2,000)")
    parser.add_argument(
        "--fills", default="0,6,15,30,59,60", help="minutes of the hour held (comma-separated; 60: the hour closing)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="roll-ups timed at each fill (median printed)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--symbols", type=int, default=500, help="symbols of the roll-up pass timed (default 500)")
    args = parser.parse_args()
    fills = [int(minutes) for minutes in args.fills.split(",")]
    if any(not 0 <= minutes <= 60 for minutes in fills):
        parser.error("fills are minutes 0-60")
    print(f"[rollup] generating an hour at {args.rate:,} trades/s", file=sys.stderr)
    hour = hour_of_trades(args.rate, args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tradetape-bench-rollup-") as tmp:
        for minutes in fills:
            print(f"[rollup] segment holding {minutes} min", file=sys.stderr)
            rows.append((minutes, measure(Path(tmp) / f"fill{minutes}", hour, minutes * 60_000, args.repeat)))
        print(f"[rollup] a pass over {args.symbols} symbols", file=sys.stderr)
        passes = [symbols_pass(Path(tmp) / f"pass{k}", hour, args.symbols) for k in range(args.repeat)]
    print(f"live roll-up every 10 s at {args.rate:,} trades/s (median of {args.repeat}), real-like BTCUSDT")
    header = (
        f"{'hour held':>9} {'trades held':>12} {'rolled up':>10} {'roll-up ms':>11} {'CPU ms':>8}"
        f" {'ceiling ms':>11} {'x ceiling':>10} {'store thread stalled':>21}"
    )
    print(header)
    for minutes, row in rows:
        print(
            f"{minutes:>6} min {row['held']:>12,.0f} {row['new']:>10,.0f} {row['wall']:>11.0f} {row['cpu']:>8.0f}"
            f" {row['alone']:>11.1f} {row['wall'] / max(row['alone'], 0.01):>10.0f}"
            f" {100 * row['wall'] / ROLLUP_EVERY_MS:>19.1f} %"
        )
    for _, row in rows:
        if row["join"]:
            print(f"the hour's blocks joined into one body beside the store thread: {row['join']:.0f} ms of CPU")
    rolled, whole, longest = (statistics.median(figures) for figures in zip(*passes, strict=True))
    print(
        f"a roll-up pass over {args.symbols} symbols ({rolled:,.0f} windows, 10 s of {args.rate:,} trades/s shared):"
        f" {whole:.0f} ms in all, as one change of the store thread before; its longest slice now {longest:.0f} ms"
        f" (slices of {MAINTENANCE_SLICE_S * 1000:.0f} ms and the symbol that passes it; live writes go between)"
    )
    print(
        "ceiling: encoding the 10 s of trades alone as a segment (this thread's CPU), what a roll-up that did not"
        " rewrite the hour would cost at least. stalled: the share of each 10 s the store thread spends rolling up"
        " (no live write is stored meanwhile). 60 min: the hour's last 10 s rolled up past its end, after which"
        " the hour's blocks are joined into one body (once an hour), as persist does: read and put on the store"
        " thread (in its figures), joined on a thread of its own (the line above)."
    )


if __name__ == "__main__":
    main()
