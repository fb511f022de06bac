"""Ingest throughput against the raw `publish_async` ceiling, for 2 and for 1,000 symbols.

Per scenario, on a fresh nats-server: first the raw ceiling (this process, `publish_async`
of aggTrade-sized payloads with a `Nats-Msg-Id` each, ingest's window of 2,000), then the
simulator in its own process replaying generated dumps as fast as it can send, and
`tradetape ingest` in its own process, then the ceiling once more (the machine is noisy: the
ratio is taken against the higher of the two); trades/s is the stream's growth from the
first to the last trade stored, and ingest's peak RSS is its VmHWM. Run:

    python bench/ingest.py [--trades 300000] [--symbols 2,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nats.aio.client import Client  # noqa: E402
from nats.js.api import StorageType, StreamConfig  # noqa: E402

from services.exchange.generator import TradeGenerator  # noqa: E402
from tradetape.bus.subjects import MSG_ID_HEADER, TRADES_STREAM  # noqa: E402
from tradetape.runtime.nats_server import EmbeddedNatsServer  # noqa: E402

WINDOW = 2000
START_MS = 1_767_225_600_000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def write_dumps(directory: Path, symbols: list[str], per_symbol: int) -> list[Path]:
    """One data.binance.vision-style CSV a symbol, generated trades with ms times."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, symbol in enumerate(symbols):
        trades = TradeGenerator(symbol, seed=index).take(per_symbol, START_MS)[:per_symbol]
        path = directory / f"{symbol}-aggTrades-2026-01-01.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            for i, t in enumerate(trades):
                row = [t.agg_id, t.price, t.qty, t.first_id, t.last_id, START_MS + i // 10, t.buyer_maker, True]
                writer.writerow(row)
        paths.append(path)
    return paths


async def raw_ceiling(url: str, count: int) -> float:
    """`publish_async` with a message id each, `WINDOW` in flight, every ack awaited."""
    nc = Client()
    await nc.connect(url)
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw.>"], storage=StorageType.FILE))
    payload = orjson.dumps(
        {
            "e": "aggTrade",
            "E": START_MS,
            "s": "BTCUSDT",
            "a": 1,
            "p": "87000.12000000",
            "q": "0.00123000",
            "f": 1,
            "l": 1,
            "T": START_MS,
            "m": False,
            "M": True,
        }
    )
    started = time.perf_counter()
    futures: list[asyncio.Future[Any]] = []
    for i in range(count):
        futures.append(await js.publish_async("bench.raw.BTCUSDT", payload, headers={MSG_ID_HEADER: f"raw:{i}"}))
        if len(futures) >= WINDOW:
            await asyncio.gather(*futures[: WINDOW // 2])
            del futures[: WINDOW // 2]
    await asyncio.gather(*futures)
    rate = count / (time.perf_counter() - started)
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return rate


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tradetape.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def stream_count(nc: Client) -> int:
    try:
        return int((await nc.jetstream().stream_info(TRADES_STREAM)).state.messages)
    except Exception:  # noqa: BLE001 - not created yet
        return 0


async def scenario(work: Path, symbol_count: int, total: int, ceiling_count: int) -> dict[str, Any]:
    symbols = ["BTCUSDT", "ETHUSDT"] if symbol_count == 2 else [f"S{i:04d}USDT" for i in range(symbol_count)]
    per_symbol = total // symbol_count
    dumps = write_dumps(work / f"dumps-{symbol_count}", symbols, per_symbol)
    expected = per_symbol * symbol_count
    async with EmbeddedNatsServer(work / f"nats-{symbol_count}") as server:
        ceiling = await raw_ceiling(server.url, ceiling_count)
        log(f"{symbol_count} symbols: raw publish_async ceiling {ceiling:,.0f} msg/s")
        ready = work / f"exchange-{symbol_count}.json"
        env = dict(os.environ, PYTHONUNBUFFERED="1", TRADETAPE_LOG_LEVEL="WARNING")
        replay_args = [arg for path in dumps for arg in ("--replay", str(path))]
        exchange = start(
            [
                "exchange",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--rate",
                "0",
                *replay_args,
                "--data-dir",
                str(work / f"exdata-{symbol_count}"),
                "--symbols",
                symbols[0],
            ],
            env,
            work / f"exchange-{symbol_count}.log",
        )
        ingest: subprocess.Popen[bytes] | None = None
        nc = Client()
        try:
            deadline = time.monotonic() + 120
            while not (ready.exists() and ready.read_text().strip()):
                if exchange.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"exchange did not start: {(work / f'exchange-{symbol_count}.log').read_text()[-2000:]}"
                    )
                await asyncio.sleep(0.1)
            urls = orjson.loads(ready.read_text())
            ingest_env = dict(
                env,
                NATS_URL=server.url,
                TRADETAPE_SYMBOLS=",".join(symbols),
                TRADETAPE_DATA_DIR=str(work / "data"),
                TRADETAPE_BINANCE_WS_URL=urls["ws_url"],
                TRADETAPE_BINANCE_REST_URL=urls["rest_url"],
                TRADETAPE_LOG_LEVEL="INFO",
                TRADETAPE_INGEST_STATS_INTERVAL_S="5",
            )
            ingest = start(["ingest"], ingest_env, work / f"ingest-{symbol_count}.log")
            await nc.connect(server.url)
            first_at: float | None = None
            count = 0
            last_change = time.monotonic()
            while count < expected:
                if ingest.poll() is not None:
                    raise RuntimeError("ingest died: " + (work / f"ingest-{symbol_count}.log").read_text()[-2000:])
                now_count = await stream_count(nc)
                now = time.monotonic()
                if now_count and first_at is None:
                    first_at, first_count = now, now_count
                if now_count != count:
                    count, last_change = now_count, now
                elif now - last_change > 60:
                    raise RuntimeError(f"stalled at {count} of {expected}")
                await asyncio.sleep(0.05)
            assert first_at is not None
            elapsed = last_change - first_at
            rate = (count - first_count) / elapsed if elapsed > 0 else float("nan")
            rss = peak_rss_mb(ingest.pid)
            log(f"{symbol_count} symbols: {count:,} trades, ingest {rate:,.0f} trades/s, peak RSS {rss:.0f} MB")
            stop(ingest)
            ingest = None
            again = await raw_ceiling(server.url, ceiling_count)
            log(f"{symbol_count} symbols: raw publish_async ceiling again {again:,.0f} msg/s")
            return {
                "symbols": symbol_count,
                "trades": count,
                "ceiling": max(ceiling, again),
                "ceilings": (ceiling, again),
                "rate": rate,
                "ratio": rate / max(ceiling, again),
                "rss_mb": rss,
            }
        finally:
            if ingest is not None:
                stop(ingest)
            stop(exchange)
            if nc.is_connected:
                await nc.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000, help="trades per scenario, split over its symbols")
    parser.add_argument("--symbols", default="2,1000", help="comma-separated symbol counts")
    parser.add_argument("--ceiling-count", type=int, default=200_000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for count in (int(c) for c in args.symbols.split(",")):
            results.append(await scenario(Path(tmp), count, args.trades, args.ceiling_count))
    header = f"{'symbols':>8} {'trades':>9} {'ceilings/s (before, after)':>27} {'ingest/s':>10} {'ratio':>6}"
    print(f"{header} {'peak RSS':>9}")
    for r in results:
        ceilings = " / ".join(f"{c:,.0f}" for c in r["ceilings"])
        print(
            f"{r['symbols']:>8} {r['trades']:>9,} {ceilings:>27} {r['rate']:>10,.0f} {r['ratio']:>6.2f}"
            f" {r['rss_mb']:>7.0f}MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
