"""`tradetape replay` to files and to a NATS subject, and `tradetape exchange --from-store` to a real WebSocket client.

The reference is `TapeClient.replay` itself (its exactness against `trades` is tests/analytics/test_replay.py);
what is checked here is that every way out carries the same trades, and that Binance-shaped frames parse
with the parser ingest uses on Binance's own (`tradetape.binance.frames.parse_frame`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.request import urlopen

import nats
import orjson
import polars as pl
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.analytics.test_replay import HOUR_MS, SYMBOLS, answered, tape, write_store
from tests.cli.conftest import Tradetape
from tests.harness import run_services, wait_for
from tests.processes import ServiceProcesses, service_env
from tradetape.binance.frames import AggTradeFrame, parse_frame
from tradetape.client import TapeClient
from tradetape.domain.decimals import parse_units
from tradetape.settings import Settings

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def as_rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    """The replay's columns as Binance's fields: symbol, a, p and q in units, f, l, T, m."""
    return [
        (s, a, parse_units(p), parse_units(q), f, last, t, m)
        for s, a, p, q, f, last, t, m in frame.select(
            "symbol",
            "agg_id",
            pl.col("price", "qty").cast(pl.String),
            "first_id",
            "last_id",
            pl.col("time").dt.epoch("ms"),
            "buyer_maker",
        ).iter_rows()
    ]


def frame_row(event: AggTradeFrame) -> tuple[object, ...]:
    row = event.row
    return (event.symbol, row.agg_id, row.price, row.qty, row.first_id, row.last_id, row.time, row.buyer_maker)


async def test_replay_to_files_and_to_a_subject_as_binance_frames(
    nats_url: str, tmp_path: Path, tradetape: Tradetape
) -> None:
    now_ms = int(time.time() * 1000)
    start, end = now_ms - 3 * HOUR_MS, now_ms - HOUR_MS
    tapes = {"BTCUSDT": tape(4_000, start, 2 * HOUR_MS, 11, 1), "ETHUSDT": tape(3_000, start, 2 * HOUR_MS, 12, 9_000)}
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=SYMBOLS)
    write_store(settings.shard_dir, tapes, start + HOUR_MS)
    env = {"NATS_URL": nats_url}
    span = ["--start", str(start), "--end", str(end)]
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url) as client,
    ):
        await wait_for(lambda: answered(client, "ETHUSDT"), timeout=20, running=running)
        expected = pl.concat([f async for f in client.replay(SYMBOLS, start=start, end=end)])
        assert len(expected) > 6_000

        code, _, err = await tradetape("replay", "BTCUSDT", "ethusdt", *span, "-o", str(tmp_path / "r.jsonl"), env=env)
        assert code == 0 and f"replayed {len(expected)} trades" in err, err
        lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert [
            (
                d["symbol"],
                d["agg_id"],
                parse_units(d["price"]),
                parse_units(d["qty"]),
                d["first_id"],
                d["last_id"],
                d["time"],
                d["buyer_maker"],
            )
            for d in lines
        ] == as_rows(expected)

        code, _, err = await tradetape("replay", *SYMBOLS, *span, "-o", str(tmp_path / "r.parquet"), env=env)
        assert code == 0, err
        assert pl.read_parquet(tmp_path / "r.parquet").equals(expected)

        code, out, _ = await tradetape("replay", "ETHUSDT", *span, env=env)  # stdout by default
        assert code == 0 and len(out.splitlines()) == len(expected.filter(pl.col("symbol") == "ETHUSDT"))

        raw = await nats.connect(nats_url)
        try:
            subscription = await raw.subscribe("backtest.frames")
            await raw.flush()
            code, _, err = await tradetape("replay", *SYMBOLS, *span, "--to-subject", "backtest.frames", env=env)
            assert code == 0, err
            frames = []
            while len(frames) < len(expected):
                frames.append(parse_frame((await subscription.next_msg(timeout=10)).data, frozenset(SYMBOLS)))
            assert all(isinstance(f, AggTradeFrame) for f in frames)
            assert [frame_row(f) for f in frames if isinstance(f, AggTradeFrame)] == as_rows(expected)
            first = orjson.loads((await raw.request("tape.schema", b"", timeout=5)).data)  # still connected
            assert "methods" in first
            envelope = frames[0]
            assert isinstance(envelope, AggTradeFrame) and envelope.data["E"] == envelope.data["T"]
        finally:
            await raw.close()

        for bad in ("tape.trades.binance.BTCUSDT", "a.*", "_INBOX.x", "has space"):
            code, _, err = await tradetape("replay", "BTCUSDT", *span, "--to-subject", bad, env=env)
            assert code == 1 and "subject" in err, (bad, err)
        code, _, err = await tradetape("replay", "BTCUSDT", *span, "-o", str(tmp_path / "r.csv"), env=env)
        assert code == 1 and ".jsonl" in err
        code, _, err = await tradetape("replay", "BTCUSDT", "--start", str(end), "--end", str(start), env=env)
        assert code == 1 and "invalid_request" in err
        running.check()


async def test_exchange_from_store_serves_the_range_to_a_websocket_client_and_rest(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    now_ms = int(time.time() * 1000)
    start, end = now_ms - 3 * HOUR_MS, now_ms - HOUR_MS
    tapes = {"BTCUSDT": tape(30_000, start, 2 * HOUR_MS, 13, 1), "ETHUSDT": tape(2_000, start, 2 * HOUR_MS, 14, 90_000)}
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=SYMBOLS)
    write_store(settings.shard_dir, tapes, start + HOUR_MS)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url) as client,
    ):
        await wait_for(lambda: answered(client, "ETHUSDT"), timeout=20, running=running)
        expected = as_rows(pl.concat([f async for f in client.replay(SYMBOLS, start=start, end=end)]))
        ready = tmp_path / "exchange.json"
        exchange_settings = Settings(nats_url=nats_url, data_dir=tmp_path / "exchange-data", symbols=SYMBOLS)
        args = ["exchange", "--from-store", "--start", str(start), "--end", str(end), "--port", "0"]
        processes.start([*args, "--ready-file", str(ready)], service_env(exchange_settings))
        await wait_for(lambda: asyncio.sleep(0, ready.exists()), timeout=30)
        urls = orjson.loads(ready.read_text())
        streams = "/".join(f"{s.lower()}@aggTrade" for s in SYMBOLS)
        got: list[tuple[object, ...]] = []
        async with ws_connect(f"{urls['binance_ws_url']}/stream?streams={streams}") as websocket:
            while len(got) < len(expected):
                event = parse_frame(await asyncio.wait_for(websocket.recv(), 20), frozenset(SYMBOLS))
                assert isinstance(event, AggTradeFrame)
                got.append(frame_row(event))
                if len(got) == 100:
                    await asyncio.sleep(1.0)  # a slow bot: the feed waits for it, nothing is skipped
        by_symbol = {s: [row for row in expected if row[0] == s] for s in SYMBOLS}
        assert {s: [row for row in got if row[0] == s] for s in SYMBOLS} == by_symbol
        first = by_symbol["ETHUSDT"][0]
        rest_url = f"{urls['binance_rest_url']}/api/v3/aggTrades?symbol=ETHUSDT&fromId={first[1]}&limit=5"
        rest = await asyncio.to_thread(lambda: orjson.loads(urlopen(rest_url, timeout=10).read()))
        served = [(r["a"], parse_units(r["p"]), r["T"]) for r in rest]
        assert served == [(r[1], r[2], r[6]) for r in by_symbol["ETHUSDT"][:5]]
        running.check()
