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
"""

from __future__ import annotations

import bisect
import io
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tradetape.binance.aggtrade import first_invalid
from tradetape.binance.dumps import (
    DUMP_FIELDS,
    DUMP_HEADERS,
    DUMP_NAME_MARK,
    DumpMarketError,
    check_dump_market,
    is_dump_name,
    path_market,
    timestamp_unit,
)
from tradetape.domain.column_checks import decimal_units, first_not_ascending, first_of
from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns
from tradetape.domain.instruments import (
    Market,
    instrument_from_input,
    instrument_name,
    market_of,
    symbol_of_instrument,
)
from tradetape.domain.symbols import SymbolError, check_symbol
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.errors import InputError
from tradetape.history.labels import ExportLabel, LabelError, iso_ms
from tradetape.settings import Settings

CHUNK_BYTES = 4 * 1024 * 1024
EXPORT_FIELDS = ("agg_id", "price", "qty", "first_id", "last_id", "time", "buyer_maker")
"""The columns of a tradetape export, in order (also its CSV header)."""
NQ_FIELD = "nq"
"""A USD-M export's eighth column: each trade's normal quantity, empty (null) where it has none."""
FUTURES_DUMP_FIELDS = DUMP_FIELDS[: len(DUMP_HEADERS[0])]
"""A futures dump's seven columns (no `isBestMatch`)."""
EXPORT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"
MAX_BLANK_LINES = 1000
"""Blank lines a file may hold: a dump has none, and a file of nothing but line ends is a zip bomb's filler."""
PARQUET_SLICE_ROWS = 500_000
_BOM = b"\xef\xbb\xbf"
_SYMBOL = re.compile(r"^([A-Z0-9]{2,20})(?:-|_|\.)")
_INT_FIELDS = ("agg_id", "first_id", "last_id")
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


def _default(name: str) -> int:
    return int(Settings.model_fields[name].default)


@dataclass(frozen=True)
class FileLimits:
    """How much of a file is read before it is refused (`Settings.import_max_*`)."""

    max_line_bytes: int = _default("import_max_line_bytes")
    max_member_bytes: int = _default("import_max_member_bytes")
    """A CSV's bytes, a zip's CSV's inflated bytes, or a Parquet file's data uncompressed."""
    max_members: int = _default("import_max_members")

    @classmethod
    def of(cls, settings: Settings) -> FileLimits:
        return cls(settings.import_max_line_bytes, settings.import_max_member_bytes, settings.import_max_members)


@dataclass(frozen=True)
class TimeBounds:
    """``[start_ms, end_ms)``, the times a file's trades must lie in, and what says so (for the error)."""

    start_ms: int
    end_ms: int
    what: str


class DumpError(InputError):
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
    """``BTCUSDT-aggTrades-2026-01-01.zip`` or ``BTCUSDT-week.parquet`` → ``BTCUSDT`` (None: the name does not tell).

    A dump's name is the exchange's symbol up to ``-aggTrades``, underscores included (``BTCUSD_PERP``).
    """
    if is_dump_name(name):
        try:
            return check_symbol(name.partition(DUMP_NAME_MARK)[0])
        except SymbolError:
            return None
    match = _SYMBOL.match(name)
    return match.group(1) if match else None


def dump_symbol(name: str, given: str | None, label: ExportLabel | None = None, market: Market | None = None) -> str:
    """The instrument a file holds: its label's, else its name's, else `given`; `given` must agree with either.

    `given` may name a futures instrument (`um:BTCUSDT`); a dump's name tells only the symbol, its
    market is the one its path names (`market`, from ``.../data/futures/um/...``), else spot.
    """
    if given is not None:
        try:
            given = instrument_from_input(given)
        except SymbolError as exc:
            raise DumpError(name, str(exc)) from None
    if label is not None:
        if given is not None and given != label.instrument:
            raise DumpError(name, f"the file holds {label.instrument} trades (its export label), not {given}")
        return label.instrument
    named = symbol_of_name(name)
    if given is not None:
        if named is not None and is_dump_name(name) and named != symbol_of_instrument(given):
            raise DumpError(name, f"the file holds {named} trades, not {given}")
        return given
    if named is None:
        raise DumpError(name, "cannot tell the symbol from the file name; give it (--symbol)")
    try:
        return instrument_name(market or Market.SPOT, named)
    except SymbolError as exc:
        raise DumpError(name, str(exc)) from None


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
    reader = _ChunkReader(source, symbol, limits, within, now_ms, where=str(path))
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


