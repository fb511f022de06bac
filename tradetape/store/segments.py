"""The storage layout of a shard's RocksDB, its format version, and the segment codec.

Layout (format 6; keys spelled in `tradetape.store.keys`), per symbol:

``trades:{SYMBOL}:{window_start_ms:013d}``
    A 1-second window of trade time (format 1 value, `tradetape.store.codec`): where live
    trades land. Only windows younger than the roll-up age live here (about a minute).
    Since format 6 what live writes add to a window that holds trades already goes under
    ``trades:{SYMBOL}:{window_start_ms:013d}+`` (its tail, a window value of its own), so a
    write rewrites the trades of the window's last few writes, not all its second holds;
    the writer joins the tail into the window's own value once a write goes past the
    window, or after 16 writes. A window's trades are its own value's and its tail's.
``seg:{SYMBOL}:{segment_start_ms:013d}``
    A segment: every trade of one `SEGMENT_MS` span of trade time (an hour), in the compact
    column encoding below. Closed windows are rolled up into it, in the same atomic write
    that deletes them; a late trade whose window is already rolled up merges into it. Since
    format 5 the value may list several bodies (blocks, `BLOCKS_FORMAT`): a live roll-up adds its
    trades as a block of its own, its summary, histogram and layer grown from the stored ones,
    instead of decoding and encoding the hour again; once the roll-up mark passes the hour's
    end, its blocks are joined into one body (persist joins them off its store thread:
    `tradetape.store.segment_join`; a segment left in blocks, by a stop before the join,
    reads the same).
``sum:{SYMBOL}:{segment_start_ms:013d}``
    The segment's summary: count, first/last agg id, first/last time, min/max price,
    volume, buy volume (a few dozen bytes, so a coverage scan reads no trades).
``hist:{SYMBOL}:{segment_start_ms:013d}``
    The segment's per-price histogram: every distinct price with its volume, buy volume
    and trade count, so a volume profile over whole segments decodes no trades.
``secs:{SYMBOL}:{segment_start_ms:013d}`` and ``mlvl:{SYMBOL}:{segment_start_ms:013d}``
    The segment's aggregate layer (format 4, `tradetape.store.layer`): its 1-second bars and
    its per-minute price levels, so a long range reads a row a second (or a minute and price)
    and decodes trades only at its ragged edges. Written with the segment, in the same write.
``void:{SYMBOL}:{segment_start_ms:013d}``
    The voids of one segment span (`tradetape.store.voids`): Binance's invalidated
    duplicates (price and quantity 0, trade ids -1), ids of the sequence without a trade,
    as raw columns. Kept out of windows, segments, summaries and histograms, so no
    analytic can see one; written in the same atomic write as their index entries.
``index:{SYMBOL}``
    The completeness index (`tradetape.store.index`): the stored agg-id runs, voids included.
``meta:rolled:{SYMBOL}``
    The window start before which every window of the symbol is rolled up.
``meta:retained:{SYMBOL}``
    The latest retention cutoff (both marks: `tradetape.store.meta`).
``meta:layout``
    The format version and segment span of this database.

Every value is sealed (format 3): a marker byte and a CRC-32 of the rest before its body
(`tradetape.store.sealed`), checked on every read, and a segment's zstd frame carries zstd's
content checksum as well; a value that fails either (or its format) is `StoreCorruptError`
naming its key, never data. Older databases (format 1: windows only; format 2: the same
values unsealed) are migrated by the writer when it opens them (`tradetape.store.migration`:
each value sealed once it decodes, in synced batches, resumable, progress logged; the
layout says the new format only after the last batch); readers refuse a database not sealed
yet (`StoreLayoutError`) rather than read values no checksum vouches for. A format-3
database (sealed, no aggregate layer) gets its layer when the writer opens it, and readers
read it meanwhile, decoding the trades of a segment with no layer yet.

Every agg id is in exactly one window, one segment or one void record: the writer drops
an incoming row whose id the index already holds (a void never replaces a trade, nor a
trade a void), a void goes to its span's void record, and a trade at or after the
roll-up mark to a window, anything before it to a segment. Retention trims void records
with the segments. (Void records need no new format version: a database without voids
simply has none.)

Segment encoding. Trades sorted by agg id; per column a transform that leaves small
numbers, then zigzag, the narrowest byte width, byte planes and zstd
(`tradetape.store.packing`):

- agg id: first id, then ``a[i] - a[i-1] - 1`` (0 on a complete tape);
- first trade id: first value, then ``f[i] - l[i-1] - 1`` (0: trade ids continue);
- last trade id: ``l - f`` (fills per aggregate, mostly 0);
- time: first value, then deltas (ms between trades, nearly monotone);
- price: first value, then deltas divided by their greatest common divisor (the tick
  actually traded, e.g. 1,000,000 units = 0.01 USDT): tick steps, mostly within ±3;
- quantity: divided by the greatest common divisor of the segment's quantities (the
  smallest step traded, e.g. 1,000 units = 0.00001 BTC);
- buyer-maker: `np.packbits`;
- USD-M's normal quantity (`nq`), only in a segment holding some: the RPI share ``q - nq``
  divided by its own common step (-1 for a trade without `nq`), packed in a frame of its own
  (keys ``ns``, ``nw``, ``nz``), so spot and COIN-M segments are byte for byte what they
  were, and a reader that does not know the keys reads the segment without them. RPI fills
  are rare, so the column is mostly zeros (`bench/store.py` measures its cost).

Why an hour. Measured with `bench/store.py --days 2 --per-day 2300000 --segment-minutes
1|10|60` (real-like BTCUSDT, 2 cores, one run each):

=========  ===========  ===============  ===============  ================
segment    bytes/trade  24 h profile     2 d profile      1 h raw read
=========  ===========  ===============  ===============  ================
1 min      5.12         207 ms           563 ms           20.6 ms
10 min     4.43         53 ms            106 ms           12.6 ms
1 hour     3.84         25 ms            53 ms            7.0 ms
=========  ===========  ===============  ===============  ================

(Parquet+zstd of the same trades: 9.43 bytes a trade; DuckDB's 24 h profile 68-73 ms.)
Longer segments compress better (zstd sees more of each column) and a long range touches
fewer keys (15 µs each in rocksdict) and fewer histograms; the price is the edges: a range
decodes up to two whole segments (~100k trades, a few ms), and the hour is encoded whole
once it is over (blocks joined; `bench/rollup.py`). A day would make the edges and that
24 times dearer for little more compression.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import msgpack
import numpy as np

from tradetape.domain.columns import BoolArray, Int64Array, NormalQuantityUnknown, TradeColumns
from tradetape.domain.price_levels import PriceLevels, common_divisor
from tradetape.domain.sums import SumOverflowError
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.errors import FormatError
from tradetape.store.packing import PackingError, pack_columns, unpack_columns
from tradetape.store.sealed import HEADER_BYTES, seal, unseal

FORMAT_VERSION = 7
"""The database layout (1: windows only; 2: + segments, summaries, histograms, index; 3: every value sealed;
4: + the aggregate layer beside every segment; 5: + segment values of several blocks, which a format-4 reader
cannot read: the format says so before one is written; 6: + window tails, which format-5 code does not know
of: its writer would take a window's own value for every trade the window holds; 7: + a summary beside every
window, which format-6 code would not keep up to date)."""
SEALED_SINCE = 3
"""The first format whose values are all sealed."""
LAYERED_SINCE = 4
"""The first format with the aggregate layer beside every segment."""
WINDOW_SUMMARIES_SINCE = 7
"""The first format with a summary beside every window: readers of an older one decode the windows instead."""
READABLE_FORMATS = (3, 4, 5, 6, 7)
"""What readers read: a format-3 store (being upgraded) has no layer yet, and its readers decode trades instead."""
SEGMENT_FORMAT = 1
BLOCKS_FORMAT = 2
"""A stored segment value listing several segment bodies (`grown_segment`), each encoded alone: what a live roll-up
appends to, so that it costs what it adds, not what the hour holds (`bench/rollup.py`)."""
_BLOCKS_MARK = b"\x82"
"""A blocks value's first byte (a msgpack map of two keys); a single body is a map of ten or more."""
SEGMENT_MS = 3_600_000
SEGMENT_COLUMNS = 6
"""Packed columns of a segment: agg id, first trade id, fills, time, price, quantity steps."""
_INT64_MAX = 2**63 - 1


