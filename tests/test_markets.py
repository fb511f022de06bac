"""Spot ETHUSDT and USD-M um:ETHUSDT side by side, with the SAME agg ids: they never meet.

Both tapes go the real way in (JetStream, spelled by `tradetape.bus.subjects` as ingest
spells them → persist → RocksDB) and come out through analytics and the Python client; the
gap ledger holds an entry for each. Agg ids are consecutive per instrument, so the two
markets use the same ids: a message id, a ledger key, a store key or a query subject that
forgot the market would drop the futures trades as duplicates of spot's, merge them into
one tape, or answer one market's question with the other's trades.
Futures frames carry no `M` (BINANCE.md), as here.
"""

from __future__ import annotations

import random
import time
import zlib
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from pydantic import ValidationError

from tests.harness import run_services, wait_for, wait_until_stored
from tradetape.api.registry import methods
from tradetape.bus.ledger import LedgerEntry, LedgerGap, ledger_bucket, ledger_key, read_entry, write_entry
from tradetape.bus.provision import ensure_streams
from tradetape.bus.subjects import (
    MSG_ID_HEADER,
    TRADES_STREAM,
    bars_subject,
    deadletter_subject,
    import_subject,
    profile_subject,
    query_instrument,
    query_subject,
    trade_instrument,
    trade_msg_id,
    trade_subject,
)
from tradetape.cli.main import main
from tradetape.client import ClientQueryError, TapeClient, TapeUnavailable
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import format_units
from tradetape.domain.instruments import symbol_of_instrument
from tradetape.domain.symbols import SymbolError
from tradetape.domain.trade import TradeRow
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings, shard_of
from tradetape.store.keys import index_key, parse_window_key, window_key
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades
from tradetape.store.shards import find_shards
from tradetape.testing import HeldTrades

pytestmark = pytest.mark.timeout(120)

SPOT, FUTURES = "ETHUSDT", "um:ETHUSDT"
COUNT = 1200
FIRST_ID = 50_000


def generated_rows(now_ms: int, price: int, seed: int) -> list[TradeRow]:
    """`COUNT` trades of the last 40 minutes with agg ids FIRST_ID..: the same ids whatever the market."""
    rng = random.Random(seed)
    start = now_ms - 40 * 60_000
    rows = []
    for i in range(COUNT):
        price = max(10**8, price + rng.choice((-3, -1, 0, 1, 3)) * 10**6)
        qty = int(rng.paretovariate(1.2) * 10**6)
        time_ms = start + i * 1500 + rng.randrange(1500)
        rows.append(TradeRow(FIRST_ID + i, price, qty, 4 * i, 4 * i + 3, time_ms, rng.random() < 0.5))
    return rows


def wire(instrument: str, row: TradeRow) -> bytes:
    body: dict[str, Any] = {
        "e": "aggTrade",
        "E": row.time,
        "s": symbol_of_instrument(instrument),
        "a": row.agg_id,
        "p": format_units(row.price),
        "q": format_units(row.qty),
        "f": row.first_id,
        "l": row.last_id,
        "T": row.time,
        "m": row.buyer_maker,
    }
    if instrument == SPOT:
        body["M"] = True
    return orjson.dumps(body)


async def publish(js: Any, instrument: str, rows: list[TradeRow]) -> list[bool]:
    """Publish as ingest does (subject and Nats-Msg-Id of the instrument); whether each was a duplicate."""
    acks = []
    for row in rows:
        headers = {MSG_ID_HEADER: trade_msg_id(instrument, row.agg_id)}
        acks.append(await js.publish(trade_subject(instrument), wire(instrument, row), headers=headers))
    return [ack.duplicate is True for ack in acks]


