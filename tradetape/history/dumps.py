"""Reading trade files: data.binance.vision aggTrades dumps (zip or CSV) and tradetape's own exports.

A dump's rows, header and names are laid out as `tradetape.binance.dumps` says; its
timestamps' unit and its columns (spot's eight, futures' seven) are decided once per file,
from its first row, and must be the instrument's market's, as must the market its path
names (`check_dump_market`); every row must then be a plausible epoch time in that unit.
A tradetape export (Parquet, or CSV with the header
``agg_id,price,qty,first_id,last_id,time,buyer_maker``) reads back to the same trades;
its label (`tradetape.history.labels`) names the instrument and the range every trade
must lie in. The file is read in chunks of lines (a day of a busy symbol is ~150 MB of
CSV) and each chunk is parsed and checked with polars and numpy, never a Python object
per row; the first bad row is a `DumpError` naming the file and its line, and nothing of
a bad file is returned.

A file is hostile until read: `FileLimits` bound a line, a file's (or zip member's
inflated) bytes and a zip's entries, each checked while the file streams, before more
of it is held (a 2 MB zip inflating to 2 GiB of one unterminated line is refused at its
first 4 MiB). A byte-order mark, CRLF line ends and a header are read without losing a
row; a first line that is neither a row nor a known header is refused, never skipped.

This module opens a file (CSV, zip, Parquet) and is the face of reading one; the rows are
checked in `tradetape.history.dump_rows`, the limits and the error live in
`tradetape.history.file_limits`, the symbol in `tradetape.history.dump_symbols`.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tradetape.history.dump_rows import ChunkReader, Dump
from tradetape.history.export_format import EXPORT_FIELDS, NQ_FIELD, export_text
from tradetape.history.file_limits import DumpError, FileLimits, TimeBounds, limit_env, over_member
from tradetape.history.labels import ExportLabel, LabelError

__all__ = ["Dump", "DumpError", "FileLimits", "TimeBounds", "read_dump", "zip_entries"]

PARQUET_SLICE_ROWS = 500_000
# Decimals up to 128 bits only: polars panics (a BaseException) on a Decimal256 column.
_PARQUET_TYPES: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "agg_id": (pa.types.is_integer, "an integer"),
    "price": (lambda t: pa.types.is_decimal128(t) or pa.types.is_string(t), "an exact decimal"),
    "qty": (lambda t: pa.types.is_decimal128(t) or pa.types.is_string(t), "an exact decimal"),
    "first_id": (pa.types.is_integer, "an integer"),
    "last_id": (pa.types.is_integer, "an integer"),
    "time": (pa.types.is_timestamp, "a timestamp"),
    "buyer_maker": (pa.types.is_boolean, "a boolean"),
}


def read_dump(
    path: Path,
    symbol: str | None = None,
    *,
    limits: FileLimits = FileLimits(),  # noqa: B008 - frozen, never changed
    within: TimeBounds | None = None,
    now_ms: int | None = None,
) -> Dump:
    """Every trade of a dump or export file, validated as a whole; `DumpError` at the first bad row.

    `symbol` is the user's word for the instrument (refused if the file's label or dump name says
    another, and a dump whose path or rows are another market's: `check_dump_market`); `within`,
    the times every trade must lie in (a fetched day's or month's).
    """
    source = path.name
    if not path.is_file():
        raise DumpError(source, "no such file")
    reader = ChunkReader(source, symbol, limits, within, now_ms, where=str(path))
    try:
        if path.suffix == ".parquet":
            _read_parquet(path, reader)
        elif path.suffix == ".zip":
            _read_zip(path, reader)
        else:
            with path.open("rb") as handle:
                reader.read_all(handle, path.stat().st_size)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DumpError(source, f"not a readable zip (truncated or corrupt: {exc})") from None
    except OSError as exc:
        raise DumpError(source, f"cannot be read: {exc}") from None
    return reader.result()


def _read_zip(path: Path, reader: ChunkReader) -> None:
    """A dump zip's one CSV; its entries are counted from the end record before the directory is read."""
    source, limits = reader.source, reader.limits
    entries = zip_entries(path)
    if entries > limits.max_members:
        env = limit_env("import_max_members")
        raise DumpError(source, f"the zip lists {entries} entries, more than {limits.max_members} ({env})")
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise DumpError(source, f"a dump zip holds one CSV, this one holds {len(members)} files")
        member = members[0]
        if member.file_size > limits.max_member_bytes:
            raise DumpError(source, f"its CSV inflates to {member.file_size} bytes, {over_member(limits)}")
        with archive.open(member) as handle:
            # sized for its trades as a real dump compresses (~5x), not as its header claims
            reader.read_all(handle, min(member.file_size, member.compress_size * 16))


def zip_entries(path: Path) -> int:
    """The entry count a zip's end-of-central-directory record states (zip64 too); 0 if there is none."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        tail_start = max(0, size - 22 - 65_535)
        handle.seek(tail_start)
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            return 0
        entries: int = struct.unpack_from("<H", tail, at + 10)[0]
        locator = at - 20
        if entries == 0xFFFF and locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            handle.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
            record = handle.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries = struct.unpack_from("<Q", record, 32)[0]
        return entries


def _read_parquet(path: Path, reader: ChunkReader) -> None:
    """A tradetape export, a row group (an hour) at a time: decimals back to units through their exact text.

    Its columns and their types, its label and its uncompressed size are checked from the
    footer before a row is read.
    """
    source = reader.source
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DumpError(source, f"not a readable Parquet file: {str(exc)[:200]}") from None
    try:
        schema = parquet.schema_arrow
        for name in (*EXPORT_FIELDS, NQ_FIELD):
            if (times := schema.names.count(name)) > 1:
                raise DumpError(source, f"column {name} is given {times} times")
        for name, (accepts, expected) in _PARQUET_TYPES.items():
            if name not in schema.names:
                raise DumpError(source, f"not a tradetape export: no column {name}")
            kind = schema.field(name).type
            if not accepts(kind):
                raise DumpError(source, f"column {name} is {kind}, expected {expected}")
        try:
            reader.label(ExportLabel.from_pairs(schema.metadata or {}))
        except LabelError as exc:
            raise DumpError(source, str(exc)) from None
        if NQ_FIELD in schema.names:
            kind = schema.field(NQ_FIELD).type
            if not _PARQUET_TYPES["qty"][0](kind):
                raise DumpError(source, f"column {NQ_FIELD} is {kind}, expected an exact decimal")
            reader.with_nq()
        metadata = parquet.metadata
        size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        if size > reader.limits.max_member_bytes:
            raise DumpError(source, f"its data is {size} bytes uncompressed, {over_member(reader.limits)}")
        reader.size, reader.time_unit = size, "export"
        reader.next_line = 2  # row 1 of the table is reported as line 2, as in the CSV form
        for group in range(metadata.num_row_groups):
            table = parquet.read_row_group(group, columns=list(reader.export_fields))
            for offset in range(0, table.num_rows, PARQUET_SLICE_ROWS):
                reader.chunk(export_text(table.slice(offset, PARQUET_SLICE_ROWS)))
    except (pa.ArrowException, pl.exceptions.PolarsError) as exc:
        raise DumpError(source, f"not a readable Parquet file: {str(exc)[:200]}") from None
    finally:
        parquet.close()