def _read_zip(path: Path, reader: _ChunkReader) -> None:
    """A dump zip's one CSV; its entries are counted from the end record before the directory is read."""
    source, limits = reader.source, reader.limits
    entries = zip_entries(path)
    if entries > limits.max_members:
        raise DumpError(
            source, f"the zip lists {entries} entries, more than {limits.max_members} ({_env('import_max_members')})"
        )
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise DumpError(source, f"a dump zip holds one CSV, this one holds {len(members)} files")
        member = members[0]
        if member.file_size > limits.max_member_bytes:
            raise DumpError(source, f"its CSV inflates to {member.file_size} bytes, {_over_member(limits)}")
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


def _env(name: str) -> str:
    return Settings.env_name(name)


def _over_member(limits: FileLimits) -> str:
    return f"more than {limits.max_member_bytes} ({_env('import_max_member_bytes')})"


class _ChunkReader:
    def __init__(
        self,
        source: str,
        given: str | None,
        limits: FileLimits,
        within: TimeBounds | None,
        now_ms: int | None,
        *,
        where: str = "",
    ) -> None:
        self.source = source
        self.where = where
        """The file's path as given: a market's dump root in it (``data/futures/um/``) names the market."""
        self.given = given
        self.limits = limits
        self.bounds = [within] if within is not None else []
        self.now_ms = now_ms
        self.symbol: str | None = None
        self.next_line = 1
        self.blank_lines = 0
        self.time_unit: str | None = None
        self.dump_fields: tuple[str, ...] = DUMP_FIELDS
        self.export_fields: tuple[str, ...] = EXPORT_FIELDS
        """An export's columns: with `nq` after the seven on a USD-M instrument's."""
        """A dump's columns: spot's eight (with `isBestMatch`) or futures' seven, from its first row."""
        self.previous_id: int | None = None
        self.out = _Growing()
        self.size = 0

    def read_all(self, handle: IO[bytes], size: int) -> None:
        """The file in chunks that end at a line end, each line's length and the total checked before it is kept."""
        self.size = size
        rest = b""
        total = 0
        while block := handle.read(CHUNK_BYTES):
            total += len(block)
            if total > self.limits.max_member_bytes:
                raise DumpError(self.source, f"it holds {_over_member(self.limits)} bytes")
            cut = block.rfind(b"\n")
            if cut < 0:
                rest += block
            else:
                self._chunk(self._short_lines(rest + block[: cut + 1]))
                rest = block[cut + 1 :]
            if len(rest) > self.limits.max_line_bytes:
                raise self._too_long(self.next_line)
        if rest.strip():
            self._chunk(self._short_lines(rest))

    def _short_lines(self, data: bytes) -> bytes:
        """`data`, if none of its lines is longer than the limit."""
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        lengths = np.diff(np.r_[-1, ends, len(data)]) - 1
        too_long = np.flatnonzero(lengths > self.limits.max_line_bytes)
        if len(too_long):
            raise self._too_long(self.next_line + int(too_long[0]))
        return data

    def _too_long(self, line: int) -> DumpError:
        limit = self.limits.max_line_bytes
        return DumpError(self.source, f"the line is longer than {limit} bytes ({_env('import_max_line_bytes')})", line)

    def _chunk(self, data: bytes) -> None:
        first_line = self.next_line
        self.next_line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if first_line == 1:
            data, first_line = self._header(data)
        if not data.strip():
            self._blank(data.count(b"\n"), first_line)
            return
        if self.time_unit is None:
            self.time_unit = self._unit(data, first_line)
        fields = self.dump_fields if self.time_unit != "export" else self.export_fields
        if NQ_FIELD in fields:
            self._each_nq_given(data, len(fields), first_line)
        schema: dict[str, pl.DataType] = {name: pl.String() for name in fields}
        for name in _INT_FIELDS:
            schema[name] = pl.Int64()
        if self.time_unit != "export":
            schema["time"] = pl.Int64()
        try:
            # No quoting: neither Binance nor tradetape quotes, and a stray quote would swallow the lines after it.
            frame = pl.read_csv(io.BytesIO(data), has_header=False, schema=schema, ignore_errors=True, quote_char=None)
        except pl.exceptions.PolarsError:
            try:
                data.decode()
            except UnicodeDecodeError as exc:
                line = first_line + data.count(b"\n", 0, exc.start)
                raise DumpError(self.source, f"not UTF-8 text: {_line_text(data, line - first_line)!r}", line) from None
            line, text = _ragged_line(data, len(fields), first_line)
            raise DumpError(self.source, f"expected {len(fields)} comma-separated fields: {text!r}", line) from None
        lines = np.arange(first_line, first_line + frame.height, dtype=np.int64)
        blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()
        if bool(blank.any()):
            self._blank(int(blank.sum()), int(lines[blank][0]))
            frame, lines = frame.filter(~pl.Series(blank)), lines[~blank]
        columns, checks = self._columns(frame)
        for bounds in self.bounds:
            outside = (columns.time < bounds.start_ms) | (columns.time >= bounds.end_ms)
            reason = f"time is outside {bounds.what} [{iso_ms(bounds.start_ms)}, {iso_ms(bounds.end_ms)})"
            checks.append((outside, reason))
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

    def _each_nq_given(self, data: bytes, fields: int, first_line: int) -> None:
        """Every row of an export with `nq` has all its fields: polars reads a row one short as an empty `nq`,
        which would pass a damaged row as a trade without one."""
        raw = np.frombuffer(data, dtype=np.uint8)
        ends = np.r_[np.flatnonzero(raw == ord("\n")), len(raw)]
        per_line = np.diff(np.r_[0, np.searchsorted(np.flatnonzero(raw == ord(",")), ends)])
        short = np.flatnonzero(per_line == fields - 2)
        if len(short):
            line = first_line + int(short[0])
            text = _line_text(data, int(short[0]))
            raise DumpError(self.source, f"expected {fields} comma-separated fields: {text!r}", line)

    def _blank(self, count: int, line: int) -> None:
        self.blank_lines += count
        if self.blank_lines > MAX_BLANK_LINES:
            raise DumpError(self.source, f"more than {MAX_BLANK_LINES} blank lines: not a trades file", line)

    def _header(self, data: bytes) -> tuple[bytes, int]:
        """The file's top: a byte-order mark, comment lines (an export's label), a header; the symbol from them.

        A first line that is not a row must be a header tradetape knows: anything else is refused,
        as skipping it could drop a trade.
        """
        data, line, label = data.removeprefix(_BOM), 1, None
        first, _, rest = data.partition(b"\n")
        while rest and (first.startswith(b"#") or not first.strip()):
            try:
                label = ExportLabel.from_comment(first.decode(errors="replace").strip()) or label
            except LabelError as exc:
                raise DumpError(self.source, str(exc), line) from None
            data, line = rest, line + 1
            first, _, rest = data.partition(b"\n")
        self._label(label)
        text = first.decode(errors="replace").strip()
        if not text:
            return b"", line
        if text[:1].isdigit():
            if label is not None:
                raise DumpError(self.source, "an export's label must be followed by its header line", line)
            return data, line
        names = tuple(name.strip().lower() for name in text.split(","))
        expected: tuple[str, ...] = (
            EXPORT_FIELDS if label is not None or names[:1] == ("agg_id",) else DUMP_HEADERS[len(names) > 7]
        )
        if expected == EXPORT_FIELDS and names == (*EXPORT_FIELDS, NQ_FIELD):
            self.with_nq(line)
            expected = self.export_fields
        if names != expected:
            column = next((i for i, pair in enumerate(zip(names, expected, strict=False)) if pair[0] != pair[1]), None)
            if column is None:
                reason = f"the header has {len(names)} columns, expected {len(expected)}: {','.join(expected)}"
            else:
                reason = f"the header's column {column + 1} is {names[column][:40]!r}, expected {expected[column]!r}"
            raise DumpError(self.source, reason, line)
        if expected == self.export_fields:
            self.time_unit = "export"
        return rest, line + 1

    def with_nq(self, line: int | None = None) -> None:
        """The export has an `nq` column: a USD-M instrument's only, the one market whose trades carry one."""
        assert self.symbol is not None  # `_label` named it
        if market_of(self.symbol) is not Market.UM:
            raise DumpError(self.source, f"an nq column is USD-M's; {self.symbol} trades carry none", line)
        self.export_fields = (*EXPORT_FIELDS, NQ_FIELD)

    def _label(self, label: ExportLabel | None) -> None:
        """The symbol (label, name or the user's word, which must agree) and the label's range as a bound."""
        self.symbol = dump_symbol(self.source, self.given, label, path_market(self.where))
        if label is not None:
            what = "the export label's range"
            self.bounds.append(TimeBounds(label.start, label.end, what))

    def _unit(self, data: bytes, line: int) -> str:
        """µs or ms, from the file's first row, whose fields and unit must also be the instrument's market's."""
        row = data.lstrip(b"\r\n").partition(b"\n")[0].split(b",")
        try:
            stamp = int(row[5])
        except (IndexError, ValueError):
            raise DumpError(self.source, f"not an aggTrades row: {row[:8]!r}"[:240], line) from None
        unit = timestamp_unit(stamp)
        columns = len(row)
        if columns == len(FUTURES_DUMP_FIELDS):
            self.dump_fields = FUTURES_DUMP_FIELDS
        assert self.symbol is not None  # `_header` named it
        try:
            check_dump_market(market_of(self.symbol), self.where)
            if columns in (len(FUTURES_DUMP_FIELDS), len(DUMP_FIELDS)):
                check_dump_market(market_of(self.symbol), self.source, columns=columns, unit=unit)
        except DumpMarketError as exc:
            reason = str(exc).removeprefix(f"{self.where}: ").removeprefix(f"{self.source}: ")
            raise DumpError(self.source, reason, line) from None
        return unit

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
        normal = self._normal(frame, qty, checks) if NQ_FIELD in frame.columns else None
        ids = (ints["agg_id"], ints["first_id"], ints["last_id"])
        columns = TradeColumns(ids[0], price, qty, ids[1], ids[2], times, maker_array, normal)
        return columns, checks

    @staticmethod
    def _normal(frame: pl.DataFrame, qty: Int64Array, checks: list[tuple[BoolArray, str]]) -> Int64Array:
        """The `nq` column as units, `NO_NORMAL_QTY` where empty; checked as the wire's is (exact, 0 to `q`)."""
        text = frame[NQ_FIELD]
        given = text.is_not_null().to_numpy()
        units, ok = decimal_units(text.fill_null("0"))
        what = "nq (quantity without RPI orders)"
        checks.append((given & ~ok, f"{what} is not a plain decimal with at most 8 places"))
        checks.append((given & ok & (units > qty), f"{what} must be from 0 to the quantity"))
        return np.where(given, units, NO_NORMAL_QTY).astype(np.int64)

    def result(self) -> Dump:
        trades, lines = self.out.result()
        if len(trades) == 0 or self.symbol is None:
            raise DumpError(self.source, "holds no trades")
        if trades.normal_missing() == len(trades):  # an empty nq column: trades without one, as a dump's are
            trades = TradeColumns.of_arrays(trades.arrays()[: len(EXPORT_FIELDS)])
        return Dump(self.source, self.symbol, trades, lines, self.time_unit or "ms")


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


