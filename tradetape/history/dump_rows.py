"""A trade file's rows, read in chunks of lines and checked with polars and numpy, never a Python object per row.

`ChunkReader` keeps a file's state (its symbol, time unit, columns, the last agg id, the line
it is at) across chunks and refuses the first bad row with its line; what it accepts grows
into arrays sized from the file's length (`Dump` is the result).
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tradetape.binance.aggtrade import first_invalid
from tradetape.binance.dumps import (
    DUMP_FIELDS,
    DUMP_HEADERS,
    DumpMarketError,
    check_dump_market,
    path_market,
    timestamp_unit,
)
from tradetape.domain.column_checks import decimal_units, first_not_ascending, first_of
from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns
from tradetape.domain.instruments import Market, market_of
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.history.dump_symbols import dump_symbol
from tradetape.history.export_format import EXPORT_FIELDS, EXPORT_TIME_FORMAT, NQ_FIELD
from tradetape.history.file_limits import DumpError, FileLimits, TimeBounds, limit_env, over_member
from tradetape.history.labels import ExportLabel, LabelError, iso_ms

CHUNK_BYTES = 4 * 1024 * 1024
FUTURES_DUMP_FIELDS = DUMP_FIELDS[: len(DUMP_HEADERS[0])]
"""A futures dump's seven columns (no `isBestMatch`)."""
MAX_BLANK_LINES = 1000
"""Blank lines a file may hold: a dump has none, and a file of nothing but line ends is a zip bomb's filler."""
_BOM = b"\xef\xbb\xbf"
_INT_FIELDS = ("agg_id", "first_id", "last_id")


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


class ChunkReader:
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
        """A dump's columns: spot's eight (with `isBestMatch`) or futures' seven, from its first row."""
        self.export_fields: tuple[str, ...] = EXPORT_FIELDS
        """An export's columns: with `nq` after the seven on a USD-M instrument's."""
        self.previous_id: int | None = None
        self.out = Growing()
        self.size = 0

    def read_all(self, handle: IO[bytes], size: int) -> None:
        """The file in chunks that end at a line end, each line's length and the total checked before it is kept."""
        self.size = size
        rest = b""
        total = 0
        while block := handle.read(CHUNK_BYTES):
            total += len(block)
            if total > self.limits.max_member_bytes:
                raise DumpError(self.source, f"it holds {over_member(self.limits)} bytes")
            cut = block.rfind(b"\n")
            if cut < 0:
                rest += block
            else:
                self.chunk(self._short_lines(rest + block[: cut + 1]))
                rest = block[cut + 1 :]
            if len(rest) > self.limits.max_line_bytes:
                raise self._too_long(self.next_line)
        if rest.strip():
            self.chunk(self._short_lines(rest))

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
        env = limit_env("import_max_line_bytes")
        return DumpError(self.source, f"the line is longer than {limit} bytes ({env})", line)

    def chunk(self, data: bytes) -> None:
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
        self.label(label)
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
        assert self.symbol is not None  # `label` named it
        if market_of(self.symbol) is not Market.UM:
            raise DumpError(self.source, f"an nq column is USD-M's; {self.symbol} trades carry none", line)
        self.export_fields = (*EXPORT_FIELDS, NQ_FIELD)

    def label(self, label: ExportLabel | None) -> None:
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


class Growing:
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
