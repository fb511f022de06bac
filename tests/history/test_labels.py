"""Exports that know what they hold: the label names symbol, market, range and version; import believes it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.history.conftest import Tradetape
from tradetape import __version__
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.export import export
from tradetape.history.load import TapeImporter
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
DAY = (1_767_225_600_000, 1_767_312_000_000)


@pytest.fixture
async def exports(tmp_path: Path) -> tuple[Settings, Path, Path]:
    """A store holding the real BTCUSDT trades, exported as ``btc-week.parquet`` and ``btc-week.csv``."""
    settings = Settings(data_dir=tmp_path / "data", symbols=("BTCUSDT", "ETHUSDT"))
    async with TapeImporter(settings) as importer:
        await importer.import_dump(read_dump(REAL))
    parquet, csv = tmp_path / "btc-week.parquet", tmp_path / "btc-week.csv"
    for path in (parquet, csv):
        assert export(settings.shard_dir, "BTCUSDT", *DAY, path) == 5000
    return settings, parquet, csv


def stored(settings: Settings, symbol: str) -> int:
    secondary = SecondaryStore(settings.shard_dir)
    try:
        return len(read_all_trades(secondary.catch_up(), symbol))
    finally:
        secondary.close()


async def test_an_export_is_labelled_and_imports_under_any_name(exports: tuple[Settings, Path, Path]) -> None:
    _, parquet, csv = exports
    pairs = {k.decode(): v.decode() for k, v in (pq.read_schema(parquet).metadata or {}).items()}
    expected = {
        "tradetape.symbol": "BTCUSDT",
        "tradetape.market": "spot",
        "tradetape.start": "2026-01-01T00:00:00.000Z",
        "tradetape.end": "2026-01-02T00:00:00.000Z",
        "tradetape.version": __version__,
    }
    assert {k: v for k, v in pairs.items() if k.startswith("tradetape.")} == expected
    assert csv.read_text().splitlines()[0] == (
        "# tradetape export symbol=BTCUSDT market=spot start=2026-01-01T00:00:00.000Z "
        f"end=2026-01-02T00:00:00.000Z version={__version__}"
    )
    for path in (parquet, csv):
        dump = read_dump(path)
        assert (dump.symbol, len(dump.trades)) == ("BTCUSDT", 5000)
        assert read_dump(path, "btcusdt").symbol == "BTCUSDT"
    assert duckdb.sql(f"select count(*) from '{csv}'").fetchall() == [(5000,)]  # the label is a comment to DuckDB


@pytest.mark.slow
async def test_a_symbol_that_disagrees_with_the_label_is_refused_before_anything_is_written(
    exports: tuple[Settings, Path, Path], tradetape: Tradetape
) -> None:
    settings, parquet, csv = exports
    eth = parquet.parent / "eth.csv"
    eth.write_text("".join(REAL.read_text().splitlines(keepends=True)[:800]))

    async def imported(*args: str) -> subprocess.CompletedProcess[str]:
        symbols = "BTCUSDT,ETHUSDT"
        return await asyncio.to_thread(tradetape, "import", *args, data_dir=settings.data_dir, symbols=symbols)

    assert (await imported(str(eth), "--symbol", "ETHUSDT")).returncode == 0
    assert stored(settings, "ETHUSDT") == 800
    for path in (parquet, csv):
        with pytest.raises(DumpError, match="the file holds BTCUSDT trades \\(its export label\\), not ETHUSDT"):
            read_dump(path, "ETHUSDT")
        refused = await imported(str(path), "--symbol", "ETHUSDT")
        assert refused.returncode == 1
        assert f"{path.name}: FAILED, nothing of it imported: the file holds BTCUSDT trades" in refused.stdout
    assert stored(settings, "ETHUSDT") == 800
    assert stored(settings, "BTCUSDT") == 5000
    again = await imported(str(parquet))  # docs/history.md's own example: no --symbol, no symbol in the name
    assert again.returncode == 0, again.stdout + again.stderr
    assert "btc-week.parquet: BTCUSDT 5000 trades, 0 imported, 5000 duplicates skipped" in again.stdout


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (
            lambda label: label.replace("end=2026-01-02T00:00:00.000Z", "end=2026-01-01T00:10:00.000Z"),
            4652,  # the first trade at 00:10:00.660 (line 1 the label, 2 the header)
            "time is outside the export label's range [2026-01-01T00:00:00.000Z, 2026-01-01T00:10:00.000Z)",
        ),
        (lambda label: label.replace("market=spot", "market=usdm"), 1, "the export label's market is wrong"),
        (lambda label: label.replace("symbol=BTCUSDT", "symbol=../../x"), 1, "the export label's symbol is wrong"),
        (lambda label: label + " symbol=ETHUSDT", 1, "'symbol=ETHUSDT' is not one name=value"),
    ],
)
async def test_a_label_that_cannot_be_believed_is_refused_naming_the_line(
    exports: tuple[Settings, Path, Path], change: object, line: int, reason: str
) -> None:
    _, _, csv = exports
    label, rest = csv.read_text().split("\n", 1)
    assert callable(change)
    csv.write_text(change(label) + "\n" + rest)
    with pytest.raises(DumpError) as caught:
        read_dump(csv)
    assert caught.value.line == line and reason in str(caught.value)


async def test_an_export_without_a_label_and_a_binance_dump_still_take_the_name_or_symbol(
    exports: tuple[Settings, Path, Path],
) -> None:
    _, _, csv = exports
    old = csv.parent / "BTCUSDT-day.csv"
    old.write_text(csv.read_text().split("\n", 1)[1])  # as exports were written before labels
    assert (read_dump(old).symbol, len(read_dump(old).trades)) == ("BTCUSDT", 5000)
    unnamed = csv.parent / "day.csv"
    unnamed.write_text(old.read_text())
    with pytest.raises(DumpError, match="cannot tell the symbol"):
        read_dump(unnamed)
    assert read_dump(unnamed, "BTCUSDT").symbol == "BTCUSDT"
    assert read_dump(REAL).symbol == "BTCUSDT"
