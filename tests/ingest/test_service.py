"""Ingest against the simulator and a real nats-server, one test per fault.

A lost trade is seen as a gap only when a later id arrives, so no `drop_every` here drops
the replay's last trade (5,000 is no multiple of the values); the tail probe tests drop the
last ones on purpose.

Every test ends the same way: the stream holds, for every symbol, exactly the exchange's
agg ids, each once, with the exchange's exact price and quantity strings, and the gap
ledger has nothing open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from tests.harness import Running, run_services, wait_for
from tests.isolated import LoopThread, ended, isolated_loop
from tests.processes import ServiceProcesses, service_env
from tradetape.binance.rest import AGG_TRADES_WEIGHT
from tradetape.bus.connect import connect
from tradetape.bus.ledger import LedgerGap, ledger_bucket, open_gaps, read_entry
from tradetape.bus.publish.publisher import NatsClosedError
from tradetape.bus.subjects import DEADLETTER_STREAM, INGEST_STATS_SUBJECT, TRADES_STREAM, trade_subject
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig, FaultConfig
from tradetape.services.ingest.service import IngestService
from tradetape.services.ingest.tailprobe import PROBE_WEIGHT_SHARE, found_within_s, probe_interval_s
from tradetape.settings import Settings
from tradetape.testing import simulator_settings

pytestmark = pytest.mark.timeout(90)

FAST = {"ingest_gap_retry_max_s": 1.0}
SLACK_S = 3.0
"""Beyond a stated bound: the filler's 0.5 s poll, the publish and its ack, a loaded 2-core machine."""


def exchange_for(*symbols: str, speed: float | None = 250, **config: Any) -> Exchange:
    """The bundled 5,000 real trades replayed for each symbol (about 3 s at speed 250)."""
    replay = {symbol: BUNDLED_REPLAY for symbol in symbols}
    return Exchange(ExchangeConfig(symbols=(), replay=replay, rate=0, speed=speed, **config))


def ingest_settings(exchange: Exchange, nats_url: str, tmp_path: Path, *symbols: str, **fields: Any) -> Settings:
    """The simulator's settings with the fast ingest timings (`FAST`), data under `tmp_path / "data"`."""
    return simulator_settings(exchange, nats_url, tmp_path / "data", *symbols, **{**FAST, **fields})