@pytest.mark.slow
async def test_spot_and_usd_m_with_the_same_ids_stay_apart_end_to_end(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=f"{SPOT},{FUTURES}")
    now_ms = int(time.time() * 1000)
    rows = {SPOT: generated_rows(now_ms, 2_400 * 10**8, 1), FUTURES: generated_rows(now_ms, 2_402 * 10**8, 2)}
    assert [r.agg_id for r in rows[SPOT]] == [r.agg_id for r in rows[FUTURES]]
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        assert not any(await publish(js, SPOT, rows[SPOT]))
        assert not any(await publish(js, FUTURES, rows[FUTURES])), "futures trades dropped as spot's duplicates"
        assert all(await publish(js, FUTURES, rows[FUTURES][:50])), "a re-publish of one instrument is still dropped"
        for instrument in (SPOT, FUTURES):
            info = await js.stream_info(TRADES_STREAM, subjects_filter=trade_subject(instrument))
            assert info.state.subjects == {trade_subject(instrument): COUNT}
        assert trade_subject(SPOT) == "tape.trades.binance.ETHUSDT"
        assert trade_subject(FUTURES) == "tape.trades.binance.um.ETHUSDT"

        ledger = await ledger_bucket(js, create=True)
        assert ledger is not None
        last = FIRST_ID + COUNT - 1
        open_gap = LedgerGap(last + 10, last + 14, now_ms, 2, "HTTP 503")
        await write_entry(ledger, LedgerEntry(SPOT, last, last, now_ms))
        await write_entry(ledger, LedgerEntry(FUTURES, last, last, now_ms, (open_gap,)))
        spot_entry, futures_entry = await read_entry(ledger, SPOT), await read_entry(ledger, FUTURES)
        assert spot_entry is not None and spot_entry.symbol == SPOT and spot_entry.gaps == ()
        assert futures_entry is not None and futures_entry.symbol == FUTURES and futures_entry.gaps == (open_gap,)
        assert sorted(await ledger.keys()) == ["binance.ETHUSDT", "binance.um.ETHUSDT"]

        async with run_services(settings, "persist", "analytics") as running:
            for instrument in (SPOT, FUTURES):
                await wait_until_stored(client, instrument, COUNT, running=running)
            tape = TapeClient(client, timeout=30)
            held = HeldTrades({name: TradeColumns.from_rows(found) for name, found in rows.items()})
            span = {"start": now_ms - 45 * 60_000, "end": now_ms}
            requests: dict[str, dict[str, Any]] = {
                "volume_profile": {**span, "row_size": "1", "min_trades": 100},
                "trades": {**span, "limit": 5000},
                "vwap": {**span, "interval": "5m"},
            }
            answers: dict[str, dict[str, Any]] = {}
            for instrument in (SPOT, FUTURES):
                for name, body in requests.items():
                    spec = methods()[name]
                    reply = (await tape.query(name, instrument, **body)).model_dump(mode="json")
                    expected = spec.handler(held, instrument, spec.parse_request(body), now_ms).model_dump(mode="json")
                    assert reply == expected, (instrument, name)
                    answers[f"{instrument} {name}"] = reply
                coverage = await tape.query("coverage", instrument)
                assert (coverage.trade_count, coverage.first_id, coverage.last_id) == (COUNT, FIRST_ID, last)
                assert coverage.symbol == instrument
                ingest_gaps = [(g.from_id, g.to_id) for g in coverage.ingest_gaps or []]
                assert ingest_gaps == ([] if instrument == SPOT else [(last + 10, last + 14)])
            assert answers[f"{SPOT} volume_profile"]["poc"] != answers[f"{FUTURES} volume_profile"]["poc"]
            trades = {i: answers[f"{i} trades"]["trades"] for i in (SPOT, FUTURES)}
            assert [t["a"] for t in trades[SPOT]] == [t["a"] for t in trades[FUTURES]]
            assert [t["p"] for t in trades[SPOT]] == [format_units(r.price) for r in rows[SPOT]]
            assert [t["p"] for t in trades[FUTURES]] == [format_units(r.price) for r in rows[FUTURES]]
            with pytest.raises(TapeUnavailable, match="cm:ETHUSDT is not served; served symbols: ETHUSDT, um:ETHUSDT"):
                await tape.query("coverage", "cm:ETHUSDT")
            served = await tape.served()
            assert set(served) == {SPOT, FUTURES}
            persist = running.services["persist"]
            assert persist.written == {SPOT: COUNT, FUTURES: COUNT} and not persist.deadlettered
    finally:
        await client.close()

    assert find_shards(tmp_path / "shards") == {"main": (SPOT, FUTURES)}
    reader = SecondaryStore(settings.shard_dir)
    try:
        db = reader.catch_up()
        for instrument, expected_rows in rows.items():
            stored = read_all_trades(db, instrument)
            assert stored.agg_id.tolist() == [r.agg_id for r in expected_rows]
            assert stored.price.tolist() == [r.price for r in expected_rows]
            assert stored.qty.tolist() == [r.qty for r in expected_rows]
    finally:
        reader.close()


