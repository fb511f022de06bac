"""A restarted simulator forgets nothing it released: REST answers those ids, new ids continue right
after them (ingest would drop reused ids and could never fill skipped ones), replays are not played twice."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.harness import coverage_of, request, run_services, wait_for
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from tradetape.services.exchange.generator import FIRST_ID, id_margins
from tradetape.services.exchange.history import AggTrade, encode_rest_rows
from tradetape.testing import simulator_settings

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
RATE = 2000.0
CHILD = """
import asyncio, sys
from tradetape.services.exchange import Exchange, ExchangeConfig

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


def rest_page(exchange: Exchange, symbol: str, from_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    url = f"{exchange.rest_url}/api/v3/aggTrades?symbol={symbol}&fromId={from_id}&limit={limit}"
    with urllib.request.urlopen(url, timeout=10) as response:
        rows: list[dict[str, Any]] = orjson.loads(response.read())
    return rows


def as_rest(trades: list[AggTrade]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = orjson.loads(encode_rest_rows(trades))
    return rows


async def test_rest_answers_every_id_released_before_a_restart(tmp_path: Path) -> None:
    """Ingest asks REST for the ids it missed while the simulator stopped: a restarted one must still have them."""
    state_dir = tmp_path / "exchange"
    async with Exchange(generated(state_dir)) as exchange:
        first_run = await served(exchange)
    last = first_run[-1]
    assert first_run[0].agg_id == FIRST_ID

    async with Exchange(generated(state_dir)) as exchange:
        second_run = (await served(exchange, len(first_run) + 100))[len(first_run) :]
        assert await asyncio.to_thread(rest_page, exchange, "ETHUSDT", FIRST_ID, len(first_run)) == as_rest(first_run)
    assert (second_run[0].agg_id, second_run[0].first_id) == (last.agg_id + 1, last.last_id + 1)
    assert second_run[0].time_ms >= last.time_ms

    await exchange.start()
    try:
        third_run = await served(exchange, len(first_run) + len(second_run) + 10)
    finally:
        await exchange.stop()
    assert [t.agg_id for t in third_run] == list(range(FIRST_ID, FIRST_ID + len(third_run)))


async def test_without_state_dir_every_run_starts_at_first_id(tmp_path: Path) -> None:
    for _ in range(2):
        async with Exchange(generated(None)) as exchange:
            assert (await served(exchange, 10))[0].agg_id == FIRST_ID
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
async def test_a_replay_is_released_once_across_restarts(tmp_path: Path) -> None:
    config = generated(tmp_path, replay=(BUNDLED_REPLAY,), symbols=("BTCUSDT", "ETHUSDT"))
    async with Exchange(config) as exchange:
        async with connect(f"{exchange.ws_url}/ws/btcusdt@aggTrade"):
            assert await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 10) == 5000
        replayed = exchange.history("BTCUSDT").trades()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTCUSDT.released.csv", "ETHUSDT.released.csv"]
    async with Exchange(config) as exchange:
        async with connect(f"{exchange.ws_url}/ws/btcusdt@aggTrade"):
            assert await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 10) == 0
        assert exchange.history("BTCUSDT").trades() == replayed
        page = await asyncio.to_thread(rest_page, exchange, "BTCUSDT", replayed[0].agg_id)
    assert page == as_rest(replayed[:1000])


async def test_a_former_state_file_is_continued_above(tmp_path: Path) -> None:
    state = {"next_agg_id": 5_000_000, "next_trade_id": 7_000_000, "clean": False, "agg_margin": 10}
    (tmp_path / "ETHUSDT.json").write_bytes(orjson.dumps(state))
    async with Exchange(generated(tmp_path, history_days=2)) as exchange:
        first = (await served(exchange, 1))[0]
    agg_margin, trade_margin = id_margins(RATE)
    assert (first.agg_id, first.first_id) == (5_000_000 + agg_margin, 7_000_000 + trade_margin), "no past invented"


def dump(exchange: Exchange, symbol: str, day: str, suffix: str = "") -> tuple[int, bytes]:
    url = f"{exchange.rest_url}/data/spot/daily/aggTrades/{symbol}/{symbol}-aggTrades-{day}.zip{suffix}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.mark.slow
