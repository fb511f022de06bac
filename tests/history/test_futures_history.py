"""Futures history: `fetch-history um:BTCUSDT` (and `cm:`) from the simulator's data/futures dumps, checksum
verified, imported, exported and imported back; a dump of another market refused; `repair` from the futures REST.

The simulator invents finished days of USD-M and COIN-M trades and serves them as data.binance.vision does
(`data/futures/um|cm/daily/aggTrades/...`, a header row, ms times); what the store holds afterwards is compared
with the trades the simulator released, field by field.
"""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.history.conftest import Tradetape
from tradetape.binance.rest import RestClient
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import parse_units
from tradetape.domain.instruments import Market
from tradetape.domain.trade import TradeRow
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.fetch import HistoryFetcher, periods
from tradetape.history.load import TapeImporter
from tradetape.history.repair import repair
from tradetape.services.exchange import Exchange, ExchangeConfig, FaultConfig
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades
from tradetape.store.rocks import StoreNotFoundError

pytestmark = pytest.mark.timeout(180)

UM, CM = "um:BTCUSDT", "cm:BTCUSD_PERP"
DAY_MS = 86_400_000


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def day_ms(day: date) -> tuple[int, int]:
    start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)
    return start, start + DAY_MS


def released(exchange: Exchange, name: str, day: date) -> TradeColumns:
    """The trades the simulator released for `name` on `day`, as the store should hold them."""
    start, end = day_ms(day)
    trades = exchange.history(name).between(start, end - 1, 10_000_000)
    assert trades, f"the simulator has no {name} trades on {day}"
    return TradeColumns.from_rows(
        TradeRow(t.agg_id, parse_units(t.price), parse_units(t.qty), t.first_id, t.last_id, t.time_ms, t.buyer_maker)
        for t in trades
    )


def stored(data_dir: Path, name: str) -> TradeColumns:
    """What the store holds for `name` (nothing if there is no store yet)."""
    secondary = SecondaryStore(data_dir / "shards" / "main")
    try:
        return read_all_trades(secondary.catch_up(), name)
    except StoreNotFoundError:
        return TradeColumns.empty()
    finally:
        secondary.close()


def same(a: TradeColumns, b: TradeColumns) -> bool:
    """The seven columns a dump holds equal (a trade repaired from USD-M's REST also carries its `nq`)."""
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.arrays()[:7], b.arrays()[:7], strict=True))


def simulator(tmp_path: Path, **faults: str) -> Exchange:
    """Spot, USD-M and COIN-M BTC with two finished days of history each, no live trading."""
    config = ExchangeConfig(
        symbols=("BTCUSDT", UM, CM),
        rate=0,
        state_dir=tmp_path / "exchange",
        history_days=2,
        faults=FaultConfig(**faults),  # type: ignore[arg-type]
    )
    return Exchange(config)


def test_futures_periods_lie_under_data_futures() -> None:
    found = periods(UM, date(2026, 1, 31), date(2026, 2, 28), today=date(2026, 12, 1))
    assert [p.path for p in found] == [
        "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-31.zip",
        "data/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-02.zip",
    ]
    day = periods(CM, date(2026, 3, 1), date(2026, 3, 1), today=date(2026, 12, 1))[0]
    assert day.path == "data/futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2026-03-01.zip"
    assert day.download_name == "cm/BTCUSD_PERP-aggTrades-2026-03-01.zip"