def test_spot_is_spelled_as_it_always_was_and_futures_in_a_token_of_its_own() -> None:
    spelled = {
        "trade subject": (trade_subject, "tape.trades.binance.BTCUSDT", "tape.trades.binance.um.BTCUSDT"),
        "query subject": (lambda n: query_subject("bars", n), "tape.query.bars.BTCUSDT", "tape.query.bars.um.BTCUSDT"),
        "profile subject": (profile_subject, "tape.live.profile.BTCUSDT", "tape.live.profile.um.BTCUSDT"),
        "bars subject": (bars_subject, "tape.live.bars.1s.BTCUSDT", "tape.live.bars.1s.um.BTCUSDT"),
        "import subject": (import_subject, "tape.persist.import.BTCUSDT", "tape.persist.import.um.BTCUSDT"),
        "dead letters": (
            lambda n: deadletter_subject("ingest", n),
            "tape.deadletter.ingest.BTCUSDT",
            "tape.deadletter.ingest.um.BTCUSDT",
        ),
        "msg id": (lambda n: trade_msg_id(n, 7), "binance:BTCUSDT:7", "binance:um:BTCUSDT:7"),
        "ledger key": (ledger_key, "binance.BTCUSDT", "binance.um.BTCUSDT"),
        "window key": (
            lambda n: window_key(n, 1000),
            b"trades:BTCUSDT:0000000001000",
            b"trades:um.BTCUSDT:0000000001000",
        ),
        "index key": (index_key, b"index:BTCUSDT", b"index:um.BTCUSDT"),
        "shard of 7": (lambda n: shard_of(n, 7), zlib.crc32(b"BTCUSDT") % 7, zlib.crc32(b"um:BTCUSDT") % 7),
    }
    for what, (spell, spot, futures) in spelled.items():
        assert (spell("BTCUSDT"), spell("um:BTCUSDT")) == (spot, futures), what
    assert trade_instrument("tape.trades.binance.um.BTCUSDT") == "um:BTCUSDT"
    assert trade_instrument("tape.trades.binance.BTCUSDT") == "BTCUSDT"
    assert query_instrument("tape.query.volume_profile.cm.BTCUSD_PERP") == "cm:BTCUSD_PERP"
    assert parse_window_key(b"trades:um.BTCUSDT:0000000001000") == ("um:BTCUSDT", 1000)
    assert deadletter_subject("persist", "um:a.b") == "tape.deadletter.persist.unknown"  # never raises


HOSTILE = ["um:", "xx:BTC", "um:a.b", "um:BTC.USDT", "um:>", "spot.BTCUSDT", "um:" + "A" * 5000]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_instrument_is_refused_at_every_spelling(name: str) -> None:
    for spell in (trade_subject, lambda n: query_subject("bars", n), ledger_key, lambda n: window_key(n, 0)):
        with pytest.raises(SymbolError) as refused:
            spell(name)
        assert "\n" not in str(refused.value) and len(str(refused.value)) < 300
    with pytest.raises(ValidationError):
        Settings(symbols=f"BTCUSDT,{name}")


