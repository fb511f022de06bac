"""What the storage and query benches share: real-like trades, the store they are written into, timers.

`generate` resamples the bundled real BTCUSDT trades into `days` of a busy symbol, one day
at a time (sizes with log-normal noise on the real 0.00001 BTC step, tick steps, gaps and
fills drawn independently, sides in real runs of `BLOCK`), so zstd finds no free copies.
`write_store` writes them through the real `ShardWriter` as a live persist does (1-minute
batches of 1-second windows, rolled up into segments a minute behind) and the same
trades into one Parquet file with zstd, for DuckDB. `market` shapes them as that market's
BTC contract trades (`SHAPES`): USD-M's 0.1 USDT tick and 0.001 BTC lot, COIN-M's 0.1 USD
tick and whole contracts of 100 USD. Nothing here is part of the test run.
"""

from __future__ import annotations

import csv
import statistics
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tradetape.domain.columns import Int64Array, TradeColumns
from tradetape.domain.decimals import parse_units
from tradetape.domain.instruments import Market
from tradetape.services.exchange import BUNDLED_REPLAY
from tradetape.store.keys import window_start
from tradetape.store.windows import split_by
from tradetape.store.writer import ShardWriter

SYMBOL = "BTCUSDT"
DAY_MS = 86_400_000
ROW_SIZE = 10 * 10**8  # 10 USDT rows
BLOCK = 200
QTY_STEP = 1_000  # 0.00001 BTC, Binance's BTCUSDT lot step
PARQUET_COLUMNS = ("a", "p", "q", "f", "l", "T", "m")
UNITS = 10**8


@dataclass(frozen=True)
class Shape:
    """A market's BTC instrument as its trades look: its name, price tick and quantity step (units of 1e-8)."""

    instrument: str
    tick: int
    qty_step: int
    contract_usd: int = 0
    """COIN-M: a quantity is a count of contracts of this many USD (the base quantity × price / it)."""


SHAPES = {
    Market.SPOT: Shape(SYMBOL, 1_000_000, QTY_STEP),
    Market.UM: Shape("um:BTCUSDT", 10_000_000, 100_000),
    Market.CM: Shape("cm:BTCUSD_PERP", 10_000_000, UNITS, contract_usd=100),
}
"""The Parquet file's columns: Binance's aggTrade field names, prices and sizes as int64 units of 1e-8."""


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    """`fn()`'s last result and the median of `repeat` runs, in seconds."""
    runs = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - started)
    return result, statistics.median(runs)


def real_trades() -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    with BUNDLED_REPLAY.open() as handle:
        rows = list(csv.reader(handle))
    price = np.array([parse_units(r[1]) for r in rows], dtype=np.int64)
    times_us = np.array([int(r[5]) for r in rows], dtype=np.int64)
    return {
        "qty": np.array([parse_units(r[2]) for r in rows], dtype=np.int64),
        "step": np.diff(price, prepend=price[0]),
        "gap_us": np.diff(times_us, prepend=times_us[0]),
        "maker": np.array([r[6] == "True" for r in rows]),
        "fills": np.array([int(r[4]) - int(r[3]) for r in rows], dtype=np.int64),
    }


