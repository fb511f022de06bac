"""Reading trade files: data.binance.vision aggTrades dumps (zip or CSV) and tradetape's own exports.

A dump is a CSV of ``aggTradeId, price, qty, firstTradeId, lastTradeId, timestamp,
isBuyerMaker[, isBestMatch]``, with or without a header line, timestamps in µs (spot
since 2025) or ms (before): the unit is decided once per file, from its first row, and
every row must then be a plausible epoch time in it. A tradetape export (Parquet, or CSV
with the header ``agg_id,price,qty,first_id,last_id,time,buyer_maker``) reads back to
the same trades. The file is read in chunks of lines (a day of a busy symbol is
~150 MB of CSV) and each chunk is parsed and checked with polars and numpy, never a
Python object per row; the first bad row is a `DumpError` naming the file and its line,
and nothing of a bad file is returned.
"""

from __future__ import annotations

import bisect
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tradetape.domain.column_checks import decimal_units, first_invalid, first_not_ascending, first_of
from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns
from tradetape.domain.symbols import symbol_from_input

CHUNK_BYTES = 4 * 1024 * 1024
MICROSECONDS_ABOVE = 10**14
"""Dump timestamps above this are µs, below it ms (as the simulator's replay decides)."""
DUMP_FIELDS = ("agg_id", "price", "qty", "first_id", "last_id", "time", "buyer_maker", "best_match")
EXPORT_FIELDS = DUMP_FIELDS[:-1]
"""The columns of a tradetape export, in order (also its CSV header)."""
EXPORT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"
_SYMBOL = re.compile(r"^([A-Z0-9]{2,20})(?:-|_|\.)")
_INT_FIELDS = ("agg_id", "first_id", "last_id")


class DumpError(ValueError):
    """A file that cannot be imported as it is: which file, which line (None: the whole file), why."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Dump:
    """One file's trades, validated, ascending by agg id, with the line each came from."""

    source: str
    symbol: str
    trades: TradeColumns
    lines: LineMap
    """The file line of each trade."""
    time_unit: str
    """``us``, ``ms`` (dumps) or ``export`` (a tradetape export)."""

    def line_of(self, agg_id: int) -> int | None:
        index = int(np.searchsorted(self.trades.agg_id, agg_id))
        if index < len(self.trades) and int(self.trades.agg_id[index]) == agg_id:
            return self.lines[index]
        return None


class LineMap:
    """The file line of each trade, kept as runs (line = position + offset): a line number per trade
    would cost 9 MB for a busy day, while a dump's offset changes only at its header and blank lines."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._offsets: list[int] = []
        self.count = 0

    def extend(self, lines: npt.NDArray[np.int64]) -> None:
        """The lines of the next `len(lines)` trades."""
        offsets = lines - np.arange(self.count, self.count + len(lines))
        for start in np.r_[0, np.flatnonzero(np.diff(offsets)) + 1] if len(lines) else ():
            if not self._offsets or self._offsets[-1] != int(offsets[start]):
                self._starts.append(self.count + int(start))
                self._offsets.append(int(offsets[start]))
        self.count += len(lines)

    def __getitem__(self, index: int) -> int:
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(index)
        return index + self._offsets[bisect.bisect_right(self._starts, index) - 1]


def symbol_of_name(name: str) -> str | None:
    """``BTCUSDT-aggTrades-2026-01-01.zip`` or ``BTCUSDT-week.parquet`` → ``BTCUSDT`` (None: the name does not tell)."""
    match = _SYMBOL.match(name)
    return match.group(1) if match else None


def dump_symbol(path: Path, symbol: str | None) -> str:
    """The symbol a file holds: from its name, or `symbol`; both given must agree."""
    named = symbol_of_name(path.name)
    if symbol is not None:
        symbol = symbol_from_input(symbol)
        if named is not None and "-aggTrades" in path.name and named != symbol:
            raise DumpError(path.name, f"the file holds {named} trades, not {symbol}")
        return symbol
    if named is None:
        raise DumpError(path.name, "cannot tell the symbol from the file name; give it (--symbol)")
    return named


def read_dump(path: Path, symbol: str | None = None, *, now_ms: int | None = None) -> Dump:
    """Every trade of a dump or export file, validated as a whole; `DumpError` at the first bad row."""
    source = path.name
    symbol = dump_symbol(path, symbol)
    if not path.is_file():
        raise DumpError(source, "no such file")
    if path.suffix == ".parquet":
        return _read_parquet(path, source, symbol, now_ms)
    reader = _ChunkReader(source, now_ms)
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise DumpError(source, f"a dump zip holds one CSV, this one holds {len(members)} files")
                with archive.open(members[0]) as handle:
                    reader.read_all(handle, members[0].file_size)
        else:
            with path.open("rb") as handle:
                reader.read_all(handle, path.stat().st_size)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DumpError(source, f"not a readable zip (truncated or corrupt: {exc})") from None
    except OSError as exc:
        raise DumpError(source, f"cannot be read: {exc}") from None
    return reader.result(symbol)


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The file in chunks that end at a line end."""
    rest = b""
    while True:
        block = handle.read(CHUNK_BYTES)
        if not block:
            if rest.strip():
                yield rest
            return
        block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        yield block[: cut + 1]
        rest = block[cut + 1 :]