class SegmentFormatError(FormatError):
    """A stored segment, summary or histogram that this version cannot read."""


class FormatChecked:
    """`with FormatChecked("segment"):` around decoding a stored value: whatever in it fails (a packing, a field of
    the wrong type or missing, a sum past what is kept) is `SegmentFormatError`, naming what was read."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, (SegmentFormatError, NormalQuantityUnknown)):
            return
        if isinstance(exc, (PackingError, SumOverflowError)):
            raise SegmentFormatError(str(exc)) from exc
        if isinstance(exc, (KeyError, TypeError, ValueError, msgpack.ExtraData)):
            raise SegmentFormatError(f"unreadable {self._what}: {exc}") from exc


def encode_segment(columns: TradeColumns) -> bytes:
    """A segment body: `columns` (sorted by agg id, each id once, non-empty) compactly encoded."""
    n = len(columns)
    if n == 0:
        raise ValueError("a segment holds at least one trade")
    a, p, q, f, last, t = (columns.agg_id, columns.price, columns.qty, columns.first_id, columns.last_id, columns.time)
    price_steps = _steps(p)
    tick = common_divisor(price_steps)
    qty_step = common_divisor(q)
    widths, frame = pack_columns(
        [
            np.r_[0, np.diff(a) - 1],
            np.r_[0, f[1:] - last[:-1] - 1],
            last - f,
            _steps(t),
            price_steps // tick,
            q // qty_step,
        ]
    )
    body = {
        "v": SEGMENT_FORMAT,
        "n": n,
        "a0": int(a[0]),
        "f0": int(f[0]),
        "t0": int(t[0]),
        "p0": int(p[0]),
        "pt": tick,
        "qs": qty_step,
        "w": widths,
        "z": frame,
        "m": np.packbits(columns.buyer_maker).tobytes(),
    }
    if columns.normal_qty is not None:
        body |= _encode_normal(q, columns.normal_qty)
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def _encode_normal(qty: Int64Array, normal: Int64Array) -> dict[str, object]:
    """The normal-quantity keys of a segment body: ``q - nq`` in its step, -1 where a trade has no `nq`."""
    known = normal != NO_NORMAL_QTY
    rpi = qty - normal
    step = common_divisor(rpi[known])
    widths, frame = pack_columns([np.where(known, rpi // step, -1)])
    return {"ns": step, "nw": widths, "nz": frame}


def _decode_normal(body: dict[str, object], n: int, qty: Int64Array) -> Int64Array | None:
    """The normal quantities a segment body holds (None: it holds none), checked: from 0 to the quantity."""
    if "nz" not in body:
        return None
    step, widths, frame = _header_int(body, "ns"), body["nw"], body["nz"]
    if step <= 0 or not isinstance(widths, list) or len(widths) != 1 or not isinstance(frame, bytes):
        raise SegmentFormatError("a segment's normal quantities are one packed column with a positive step")
    (rpi,) = unpack_columns(widths, n, frame)
    if bool((rpi < -1).any()) or bool((rpi > qty // step).any()):
        raise SegmentFormatError("a segment's normal quantities must be from 0 to the quantity")
    return np.where(rpi == -1, NO_NORMAL_QTY, qty - rpi * np.int64(step))


def _header_int(body: dict[str, object], key: str) -> int:
    value = body[key]
    if type(value) is not int or not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise SegmentFormatError(f"segment field {key!r} must be an int64, got {str(value)[:40]}")
    return value


def _steps(values: Int64Array) -> Int64Array:
    """Differences with a leading 0, so every packed column has one value per trade."""
    return np.diff(values, prepend=values[:1])


def _cumulative(first: int, steps: Int64Array) -> Int64Array:
    """The inverse of `_steps` (exact: every partial sum is a stored value)."""
    return np.cumsum(steps) + np.int64(first)


def decode_segment(value: bytes, *, max_trades: int | None = None) -> TradeColumns:
    """A segment body back into columns; `SegmentFormatError` if it is not one.

    Every claim of the header is checked against the bytes before anything is allocated:
    the count against `max_trades` (a bulk batch's limit; stored segments have none) and
    against the buyer-maker bits, which hold one bit a trade; the widths (one a column, 1, 2,
    4 or 8 bytes) and the count against the size the zstd frame declares (`unpack_columns`);
    the start values against int64. So a value allocates at most what its own bytes prove.
    """
    with FormatChecked("segment"):
        body = msgpack.unpackb(value, raw=False)
        if not isinstance(body, dict) or body.get("v") != SEGMENT_FORMAT:
            raise SegmentFormatError(f"unknown segment format {body.get('v') if isinstance(body, dict) else None!r}")
        n = _header_int(body, "n")
        maker_bytes, widths = body["m"], body["w"]
        if not 1 <= n <= (max_trades if max_trades is not None else n):
            raise SegmentFormatError(f"a segment of {n} trades (from 1 to {max_trades})")
        if not isinstance(maker_bytes, bytes) or len(maker_bytes) != (n + 7) // 8:
            raise SegmentFormatError(f"{n} trades need {(n + 7) // 8} bytes of buyer-maker bits")
        if not isinstance(widths, list) or len(widths) != SEGMENT_COLUMNS:
            raise SegmentFormatError(f"a segment packs {SEGMENT_COLUMNS} columns")
        a0, f0, t0, p0, tick, qty_step = (_header_int(body, key) for key in ("a0", "f0", "t0", "p0", "pt", "qs"))
        da, df, lf, dt, dp, qs = unpack_columns(widths, n, body["z"])
        agg_id = _cumulative(a0, np.r_[0, da[1:] + 1])
        # f[i] = l[i-1] + 1 + df[i] = f[i-1] + lf[i-1] + 1 + df[i]
        first_step = df + np.r_[0, lf[:-1] + 1]
        first_id = _cumulative(f0, first_step)
        last_id = first_id + lf
        time = _cumulative(t0, dt)
        price = _cumulative(p0, dp * np.int64(tick))
        qty = qs * np.int64(qty_step)
        maker: BoolArray = np.unpackbits(np.frombuffer(maker_bytes, dtype=np.uint8), count=n).astype(np.bool_)
        normal = _decode_normal(body, n, qty)
    return TradeColumns(agg_id, price, qty, first_id, last_id, time, maker, normal)


def encode_stored_segment(columns: TradeColumns) -> bytes:
    """A segment as the store keeps it: its body (`encode_segment`, also what a bulk batch carries), sealed."""
    return seal(encode_segment(columns))


def grown_segment(stored: bytes, part: TradeColumns) -> bytes:
    """The stored segment value with `part` (trades it does not hold) added as a body of its own: the bodies it
    holds are copied as they are, not decoded and encoded again (`BLOCKS_FORMAT`)."""
    return seal(msgpack.packb({"v": BLOCKS_FORMAT, "b": [*_bodies(unseal(stored)), encode_segment(part)]}))


def segment_in_blocks(stored: bytes) -> bool:
    """Whether a stored segment value lists several blocks (its checksum unchecked: decoding it checks)."""
    return stored[HEADER_BYTES : HEADER_BYTES + 1] == _BLOCKS_MARK


def _bodies(value: bytes) -> list[bytes]:
    """The segment bodies of a stored value's (unsealed) bytes: itself, or the blocks it lists."""
    if value[:1] == _BLOCKS_MARK:
        try:
            held = msgpack.unpackb(value, raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            raise SegmentFormatError(f"unreadable segment blocks: {exc}") from exc
        bodies = held.get("b") if isinstance(held, dict) and held.get("v") == BLOCKS_FORMAT else None
        if not isinstance(bodies, list) or not bodies or not all(isinstance(body, bytes) for body in bodies):
            raise SegmentFormatError("segment blocks must list one body or more")
        return bodies
    return [value]


def decode_stored_segment(value: bytes) -> TradeColumns:
    """A stored segment back into columns, its blocks joined; `ChecksumError` or `SegmentFormatError` if it fails
    its checks."""
    return _joined(_bodies(unseal(value)))


def _joined(bodies: list[bytes]) -> TradeColumns:
    return TradeColumns.concat([decode_segment(body) for body in bodies])


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """What a range read needs to know about a whole segment without decoding it."""

    start: int
    """Segment start (epoch ms); the segment holds trade times in ``[start, start + span)``."""
    trade_count: int
    first_id: int
    last_id: int
    first_time: int
    last_time: int
    min_price: int
    max_price: int
    volume: int
    buy_volume: int

    @classmethod
    def of(cls, start: int, columns: TradeColumns) -> SegmentSummary:
        qty = columns.qty
        return cls(
            start=start,
            trade_count=len(columns),
            first_id=int(columns.agg_id[0]),
            last_id=int(columns.agg_id[-1]),
            first_time=int(columns.time.min()),
            last_time=int(columns.time.max()),
            min_price=int(columns.price.min()),
            max_price=int(columns.price.max()),
            volume=_exact_sum(qty),
            buy_volume=_exact_sum(qty[~columns.buyer_maker]),
        )

    def joined(self, other: SegmentSummary) -> SegmentSummary:
        """The summary of this segment's trades and `other`'s (trades it does not hold) together."""
        return SegmentSummary(
            start=self.start,
            trade_count=self.trade_count + other.trade_count,
            first_id=min(self.first_id, other.first_id),
            last_id=max(self.last_id, other.last_id),
            first_time=min(self.first_time, other.first_time),
            last_time=max(self.last_time, other.last_time),
            min_price=min(self.min_price, other.min_price),
            max_price=max(self.max_price, other.max_price),
            volume=self.volume + other.volume,
            buy_volume=self.buy_volume + other.buy_volume,
        )

    def encode(self) -> bytes:
        fields: list[int | str] = [self.trade_count, self.first_id, self.last_id, self.first_time, self.last_time]
        fields += [self.min_price, self.max_price, str(self.volume), str(self.buy_volume)]
        return seal(msgpack.packb([SEGMENT_FORMAT, self.start, *fields]))

    @classmethod
    def decode(cls, value: bytes) -> SegmentSummary:
        try:
            fields = msgpack.unpackb(unseal(value))
            version, start, n, first_id, last_id, first_time, last_time, low, high, volume, buy = fields
            if version != SEGMENT_FORMAT:
                raise SegmentFormatError(f"unknown summary format {version!r}")
            return cls(start, n, first_id, last_id, first_time, last_time, low, high, int(volume), int(buy))
        except (TypeError, ValueError, msgpack.ExtraData) as exc:
            if isinstance(exc, SegmentFormatError):
                raise
            raise SegmentFormatError(f"unreadable summary: {exc}") from exc


def _exact_sum(values: Int64Array) -> int:
    if len(values) == 0:
        return 0
    if int(values.max()) * len(values) <= _INT64_MAX:
        return int(values.sum())
    return sum(values.tolist())


def encode_histogram(levels: PriceLevels) -> bytes:
    """A segment's price levels as the store keeps them (`hist:` keys), sealed."""
    if len(levels) == 0:
        return seal(msgpack.packb({"v": SEGMENT_FORMAT, "n": 0}))
    steps = _steps(levels.price)
    tick = common_divisor(steps)
    step = common_divisor(np.r_[levels.volume, levels.buy_volume])
    widths, frame = pack_columns([steps // tick, levels.volume // step, levels.buy_volume // step, levels.trade_count])
    body: dict[str, object] = {"v": SEGMENT_FORMAT, "n": len(levels), "p0": int(levels.price[0]), "pt": tick}
    body |= {"qs": step, "w": widths, "z": frame}
    return seal(msgpack.packb(body, use_bin_type=True))


def decode_histogram(value: bytes) -> PriceLevels:
    """A stored histogram back into price levels; `ChecksumError` or `SegmentFormatError` if it fails its checks."""
    with FormatChecked("histogram"):
        body = msgpack.unpackb(unseal(value), raw=False)
        if body.get("v") != SEGMENT_FORMAT:
            raise SegmentFormatError(f"unknown histogram format {body.get('v')!r}")
        n = int(body["n"])
        if n == 0:
            return PriceLevels.empty()
        steps, volume, buy, count = unpack_columns(body["w"], n, body["z"])
        step = np.int64(body["qs"])
        return PriceLevels(_cumulative(body["p0"], steps * np.int64(body["pt"])), volume * step, buy * step, count)