async def test_the_days_before_a_first_start_are_published(tmp_path: Path) -> None:
    """fetch-history needs finished days: a first start invents them, right below the first live ids."""
    config = generated(tmp_path, rate=50, history_days=2, replay=(BUNDLED_REPLAY,), symbols=("BTCUSDT", "ETHUSDT"))
    today = datetime.now(UTC).date()
    days = [str(today - timedelta(days=n)) for n in (3, 2, 1, 0)]
    async with Exchange(config) as exchange:
        live = await served(exchange, len(exchange.history("ETHUSDT")) + 100)
        past = [t for t in live if t.agg_id < FIRST_ID]
        assert len(past) >= 2 * 8640 and past[-1].agg_id == FIRST_ID - 1 and past[-1].last_id == FIRST_ID - 1
        assert live[len(past)].agg_id == FIRST_ID
        btc = exchange.history("BTCUSDT").trades()
        assert btc[-1].agg_id == 3800397495 - 1
        statuses = [(await asyncio.to_thread(dump, exchange, "ETHUSDT", day))[0] for day in days]
        assert statuses == [404, 200, 200, 404], "only finished days the simulator traded"
        status, body = await asyncio.to_thread(dump, exchange, "ETHUSDT", days[2])
        status, checksum = await asyncio.to_thread(dump, exchange, "ETHUSDT", days[2], ".CHECKSUM")
        assert status == 200 and checksum.decode().split()[0] == hashlib.sha256(body).hexdigest()
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            rows = archive.read(archive.namelist()[0]).decode().splitlines()
        assert int(rows[-1].split(",")[0]) == FIRST_ID - 1
    async with Exchange(config) as exchange:
        assert exchange.history("ETHUSDT").trades()[: len(past)] == past, "invented once"


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


@pytest.mark.slow
async def test_kill_9_forgets_no_released_id(tmp_path: Path) -> None:
    """Every trade a killed simulator sent is answered by the restarted one, and its ids go on right after."""
    with child_exchange(tmp_path) as proc:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15))
        await asyncio.sleep(0.2)  # trades released before the client subscribes (a loaded machine's late client)
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
    before = received[0]["a"] - FIRST_ID  # released before the client subscribed: a live cursor starts at the end
    async with Exchange(generated(tmp_path)) as exchange:
        first_new = (await served(exchange, before + len(received) + 1))[before + len(received) :][0]
        rows: list[dict[str, Any]] = []
        while not rows or rows[-1]["a"] < first_new.agg_id:
            rows += await asyncio.to_thread(rest_page, exchange, "ETHUSDT", rows[-1]["a"] + 1 if rows else FIRST_ID)
    fields = ("a", "p", "q", "f", "l", "T", "m")
    by_id = {row["a"]: row for row in rows}
    assert all({k: by_id[e["a"]][k] for k in fields} == {k: e[k] for k in fields} for e in received)
    assert [row["a"] for row in rows] == list(range(FIRST_ID, rows[-1]["a"] + 1)), "no id skipped"
    assert first_new.agg_id > max(e["a"] for e in received), "no id reused"


@contextlib.asynccontextmanager
async def nats_client(url: str) -> AsyncIterator[Any]:
    client = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.slow
async def test_ingest_stores_a_restarted_simulator(nats_url: str, tmp_path: Path) -> None:
    """The simulator restarts on the same port while ingest runs: its new trades are stored
    right after the old ones, without a gap and without being taken for duplicates."""
    config = generated(tmp_path / "exchange", rate=100)
    first = Exchange(config)
    await first.start()
    try:
        port = first.port
        settings = simulator_settings(first, nats_url, tmp_path / "data", "ETHUSDT")
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
                start, end = second_trades[len(first_trades)].time_ms, second_trades[len(first_trades) + 100].time_ms
                window, _ = await request(client, "tape.query.coverage.ETHUSDT", {"start": start, "end": end})
    finally:
        await first.stop()
    assert second_trades[len(first_trades)].agg_id == first_last + 1
    assert coverage["first_id"] < first_last < coverage["last_id"]
    assert coverage["gaps"] == []
    assert coverage["trade_count"] == coverage["last_id"] - coverage["first_id"] + 1
    served = sum(start <= t.time_ms < end for t in second_trades)
    assert window["trade_count"] == served, "every trade of the restarted simulator is stored"