class _ChunkReader:
    def __init__(self, source: str, now_ms: int | None) -> None:
        self.source = source
        self.now_ms = now_ms
        self.next_line = 1
        self.time_unit: str | None = None
        self.previous_id: int | None = None
        self.out = _Growing()
        self.size = 0

    def read_all(self, handle: IO[bytes], size: int) -> None:
        self.size = size
        for chunk in _lines(handle):
            self._chunk(chunk)

    def _chunk(self, data: bytes) -> None:
        first_line = self.next_line
        self.next_line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if first_line == 1:
            data, first_line = self._header(data)
        if not data.strip():
            return
        fields = DUMP_FIELDS if self.time_unit != "export" else EXPORT_FIELDS
        schema: dict[str, pl.DataType] = {name: pl.String() for name in fields}
        for name in _INT_FIELDS:
            schema[name] = pl.Int64()
        if self.time_unit != "export":
            schema["time"] = pl.Int64()
        try:
            frame = pl.read_csv(io.BytesIO(data), has_header=False, schema=schema, ignore_errors=True)
        except pl.exceptions.PolarsError:
            line, text = _ragged_line(data, len(fields), first_line)
            raise DumpError(self.source, f"expected {len(fields)} comma-separated fields: {text!r}", line) from None
        lines = np.arange(first_line, first_line + frame.height, dtype=np.int64)
        blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()
        if bool(blank.any()):
            frame, lines = frame.filter(~pl.Series(blank)), lines[~blank]
        columns, checks = self._columns(frame)
        bad = first_of(checks)
        if bad is None:
            bad = first_invalid(columns, now_ms=self.now_ms)
        step = first_not_ascending(columns.agg_id, self.previous_id)
        if step is not None and (bad is None or step < bad[0]):
            previous = self.previous_id if step == 0 else int(columns.agg_id[step - 1])
            bad = (step, f"agg id {int(columns.agg_id[step])} does not ascend from {previous}")
        if bad is not None:
            index, reason = bad
            line = int(lines[index])
            raise DumpError(self.source, f"{reason}: {_line_text(data, line - first_line)!r}", line)
        if len(columns):
            self.previous_id = int(columns.agg_id[-1])
        self.out.append(columns, lines, expected=int(self.size / max(len(data), 1) * len(columns) * 1.02) + 1024)

    def _header(self, data: bytes) -> tuple[bytes, int]:
        """Skip a header line; decide the format (an export's header) and the time unit (the first row)."""
        first, _, rest = data.partition(b"\n")
        if first[:1].isdigit():
            rest, line = data, 1
        else:
            names = first.decode(errors="replace").strip().lower().split(",")
            if tuple(names) == EXPORT_FIELDS:
                self.time_unit = "export"
            line = 2
        if self.time_unit is None:
            row = rest.partition(b"\n")[0].split(b",")
            try:
                stamp = int(row[5])
            except (IndexError, ValueError):
                raise DumpError(self.source, f"not an aggTrades row: {row!r}", line) from None
            self.time_unit = "us" if stamp > MICROSECONDS_ABOVE else "ms"
        return rest, line

    def _columns(self, frame: pl.DataFrame) -> tuple[TradeColumns, list[tuple[BoolArray, str]]]:
        last_field = frame["buyer_maker"].is_null().to_numpy()
        checks: list[tuple[BoolArray, str]] = [(last_field, f"missing fields (expected {len(EXPORT_FIELDS)} or more)")]
        ints: dict[str, Int64Array] = {}
        for name in _INT_FIELDS:
            column = frame[name]
            checks.append((column.is_null().to_numpy(), f"{name.replace('_', ' ')} is not an integer"))
            ints[name] = column.fill_null(0).to_numpy().astype(np.int64)
        price, price_ok = decimal_units(frame["price"])
        qty, qty_ok = decimal_units(frame["qty"])
        checks += [(~price_ok, "price is not a plain decimal with at most 8 places")]
        checks += [(~qty_ok, "quantity is not a plain decimal with at most 8 places")]
        maker_text = frame["buyer_maker"]
        if not bool(maker_text.is_in(["True", "False"]).all()):  # Binance writes these; be lenient otherwise
            maker_text = maker_text.str.strip_chars().str.to_titlecase()
        maker = (maker_text == "True").fill_null(False).to_numpy()
        not_bool = ~maker_text.is_in(["True", "False"]).fill_null(False).to_numpy()
        checks.append((not_bool, "buyer-maker is not a boolean"))
        if self.time_unit == "export":
            parsed = frame["time"].str.strip_chars().str.to_datetime(EXPORT_TIME_FORMAT, time_unit="ms", strict=False)
            checks.append((parsed.is_null().to_numpy(), "time is not an ISO-8601 UTC timestamp"))
            times = parsed.dt.epoch("ms").fill_null(0).to_numpy().astype(np.int64)
        else:
            raw = frame["time"]
            checks.append((raw.is_null().to_numpy(), "timestamp is not an integer"))
            times = raw.fill_null(0).to_numpy().astype(np.int64)
            if self.time_unit == "us":
                times = times // 1000
        maker_array: BoolArray = maker.astype(np.bool_)
        columns = TradeColumns(ints["agg_id"], price, qty, ints["first_id"], ints["last_id"], times, maker_array)
        return columns, checks

    def result(self, symbol: str) -> Dump:
        trades, lines = self.out.result()
        if len(trades) == 0:
            raise DumpError(self.source, "holds no trades")
        return Dump(self.source, symbol, trades, lines, self.time_unit or "ms")


