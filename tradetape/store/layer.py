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
- minute levels: minutes since the segment start as steps (mostly 0), price as the step from
  the row before in the traded tick, volume and taker-sell volume in the lot step, count.

Decoding checks what the header claims against the bytes (`unpack_columns`) and the rows'
order (seconds and (minute, price) strictly ascending), so a value allocates at most what its
own bytes prove and never hands out rows a range search would misread.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
from rocksdict import WriteBatch

from tradetape.domain.aggregates import MINUTE_MS, SECOND_MS, MinuteLevels, SecondBars, minute_levels, second_bars
from tradetape.domain.columns import Int64Array, TradeColumns
from tradetape.domain.price_levels import common_divisor
from tradetape.domain.sums import SumOverflowError, WideSums, product_digits, run_sums
from tradetape.store.keys import MINUTE_LEVELS, SECOND_BARS, timed_key
from tradetape.store.packing import PackingError, pack_columns, unpack_columns
from tradetape.store.sealed import seal, unseal
from tradetape.store.segments import SegmentFormatError

LAYER_FORMAT = 1
MAX_ROWS = 1 << 24
"""More rows than any segment span holds seconds (or minutes × prices) a reader accepts: the count is bounded first."""
_SECOND_COLUMNS = 18
_LEVEL_COLUMNS = 5


def put_layer(batch: WriteBatch, symbol: str, start: int, trades: TradeColumns) -> None:
    """The layer of the segment starting at `start` holding `trades` (non-empty), in `batch`: put, or deleted where
    a figure cannot be kept (readers then decode the segment's trades)."""
    seconds_key, levels_key = (timed_key(kind, symbol, start) for kind in (SECOND_BARS, MINUTE_LEVELS))
    try:
        batch.put(seconds_key, encode_second_bars(start, second_bars(trades)))
    except SumOverflowError:
        batch.delete(seconds_key)
    levels = minute_levels(trades)
    if levels is None:
        batch.delete(levels_key)
    else:
        batch.put(levels_key, encode_minute_levels(start, levels))


def _steps(values: Int64Array, first: int) -> Int64Array:
    return np.diff(values, prepend=np.int64(first))


def _header_int(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise SegmentFormatError(f"layer field {key!r} must be an int64, got {str(value)[:40]}")
    return value


def _scaled(sums: WideSums) -> tuple[int, Int64Array]:
    """A wide column's step (its common divisor when no high word is used, else 1) and its low words in steps."""
    step = 1 if sums.hi.any() else common_divisor(sums.lo)
    return step, sums.lo // step


def encode_second_bars(start: int, bars: SecondBars) -> bytes:
    """The second bars of the segment starting at `start`, sealed."""
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
    return seal(msgpack.packb(body | {"qd": derived, "w": widths, "z": frame}, use_bin_type=True))


def decode_second_bars(value: bytes) -> SecondBars:
    """A stored second-bars value back into columns; `ChecksumError` or `SegmentFormatError` past its checks."""
    try:
        body, n = _body(value, _SECOND_COLUMNS)
        start, a0, p0, tick = (_header_int(body, key) for key in ("s", "a0", "p0", "pt"))
        scales = body["qs"]
        if not isinstance(scales, list) or len(scales) != 4 or not all(type(v) is int and v > 0 for v in scales):
            raise SegmentFormatError("second bars need four steps of sums")
        (steps, id_gap, fills, open_move, up, down, body_move, count, *sums, qlo, qhi) = unpack_columns(
            body["w"], n, body["z"]
        )
        if n and (steps[1:] <= 0).any():
            raise SegmentFormatError("second bars not strictly ascending by second")
        volume, buy, above, square = (WideSums(sums[2 * i + 1], sums[2 * i] * np.int64(scales[i])) for i in range(4))
        seconds = np.cumsum(steps) + np.int64(start // SECOND_MS)
        first_id = np.cumsum(id_gap + np.r_[0, fills[:-1] + 1]) + np.int64(a0) if n else id_gap
        close_move = body_move * np.int64(tick)
        open_ = np.cumsum(open_move * np.int64(tick) + np.r_[0, close_move[:-1]]) + np.int64(p0)
        low = open_ - down * np.int64(tick)
        if body.get("qd") is True:
            quote = run_sums([x + y for x, y in zip(product_digits(low, volume.lo), above.digits(), strict=True)],
                             np.arange(n, dtype=np.intp))  # fmt: skip
        else:
            quote = WideSums(qhi, qlo)
        return SecondBars(
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
    except (PackingError, SumOverflowError) as exc:
        raise SegmentFormatError(str(exc)) from exc
    except (KeyError, TypeError, ValueError, msgpack.ExtraData) as exc:
        if isinstance(exc, SegmentFormatError):
            raise
        raise SegmentFormatError(f"unreadable second bars: {exc}") from exc


def encode_minute_levels(start: int, levels: MinuteLevels) -> bytes:
    """The per-minute price levels of the segment starting at `start`, sealed."""
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
        ]
    )
    body = {"v": LAYER_FORMAT, "n": n, "s": start, "p0": p0, "pt": tick, "qs": lot, "w": widths, "z": frame}
    return seal(msgpack.packb(body, use_bin_type=True))


def decode_minute_levels(value: bytes) -> MinuteLevels:
    """A stored minute-levels value back into columns; `ChecksumError` or `SegmentFormatError` past its checks."""
    try:
        body, n = _body(value, _LEVEL_COLUMNS)
        start, p0, tick, lot = (_header_int(body, key) for key in ("s", "p0", "pt", "qs"))
        steps, price_steps, volume, sell, count = unpack_columns(body["w"], n, body["z"])
        minutes = np.cumsum(steps) + np.int64(start // MINUTE_MS)
        price = np.cumsum(price_steps * np.int64(tick)) + np.int64(p0)
        if n and not bool(((steps[1:] > 0) | ((steps[1:] == 0) & (price_steps[1:] > 0))).all()):
            raise SegmentFormatError("minute levels not strictly ascending by minute and price")
        step = np.int64(lot)
        return MinuteLevels(minutes * np.int64(MINUTE_MS), price, volume * step, (volume - sell) * step, count)
    except PackingError as exc:
        raise SegmentFormatError(str(exc)) from exc
    except (KeyError, TypeError, ValueError, msgpack.ExtraData) as exc:
        if isinstance(exc, SegmentFormatError):
            raise
        raise SegmentFormatError(f"unreadable minute levels: {exc}") from exc


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
