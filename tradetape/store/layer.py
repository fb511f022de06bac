"""The aggregate layer's stored values: a segment's 1-second bars and per-minute price levels (format 4).

Beside every segment, in the same atomic write (`tradetape.store.writer`), the writer keeps
``secs:{SYMBOL}:{segment_start}`` (`SecondBars`) and ``mlvl:{SYMBOL}:{segment_start}``
(`MinuteLevels`), built from the segment's trades (`tradetape.domain.aggregates`), so voids,
which no segment holds, never enter them. A segment whose figures cannot be kept (a sum past
2**126, or a minute level past int64) has none, and readers decode its trades instead.

Encoding, like a segment's (`tradetape.store.segments`): columns made small, then zigzag,
byte planes and zstd (`tradetape.store.packing`), a msgpack header, sealed with a CRC:

- second bars: seconds since the segment start as steps (mostly 1); first agg id as the gap
  after the previous second's last (0 on a complete tape); last − first id; open as the step
  from the previous close, high − open, open − low, close − open, all in the traded tick;
  trade count; volume, taker-buy volume and the two moments about the low (low and high
  words, the low ones divided by their common step when no high word is used); the quote
  volume is not stored but derived exactly (low × volume + Σ q·(p − low)), unless a volume
  needs its high word, when its two words are stored. Measured on real-like BTCUSDT (95k
  trades an hour): storing the quote and float moments instead took 33 bytes a second-row;
- beside them, the same bars rolled to minutes (`decode_minute_bars`: seconds since the segment start, ids and
  prices from the value's first, the sums' words), so that a day of minute bars decodes 1,440 rows, not 86,400; a
  value written before has none, and its readers roll its second bars;
- minute levels: minutes since the segment start as steps (mostly 0), price as the step from
  the row before in the traded tick, volume and taker-sell volume in the lot step, count.

USD-M's normal quantity (`nq`): beside a segment whose every trade has one, both values also
hold the RPI share (``q - nq``) of their sums in a frame of their own (keys ``rs``, ``rw``,
``rz``): per second its volume, taker-buy volume and moments about the low (its quote derived
the same way), per minute level its volume and taker-sell volume. RPI fills are rare, so these
are mostly zeros; the normal figures are the stored ones less them (`decode_normal_second_bars`,
`decode_normal_minute_levels`), exactly `second_bars` / `minute_levels` of the trades' `normal()`.
A value without them (spot, COIN-M, a segment with a trade lacking `nq`) has no normal figures:
its normal decoders raise `NormalQuantityUnknown`. Readers that do not know the keys ignore them.

Decoding checks what the header claims against the bytes (`unpack_columns`) and the rows'
order (seconds and (minute, price) strictly ascending), so a value allocates at most what its
own bytes prove and never hands out rows a range search would misread.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgpack
import numpy as np
from rocksdict import WriteBatch

from tradetape.domain.aggregates import (
    MINUTE_MS,
    SECOND_MS,
    MinuteLevels,
    OhlcRows,
    SecondBars,
    minute_levels,
    second_bars,
)
from tradetape.domain.columns import Int64Array, NormalQuantityUnknown, TradeColumns
from tradetape.domain.price_levels import common_divisor
from tradetape.domain.sums import SumOverflowError, WideSums, product_plus, run_sums, times_digits
from tradetape.errors import FormatError
from tradetape.store.keys import MINUTE_LEVELS, SECOND_BARS, timed_key
from tradetape.store.packing import pack_columns, recompressed, unpack_columns
from tradetape.store.sealed import seal, unseal
from tradetape.store.segments import FormatChecked, SegmentFormatError

LAYER_FORMAT = 1
MAX_ROWS = 1 << 24
"""More rows than any segment span holds seconds (or minutes × prices) a reader accepts: the count is bounded first."""
_SECOND_COLUMNS = 18
_LEVEL_COLUMNS = 5
_MINUTE_COLUMNS = 14
_ZERO = np.zeros(1, dtype=np.int64)


def put_layer(batch: WriteBatch, symbol: str, start: int, trades: TradeColumns) -> None:
    """The layer of the segment starting at `start` holding `trades` (non-empty), in `batch`: put, or deleted where
    a figure cannot be kept (readers then decode the segment's trades)."""
    seconds_key, levels_key = layer_keys(symbol, start)
    rpi = _rpi_share(trades)
    try:
        rpi_bars = None if rpi is None else second_bars(rpi)
        batch.put(seconds_key, encode_second_bars(start, second_bars(trades), rpi_bars))
    except SumOverflowError:
        batch.delete(seconds_key)
    levels = minute_levels(trades)
    rpi_levels = None if rpi is None else minute_levels(rpi)
    if levels is None or (rpi is not None and rpi_levels is None):
        batch.delete(levels_key)
    else:
        batch.put(levels_key, encode_minute_levels(start, levels, rpi_levels))


def layer_keys(symbol: str, start: int) -> tuple[bytes, bytes]:
    """The keys of the second bars and the minute levels of the segment starting at `start`."""
    return timed_key(SECOND_BARS, symbol, start), timed_key(MINUTE_LEVELS, symbol, start)


def put_grown_layer(
    batch: WriteBatch,
    symbol: str,
    start: int,
    part: TradeColumns,
    stored: list[bytes | None],
    trades: TradeColumns | None = None,
) -> bool:
    """The layer of a segment once `part` (trades it did not hold) is merged into it, grown from the layer `stored`
    before (its two values, `layer_keys`' order) and put in `batch`; False, putting nothing, where it cannot be
    grown (then compute it whole: `put_layer`).

    Minute levels add up over disjoint trades, so the stored ones and `part`'s are summed; a 1-second bar does not
    (open, close, extremes), so the seconds `part` touches are computed from every trade of theirs in `trades` (the
    merged segment's), or, without `trades`, only if the layer holds none of those seconds yet (a live roll-up's new
    seconds). Why: a roll-up merges 10 s of windows into an hour segment that may hold millions of trades, and
    computing the whole hour's layer again was most of its time (`bench/rollup.py`: 2.3 s at half an hour of 2,000
    trades/s, on the thread that stores live trades). Not grown where the layer stored is missing (a figure it
    could not keep) or fails its checks, where trades carry a normal quantity (USD-M: the layer holds an RPI share)
    or where a figure would pass what is kept. A live roll-up's minute levels are compressed fast: the next roll-up
    writes them again, and the hour's join compresses them as at rest (`tradetape.store.segment_join`).
    """
    seconds_value, levels_value = stored
    if seconds_value is None or levels_value is None or part.normal_qty is not None:
        return False
    if trades is not None and trades.normal_qty is not None:
        return False
    touched = np.unique(part.time - part.time % SECOND_MS)
    try:
        added = minute_levels(part)
        levels = None if added is None else MinuteLevels.concat([decode_minute_levels(levels_value), added])
        held = decode_second_bars(seconds_value)
        again = np.isin(held.time, touched)
        if levels is None or (trades is None and bool(again.any())):
            return False
        seconds = part if trades is None else trades.take(np.isin(trades.time - trades.time % SECOND_MS, touched))
        bars = SecondBars.concat([held.take(~again), second_bars(seconds)])
        grown = encode_second_bars(start, bars), encode_minute_levels(start, levels, fast=trades is None)
    except (SumOverflowError, FormatError):  # a figure past what is kept, or a stored layer that fails its checks
        return False
    for key, value in zip(layer_keys(symbol, start), grown, strict=True):
        batch.put(key, value)
    return True


def _rpi_share(trades: TradeColumns) -> TradeColumns | None:
    """The trades with `qty` their RPI share, ``q - nq``; None unless every trade has an `nq`."""
    if trades.normal_qty is None or trades.normal_missing():
        return None
    return TradeColumns(trades.agg_id, trades.price, trades.qty - trades.normal_qty, trades.first_id,
                        trades.last_id, trades.time, trades.buyer_maker)  # fmt: skip


def _steps(values: Int64Array, first: int) -> Int64Array:
    return np.diff(values, prepend=np.int64(first))


def _after_zero(values: Int64Array) -> Int64Array:
    """0, then `values` (`np.r_[0, values]` at half its cost: a second-bar decode makes two of these)."""
    return np.concatenate((_ZERO, values))


def _header_int(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise SegmentFormatError(f"layer field {key!r} must be an int64, got {str(value)[:40]}")
    return value


def _scaled(sums: WideSums) -> tuple[int, Int64Array]:
    """A wide column's step (its common divisor when no high word is used, else 1) and its low words in steps."""
    step = 1 if sums.hi.any() else common_divisor(sums.lo)
    return step, sums.lo // step


def encode_second_bars(start: int, bars: SecondBars, rpi: SecondBars | None = None) -> bytes:
    """The second bars of the segment starting at `start` (and the RPI share of their sums, same seconds), sealed."""
    n = len(bars)
    first_id = int(bars.first_id[0]) if n else 0
    p0 = int(bars.open[0]) if n else 0
    moves = [
        _steps(bars.open, p0) - np.r_[0, bars.close[:-1] - bars.open[:-1]] if n else bars.open,
        bars.high - bars.open,
        bars.open - bars.low,
        bars.close - bars.open,
    ]
    tick = common_divisor(np.concatenate(moves))
    steps, scaled = zip(*(_scaled(sums) for sums in (bars.volume, bars.buy_volume, bars.above_low,
                                                     bars.above_low_square)), strict=True)  # fmt: skip
    derived = not bars.volume.hi.any()  # quote = low × volume + above_low: not stored
    quote = WideSums.of(np.zeros(n, dtype=np.int64)) if derived else bars.quote
    widths, frame = pack_columns(
        [
            _steps(bars.time // SECOND_MS, start // SECOND_MS),
            np.r_[0, bars.first_id[1:] - bars.last_id[:-1] - 1] if n else bars.first_id,
            bars.last_id - bars.first_id,
            *(move // tick for move in moves),
            bars.trade_count,
            *(column for pair in zip(scaled, (bars.volume.hi, bars.buy_volume.hi, bars.above_low.hi,
                                              bars.above_low_square.hi), strict=True) for column in pair),
            quote.lo,
            quote.hi,
        ]
    )  # fmt: skip
    body = {"v": LAYER_FORMAT, "n": n, "s": start, "a0": first_id, "p0": p0, "pt": tick, "qs": list(steps)}
    body |= {"qd": derived, "w": widths, "z": frame}
    minutes = bars.ohlc().per_minute()
    minute_widths, minute_frame = pack_columns(_minute_columns(minutes, start, first_id, p0))
    body |= {"mn": len(minutes), "mw": minute_widths, "mz": minute_frame}
    if rpi is not None:
        rpi_sums = (rpi.volume, rpi.buy_volume, rpi.above_low, rpi.above_low_square)
        rpi_steps, rpi_scaled = zip(*(_scaled(sums) for sums in rpi_sums), strict=True)
        rpi_widths, rpi_frame = pack_columns(
            [column for low, sums in zip(rpi_scaled, rpi_sums, strict=True) for column in (low, sums.hi)]
        )
        body |= {"rs": list(rpi_steps), "rw": rpi_widths, "rz": rpi_frame}
    return seal(msgpack.packb(body, use_bin_type=True))


def _minute_columns(rows: OhlcRows, start: int, a0: int, p0: int) -> list[Int64Array]:
    """Minute bars as small columns: seconds since the segment start (a minute's row starts at its minute, or at its
    one second's: `OhlcRows.per_minute`), ids from the value's first, prices from its first open, the sums' words as
    they are (~2.4 KB, 3 % of a busy hour's value: 0.03 bytes a trade)."""
    return [
        (rows.time - start) // SECOND_MS,
        rows.first_id - a0,
        rows.last_id - rows.first_id,
        rows.open - p0,
        rows.high - rows.open,
        rows.open - rows.low,
        rows.close - rows.open,
        rows.trade_count,
        *(word for sums in (rows.volume, rows.buy_volume, rows.quote) for word in (sums.hi, sums.lo)),
    ]


def decode_minute_bars(value: bytes) -> OhlcRows:
    """The second bars of a stored value rolled to minutes (`OhlcRows.per_minute`), from the minute frame written
    beside them (60 rows an hour, where the second bars are 3,600), or rolled here from a value written before it was.

    Why: a cold 24 h of 1-minute bars decoded 25 hours of second bars and rolled them (~0.55 ms an hour)."""
    with FormatChecked("minute bars"):
        body, n = _body(value, _SECOND_COLUMNS)
        if "mz" not in body:
            return decode_second_bars(value).ohlc().per_minute()
        start, a0, p0, m = (_header_int(body, key) for key in ("s", "a0", "p0", "mn"))
        widths = body["mw"]
        if not 0 <= m <= n or not isinstance(widths, list) or len(widths) != _MINUTE_COLUMNS:
            raise SegmentFormatError(f"minute bars of {m} rows in {len(widths)} columns beside {n} seconds")
        second, first, fills, open_, up, down, body_move, count, *words = unpack_columns(widths, m, body["mz"])
        if m and (second[0] < 0 or (second[1:] // 60 <= second[:-1] // 60).any()):
            raise SegmentFormatError("minute bars not a row a minute, ascending from the segment's start")
        first_id, open_ = first + np.int64(a0), open_ + np.int64(p0)
        volume, buy, quote = (WideSums(words[i], words[i + 1]) for i in range(0, 6, 2))
        return OhlcRows(
            second * np.int64(SECOND_MS) + np.int64(start), first_id, first_id + fills, open_, open_ + up,
            open_ - down, open_ + body_move, volume, buy, quote, count,
        )  # fmt: skip


def decode_second_bars(value: bytes) -> SecondBars:
    """A stored second-bars value back into columns; `ChecksumError` or `SegmentFormatError` past its checks."""
    return _decode_second_bars(value, normal=False)


def decode_normal_second_bars(value: bytes) -> SecondBars:
    """The normal-quantity second bars of a stored value; `NormalQuantityUnknown` if it holds none."""
    return _decode_second_bars(value, normal=True)


def _scales(body: dict[str, Any], key: str) -> list[int]:
    scales = body[key]
    if not isinstance(scales, list) or len(scales) != 4 or not all(type(v) is int and v > 0 for v in scales):
        raise SegmentFormatError("second bars need four steps of sums")
    return scales


def _decode_second_bars(value: bytes, *, normal: bool) -> SecondBars:
    with FormatChecked("second bars"):
        body, n = _body(value, _SECOND_COLUMNS)
        if normal and "rz" not in body:
            raise NormalQuantityUnknown()
        start, a0, p0, tick = (_header_int(body, key) for key in ("s", "a0", "p0", "pt"))
        scales = _scales(body, "qs")
        (steps, id_gap, fills, open_move, up, down, body_move, count, *sums, qlo, qhi) = unpack_columns(
            body["w"], n, body["z"]
        )
        if n and (steps[1:] <= 0).any():
            raise SegmentFormatError("second bars not strictly ascending by second")
        volume, buy, above, square = (WideSums(sums[2 * i + 1], sums[2 * i] * np.int64(scales[i])) for i in range(4))
        seconds = np.cumsum(steps) + np.int64(start // SECOND_MS)
        first_id = np.cumsum(id_gap + _after_zero(fills[:-1] + 1)) + np.int64(a0) if n else id_gap
        close_move = body_move * np.int64(tick)
        open_ = np.cumsum(open_move * np.int64(tick) + _after_zero(close_move[:-1])) + np.int64(p0)
        low = open_ - down * np.int64(tick)
        quote = product_plus(low, volume.lo, above) if body.get("qd") is True else WideSums(qhi, qlo)
        bars = SecondBars(
            time=seconds * np.int64(SECOND_MS),
            first_id=first_id,
            last_id=first_id + fills,
            open=open_,
            high=open_ + up * np.int64(tick),
            low=low,
            close=open_ + close_move,
            volume=volume,
            buy_volume=buy,
            quote=quote,
            trade_count=count,
            above_low=above,
            above_low_square=square,
        )
        return bars.less(_rpi_second_bars(body, n, bars)) if normal else bars


def _rpi_second_bars(body: dict[str, Any], n: int, bars: SecondBars) -> SecondBars:
    """The RPI share of the sums of `bars` (decoded from the same value), as bars of the same seconds."""
    scales, widths = _scales(body, "rs"), body["rw"]
    if not isinstance(widths, list) or len(widths) != 8:
        raise SegmentFormatError("the RPI share of second bars packs 8 columns")
    columns = unpack_columns(widths, n, body["rz"])
    volume, buy, above, square = (WideSums(columns[2 * i + 1], columns[2 * i] * np.int64(scales[i])) for i in range(4))
    digits = times_digits(volume.digits(), bars.low)  # quote = low × volume + Σ r·(p − low), as for the whole
    digits = [x + y for x, y in zip(digits, [*above.digits(), *([np.zeros(n, dtype=np.int64)] * 3)], strict=True)]
    quote = run_sums(digits, np.arange(n, dtype=np.intp))
    return replace(bars, volume=volume, buy_volume=buy, quote=quote, above_low=above, above_low_square=square)


def encode_minute_levels(
    start: int, levels: MinuteLevels, rpi: MinuteLevels | None = None, *, fast: bool = False
) -> bytes:
    """The per-minute price levels of the segment starting at `start` (and their RPI share, same rows), sealed;
    `fast` for an open hour's, written again at its next roll-up (`recompressed_minute_levels` once it closes)."""
    n = len(levels)
    p0 = int(levels.price[0]) if n else 0
    price_steps = _steps(levels.price, p0)
    tick = common_divisor(price_steps)
    lot = common_divisor(np.r_[levels.volume, levels.buy_volume])
    widths, frame = pack_columns(
        [
            _steps(levels.time // MINUTE_MS, start // MINUTE_MS),
            price_steps // tick,
            levels.volume // lot,
            (levels.volume - levels.buy_volume) // lot,
            levels.trade_count,
        ],
        fast=fast,
    )
    body = {"v": LAYER_FORMAT, "n": n, "s": start, "p0": p0, "pt": tick, "qs": lot, "w": widths, "z": frame}
    if rpi is not None:
        rpi_lot = common_divisor(np.r_[rpi.volume, rpi.buy_volume])
        rpi_widths, rpi_frame = pack_columns(
            [rpi.volume // rpi_lot, (rpi.volume - rpi.buy_volume) // rpi_lot], fast=fast
        )
        body |= {"rs": rpi_lot, "rw": rpi_widths, "rz": rpi_frame}
    return seal(msgpack.packb(body, use_bin_type=True))


def recompressed_minute_levels(value: bytes) -> bytes:
    """A stored minute-levels value with its frames compressed at the level kept at rest: the same columns, the bytes
    `encode_minute_levels` makes of them without `fast`. `ChecksumError` or `SegmentFormatError` past its checks."""
    with FormatChecked("minute levels"):
        body, n = _body(value, _LEVEL_COLUMNS)
        body["z"] = recompressed(body["w"], n, body["z"])
        if "rz" in body:
            body["rz"] = recompressed(_rpi_widths(body), n, body["rz"])
        return seal(msgpack.packb(body, use_bin_type=True))


def decode_minute_levels(value: bytes) -> MinuteLevels:
    """A stored minute-levels value back into columns; `ChecksumError` or `SegmentFormatError` past its checks."""
    return _decode_minute_levels(value, normal=False)


def decode_normal_minute_levels(value: bytes) -> MinuteLevels:
    """The normal-quantity minute levels of a stored value; `NormalQuantityUnknown` if it holds none."""
    return _decode_minute_levels(value, normal=True)


def _decode_minute_levels(value: bytes, *, normal: bool) -> MinuteLevels:
    with FormatChecked("minute levels"):
        body, n = _body(value, _LEVEL_COLUMNS)
        if normal and "rz" not in body:
            raise NormalQuantityUnknown()
        start, p0, tick, lot = (_header_int(body, key) for key in ("s", "p0", "pt", "qs"))
        steps, price_steps, volume, sell, count = unpack_columns(body["w"], n, body["z"])
        minutes = np.cumsum(steps) + np.int64(start // MINUTE_MS)
        price = np.cumsum(price_steps * np.int64(tick)) + np.int64(p0)
        if n and not bool(((steps[1:] > 0) | ((steps[1:] == 0) & (price_steps[1:] > 0))).all()):
            raise SegmentFormatError("minute levels not strictly ascending by minute and price")
        step = np.int64(lot)
        levels = MinuteLevels(minutes * np.int64(MINUTE_MS), price, volume * step, (volume - sell) * step, count)
        return _normal_levels(body, n, levels) if normal else levels


def _rpi_widths(body: dict[str, Any]) -> list[int]:
    """The checked byte widths of the RPI share a minute-levels value holds (two columns with a positive step)."""
    lot, widths = _header_int(body, "rs"), body["rw"]
    if lot <= 0 or not isinstance(widths, list) or len(widths) != 2:
        raise SegmentFormatError("the RPI share of minute levels packs 2 columns with a positive step")
    return widths


def _normal_levels(body: dict[str, Any], n: int, levels: MinuteLevels) -> MinuteLevels:
    """`levels` less the RPI share the same value holds; checked: no share above its level's own figure."""
    lot, widths = _header_int(body, "rs"), _rpi_widths(body)
    volume, sell = (column * np.int64(lot) for column in unpack_columns(widths, n, body["rz"]))
    buy = volume - sell
    if bool(((sell < 0) | (buy < 0) | (volume > levels.volume) | (buy > levels.buy_volume)).any()):
        raise SegmentFormatError("the RPI share of a minute level exceeds the level")
    return levels.less(volume, buy)


def _body(value: bytes, columns: int) -> tuple[dict[str, Any], int]:
    """The checked header of a layer value and its row count."""
    body = msgpack.unpackb(unseal(value), raw=False)
    if not isinstance(body, dict) or body.get("v") != LAYER_FORMAT:
        raise SegmentFormatError(f"unknown layer format {body.get('v') if isinstance(body, dict) else None!r}")
    n = _header_int(body, "n")
    widths = body["w"]
    if not 0 <= n <= MAX_ROWS:
        raise SegmentFormatError(f"a layer value of {n} rows (at most {MAX_ROWS})")
    if not isinstance(widths, list) or len(widths) != columns:
        raise SegmentFormatError(f"a layer value packs {columns} columns")
    return body, n