@pytest.mark.slow
async def test_fetch_history_of_a_futures_day_is_verified_imported_and_exported_round_trip(
    tmp_path: Path, tradetape: Tradetape
) -> None:
    """The done-when of issue 21: `fetch-history um:BTCUSDT` of a day from the simulator, round trip."""
    day = yesterday()
    data = tmp_path / "data"
    symbols = f"BTCUSDT,{UM},{CM}"
    async with simulator(tmp_path) as exchange:
        url = exchange.rest_url
        fetched = await asyncio.to_thread(
            tradetape, "fetch-history", UM, CM, "--from", str(day), "--to", str(day),
            data_dir=data, symbols=symbols, history_url=url,
        )  # fmt: skip
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        expected = {name: released(exchange, name, day) for name in (UM, CM)}
        again = await asyncio.to_thread(
            tradetape, "fetch-history", UM, "--from", str(day), "--to", str(day),
            data_dir=data, symbols=symbols, history_url=url,
        )  # fmt: skip
    n = len(expected[UM])
    assert f"BTCUSDT-aggTrades-{day}.zip: {n} trades, {n} imported, 0 duplicates skipped, 0 gaps" in fetched.stdout
    assert f"{UM} {day}..{day}: 1 files imported ({n} trades)" in fetched.stdout
    assert f"{CM} {day}..{day}: 1 files imported ({len(expected[CM])} trades)" in fetched.stdout
    assert again.returncode == 0 and f"BTCUSDT-aggTrades-{day}.zip: imported before, skipped" in again.stdout
    for name in (UM, CM):
        assert same(stored(data, name), expected[name]), name
    assert len(stored(data, "BTCUSDT")) == 0, "futures trades landed in the spot tape"

    start, end = (datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in day_ms(day))
    for suffix in ("parquet", "csv"):
        out = tmp_path / f"um-day.{suffix}"
        exported = await asyncio.to_thread(
            tradetape, "export", UM, "--start", start, "--end", end, "-o", str(out), data_dir=data, symbols=UM
        )
        assert exported.returncode == 0, exported.stderr
        if suffix == "csv":
            assert out.read_text().startswith("# tradetape export symbol=BTCUSDT market=um start=")
        other = tmp_path / f"other-{suffix}"
        wrong = await asyncio.to_thread(
            tradetape, "import", "--symbol", "BTCUSDT", str(out), data_dir=other, symbols="BTCUSDT"
        )
        assert wrong.returncode == 1 and "holds um:BTCUSDT trades (its export label), not BTCUSDT" in wrong.stdout
        back = await asyncio.to_thread(tradetape, "import", str(out), data_dir=other, symbols=UM)
        assert back.returncode == 0, back.stdout + back.stderr
        assert f"{UM} {n} trades, {n} imported, 0 duplicates skipped, 0 gaps" in back.stdout
        assert same(stored(other, UM), expected[UM])


@pytest.mark.slow
async def test_a_futures_day_with_a_bad_checksum_imports_nothing_until_it_is_right(tmp_path: Path) -> None:
    day = yesterday()
    async with simulator(tmp_path, corrupt_checksum=str(day)) as exchange:
        settings = Settings(data_dir=tmp_path / "data", symbols=(UM,), history_url=exchange.rest_url)
        async with TapeImporter(settings) as importer:
            fetcher = HistoryFetcher(settings, importer)
            spoilt = await fetcher.fetch(UM, day, day)
            assert [name for name, _ in spoilt.failed] == [f"BTCUSDT-aggTrades-{day}.zip"]
            assert "does not match its .CHECKSUM" in spoilt.failed[0][1] and not spoilt.imported
            assert len(stored(settings.data_dir, UM)) == 0
            exchange.set_faults(FaultConfig())
            fixed = await fetcher.fetch(UM, day, day)
            assert [r.added for r in fixed.imported] == [len(released(exchange, UM, day))]
        assert same(stored(settings.data_dir, UM), released(exchange, UM, day))


