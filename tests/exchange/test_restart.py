"""Generated ids continue across simulator restarts, so ingest never drops a restarted
simulator's trades as ids it has already passed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from services.exchange.generator import FIRST_ID, IdCheckpoint, IdState, id_margins
from services.exchange.history import AggTrade
from tests.harness import coverage_of, request, run_services, settings_for, wait_for

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
RATE = 2000.0
CHILD = """
import asyncio, sys
from services.exchange import Exchange, ExchangeConfig

async def main() -> None:
    config = ExchangeConfig(symbols=("ETHUSDT",), rate=float(sys.argv[2]), state_dir=sys.argv[1])
    async with Exchange(config) as exchange:
        print(exchange.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def generated(state_dir: Path | None, rate: float = RATE, **overrides: Any) -> ExchangeConfig:
    return ExchangeConfig(**{"symbols": ("ETHUSDT",), "rate": rate, "state_dir": state_dir, **overrides})


async def served(exchange: Exchange, count: int = 100) -> list[AggTrade]:
    history = exchange.history("ETHUSDT")
    await asyncio.wait_for(history.wait_until(count), 5)
    return history.trades()


def state_of(state_dir: Path) -> IdState:
    state = IdCheckpoint(state_dir / "ETHUSDT.json").load()
    assert state is not None
    return state


async def test_clean_restart_continues_the_ids(tmp_path: Path) -> None:
    state_dir = tmp_path / "exchange"
    async with Exchange(generated(state_dir)) as exchange:
        first_run = await served(exchange)
    last = first_run[-1]
    assert first_run[0].agg_id == FIRST_ID
    assert state_of(state_dir) == IdState(last.agg_id + 1, last.last_id + 1, True, *id_margins(RATE))

    async with Exchange(generated(state_dir)) as exchange:
        second_run = await served(exchange)
    assert (second_run[0].agg_id, second_run[0].first_id) == (last.agg_id + 1, last.last_id + 1)

    await exchange.start()
    try:
        third_run = await served(exchange)
    finally:
        await exchange.stop()
    assert third_run[0].agg_id == second_run[-1].agg_id + 1


async def test_without_state_dir_every_run_starts_at_first_id(tmp_path: Path) -> None:
    for _ in range(2):
        async with Exchange(generated(None)) as exchange:
            assert (await served(exchange, 10))[0].agg_id == FIRST_ID
    assert not any(tmp_path.iterdir())


async def test_replayed_symbols_keep_no_state(tmp_path: Path) -> None:
    config = generated(tmp_path, replay=(BUNDLED_REPLAY,), symbols=("BTCUSDT", "ETHUSDT"))
    async with Exchange(config) as exchange:
        await served(exchange, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["ETHUSDT.json"]


async def test_unclean_state_skips_a_margin(tmp_path: Path) -> None:
    IdCheckpoint(tmp_path / "ETHUSDT.json").save(IdState(5_000_000, 7_000_000, clean=False))
    async with Exchange(generated(tmp_path)) as exchange:
        first = (await served(exchange, 1))[0]
        assert not state_of(tmp_path).clean
    agg_margin, trade_margin = id_margins(RATE)
    assert agg_margin > RATE * 2
    assert (first.agg_id, first.first_id) == (5_000_000 + agg_margin, 7_000_000 + trade_margin)
    assert state_of(tmp_path).clean


@contextlib.contextmanager
def child_exchange(state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_dir), str(RATE)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


async def test_kill_9_never_reuses_an_id(tmp_path: Path) -> None:
    """A killed simulator's file lags what it served; the restart must still start above it."""
    with child_exchange(tmp_path) as proc:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15))
        received: list[dict[str, Any]] = []
        async with connect(f"ws://127.0.0.1:{port}/ws/ethusdt@aggTrade", max_queue=None) as ws:
            async with asyncio.timeout(5):
                while len(received) < RATE * 1.5:
                    received.append(orjson.loads(await ws.recv()))
            proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(5):
                    while True:
                        received.append(orjson.loads(await ws.recv()))
        assert proc.wait(5) == -signal.SIGKILL
    recorded = state_of(tmp_path)
    assert not recorded.clean and recorded.next_agg_id > FIRST_ID
    last = max(received, key=lambda event: event["a"])
    async with Exchange(generated(tmp_path)) as exchange:
        first = (await served(exchange, 1))[0]
    assert first.agg_id > last["a"] and first.first_id > last["l"]


@contextlib.asynccontextmanager
async def nats_client(url: str) -> AsyncIterator[Any]:
    client = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()


async def test_ingest_stores_a_restarted_simulator(nats_url: str, tmp_path: Path) -> None:
    """The simulator restarts on the same port while ingest runs: its new trades are stored
    right after the old ones, without a gap and without being taken for duplicates."""
    config = generated(tmp_path / "exchange", rate=100)
    first = Exchange(config)
    await first.start()
    try:
        port = first.port
        settings = settings_for(nats_url, tmp_path / "data", first, "ETHUSDT")
        async with (
            run_services(settings, "persist", "analytics", "ingest") as running,
            nats_client(nats_url) as client,
        ):

            async def stored_beyond(agg_id: int) -> dict[str, Any] | None:
                reply = await coverage_of(client, "ETHUSDT")
                return reply if (reply.get("last_id") or 0) > agg_id else None

            await wait_for(lambda: stored_beyond(FIRST_ID + 100), 15, running=running)
            await first.stop()
            first_trades = first.history("ETHUSDT").trades()
            first_last = first_trades[-1].agg_id
            async with Exchange(config, port=port) as second:
                coverage = await wait_for(lambda: stored_beyond(first_last + 100), 15, running=running)
                second_trades = second.history("ETHUSDT").trades()
                # Every id up to first_last + 100 is stored, so every trade before that one's time.
                start, end = second_trades[0].time_ms, second_trades[100].time_ms
                window, _ = await request(client, "tape.query.coverage.ETHUSDT", {"start": start, "end": end})
    finally:
        await first.stop()
    assert second_trades[0].agg_id == first_last + 1
    assert coverage["first_id"] < first_last < coverage["last_id"]
    assert coverage["gaps"] == []
    assert coverage["trade_count"] == coverage["last_id"] - coverage["first_id"] + 1
    served = sum(start <= t.time_ms < end for t in first_trades + second_trades)
    assert window["trade_count"] == served, "every trade of the restarted simulator is stored"