class _Growing:
    """Columns filled chunk by chunk into arrays sized from the file's length: no final concatenation.

    (Joining chunks at the end would need the whole day twice: ~230 MB for BTCUSDT.)
    """

    def __init__(self) -> None:
        self.columns: list[npt.NDArray[Any]] = []
        self.lines = LineMap()
        self.filled = 0

    def append(self, columns: TradeColumns, lines: npt.NDArray[np.int64], *, expected: int) -> None:
        n = len(columns)
        if not self.columns:
            capacity = max(expected, n)
            self.columns = [np.empty(capacity, dtype=a.dtype) for a in columns.arrays()]
        elif self.filled + n > len(self.columns[0]):
            capacity = max(self.filled + n, len(self.columns[0]) * 5 // 4)
            self.columns = [np.resize(a, capacity) for a in self.columns]
        for target, source in zip(self.columns, columns.arrays(), strict=True):
            target[self.filled : self.filled + n] = source
        self.lines.extend(lines)
        self.filled += n

    def result(self) -> tuple[TradeColumns, LineMap]:
        if not self.columns:
            return TradeColumns.empty(), self.lines
        n = self.filled
        return TradeColumns.of_arrays([a[:n] for a in self.columns]), self.lines


def _line_text(data: bytes, offset: int) -> str:
    """Line `offset` (0-based) of a chunk, cut short, for an error message."""
    start = 0
    for _ in range(offset):
        start = data.index(b"\n", start) + 1
    end = data.find(b"\n", start)
    return data[start : end if end >= 0 else len(data)][:200].decode(errors="replace").rstrip("\r")


def _ragged_line(data: bytes, fields: int, first_line: int) -> tuple[int, str]:
    for offset, line in enumerate(data.split(b"\n")):
        if line.strip() and line.count(b",") + 1 != fields and line.count(b",") + 1 != fields - 1:
            return first_line + offset, line[:200].decode(errors="replace")
    return first_line, ""


def _read_parquet(path: Path, source: str, symbol: str, now_ms: int | None) -> Dump:
    """A tradetape export: decimals back to units through their exact string form."""
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DumpError(source, f"not a readable Parquet file: {exc}") from None
    missing = [name for name in EXPORT_FIELDS if name not in frame.columns]
    if missing:
        raise DumpError(source, f"not a tradetape export: no column {', '.join(missing)}")
    text = frame.select(
        pl.col("agg_id", "first_id", "last_id").cast(pl.String),
        pl.col("price", "qty").cast(pl.String),
        pl.col("buyer_maker").cast(pl.String),
        pl.col("time").dt.strftime(EXPORT_TIME_FORMAT),
    ).select(EXPORT_FIELDS)
    reader = _ChunkReader(source, now_ms)
    reader.time_unit = "export"
    reader.next_line = 2  # row 1 of the table is reported as line 2, as in the CSV form
    buffer = io.BytesIO()
    text.write_csv(buffer, include_header=False)
    reader._chunk(buffer.getvalue())
    return reader.result(symbol)


def export_decimal(units: Int64Array) -> pl.Series:
    """Units of 1e-8 as an exact polars Decimal(38, 8) column."""
    return (pl.Series(units, dtype=pl.Int64).cast(pl.Decimal(38, 8)) * Decimal("0.00000001")).cast(pl.Decimal(38, 8))


def day_of(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d")