def _read_parquet(path: Path, reader: _ChunkReader) -> None:
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
            reader._label(ExportLabel.from_pairs(schema.metadata or {}))
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
            raise DumpError(source, f"its data is {size} bytes uncompressed, {_over_member(reader.limits)}")
        reader.size, reader.time_unit = size, "export"
        reader.next_line = 2  # row 1 of the table is reported as line 2, as in the CSV form
        for group in range(metadata.num_row_groups):
            table = parquet.read_row_group(group, columns=list(reader.export_fields))
            for offset in range(0, table.num_rows, PARQUET_SLICE_ROWS):
                reader._chunk(_export_text(table.slice(offset, PARQUET_SLICE_ROWS)))
    except (pa.ArrowException, pl.exceptions.PolarsError) as exc:
        raise DumpError(source, f"not a readable Parquet file: {str(exc)[:200]}") from None
    finally:
        parquet.close()


def _export_text(table: pa.Table) -> bytes:
    """Rows of an export table as the CSV form's lines (times in UTC, whatever zone the column names)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    time = pl.col("time")
    if frame.schema["time"].time_zone is not None:  # type: ignore[attr-defined]
        time = time.dt.convert_time_zone("UTC")
    decimals = [name for name in ("price", "qty", NQ_FIELD) if name in frame.columns]
    text = frame.select(
        pl.col("agg_id", "first_id", "last_id").cast(pl.String),
        pl.col(*decimals).cast(pl.String),
        pl.col("buyer_maker").cast(pl.String),
        time.dt.strftime(EXPORT_TIME_FORMAT),
    ).select(EXPORT_FIELDS + tuple(decimals[2:]))
    buffer = io.BytesIO()
    text.write_csv(buffer, include_header=False)
    return buffer.getvalue()


def export_decimal(units: Int64Array) -> pl.Series:
    """Units of 1e-8 as an exact polars Decimal(38, 8) column."""
    return (pl.Series(units, dtype=pl.Int64).cast(pl.Decimal(38, 8)) * Decimal("0.00000001")).cast(pl.Decimal(38, 8))
