"""A USD-M export carries `nq` (empty where a trade has none) and imports back with it; other markets' files are as
they were; an `nq` column is checked like every field of a file (exact decimal, 0 to `q`, USD-M only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.store.synthetic import tape
from tests.store.test_normal_quantity import with_nq
from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.export import export, read_frame
from tradetape.history.export_format import EXPORT_FIELDS
from tradetape.history.load import TapeImporter
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades

T0 = 1_767_225_600_000
HOUR = 3_600_000
UM = "um:BTCUSDT"


def same(a: TradeColumns, b: TradeColumns) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


def stored(settings: Settings, symbol: str) -> TradeColumns:
    secondary = SecondaryStore(settings.shard_dir)
    try:
        return read_all_trades(secondary.catch_up(), symbol)
    finally:
        secondary.close()


async def imported(tmp_path: Path, name: str, symbol: str, trades: TradeColumns) -> Settings:
    settings = Settings(data_dir=tmp_path / name, symbols=(symbol,))
    async with TapeImporter(settings) as importer:
        assert (await importer.import_trades(symbol, "test", trades)).added == len(trades)
    return settings


async def test_a_usd_m_export_keeps_nq_through_an_import(tmp_path: Path) -> None:
    trades = with_nq(tape(4_000, 2 * HOUR, seed=5, start_ms=T0), seed=6, unknown=0.05)
    settings = await imported(tmp_path, "source", UM, trades)
    assert same(stored(settings, UM), trades)
    for suffix in (".parquet", ".csv"):
        path = tmp_path / f"um{suffix}"
        assert export(settings.shard_dir, UM, T0, T0 + 2 * HOUR, path) == len(trades)
        again = read_dump(path)
        assert again.symbol == UM and same(again.trades, trades), suffix
        other = await imported(tmp_path, suffix[1:], UM, again.trades)
        assert same(stored(other, UM), trades)
    header = (tmp_path / "um.csv").read_text().splitlines()[1]
    assert header == ",".join((*EXPORT_FIELDS, "nq"))
    frame = read_frame(settings.shard_dir, UM, T0, T0 + 2 * HOUR)
    unknown = trades.normal_qty == NO_NORMAL_QTY
    assert frame["nq"].null_count() == int(unknown.sum()) > 0
    assert frame["nq"].dtype == pl.Decimal(38, 8)


async def test_usd_m_trades_without_nq_export_an_empty_column_and_spot_exports_none(tmp_path: Path) -> None:
    plain = tape(1_000, HOUR, seed=9, start_ms=T0)
    um = await imported(tmp_path, "um", UM, plain)
    spot = await imported(tmp_path, "spot", "BTCUSDT", plain)
    export(um.shard_dir, UM, T0, T0 + HOUR, tmp_path / "um.csv")
    export(spot.shard_dir, "BTCUSDT", T0, T0 + HOUR, tmp_path / "spot.csv")
    um_lines = (tmp_path / "um.csv").read_text().splitlines()
    assert um_lines[1].endswith(",nq") and all(line.endswith(",") for line in um_lines[2:])
    assert (tmp_path / "spot.csv").read_text().splitlines()[1] == ",".join(EXPORT_FIELDS)
    assert read_dump(tmp_path / "um.csv").trades.normal_qty is None, "no nq anywhere: held as none, not as -1s"


@pytest.mark.parametrize(
    ("nq", "said"),
    [("2.5", "from 0 to the quantity"), ("-1", "plain decimal"), ("0.123456789", "plain decimal"),
     ("x", "plain decimal")],
)  # fmt: skip
async def test_a_bad_nq_in_a_file_is_refused_with_its_line(tmp_path: Path, nq: str, said: str) -> None:
    trades = with_nq(tape(50, HOUR, seed=2, start_ms=T0), seed=3)
    settings = await imported(tmp_path, "um", UM, trades)
    path = tmp_path / "um.csv"
    export(settings.shard_dir, UM, T0, T0 + HOUR, path)
    lines = path.read_text().splitlines()
    fields = lines[10].split(",")
    fields[2], fields[-1] = "1", nq
    lines[10] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DumpError, match=said) as raised:
        read_dump(path)
    assert raised.value.line == 11


async def test_an_nq_column_on_another_market_is_refused(tmp_path: Path) -> None:
    trades = with_nq(tape(50, HOUR, seed=2, start_ms=T0), seed=3)
    settings = await imported(tmp_path, "um", UM, trades)
    path = tmp_path / "um.csv"
    export(settings.shard_dir, UM, T0, T0 + HOUR, path)
    text = path.read_text().replace("market=um", "market=spot")
    (tmp_path / "spot.csv").write_text(text)
    with pytest.raises(DumpError, match="nq"):
        read_dump(tmp_path / "spot.csv")


@pytest.mark.parametrize("column", ["nq", "price"])
async def test_a_256_bit_decimal_column_is_refused_not_a_crash(tmp_path: Path, column: str) -> None:
    """polars cannot hold a Decimal256: reading one panicked (a BaseException with a Rust backtrace) in the import."""
    trades = with_nq(tape(50, HOUR, seed=2, start_ms=T0), seed=3)
    settings = await imported(tmp_path, "um", UM, trades)
    path = tmp_path / "um.parquet"
    export(settings.shard_dir, UM, T0, T0 + HOUR, path)
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    wide = table.column(index).cast(pa.decimal256(76, 8))
    pq.write_table(table.set_column(index, column, wide).replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(DumpError, match=f"column {column} is decimal256"):
        read_dump(path)


async def test_a_row_without_its_nq_field_is_refused_not_read_as_a_trade_without_nq(tmp_path: Path) -> None:
    """The export writes every row's eight fields (an unknown `nq` is an empty eighth): a row of seven is a damaged
    file, and reading it as "no nq" would drop the trade's normal quantity unseen."""
    trades = with_nq(tape(50, HOUR, seed=2, start_ms=T0), seed=3)
    settings = await imported(tmp_path, "um", UM, trades)
    path = tmp_path / "um.csv"
    export(settings.shard_dir, UM, T0, T0 + HOUR, path)
    lines = path.read_text().splitlines()
    lines[10] = lines[10].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DumpError, match="expected 8 comma-separated fields") as raised:
        read_dump(path)
    assert raised.value.line == 11


@pytest.mark.parametrize("column", ["nq", "price"])
async def test_a_parquet_column_given_twice_is_refused_naming_it(tmp_path: Path, column: str) -> None:
    """Which of two `nq` (or `price`) columns holds the trades' is no guess to make: it was a KeyError from pyarrow."""
    trades = with_nq(tape(50, HOUR, seed=2, start_ms=T0), seed=3)
    settings = await imported(tmp_path, "um", UM, trades)
    path = tmp_path / "um.parquet"
    export(settings.shard_dir, UM, T0, T0 + HOUR, path)
    table = pq.read_table(path)
    twice = table.append_column(column, table.column(column))
    pq.write_table(twice.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(DumpError, match=f"column {column} is given 2 times"):
        read_dump(path)