@contextlib.asynccontextmanager
async def ingesting(settings: Settings) -> AsyncIterator[tuple[Running, IngestService, Client]]:
    assert settings.nats_url is not None
    async with run_services(settings, "ingest") as running:
        client = await nats.connect(settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            yield running, running.services["ingest"], client
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def scenario(
    nats_url: str, tmp_path: Path, *, faults: FaultConfig | None = None, speed: float | None = 250, **fields: Any
) -> AsyncIterator[tuple[Exchange, Running, IngestService, Client]]:
    """BTCUSDT replayed with `faults`, ingested with `fields` as settings."""
    async with (
        exchange_for("BTCUSDT", speed=speed, faults=faults or FaultConfig()) as exchange,
        ingesting(ingest_settings(exchange, nats_url, tmp_path, "BTCUSDT", **fields)) as (running, ingest, nc),
    ):
        yield exchange, running, ingest, nc


@contextlib.asynccontextmanager
async def exact_through(
    nats_url: str, tmp_path: Path, faults: FaultConfig, *, speed: float | None
) -> AsyncIterator[IngestService]:
    """BTCUSDT replayed with `faults` and its tape found exact (`assert_tape_exact`): the ingest, to read what it
    counted while it still runs."""
    async with scenario(nats_url, tmp_path, faults=faults, speed=speed) as (exchange, running, ingest, client):
        await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
        yield ingest


async def subject_count(js: JetStreamContext, symbol: str) -> int:
    subject = trade_subject(symbol)
    info = await js.stream_info(TRADES_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def stored_trades(js: JetStreamContext, symbol: str) -> list[dict[str, Any]]:
    count = await subject_count(js, symbol)
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30)
    sub = await js.pull_subscribe(trade_subject(symbol), stream=TRADES_STREAM, config=config)
    trades: list[dict[str, Any]] = []
    try:
        while len(trades) < count:
            trades += [orjson.loads(m.data) for m in await sub.fetch(min(1000, count - len(trades)), timeout=5)]
    finally:
        await sub.unsubscribe()
    return trades


async def assert_tape_exact(
    client: Client, exchange: Exchange, symbols: tuple[str, ...], running: Running | None = None, timeout: float = 40
) -> None:
    """Wait until each symbol's stream holds as many trades as the exchange released, then compare them."""
    js = client.jetstream()
    for symbol in symbols:
        await asyncio.wait_for(exchange.wait_replay(symbol), timeout)
        expected = exchange.history(symbol).trades()

        async def complete(symbol: str = symbol, size: int = len(expected)) -> bool:
            return await subject_count(js, symbol) >= size and not await open_gaps(js, symbol)

        await wait_for(complete, timeout, running=running)
        stored = await stored_trades(js, symbol)
        trades = sorted(stored, key=lambda t: t["a"])  # REST fills arrive after later live ids
        assert len({t["a"] for t in trades}) == len(trades), f"{symbol}: an id stored twice"
        assert [t["a"] for t in trades] == [e.agg_id for e in expected], f"{symbol}: ids differ"
        assert [(t["p"], t["q"]) for t in trades] == [(e.price, e.qty) for e in expected]
        kv = await ledger_bucket(js)
        assert kv is not None
        last_id = expected[-1].agg_id
        entry = await wait_for(lambda symbol=symbol, kv=kv, last_id=last_id: _entry_at(kv, symbol, last_id), 5)
        assert entry.gaps == ()


async def _entry_at(kv: Any, symbol: str, last_id: int) -> Any:
    entry = await read_entry(kv, symbol)
    return entry if entry is not None and entry.watermark == last_id else None


async def wait_open_gap(client: Client, symbol: str, timeout: float = 10) -> list[LedgerGap]:
    async def gaps() -> list[LedgerGap]:
        return [g for g in await open_gaps(client.jetstream(), symbol) if g.attempts >= 1]

    found: list[LedgerGap] = await wait_for(gaps, timeout, interval=0.05)
    return found


@pytest.mark.slow
async def test_dropped_connections_lose_nothing(nats_url: str, tmp_path: Path) -> None:
    async with exact_through(nats_url, tmp_path, FaultConfig(disconnect_after=1000), speed=150) as ingest:
        assert ingest.feeds[0].reconnects >= 2


@pytest.mark.slow
async def test_ids_skipped_on_the_websocket_are_filled_from_rest(nats_url: str, tmp_path: Path) -> None:
    async with exact_through(nats_url, tmp_path, FaultConfig(drop_every=99), speed=None) as ingest:
        counters = ingest.tapes["BTCUSDT"].counters
        assert counters.backfilled >= 49 and counters.gaps_closed >= 1


@pytest.mark.slow
async def test_a_quiet_symbols_lost_last_trades_are_found_by_the_tail_probe(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The last 10 of 5,000 ids never reach the WebSocket and the symbol stays quiet: no later id shows the loss."""
    caplog.set_level(logging.INFO, logger="tradetape.services.ingest.filler")
    after_s = 2.0
    faults = FaultConfig(drop_after=4990)
    async with scenario(nats_url, tmp_path, faults=faults, speed=None, ingest_tail_probe_after_s=after_s) as (
        exchange,
        running,
        ingest,
        client,
    ):
        await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 30)
        quiet_from = time.monotonic()
        bound = found_within_s(1, after_s, probe_interval_s(Settings().ingest_rest_weight_per_minute))
        js = client.jetstream()
        await wait_for(lambda: _at_least(js, 5000), bound + SLACK_S, interval=0.05, running=running)
        found_after = time.monotonic() - quiet_from
        assert after_s - 0.2 <= found_after <= bound + SLACK_S, "found by a probe once quiet, within the bound"
        await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
        counters = ingest.tapes["BTCUSDT"].counters
        assert (counters.backfilled, counters.gaps_opened) == (10, 0)
        reply = orjson.loads((await client.request(INGEST_STATS_SUBJECT, b'{"symbol": ""}', timeout=5)).data)
        probe = reply["tail_probe"]
        assert reply["symbols"] == {} and probe["symbols"] == 1 and probe["after_s"] == after_s
        assert (probe["found_probes"], probe["found_trades"]) == (1, 10) and probe["probes"] >= 1
        assert probe["found_within_s"] == round(bound, 1)
    found = [r for r in caplog.records if r.getMessage() == "tail probe found trades"]
    assert len(found) == 1 and found[0].__dict__["fetched"] == 10, "one line per probe, none per trade"


@pytest.mark.slow
async def test_many_quiet_symbols_are_probed_in_turn_within_the_weight_budget(nats_url: str, tmp_path: Path) -> None:
    """20 symbols trade 20 times each, then stay quiet: one probe each within the bound, paced by the budget."""
    short = tmp_path / "short.csv"
    short.write_text("".join(BUNDLED_REPLAY.read_text().splitlines(keepends=True)[:20]))
    symbols = tuple(f"Q{index:02d}USDT" for index in range(20))
    after_s, budget = 1.0, 1200
    interval = probe_interval_s(budget)
    replay = {symbol: short for symbol in symbols}
    async with Exchange(ExchangeConfig(symbols=(), replay=replay, rate=0, speed=None)) as exchange:
        settings = ingest_settings(
            exchange,
            nats_url,
            tmp_path,
            *symbols,
            ingest_tail_probe_after_s=after_s,
            ingest_rest_weight_per_minute=budget,
        )
        async with ingesting(settings) as (running, ingest, client):
            await assert_tape_exact(client, exchange, symbols, running)
            quiet_from = time.monotonic()
            await asyncio.sleep(found_within_s(len(symbols), after_s, interval) + SLACK_S)
            observed_until = time.monotonic()
            calls = [(at, path) for at, path in exchange.rest_log.recent if path.startswith("/api/v3/aggTrades")]
            assert ingest.tapes[symbols[0]].counters.gaps_opened == 0
    probed = {symbol for _, path in calls for symbol in symbols if f"symbol={symbol}&" in path}
    assert probed == set(symbols), "every quiet symbol probed within the bound"
    assert all("fromId=" in path for _, path in calls)
    times = sorted(at for at, _ in calls)
    assert len(times) <= (observed_until - quiet_from) / interval + 2, "probes spend their share, no more"
    weight_per_minute = len(times) * AGG_TRADES_WEIGHT * 60 / (times[-1] - times[0])
    assert weight_per_minute <= budget * PROBE_WEIGHT_SHARE * 1.25
    window = 2.0
    busiest = max(sum(1 for t in times if start <= t < start + window) for start in times)
    assert busiest <= window / interval + 2, f"spread over time, not all at once: {busiest} calls in {window} s"


@pytest.mark.slow
async def test_duplicates_are_dropped(nats_url: str, tmp_path: Path) -> None:
    async with exact_through(nats_url, tmp_path, FaultConfig(duplicate_every=7), speed=None) as ingest:
        counters = ingest.tapes["BTCUSDT"].counters
        assert counters.duplicates >= 5000 // 7 and counters.stream_duplicates == 0


@pytest.mark.slow
async def test_bad_frames_are_deadlettered_and_never_stop_the_tape(nats_url: str, tmp_path: Path) -> None:
    faults = FaultConfig(malformed_every=300, invalid_every=250, oversized_every=1500, oversized_bytes=2**20 + 100)
    async with scenario(nats_url, tmp_path, faults=faults) as (exchange, running, ingest, client):
        await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
        kinds = ingest.tapes["BTCUSDT"].counters.deadletters + ingest.unknown_deadletters
        assert {"oversized", "invalid_json", "invalid_trade", "implausible_id"} <= set(kinds)
        assert kinds["oversized"] == 3 and kinds["implausible_id"] == 4
        js = client.jetstream()
        stored = await wait_for(lambda: _messages_if(js, DEADLETTER_STREAM, kinds.total()), 10, running=running)
        assert stored == kinds.total()
        biggest = max([(await js.get_msg(DEADLETTER_STREAM, seq)) for seq in range(1, stored + 1)], key=_size)
        assert _size(biggest) <= client.max_payload
        assert biggest.headers and biggest.headers.get("Tradetape-Reason", "").startswith("frame of")


async def _messages_if(js: JetStreamContext, stream: str, count: int) -> int | None:
    messages = (await js.stream_info(stream)).state.messages
    return messages if messages >= count else None


def _size(msg: Any) -> int:
    return len(msg.data or b"") + sum(len(k) + len(v) + 4 for k, v in (msg.headers or {}).items())


@pytest.mark.slow
async def test_lagging_rest_closes_the_gap_later(nats_url: str, tmp_path: Path) -> None:
    faults = FaultConfig(drop_every=999, rest_lag_s=2.0)
    async with scenario(nats_url, tmp_path, faults=faults, speed=None) as (exchange, running, ingest, client):
        seen = await wait_open_gap(client, "BTCUSDT")
        opened = time.monotonic()
        assert seen[0].last_error.startswith("short page")
        await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
        assert time.monotonic() - opened >= 0.5, "closed later, not at once"
        assert ingest.tapes["BTCUSDT"].counters.gaps_closed >= 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("error", "reason"), [("503", "HTTP 503"), ("429", "HTTP 429"), ("418", "HTTP 418"), ("html", "not JSON")]
)
async def test_failing_rest_closes_the_gap_later(
    nats_url: str, tmp_path: Path, error: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    faults = FaultConfig(drop_every=1999, rest_error=error, rest_error_calls=3, retry_after_s=1)
    async with scenario(nats_url, tmp_path, faults=faults, speed=None) as (exchange, running, _, client):
        seen = await wait_open_gap(client, "BTCUSDT")
        assert reason in seen[0].last_error
        await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
        assert exchange.rest_failures == 3
    if error == "418":
        assert any(r.levelno == logging.ERROR and "418" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
async def test_server_shutdown_switches_connections_without_loss(nats_url: str, tmp_path: Path) -> None:
    faults = FaultConfig(shutdown_after=1500, shutdown_grace_s=1.5)
    async with exact_through(nats_url, tmp_path, faults, speed=150) as ingest:
        feed, counters = ingest.feeds[0], ingest.tapes["BTCUSDT"].counters
        assert feed.rotations >= 2 and feed.reconnects == 0
        assert counters.gaps_opened == 0, "the replacement was subscribed before the old one closed"
        assert counters.duplicates > 0, "both delivered for a while"


@pytest.mark.slow
async def test_connections_rotate_before_their_maximum_age(nats_url: str, tmp_path: Path) -> None:
    async with exchange_for("BTCUSDT", speed=150) as exchange:
        settings = ingest_settings(exchange, nats_url, tmp_path, "BTCUSDT", ingest_max_connection_age_s=1.5)
        async with ingesting(settings) as (running, ingest, client):
            await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
            assert ingest.feeds[0].rotations >= 2 and ingest.feeds[0].reconnects == 0
            assert ingest.tapes["BTCUSDT"].counters.gaps_opened == 0


@pytest.mark.slow
async def test_a_silent_connection_is_replaced(nats_url: str, tmp_path: Path) -> None:
    async with exchange_for("BTCUSDT", faults=FaultConfig(silent_after=1000)) as exchange:
        settings = ingest_settings(exchange, nats_url, tmp_path, "BTCUSDT", ingest_silence_timeout_s=1.0)
        async with ingesting(settings) as (running, ingest, client):
            await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
            assert ingest.feeds[0].reconnects >= 1


@pytest.mark.slow
async def test_many_symbols_are_split_subscribed_paced_and_pinged(nats_url: str, tmp_path: Path) -> None:
    symbols = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT")
    async with exchange_for(*symbols, max_streams=2, ping_interval=0.3, ping_timeout=2.0) as exchange:
        settings = ingest_settings(exchange, nats_url, tmp_path, "ALL", ingest_streams_per_connection=2)
        async with ingesting(settings) as (running, ingest, client):
            await assert_tape_exact(client, exchange, symbols, running)
            assert [feed.symbols for feed in ingest.feeds] == [symbols[:2], symbols[2:4], symbols[4:]]
            await asyncio.sleep(1.0)
            assert [feed.reconnects for feed in ingest.feeds] == [0, 0, 0], "pings answered, requests paced"


@pytest.mark.slow
async def test_stats_request_and_graceful_stop(nats_url: str, tmp_path: Path) -> None:
    async with scenario(nats_url, tmp_path, faults=FaultConfig(drop_every=999), speed=None) as (
        exchange,
        running,
        ingest,
        client,
    ):
        await assert_tape_exact(client, exchange, ("BTCUSDT",), running)
        reply = orjson.loads((await client.request(INGEST_STATS_SUBJECT, b'{"symbol": "BTCUSDT"}', timeout=5)).data)
        btc = reply["symbols"]["BTCUSDT"]
        assert (btc["published"], btc["gaps_open"], btc["gaps_closed"], btc["backfilled"]) == (5000, 0, 5, 5)
        assert reply["rest"]["weight_used"] >= 20 and reply["connections"][0]["reconnects"] == 0
        last_id = exchange.history("BTCUSDT").trades()[-1].agg_id
    # run_services stopped ingest gracefully (it raises if the service failed): the ledger was written last
    nc = await nats.connect(nats_url)
    try:
        kv = await ledger_bucket(nc.jetstream())
        assert kv is not None
        entry = await read_entry(kv, "BTCUSDT")
        assert entry is not None and entry.gaps == () and entry.watermark == last_id
    finally:
        await nc.close()


@pytest.mark.slow
async def test_a_nats_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(tmp_path / "nats")
    await server.start()
    try:
        async with exchange_for("BTCUSDT", speed=80) as exchange:
            settings = ingest_settings(exchange, server.url, tmp_path, "BTCUSDT", ingest_buffer_trades=300)
            async with ingesting(settings) as (running, ingest, client):
                await wait_for(lambda: _at_least(client.jetstream(), 500), 30, running=running)
                await asyncio.sleep(1.0)
                port = server.port
                await server.stop()
                await asyncio.sleep(2.0)
                assert ingest.publisher.paused
                server = EmbeddedNatsServer(tmp_path / "nats", port=port)
                await server.start()
                await assert_tape_exact(client, exchange, ("BTCUSDT",), running, timeout=60)
                assert ingest.tapes["BTCUSDT"].counters.buffer_dropped > 0, "the buffer overflowed into gaps"
    finally:
        await server.stop()


@pytest.mark.slow
async def test_ingest_killed_and_restarted_while_trading(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    async with exchange_for("BTCUSDT", speed=80) as exchange:
        env = service_env(ingest_settings(exchange, nats_url, tmp_path, "BTCUSDT"))
        ingest = processes.start(["ingest"], env)
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            await wait_for(lambda: _at_least(js, 800), 30)
            ingest.send_signal(signal.SIGKILL)
            ingest.wait(10)
            await asyncio.sleep(1.0)
            assert exchange.history("BTCUSDT").end < 5000, "the exchange is still trading"
            processes.start(["ingest"], env)
            await assert_tape_exact(client, exchange, ("BTCUSDT",), timeout=60)
        finally:
            await client.close()
        processes.stop_all()
        assert "resumed=1" in processes.log_of(1)


async def _at_least(js: JetStreamContext, count: int) -> bool:
    with contextlib.suppress(Exception):
        return await subject_count(js, "BTCUSDT") >= count
    return False


async def start_ingest(loop: LoopThread, settings: Settings) -> tuple[Client, IngestService, asyncio.Task[None]]:
    """Ingest on its own connection, run in the isolated `loop`."""

    async def start() -> tuple[Client, IngestService, asyncio.Event]:
        assert settings.nats_url is not None
        nc = await connect(settings.nats_url, "test-ingest")
        return nc, IngestService(settings, nc), asyncio.Event()

    nc, service, stop = await loop.call(start(), 10)
    return nc, service, await loop.spawn(service.run(stop))


async def test_a_connection_closed_for_good_ends_ingest(nats_url: str, tmp_path: Path) -> None:
    async with exchange_for("BTCUSDT", speed=100) as exchange, isolated_loop() as loop:
        nc, service, task = await start_ingest(loop, ingest_settings(exchange, nats_url, tmp_path, "BTCUSDT"))
        try:
            await wait_for(lambda: _published(service), 20)
        finally:
            await loop.call(nc.close(), 5)
        assert await ended(task, 10), "ingest did not end within 10 s of the connection closing"
        with pytest.raises(NatsClosedError, match="closed for good"):
            task.result()


async def test_cancelling_ingest_ends_it_promptly(nats_url: str, tmp_path: Path) -> None:
    async with exchange_for("BTCUSDT", speed=None) as exchange, isolated_loop() as loop:
        nc, service, task = await start_ingest(loop, ingest_settings(exchange, nats_url, tmp_path, "BTCUSDT"))
        try:
            await wait_for(lambda: _published(service), 20, interval=0.01)
            loop.cancel(task)
            assert await ended(task, 5), "ingest did not end within 5 s of its cancellation"
            assert task.cancelled()
        finally:
            await loop.call(nc.close(), 5)


async def _published(service: IngestService) -> bool:
    tape = service.tapes.get("BTCUSDT")
    return tape is not None and tape.counters.published > 0
