"""The storage engine beside DuckDB on Parquet+zstd, in the same run: size, range reads, profiles, coverage, drain.

Generates `--days` of a busy symbol (`--per-day` trades a day) by resampling the bundled
real BTCUSDT trades: sizes (with log-normal noise, on the real 0.00001 BTC step), tick
steps, inter-arrival gaps and fills drawn independently from the real ones, sides in the
real runs (blocks of 200); no block of values repeats, so zstd finds no free copies;
writes them through the real `ShardWriter` in 1-minute batches of 1-second windows with
roll-ups as a live persist does them, and the same trades into one Parquet file with zstd.
`--market um` (or `cm`) makes them a futures instrument's (`um:BTCUSDT`: 0.1 tick, 0.001 BTC
lot; `cm:BTCUSD_PERP`: whole contracts), e.g. `--market um --days 1 --drain 0` for the bytes
a trade of a futures day.
Then prints, for both: bytes per trade at rest (after compaction), the raw read and the
volume profile of the last 1 h, 24 h and the whole range, whole-tape coverage (time and
RSS growth), and persist's drain rate of a pre-filled stream beside a bare pull consumer
that only acks (`--drain 0` skips it). Nothing here is part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import nats
import numpy as np
import orjson
from tape_data import DAY_MS, ROW_SIZE, SHAPES, SYMBOL, dir_bytes, rss_mb, timed, write_store  # bench/tape_data.py

from tradetape.bus.provision import ensure_streams, persist_consumer_config
from tradetape.domain.instruments import Market
from tradetape.domain.price_levels import PriceLevels
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.settings import Settings
from tradetape.store.reader import ShardReader


def profile_from_levels(levels: PriceLevels, row_size: int) -> tuple[np.ndarray, ...]:  # type: ignore[type-arg]
    """Rows `floor(p / row_size)` with volume, buy volume and trade count: what a profile needs, exactly."""
    rows = levels.price // row_size
    low = int(rows.min())
    slot = rows - low
    out = [np.zeros(int(slot.max()) + 1, dtype=np.int64) for _ in range(3)]
    for total, column in zip(out, (levels.volume, levels.buy_volume, levels.trade_count), strict=True):
        np.add.at(total, slot, column)
    return (np.arange(low, low + len(out[0])), *out)


def duck_read(con: duckdb.DuckDBPyConnection, parquet: Path, start: int, end: int) -> Any:
    return con.execute(f"SELECT * FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end}").fetchnumpy()


def duck_profile(con: duckdb.DuckDBPyConnection, parquet: Path, start: int, end: int) -> Any:
    return con.execute(
        f"SELECT p // {ROW_SIZE} AS k, sum(q), sum(q) FILTER (WHERE NOT m), count(*) "
        f"FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end} GROUP BY k ORDER BY k"
    ).fetchall()


async def drain(messages: int, data_dir: Path) -> None:
    """A pre-filled stream drained by a bare pull consumer (fetch, ack each) and by the persist process."""
    async with EmbeddedNatsServer(data_dir / "nats") as server:
        settings = Settings(nats_url=server.url, data_dir=data_dir / "drain", symbols=(SYMBOL,))
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_streams(js, settings)
        now = int(time.time() * 1000)
        for agg_id in range(1, messages + 1):
            body = {"a": agg_id, "p": "87000.01", "q": "0.00123", "f": agg_id, "l": agg_id}
            body |= {"T": now - messages + agg_id, "m": bool(agg_id % 2)}
            headers = {"Nats-Msg-Id": f"binance:{SYMBOL}:{agg_id}"}
            await js.publish_async(f"tape.trades.binance.{SYMBOL}", orjson.dumps(body), headers=headers)
            if agg_id % 2000 == 0:
                await js.publish_async_completed()
        await js.publish_async_completed()
        bare_rates = []
        # The bare consumer runs before and after persist: the first reader of the stream also
        # pays for loading (and S2-decompressing) its blocks; the ceiling is the faster run.
        for run in ("bare-1", "bare-2"):
            if run == "bare-2":
                env = {**os.environ, **settings.to_env(), "TRADETAPE_LOG_LEVEL": "WARNING"}
                command = [sys.executable, "-m", "tradetape.cli", "persist"]
                persist_rate, peak = await drained_by(js, command, env, "persist-main", messages)
            bare_config = persist_consumer_config(settings)
            bare_config.durable_name = run
            await js.add_consumer("TAPE_TRADES", bare_config)
            bare = [sys.executable, __file__, "--bare", server.url, "--bare-durable", run]
            bare_rates.append((await drained_by(js, bare, os.environ.copy(), run, messages))[0])
        bare_rate = max(bare_rates)
        await nc.close()
    print(
        f"drain {messages:,} msgs: bare pull consumer (fetch 5000, ack each) {bare_rate:,.0f}/s "
        f"(before / after persist: {bare_rates[0]:,.0f} / {bare_rates[1]:,.0f}); "
        f"persist (writes included) {persist_rate:,.0f}/s = {persist_rate / bare_rate:.2f} x; "
        f"persist peak RSS {peak:.0f} MB"
    )


async def drained_by(
    js: Any, command: list[str], env: dict[str, str], durable: str, messages: int
) -> tuple[float, float]:
    """Start `command`, time it from its first delivery until `durable` has every message acked; rate and peak RSS."""
    proc = subprocess.Popen(command, env=env)
    try:
        first: float | None = None
        while True:
            try:
                info = await js.consumer_info("TAPE_TRADES", durable)
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.01)
                continue
            if first is None and info.delivered.stream_seq > 0:
                first = time.perf_counter()
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.ack_floor.stream_seq >= messages:
                break
            await asyncio.sleep(0.02)
        rate = messages / (time.perf_counter() - (first or time.perf_counter()))
        return rate, rss_mb(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def bare_consumer(url: str, durable: str) -> None:
    """The ceiling: fetch 5000 and ack each, nothing else, until stopped."""
    nc = await nats.connect(url)
    subscription = await nc.jetstream().pull_subscribe_bind(durable, "TAPE_TRADES")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        try:
            batch = await subscription.fetch(5000, timeout=0.5)
        except TimeoutError:
            continue
        for msg in batch:
            await msg.ack()
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=2_300_000)
    parser.add_argument("--segment-minutes", type=int, default=60)
    parser.add_argument("--drain", type=int, default=200_000, help="messages for the drain figure (0: skip)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--market", default="spot", choices=[m.value for m in Market], help="the instrument's market")
    parser.add_argument("--bare", metavar="NATS_URL", help=argparse.SUPPRESS)
    parser.add_argument("--bare-durable", default="bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        asyncio.run(bare_consumer(args.bare, args.bare_durable))
        return
    with tempfile.TemporaryDirectory(prefix="tradetape-bench-store-") as tmp:
        root = Path(tmp)
        parquet = root / "trades.parquet"
        market = Market(args.market)
        symbol = SHAPES[market].instrument
        total, write_s = write_store(
            root / "shard", parquet, args.days, args.per_day, args.segment_minutes * 60_000, args.seed, market
        )
        store_bytes, parquet_bytes = dir_bytes(root / "shard"), parquet.stat().st_size
        print(
            f"{total:,} {symbol} trades over {args.days} d, segments of {args.segment_minutes} min; "
            f"written through ShardWriter with roll-ups in {write_s:.1f} s ({total / write_s:,.0f} trades/s)"
        )
        print(
            f"bytes/trade at rest: tradetape {store_bytes / total:.2f} (compacted RocksDB dir), "
            f"Parquet+zstd {parquet_bytes / total:.2f}: ratio {store_bytes / parquet_bytes:.2f}"
        )
        reader = ShardReader(root / "shard")
        con = duckdb.connect()
        whole = reader.coverage(symbol, None)
        assert whole.last_time is not None and whole.first_time is not None
        end = whole.last_time + 1
        for label, span in (("1 h", 3_600_000), ("24 h", DAY_MS), (f"{args.days} d", end - whole.first_time)):
            start = end - span
            trades, read_s = timed(lambda s=start: reader.trades(symbol, (s, end)))
            _, duck_read_s = timed(lambda s=start: duck_read(con, parquet, s, end))
            levels, prof_s = timed(lambda s=start: profile_from_levels(reader.price_levels(symbol, (s, end)), ROW_SIZE))
            duck_rows, duck_prof_s = timed(lambda s=start: duck_profile(con, parquet, s, end))
            assert [int(v) for v in levels[1][levels[3] > 0]] == [int(r[1]) for r in duck_rows], "profiles differ"
            print(
                f"{label:>5}: {len(trades):>10,} trades  read {read_s * 1e3:7.1f} ms (DuckDB {duck_read_s * 1e3:7.1f})"
                f"  profile {prof_s * 1e3:6.1f} ms (DuckDB {duck_prof_s * 1e3:6.1f}, ratio {prof_s / duck_prof_s:.2f})"
            )
        before = rss_mb()
        found, cov_s = timed(lambda: reader.coverage(symbol, None))
        print(
            f"whole-tape coverage: {cov_s * 1e3:.2f} ms, RSS +{rss_mb() - before:.1f} MB "
            f"({found.trade_count:,} trades, {len(found.gaps)} gaps)"
        )
        reader.close()
        if args.drain:
            asyncio.run(drain(args.drain, root))


if __name__ == "__main__":
    main()
