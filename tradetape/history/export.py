"""The tape as a table for the tools quants use: a polars DataFrame, Parquet or CSV.

Columns (`EXPORT_FIELDS`): ``agg_id``, ``price`` and ``qty`` as exact Decimal(38, 8),
``first_id``, ``last_id``, ``time`` as a UTC timestamp in ms, ``buyer_maker``; a USD-M
instrument's add ``nq`` (Decimal(38, 8), its normal quantity, null where a trade has none);
rows ascending by agg id. The store is read as a secondary (fine while persist writes), one
segment span (an hour) at a time, and each hour is written before the next is read, so
a week of a busy symbol exports in the memory of one hour. Parquet goes through one
pyarrow writer (a row group per hour, zstd); CSV writes times as ISO-8601 with ``Z``.
Each carries its label (`tradetape.history.labels`: symbol, market, range, version), as
Parquet key-value metadata or as the CSV's first line, a ``#`` comment. Both read back
with `tradetape import` to the same trades, under the label's symbol.
A file export carries the voids too, as Binance writes them (price and quantity 0, first
and last trade id -1), so an import of it holds the same id sequence; the DataFrames
(`read_frame`, `tape_frame`) are for analysis and hold trades only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from tradetape import __version__
from tradetape.api.models import parse_time_ms
from tradetape.domain.columns import TradeColumns
from tradetape.domain.instruments import Market, check_instrument, instrument_from_input, market_of, split_instrument
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.errors import RequestError
from tradetape.history.export_format import EXPORT_TIME_FORMAT, export_decimal
from tradetape.history.labels import ExportLabel
from tradetape.history.load import shard_dir_of
from tradetape.settings import Settings
from tradetape.store import ShardView, StoredTape

FORMATS = (".parquet", ".csv")


class ExportError(RequestError):
    """An export that cannot be written as asked (unknown format, empty range)."""


def trades_frame(trades: TradeColumns, *, nq: bool = False) -> pl.DataFrame:
    """Trades as the export table (exact decimals, UTC ms timestamps); with `nq` (USD-M), their normal quantities
    after the rest, null where a trade has none."""
    frame = pl.DataFrame(
        {
            "agg_id": trades.agg_id,
            "price": export_decimal(trades.price),
            "qty": export_decimal(trades.qty),
            "first_id": trades.first_id,
            "last_id": trades.last_id,
            "time": pl.Series(trades.time, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "buyer_maker": trades.buyer_maker,
        }
    )
    if not nq:
        return frame
    normal = trades.with_normal().normal_qty
    assert normal is not None
    known = pl.Series(normal != NO_NORMAL_QTY)
    return frame.with_columns(pl.when(known).then(export_decimal(np.maximum(normal, 0))).alias("nq"))


def has_nq(symbol: str) -> bool:
    """Whether `symbol`'s table has an `nq` column: USD-M's, the one market whose trades carry one."""
    return market_of(symbol) is Market.UM


def hourly_trades(
    tape: StoredTape, symbol: str, start_ms: int, end_ms: int, *, voids: bool = False
) -> Iterator[TradeColumns]:
    """The trades of ``[start_ms, end_ms)``, one segment span at a time, skipping empty spans.

    With `voids`, the void rows too, as Binance writes them (an export keeps the id sequence whole).
    """
    span = tape.segment_ms
    whole = tape.coverage(symbol, None)  # the index and two seeks: no walk through empty years
    if whole.first_time is None or whole.last_time is None:
        return
    at, end_ms = max(start_ms, whole.first_time), min(end_ms, whole.last_time + 1)
    while at < end_ms:
        upper = min(at - at % span + span, end_ms)
        trades = tape.trades(symbol, at, upper)
        if voids:
            trades = TradeColumns.concat([trades, tape.voids(symbol, (at, upper))])
        if len(trades):
            yield trades
        at = upper


def read_frame(shard_dir: Path, symbol: str, start_ms: int, end_ms: int) -> pl.DataFrame:
    """The range ``[start_ms, end_ms)`` of `symbol` as one DataFrame (for notebooks: it is all in memory)."""
    check_instrument(symbol)
    nq = has_nq(symbol)
    frames = [trades_frame(t, nq=nq) for t in _each_hour(shard_dir, symbol, start_ms, end_ms)]
    return pl.concat(frames) if frames else trades_frame(TradeColumns.empty(), nq=nq)


def tape_frame(symbol: str, start: int | str, end: int | str, settings: Settings | None = None) -> pl.DataFrame:
    """`symbol`'s trades in ``[start, end)`` (epoch ms or ISO-8601) as a DataFrame, from the local store.

    The store is found as the CLI finds it (`Settings`: the environment, `./data` by default).
    """
    settings = settings or Settings()
    symbol = instrument_from_input(symbol)
    return read_frame(shard_dir_of(settings, symbol), symbol, parse_time_ms(start), parse_time_ms(end))


def _each_hour(
    shard_dir: Path, symbol: str, start_ms: int, end_ms: int, *, voids: bool = False
) -> Iterator[TradeColumns]:
    with ShardView(shard_dir) as view:
        tape = view.tape()
        if tape is not None:
            yield from hourly_trades(tape, symbol, start_ms, end_ms, voids=voids)


def export(
    shard_dir: Path,
    symbol: str,
    start_ms: int,
    end_ms: int,
    path: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the range to `path` (Parquet or CSV by its extension), labelled; the number of rows written."""
    check_instrument(symbol)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{path.name}: the extension picks the format, {' or '.join(FORMATS)}")
    market, bare = split_instrument(symbol)
    label = ExportLabel(symbol=bare, market=market.value, start=start_ms, end=end_ms, version=__version__)
    nq = has_nq(symbol)
    schema = trades_frame(TradeColumns.empty(), nq=nq).to_arrow().schema.with_metadata(label.pairs())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        with temporary.open("wb") as handle:
            if suffix == ".csv":
                handle.write((label.comment() + "\n" + ",".join(schema.names) + "\n").encode())
            for trades in _each_hour(shard_dir, symbol, start_ms, end_ms, voids=True):
                frame = trades_frame(trades, nq=nq)
                if suffix == ".csv":
                    frame.write_csv(handle, include_header=False, datetime_format=EXPORT_TIME_FORMAT)
                else:
                    if writer is None:
                        writer = pq.ParquetWriter(handle, schema, compression="zstd")
                    writer.write_table(frame.to_arrow().replace_schema_metadata(label.pairs()))
                rows += frame.height
                if progress is not None:
                    progress(frame.height)
            if suffix == ".parquet":
                if writer is None:
                    writer = pq.ParquetWriter(handle, schema)
                writer.close()
                writer = None
        temporary.replace(path)
    finally:
        if writer is not None:
            writer.close()
        temporary.unlink(missing_ok=True)
    return rows