@pytest.mark.parametrize(
    "subject",
    [
        "tape.trades.binance.um.A.B",
        "tape.trades.binance.xx.BTC",
        "tape.trades.binance.um",
        "tape.trades.binance.",
        "tape.trades.binance.spot.BTCUSDT",
        "tape.trades.other.BTCUSDT",
        "tape.query.bars",
        "tape.query.bars.um.",
    ],
)
def test_a_subject_naming_no_instrument_is_refused_not_guessed_from_its_last_token(subject: str) -> None:
    parse = query_instrument if subject.startswith("tape.query") else trade_instrument
    with pytest.raises(SymbolError):
        parse(subject)


@pytest.mark.parametrize("name", ["um:", "xx:BTC", "um:a.b"])
def test_the_cli_refuses_a_hostile_instrument_in_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    for argv, code in (
        (["query", "volume_profile", name, "--last", "1h", "--nats-url", "nats://127.0.0.1:9"], 1),
        (["export", name, "--last", "1h", "-o", str(tmp_path / "x.parquet"), "--data-dir", data], 1),
        (["repair", name, "--data-dir", data], 1),
        (["fetch-history", name, "--from", "2026-01-01", "--to", "2026-01-01", "--data-dir", data], 1),
        (["persist", "--symbols", name], 2),
    ):
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and len(err) < 400, (argv, err)
        assert "market" in err or "symbol" in err, (argv, err)
    assert not (tmp_path / "data").exists(), "refused before anything was written"


async def test_the_client_refuses_a_hostile_instrument_before_sending(nats_url: str) -> None:
    async with await TapeClient.connect(url=nats_url) as tape:
        for name in HOSTILE:
            with pytest.raises(ClientQueryError) as refused:
                await tape.query("coverage", name)
            assert refused.value.code == "invalid_request" and "\n" not in refused.value.message


async def test_a_shard_taking_spot_whole_stores_its_own_and_dead_letters_another_markets(
    nats_url: str, tmp_path: Path
) -> None:
    """`ALL,um:ETHUSDT` on one shard consumes every trade subject: spot (a symbol listed later too) and the named
    future are stored; um:BTCUSDT (not named) and a subject that names no instrument are dead-lettered, not stored."""
    now_ms = int(time.time() * 1000)
    one = TradeRow(FIRST_ID, 2_400 * 10**8, 10**8, 1, 1, now_ms - 60_000, False)
    async with Exchange(ExchangeConfig(symbols=("BTCUSDT",), rate=0)) as exchange:
        settings = Settings(
            nats_url=nats_url, data_dir=tmp_path, symbols="ALL,um:ETHUSDT", binance_rest_url=exchange.rest_url
        )
        client = await nats.connect(nats_url)
        js = client.jetstream()
        try:
            await ensure_streams(js, settings)
            for instrument in ("BTCUSDT", "SOLUSDT", "um:ETHUSDT", "um:BTCUSDT"):
                assert not any(await publish(js, instrument, [one]))
            await js.publish("tape.trades.binance.um.A.B", wire("um:ETHUSDT", one))
            async with run_services(settings, "persist") as running:
                persist = running.services["persist"]

                async def settled() -> bool:
                    return sum(persist.written.values()) == 3 and sum(persist.deadlettered.values()) == 2

                await wait_for(settled, timeout=30, running=running)
                assert persist.written == {"BTCUSDT": 1, "SOLUSDT": 1, "um:ETHUSDT": 1}
                assert persist.deadlettered == {"um:BTCUSDT": 1, "unknown": 1}
                dead = [await js.get_msg("TAPE_DEADLETTER", seq) for seq in (1, 2)]
                assert sorted(d.subject for d in dead) == [
                    "tape.deadletter.persist.um.BTCUSDT",
                    "tape.deadletter.persist.unknown",
                ]
                assert persist.symbols == ("BTCUSDT", "um:ETHUSDT", "SOLUSDT")
        finally:
            await client.close()
    assert find_shards(tmp_path / "shards") == {"main": ("BTCUSDT", "um:ETHUSDT", "SOLUSDT")}