def generate(days: int, per_day: int, seed: int, market: Market = Market.SPOT) -> Iterator[TradeColumns]:
    """One day of real-like trades at a time, ids and times continuing across days, shaped as `market`'s."""
    shape = SHAPES[market]
    real = real_trades()
    rng = np.random.default_rng(seed)
    n_real = len(real["qty"])
    mean_gap_us = real["gap_us"][1:].mean()
    gap_scale = (DAY_MS * 1000 / per_day) / mean_gap_us
    start_ms = (int(time.time() * 1000) - days * DAY_MS) // DAY_MS * DAY_MS
    next_id, next_trade, price, clock_us = 3_800_000_000, 5_700_000_000, 8_700_000_000_000, start_ms * 1000
    for day in range(days):
        blocks = rng.integers(0, n_real - BLOCK, per_day // BLOCK + 1)
        index = (blocks[:, None] + np.arange(BLOCK)).ravel()[:per_day]
        draw = rng.integers(0, n_real, (4, per_day))
        noise = np.exp(rng.normal(0.0, 0.5, per_day))
        base = real["qty"][draw[0]] * noise
        steps = real["step"][draw[1]] * rng.choice(np.array([-1, 1]), per_day)
        prices = np.maximum(price + np.cumsum(steps), 1_000_000)
        if shape.contract_usd:
            base = base * prices / (shape.contract_usd * UNITS)  # contracts of `contract_usd` USD
        qty = np.maximum(np.round(base / shape.qty_step), 1).astype(np.int64) * shape.qty_step
        prices = prices // shape.tick * shape.tick
        gaps = (real["gap_us"][draw[2]] * gap_scale * rng.exponential(1.0, per_day)).astype(np.int64)
        clock = clock_us + np.cumsum(gaps)
        day_end_us = (start_ms + (day + 1) * DAY_MS) * 1000
        clock = np.minimum(clock, day_end_us - 1)
        fills = real["fills"][draw[3]]
        last = next_trade + np.cumsum(fills + 1) - 1
        ids = np.arange(next_id, next_id + len(index), dtype=np.int64)
        yield TradeColumns(ids, prices, qty, last - fills, last, clock // 1000, real["maker"][index])
        next_id += len(index)
        next_trade = int(last[-1]) + 1
        price = int(prices[-1])
        clock_us = day_end_us


def decimal_text(units: Int64Array) -> pl.Expr:
    """Units of 1e-8 as Binance writes them: ``87648.21000000``."""
    column = pl.lit(pl.Series(units))
    return (column // 10**8).cast(pl.String) + "." + (column % 10**8).cast(pl.String).str.zfill(8)


def write_dump(trades: TradeColumns, directory: Path) -> Path:
    """`trades` (one day of `SYMBOL`) as a data.binance.vision dump: a zip of a header-less CSV, µs timestamps."""
    day = time.strftime("%Y-%m-%d", time.gmtime(int(trades.time[0]) / 1000))
    name = f"{SYMBOL}-aggTrades-{day}"
    frame = pl.select(
        a=pl.lit(pl.Series(trades.agg_id)),
        p=decimal_text(trades.price),
        q=decimal_text(trades.qty),
        f=pl.lit(pl.Series(trades.first_id)),
        l=pl.lit(pl.Series(trades.last_id)),
        T=pl.lit(pl.Series(trades.time * 1000 + 123)),
        m=pl.when(pl.lit(pl.Series(trades.buyer_maker))).then(pl.lit("True")).otherwise(pl.lit("False")),
        b=pl.lit("True"),
    )
    path = directory / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(f"{name}.csv", "w") as handle:
        frame.write_csv(handle, include_header=False)
    return path


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_store(
    path: Path, parquet: Path, days: int, per_day: int, segment_ms: int, seed: int, market: Market = Market.SPOT
) -> tuple[int, float]:
    """`generate`'s trades into a new store at `path` (then compacted) and into `parquet`; (trades, seconds)."""
    symbol = SHAPES[market].instrument
    store = ShardWriter(path, segment_ms=segment_ms)
    schema = pa.schema([(n, pa.int64()) for n in PARQUET_COLUMNS[:-1]] + [(PARQUET_COLUMNS[-1], pa.bool_())])
    writer = pq.ParquetWriter(parquet, schema, compression="zstd")
    total, started = 0, time.perf_counter()
    for trades in generate(days, per_day, seed, market):
        writer.write_table(pa.table(dict(zip(schema.names, trades.arrays(), strict=True)), schema=schema))
        minutes = trades.time - trades.time % 60_000
        for minute, batch in split_by(trades, minutes):
            store.write({(symbol, s): w for s, w in split_by(batch, window_start(batch.time))})
            if minute % 600_000 == 540_000:
                store.roll_up(symbol, minute)  # as persist does, a minute behind the newest trade
        total += len(trades)
    store.roll_up(symbol, int(trades.time.max()) + 1)
    elapsed = time.perf_counter() - started
    writer.close()
    store.compact()
    store.close()
    return total, elapsed
