"""Ingest throughput against the raw publishing ceilings, for 2 and for 1,000 symbols, spot or spot and USD-M.

Per scenario, on a fresh nats-server: first the two raw ceilings of this process for
aggTrade-sized payloads with a `Nats-Msg-Id` each: `publish_async` (ingest's window of
2,000) and one fast-ingest batch (ADR-50, two flow acks ahead, as ingest publishes); then
the simulator in its own process replaying generated dumps as fast as it can send, and
`tradetape ingest` in its own process; then the ceilings once more (the machine is noisy:
ratios are taken against the higher of the two). Trades/s is the stream's growth from the
first to the last trade stored; CPU µs a trade is ingest's user and system time over the
same stretch, divided by its trades; peak RSS is its VmHWM. `--markets spot,um` splits each
scenario's instruments evenly over spot and USD-M (`um:S0500USDT`...): one lane, REST client
and set of connections per market in ingest, USD-M frames without `M` and with `nq`. Run:

    python bench/ingest.py [--trades 300000] [--symbols 2,1000] [--markets spot,um]
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
from nats.aio.msg import Msg  # noqa: E402
from nats.js.api import StorageType, StreamConfig  # noqa: E402

from tradetape.bus.publish.fast_batch import (  # noqa: E402
    OUTSTANDING_ACKS,
    BatchReply,
    Op,
    ReplyKind,
    read_batch_reply,
    reply_base,
    reply_subject,
)
from tradetape.bus.subjects import MSG_ID_HEADER, TRADES_STREAM  # noqa: E402
from tradetape.domain.instruments import Market, instrument_name, instrument_token  # noqa: E402
from tradetape.runtime.nats_server import EmbeddedNatsServer  # noqa: E402
from tradetape.services.exchange.generator import TradeGenerator  # noqa: E402

WINDOW = 2000
START_MS = 1_767_225_600_000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def write_dumps(directory: Path, symbols: list[str], per_symbol: int) -> list[Path]:
    """One data.binance.vision-style CSV an instrument, generated trades with ms times.

    Named by the instrument's token (`um.S0500USDT-aggTrades-…`), which tells the simulator its market.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, symbol in enumerate(symbols):
        trades = TradeGenerator(symbol, seed=index).take(per_symbol, START_MS)[:per_symbol]
        path = directory / f"{instrument_token(symbol)}-aggTrades-2026-01-01.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            for i, t in enumerate(trades):
                row = [t.agg_id, t.price, t.qty, t.first_id, t.last_id, START_MS + i // 10, t.buyer_maker, True]
                writer.writerow(row)
        paths.append(path)
    return paths


PAYLOAD = orjson.dumps(
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


async def publish_async_ceiling(nc: Client, count: int, run: int) -> float:
    """`publish_async` with a message id each, `WINDOW` in flight, every ack awaited."""
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    started = time.perf_counter()
    futures: list[asyncio.Future[Any]] = []
    for i in range(count):
        headers = {MSG_ID_HEADER: f"async:{run}:{i}"}
        futures.append(await js.publish_async("bench.raw.BTCUSDT", PAYLOAD, headers=headers))
        if len(futures) >= WINDOW:
            await asyncio.gather(*futures[: WINDOW // 2])
            del futures[: WINDOW // 2]
    await asyncio.gather(*futures)
    return count / (time.perf_counter() - started)


async def fast_batch_ceiling(nc: Client, count: int, run: int) -> float:
    """One fast-ingest batch of `count` messages with a message id each, two flow acks ahead, closed by EOB."""
    inbox = nc.new_inbox()
    base = reply_base(inbox, f"bench-{run}")
    acked, flow = 0, 0
    answered = asyncio.Event()
    ended: asyncio.Future[BatchReply] = asyncio.get_running_loop().create_future()

    async def on_reply(msg: Msg) -> None:
        nonlocal acked, flow
        reply = read_batch_reply(msg.data)
        if reply.kind is ReplyKind.FLOW:
            acked, flow = max(acked, reply.seq), reply.flow
            answered.set()
        elif reply.kind in (ReplyKind.END, ReplyKind.REFUSED) and not ended.done():
            ended.set_result(reply)

    sub = await nc.subscribe(inbox + ".>", cb=on_reply)
    started = time.perf_counter()
    for seq in range(1, count + 1):
        headers = {MSG_ID_HEADER: f"fast:{run}:{seq}"}
        await nc.publish(
            "bench.raw.BTCUSDT",
            PAYLOAD,
            reply=reply_subject(base, seq, Op.START if seq == 1 else Op.APPEND),
            headers=headers,
        )
        while not flow or seq >= acked + flow * OUTSTANDING_ACKS:
            answered.clear()
            await answered.wait()
    await nc.publish("bench.raw.BTCUSDT", b"", reply=reply_subject(base, count + 1, Op.COMMIT_EOB))
    reply = await ended
    rate = count / (time.perf_counter() - started)
    await sub.unsubscribe()
    if reply.kind is not ReplyKind.END or reply.seq != count:
        raise RuntimeError(f"the fast batch did not store all {count}: {reply}")
    return rate


async def raw_ceilings(url: str, count: int, run: int) -> tuple[float, float]:
    """Both raw ceilings on a fresh stream: `publish_async`, then a fast-ingest batch."""
    nc = Client()
    await nc.connect(url)
    js = nc.jetstream()
    config = StreamConfig(name="BENCH_RAW", subjects=["bench.raw.>"], storage=StorageType.FILE, allow_batched=True)
    await js.add_stream(config)
    try:
        return await publish_async_ceiling(nc, count, run), await fast_batch_ceiling(nc, count, run)
    finally:
        await js.delete_stream("BENCH_RAW")
        await nc.close()


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def instruments(symbol_count: int, markets: list[Market]) -> list[str]:
    """`symbol_count` instruments, split evenly over `markets` in runs (the first half spot, the second USD-M)."""
    symbols = ["BTCUSDT", "ETHUSDT"] if symbol_count == 2 else [f"S{i:04d}USDT" for i in range(symbol_count)]
    return [instrument_name(markets[i * len(markets) // symbol_count], s) for i, s in enumerate(symbols)]


async def scenario(
    work: Path, symbol_count: int, total: int, ceiling_count: int, markets: list[Market]
) -> dict[str, Any]:
    symbols = instruments(symbol_count, markets)
    per_symbol = total // symbol_count
    dumps = write_dumps(work / f"dumps-{symbol_count}", symbols, per_symbol)
    expected = per_symbol * symbol_count
    async with EmbeddedNatsServer(work / f"nats-{symbol_count}") as server:
        ceiling, fast = await raw_ceilings(server.url, ceiling_count, 1)
        log(f"{symbol_count} symbols: raw ceilings: publish_async {ceiling:,.0f} msg/s, fast batch {fast:,.0f} msg/s")
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
                "--history-days",
                "0",  # no invented past days: 1,000 instruments' worth kept the simulator from starting
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
                **{f"TRADETAPE_{field.upper()}": url for field, url in urls.items()},  # every market's URLs
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
                    first_at, first_count, first_cpu = now, now_count, cpu_seconds(ingest.pid)
                if now_count != count:
                    count, last_change = now_count, now
                elif now - last_change > 60:
                    raise RuntimeError(f"stalled at {count} of {expected}")
                await asyncio.sleep(0.05)
            assert first_at is not None
            elapsed = last_change - first_at
            rate = (count - first_count) / elapsed if elapsed > 0 else float("nan")
            rss = peak_rss_mb(ingest.pid)
            cpu_us = (cpu_seconds(ingest.pid) - first_cpu) * 1e6 / (count - first_count)
            log(
                f"{symbol_count} symbols: {count:,} trades, ingest {rate:,.0f} trades/s,"
                f" {cpu_us:.1f} CPU µs a trade, peak RSS {rss:.0f} MB"
            )
            stop(ingest)
            ingest = None
            again, fast_again = await raw_ceilings(server.url, ceiling_count, 2)
            log(
                f"{symbol_count} symbols: raw ceilings again: publish_async {again:,.0f} msg/s,"
                f" fast batch {fast_again:,.0f} msg/s"
            )
            return {
                "symbols": symbol_count,
                "markets": "+".join(m.value for m in markets),
                "trades": count,
                "ceiling": max(ceiling, again),
                "ceilings": (ceiling, again),
                "fast_ceilings": (fast, fast_again),
                "fast_ratio": rate / max(fast, fast_again),
                "rate": rate,
                "ratio": rate / max(ceiling, again),
                "rss_mb": rss,
                "cpu_us": cpu_us,
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
    parser.add_argument(
        "--markets", default="spot", help="markets the instruments are split over, evenly: spot, or spot,um"
    )
    args = parser.parse_args()
    markets = [Market(m.strip()) for m in args.markets.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for count in (int(c) for c in args.symbols.split(",")):
            results.append(await scenario(Path(tmp), count, args.trades, args.ceiling_count, markets))
    print(
        f"{'symbols':>8} {'markets':>8} {'trades':>9} {'publish_async/s (before, after)':>32}"
        f" {'fast batch/s (before, after)':>29}"
        f" {'ingest/s':>9} {'ratio':>6} {'vs fast':>8} {'CPU µs/trade':>13} {'peak RSS':>9}"
    )
    for r in results:
        ceilings = " / ".join(f"{c:,.0f}" for c in r["ceilings"])
        fast = " / ".join(f"{c:,.0f}" for c in r["fast_ceilings"])
        print(
            f"{r['symbols']:>8} {r['markets']:>8} {r['trades']:>9,} {ceilings:>32} {fast:>29} {r['rate']:>9,.0f}"
            f" {r['ratio']:>6.2f}"
            f" {r['fast_ratio']:>8.2f} {r['cpu_us']:>13.1f} {r['rss_mb']:>7.0f}MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