@pytest.mark.slow
async def test_a_dump_of_another_market_than_the_instrument_is_refused(tmp_path: Path, tradetape: Tradetape) -> None:
    day = yesterday()
    async with simulator(tmp_path) as exchange:
        files: dict[str, Path] = {}
        for market, root in (("spot", "data/spot"), ("um", "data/futures/um")):
            name = f"BTCUSDT-aggTrades-{day}.zip"
            url = f"{exchange.rest_url}/{root}/daily/aggTrades/BTCUSDT/{name}"
            body = await asyncio.to_thread(lambda u=url: urllib.request.urlopen(u).read())
            files[market] = tmp_path / market / name
            files[market].parent.mkdir()
            files[market].write_bytes(body)
        expected = released(exchange, UM, day)

    with pytest.raises(DumpError, match=r"7 fields with times in ms make a cm or um dump, not one of spot"):
        read_dump(files["um"])  # named BTCUSDT-aggTrades-…: spot by its name, futures by its rows
    with pytest.raises(DumpError, match=r"8 fields with times in us make a spot dump, not one of um"):
        read_dump(files["spot"], UM)
    assert same(read_dump(files["um"], "UM:btcusdt").trades, expected)

    laid_out = tmp_path / "mirror" / "data" / "futures" / "cm" / "daily" / "aggTrades" / "BTCUSDT" / files["um"].name
    laid_out.parent.mkdir(parents=True)
    laid_out.write_bytes(files["um"].read_bytes())
    with pytest.raises(DumpError, match=r"a cm dump \(by its path\), not one of um"):
        read_dump(laid_out, UM)
    assert read_dump(laid_out).symbol == "cm:BTCUSDT", "a dump under data/futures/cm/ is COIN-M's"

    data = tmp_path / "data"
    refused = await asyncio.to_thread(tradetape, "import", str(files["um"]), data_dir=data, symbols=f"BTCUSDT,{UM}")
    assert refused.returncode == 1 and "FAILED, nothing of it imported: " in refused.stdout
    assert "not one of spot" in refused.stdout
    taken = await asyncio.to_thread(
        tradetape, "import", "--symbol", UM, str(files["um"]), data_dir=data, symbols=f"BTCUSDT,{UM}"
    )
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert same(stored(data, UM), expected) and len(stored(data, "BTCUSDT")) == 0


@pytest.mark.slow
async def test_repair_of_a_futures_instrument_pages_its_own_markets_rest(tmp_path: Path, tradetape: Tradetape) -> None:
    """`repair um:BTCUSDT` refused futures names; it asks /fapi/v1 now, never spot's /api/v3."""
    day = yesterday()
    async with simulator(tmp_path) as exchange:
        expected = released(exchange, UM, day)
        holed = expected.take(np.r_[0 : len(expected) // 3, len(expected) // 3 + 250 : len(expected)])
        data = tmp_path / "data"
        settings = Settings(data_dir=data, symbols=(UM,), binance_um_rest_url=exchange.rest_url)
        async with TapeImporter(settings) as importer:
            await importer.import_trades(UM, "holed", holed)
            gaps = importer.gaps(UM, None)
            assert len(gaps) == 1 and gaps[0][1] - gaps[0][0] + 1 == 250
            with pytest.raises(ValueError, match="not a spot instrument"):
                await repair(importer, RestClient(exchange.rest_url, weight_per_minute=1200), UM, gaps)
            report = await repair(importer, RestClient.of(settings, Market.UM), UM, gaps)
            assert (report.closed, report.still_open, report.added) == (gaps, [], 250)
        assert same(stored(data, UM), expected)
        assert exchange.rest_log.counts["/fapi/v1/aggTrades"] >= 1

        cm_expected = released(exchange, CM, day)
        cm_data = tmp_path / "cm-data"
        cm_settings = Settings(data_dir=cm_data, symbols=(CM,))
        async with TapeImporter(cm_settings) as importer:
            await importer.import_trades(CM, "holed", cm_expected.take(np.r_[0:100, 130 : len(cm_expected)]))
        done = await asyncio.to_thread(
            tradetape, "repair", CM, "--dump-min-gap", "0", data_dir=cm_data, symbols=CM,
            binance_cm_rest_url=exchange.rest_url, binance_rest_url="http://127.0.0.1:9",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{CM}: 1 gaps, 1 closed, 0 still open; 30 trades added from REST" in done.stdout
        assert same(stored(cm_data, CM), cm_expected)
        assert exchange.rest_log.counts["/dapi/v1/aggTrades"] >= 1 and not exchange.rest_log.counts["/api/v3/aggTrades"]
