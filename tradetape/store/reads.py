"""Range reads over a handle of a shard's database: trades, coverage, price levels and the aggregate layer.

A range read touches the summaries of the segments it spans, uses them whole where a
segment lies inside the range, and decodes trades only where it must: the two edge
segments and the young windows not yet rolled up (layout: `tradetape.store.segments`).
Reads of the aggregate layer (`read_second_bars`, `read_minute_levels`, and the edges of
`read_price_levels`) take every whole second (or minute) of the range from the segments'
layers and decode trades only for the range's ragged edges, the young windows, and a
segment that has no layer (not built yet during an upgrade, or a sum it cannot keep); the
result equals the same aggregates built from the range's trades. With `quantity="normal"` (USD-M's
`nq`), the layer's normal figures and the edges' `normal()` trades are read instead, and the
whole segments of a price-level read come from their minute levels (histograms hold `q` only).
Coverage of the whole tape reads only the completeness index and the first and last
entries. Functions of a handle, so the writer (its own checks) and the readers
(`tradetape.store.reader`, `tradetape.store.tape`) share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

import numpy as np
from rocksdict import Rdict

from tradetape.domain.aggregates import (
    MINUTE_MS,
    SECOND_MS,
    MinuteLevels,
    OhlcRows,
    SecondBars,
    minute_levels,
    second_bars,
)
from tradetape.domain.columns import BASE_COLUMNS, Quantity, TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.price_levels import PriceLevels
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.store.budget import ReadBudget
from tradetape.store.codec import TRADE_BYTES
from tradetape.store.decoding import DECODE_THREADS
from tradetape.store.index import decode_runs
from tradetape.store.keys import (
    MINUTE_LEVELS,
    SECOND_BARS,
    SUMMARY,
    WINDOW,
    WINDOW_SUMMARY,
    index_key,
    kind_prefix,
    prefix_end,
    timed_key,
    window_key_range,
)
from tradetape.store.layer import (
    decode_minute_bars,
    decode_minute_levels,
    decode_normal_minute_levels,
    decode_normal_second_bars,
    decode_second_bars,
)
from tradetape.store.layout import readable_layout, segment_span
from tradetape.store.rocks import last_before, scan, scan_first
from tradetape.store.sealed import decoded
from tradetape.store.segment_cache import Layer, SegmentCache
from tradetape.store.segments import WINDOW_SUMMARIES_SINCE, SegmentSummary
from tradetape.store.voids import read_voids
from tradetape.store.window_reads import whole_window

TimeRange = tuple[int, int] | None


def _levels_layer(quantity: Quantity) -> tuple[str, Callable[[bytes], MinuteLevels], Quantity]:
    return MINUTE_LEVELS, decode_normal_minute_levels if quantity == "normal" else decode_minute_levels, quantity


def _seconds_layer(quantity: Quantity) -> tuple[str, Callable[[bytes], SecondBars], Quantity]:
    return SECOND_BARS, decode_normal_second_bars if quantity == "normal" else decode_second_bars, quantity


@dataclass(frozen=True)
class _Plan:
    """The keys a range read touches: segments inside the range, segments at its edges, windows."""

    inside: list[SegmentSummary]
    edges: list[SegmentSummary]
    windows: list[tuple[bytes, bytes]]
    """Keys and values."""
    window_edges: list[SegmentSummary] = field(default_factory=list)
    """Windows known by their summaries, to read (with `window_summaries`)."""


def _plan(db: Rdict, symbol: str, time_range: TimeRange, *, window_summaries: bool = False) -> _Plan:
    """With `window_summaries` (a coverage of a store that keeps them), the windows inside the range are planned by
    their summaries, among `inside`, and only those at its edges are read."""
    span = segment_span(db)
    summaries = kind_prefix(SUMMARY, symbol)
    if time_range is None:
        whole = [decoded(*item, SegmentSummary.decode) for item in scan(db, summaries, prefix_end(summaries))]
        windows = kind_prefix(WINDOW, symbol)
        return _Plan(whole, [], scan(db, windows, prefix_end(windows)))
    start, end = time_range
    lower = timed_key(SUMMARY, symbol, start - start % span)
    inside, edges = _by_place(scan(db, lower, timed_key(SUMMARY, symbol, end)), start, end)
    if not window_summaries:
        return _Plan(inside, edges, scan(db, *window_key_range(symbol, start, end)))
    window_summaries_found = scan(db, *window_key_range(symbol, start, end, WINDOW_SUMMARY))
    inside_windows, edge_windows = _by_place(window_summaries_found, start, end)
    return _Plan(inside + inside_windows, edges, [], edge_windows)


def _by_place(
    items: list[tuple[bytes, bytes]], start: int, end: int
) -> tuple[list[SegmentSummary], list[SegmentSummary]]:
    """Stored summaries of trades with times in ``[start, end)``: those all inside, and those only partly."""
    inside: list[SegmentSummary] = []
    edges: list[SegmentSummary] = []
    for key, value in items:
        summary = decoded(key, value, SegmentSummary.decode)
        if summary.last_time < start or summary.first_time >= end:
            continue
        (inside if start <= summary.first_time and summary.last_time < end else edges).append(summary)
    return inside, edges


def _cache(cache: SegmentCache | None) -> SegmentCache:
    """`cache`, or one that keeps nothing: every read decodes the same way (`SegmentCache`), cached or not."""
    return _UNCACHED if cache is None else cache


def _bodies(db: Rdict, symbol: str, summaries: list[SegmentSummary], cache: SegmentCache | None) -> list[TradeColumns]:
    """The trades of each of `summaries`' segments still stored (one gone since its summary was read is left out)."""
    return [body for body in _cache(cache).bodies(db, symbol, summaries) if body is not None]


def _edge_trades(
    db: Rdict, symbol: str, plan: _Plan, time_range: TimeRange, cache: SegmentCache | None = None
) -> TradeColumns:
    """The trades of the range that no whole-segment summary stands for, trimmed to the range."""
    return TradeColumns.concat(_trimmed_edges(db, symbol, plan, time_range, cache))


def _trimmed_edges(
    db: Rdict, symbol: str, plan: _Plan, time_range: TimeRange, cache: SegmentCache | None
) -> list[TradeColumns]:
    """Each edge part trimmed to the range on its own: parts stay disjoint in agg ids, so joining them needs no sort."""
    parts = _edge_parts(db, symbol, plan, cache)
    return parts if time_range is None else [part.between(*time_range) for part in parts]


def _edge_parts(db: Rdict, symbol: str, plan: _Plan, cache: SegmentCache | None) -> list[TradeColumns]:
    """The edge segments' trades and the young windows', untrimmed, each part on its own."""
    parts = _bodies(db, symbol, plan.edges, cache)
    if plan.windows:
        parts.append(_cache(cache).windows(symbol, plan.windows))
    if plan.window_edges:
        parts.append(_cache(cache).summarized_windows(db, symbol, plan.window_edges))
    return parts


def _most_trades(plan: _Plan, *, inside: bool = True) -> int:
    """At least as many trades as reading `plan` decodes, known before decoding any."""
    count = sum(s.trade_count for s in plan.edges) + sum(len(value) // TRADE_BYTES for _, value in plan.windows)
    return count + (sum(s.trade_count for s in plan.inside) if inside else 0)


def read_trades(db: Rdict, symbol: str, start_ms: int, end_ms: int) -> TradeColumns:
    """All stored trades of `symbol` with ``start_ms <= T < end_ms``, ascending by agg id."""
    return read_range(db, symbol, (start_ms, end_ms))


def read_all_trades(db: Rdict, symbol: str) -> TradeColumns:
    return read_range(db, symbol, None)


def read_range(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
) -> TradeColumns:
    """The trades of `symbol` in the range (None: the whole tape); `ReadTooLargeError` past `budget`."""
    plan = _plan(db, symbol, time_range)
    if budget is not None:
        budget.check(_most_trades(plan))
    return _joined(db, symbol, plan.inside, _trimmed_edges(db, symbol, plan, time_range, cache), cache)


def _joined(
    db: Rdict, symbol: str, inside: list[SegmentSummary], edges: list[TradeColumns], cache: SegmentCache | None
) -> TradeColumns:
    """The inside segments' trades and the edges' as one set of columns, allocated once.

    Each segment is decoded (or taken from the cache) and copied in on its own, so a long
    range holds its result and one segment, not every segment and then their join as well
    (measured over 3M trades: 171 bytes a trade at peak before, about 55 after). Pieces go
    in by first agg id; a piece out of order (never on a tape whose ids rise with time)
    makes the result sorted afterwards.
    """
    if not inside:
        return TradeColumns.concat(edges)
    pieces: list[tuple[int, SegmentSummary | TradeColumns]] = [(s.first_id, s) for s in inside]
    pieces += [(int(edge.agg_id[0]), edge) for edge in edges if len(edge)]
    pieces.sort(key=lambda piece: piece[0])
    if len(pieces) == 1:  # one whole segment: its (cached, read-only) arrays as they are, no copy
        piece = pieces[0][1]
        return piece if isinstance(piece, TradeColumns) else _body(db, symbol, piece, cache) or TradeColumns.empty()
    count = sum(s.trade_count for s in inside) + sum(len(edge) for edge in edges)
    template = TradeColumns.empty().arrays()
    columns = [np.empty(count, dtype=column.dtype) for column in template]
    filled, last_id, ordered = 0, -1, True
    overflow: list[TradeColumns] = []
    for _, piece in pieces:
        part = piece if isinstance(piece, TradeColumns) else _body(db, symbol, piece, cache)
        if part is None or len(part) == 0:
            continue  # the segment went (retention) since its summary was read
        if filled + len(part) > count:  # it grew since (a late trade merged in): joined at the end
            overflow.append(part)
            continue
        ordered = ordered and int(part.agg_id[0]) > last_id
        if part.normal_qty is not None and len(columns) == BASE_COLUMNS:  # the first part with USD-M's nq
            columns.append(np.full(count, NO_NORMAL_QTY, dtype=np.int64))
        for column, values in zip(columns, part.arrays(), strict=False):
            column[filled : filled + len(part)] = values
        filled += len(part)
        last_id = int(part.agg_id[-1])
    joined = TradeColumns.of_arrays([column[:filled] for column in columns])
    if overflow:
        return TradeColumns.concat([joined, *overflow])
    return joined if ordered else joined.sorted_unique()


def _body(db: Rdict, symbol: str, summary: SegmentSummary, cache: SegmentCache | None) -> TradeColumns | None:
    return _cache(cache).bodies(db, symbol, [summary])[0]


def read_coverage(db: Rdict, symbol: str, time_range: TimeRange, cache: SegmentCache | None = None) -> Coverage:
    """Trades held over the range (None: the whole tape) and the agg-id gaps between its first and last.

    Voids are counted apart (`void_count`); their ids are held, so never a gap.

    The whole tape is answered from the index and two seeks; a range from the summaries of
    the segments and windows inside it, decoding only its edges. Gaps are the index's, between the
    first and last id found (agg ids rise with trade time).
    """
    version, span = readable_layout(db)
    runs = decoded(index_key(symbol), db.get(index_key(symbol)), decode_runs)
    voids = read_voids(db, symbol, time_range, span)
    if time_range is None:
        return _whole_tape_coverage(db, symbol, runs, voids)
    plan = _plan(db, symbol, time_range, window_summaries=version >= WINDOW_SUMMARIES_SINCE)
    edges = _edge_trades(db, symbol, plan, time_range, cache)
    count = sum(s.trade_count for s in plan.inside) + len(edges)
    if count + len(voids) == 0:
        return Coverage(0, None, None, None, None, [])
    first_ids = [s.first_id for s in plan.inside]
    last_ids = [s.last_id for s in plan.inside]
    first_times = [s.first_time for s in plan.inside]
    last_times = [s.last_time for s in plan.inside]
    for rows in (edges, voids):
        if len(rows):
            first_ids.append(int(rows.agg_id[0]))
            last_ids.append(int(rows.agg_id[-1]))
            first_times.append(int(rows.time.min()))
            last_times.append(int(rows.time.max()))
    first_id, last_id = min(first_ids), max(last_ids)
    gaps = runs.clip(first_id, last_id).gaps()
    return Coverage(count, first_id, last_id, min(first_times), max(last_times), gaps, len(voids))


def _whole_tape_coverage(db: Rdict, symbol: str, runs: IdRuns, voids: TradeColumns) -> Coverage:
    if len(runs) == 0:
        return Coverage(0, None, None, None, None, [])
    summaries, windows = kind_prefix(SUMMARY, symbol), kind_prefix(WINDOW, symbol)
    first_times: list[int] = [int(voids.time.min())] if len(voids) else []
    last_times: list[int] = [int(voids.time.max())] if len(voids) else []
    first_summary = scan_first(db, summaries, prefix_end(summaries))
    last_summary = last_before(db, summaries, prefix_end(summaries))
    if first_summary is not None and last_summary is not None:
        first_times.append(decoded(*first_summary, SegmentSummary.decode).first_time)
        last_times.append(decoded(*last_summary, SegmentSummary.decode).last_time)
    first_window = scan_first(db, windows, prefix_end(windows))
    last_window = last_before(db, windows, prefix_end(windows))
    if first_window is not None and last_window is not None:
        first_times.append(int(whole_window(db, first_window[0]).time.min()))
        last_times.append(int(whole_window(db, last_window[0]).time.max()))
    first_time = min(first_times) if first_times else None
    last_time = max(last_times) if last_times else None
    first_id, last_id = int(runs.low[0]), int(runs.high[-1])
    return Coverage(runs.count - len(voids), first_id, last_id, first_time, last_time, runs.gaps(), len(voids))


def read_price_levels(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
    quantity: Quantity = "all",
) -> PriceLevels | None:
    """The range's trades aggregated per distinct price; None if a sum could leave int64.

    Whole segments inside the range come from their stored histograms, the whole minutes
    of the edge segments from their minute levels; only the ragged edges (and young
    windows) are decoded. With a `budget`, the edges' trades are checked before anything is
    read and the levels once they are in hand, before the merge.
    """
    plan = _plan(db, symbol, time_range)
    if budget is not None:
        budget.check(_most_trades(plan, inside=False))
    parts: list[PriceLevels | None] = []
    missing: list[SegmentSummary] = []
    held = 0
    if quantity == "normal":
        missing = plan.inside
    elif plan.inside:
        stored = _cache(cache).histograms(db, symbol, plan.inside)
        missing = [s for s, levels in zip(plan.inside, stored, strict=True) if levels is None]
        parts += [levels for levels in stored if levels is not None]
        held = sum(len(levels) for levels in stored if levels is not None)
    layers, trades = _layered(
        db, symbol, time_range, plan.edges + missing, plan.windows, MINUTE_MS, _levels_layer(quantity), cache,
        budget, held,
    )  # fmt: skip
    parts += [layer.levels() for layer in layers]
    parts.append(PriceLevels.of_trades(trades))
    if any(part is None for part in parts):
        return None
    return PriceLevels.merge([part for part in parts if part is not None])


def read_second_bars(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
    quantity: Quantity = "all",
) -> SecondBars:
    """The 1-second bars of the range's trades (None: the whole tape), equal to `second_bars` of those trades."""
    plan = _plan(db, symbol, time_range)
    layers, trades = _layered(
        db, symbol, time_range, plan.inside + plan.edges, plan.windows, SECOND_MS, _seconds_layer(quantity), cache,
        budget,
    )  # fmt: skip
    edges = second_bars(trades)
    if time_range is not None and layers:
        whole_start = -(-time_range[0] // SECOND_MS) * SECOND_MS
        cuts = (whole_start, max(time_range[1] - time_range[1] % SECOND_MS, whole_start))
        middle = edges.between(*cuts)  # young windows, segments without a layer
        if len(middle) == 0 or int(middle.time[0]) > int(layers[-1].time[-1]):  # in order: joined without a sort
            return SecondBars.concat([edges.between(-(2**62), cuts[0]), *layers, middle, edges.between(cuts[1], 2**62)])
    return SecondBars.concat([edges, *layers])  # layers last: read after the windows, they stand


@dataclass(frozen=True, slots=True)
class LayerVariant(Generic[Layer]):
    """A segment's layer made into another shape and cached apart under `name`: made from the plain layer where the
    cache holds that, else decoded and made (a footprint's minute bars, minute levels bucketed by a row size)."""

    name: str
    made: Callable[[Any], Layer]

    def decoding(self, decode: Callable[[bytes], Any]) -> Callable[[bytes], Layer]:
        """This variant straight from a stored value the plain layer's `decode` reads."""
        return lambda value: self.made(decode(value))


MINUTE_BARS: LayerVariant[OhlcRows] = LayerVariant("/1m", lambda seconds: seconds.ohlc().per_minute())
"""A segment's second bars rolled to minutes (a worker warms them with the second bars)."""


def bucketed_levels(price_step: int) -> LayerVariant[MinuteLevels] | None:
    """A segment's minute levels bucketed by `price_step` (`MinuteLevels.bucketed`); None for 1: the plain levels."""
    return None if price_step == 1 else LayerVariant(f"/{price_step}", lambda levels: levels.bucketed(price_step))


def cached_under(
    variant: LayerVariant[Any] | None, plain: str = ""
) -> tuple[str, tuple[str, Callable[[Any], Any]] | None]:
    """The cache's name of `variant` (None: the plain layer itself) of a layer whose plain form it holds under `plain`,
    and how it is made from that (`SegmentCache.layers`' `variant` and `derive`)."""
    return (plain, None) if variant is None else (plain + variant.name, (plain, variant.made))


def read_minute_bars(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
    quantity: Quantity = "all",
) -> OhlcRows:
    """The range's bars a row a minute where a segment's layer holds the whole minute, a row a second elsewhere (the
    ragged edges, young windows): rolled to whole minutes, exactly `read_second_bars` rolled. Each segment's second
    bars are rolled to minutes once and cached so (`OhlcRows.per_minute`): a day rolls 1,440 rows, not 86,400.

    Read as second bars instead when a young window's seconds could repeat the last layer's trades (a window
    rolled up into its segment between the two reads, which second bars tell apart by their second) or a segment
    without a layer lies among those with one."""
    if time_range is None:
        return read_second_bars(db, symbol, time_range, cache, budget, quantity).ohlc()
    plan = _plan(db, symbol, time_range)
    kind, decode, _ = _seconds_layer(quantity)
    minutes = decode_minute_bars if quantity == "all" else MINUTE_BARS.decoding(decode)
    layers, trades = _layered(
        db, symbol, time_range, plan.inside + plan.edges, plan.windows, MINUTE_MS, (kind, minutes, quantity), cache,
        budget, variant=MINUTE_BARS,
    )  # fmt: skip
    edges = second_bars(trades).ohlc()
    if not layers:
        return edges
    whole_start = -(-time_range[0] // MINUTE_MS) * MINUTE_MS
    cuts = (whole_start, max(time_range[1] - time_range[1] % MINUTE_MS, whole_start))
    middle = edges.between(*cuts)  # young windows, segments without a layer
    last = layers[-1]
    if len(middle) and (
        int(middle.time[0]) < int(last.time[-1]) or int(middle.first_id.min()) <= int(last.last_id[-1])
    ):
        return read_second_bars(db, symbol, time_range, cache, budget, quantity).ohlc()
    return OhlcRows.joined([edges.between(-(2**62), cuts[0]), *layers, middle, edges.between(cuts[1], 2**62)])


def read_minute_levels(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
    quantity: Quantity = "all",
    price_step: int = 1,
) -> MinuteLevels | None:
    """The per-minute price levels of the range's trades (a ragged minute: its trades in range); None past int64.

    With a `price_step`, prices taken down to its multiples (`MinuteLevels.bucketed`): each segment's layer is
    bucketed once as it is decoded and cached so (a few rows a minute, where a cent tick keeps hundreds)."""
    plan = _plan(db, symbol, time_range)
    kind, decode, _ = _levels_layer(quantity)
    variant = bucketed_levels(price_step)
    layers, trades = _layered(
        db, symbol, time_range, plan.inside + plan.edges, plan.windows, MINUTE_MS,
        (kind, decode if variant is None else variant.decoding(decode), quantity), cache, budget, variant=variant,
    )  # fmt: skip
    edges = minute_levels(trades)
    if edges is None:
        return None
    edges = edges.bucketed(price_step)
    if time_range is not None:  # the ragged start, what lies between (no layer, young windows), the ragged end:
        whole_start = -(-time_range[0] // MINUTE_MS) * MINUTE_MS
        cuts = (whole_start, max(time_range[1] - time_range[1] % MINUTE_MS, whole_start))
        pieces = [edges.between(-(2**62), cuts[0]), edges.between(*cuts), edges.between(cuts[1], 2**62)]
        return MinuteLevels.concat([*pieces, *layers])  # each in its place among the layers: joined without a sort
    return MinuteLevels.concat([edges, *layers])


def _layered(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    segments: list[SegmentSummary],
    windows: list[tuple[bytes, bytes]],
    unit_ms: int,
    layer: tuple[str, Callable[[bytes], Layer], Quantity],
    cache: SegmentCache | None,
    budget: ReadBudget | None,
    levels_held: int = 0,
    variant: LayerVariant[Layer] | None = None,
) -> tuple[list[Layer], TradeColumns]:
    """The layers of `segments` cut to the range's whole units, in time order, and every trade of the range they do not
    stand for.

    Those trades are the ragged parts (from the range's start to its first whole unit, and
    from its last whole unit to its end), every trade in range of a segment without a
    layer, and the young `windows`' trades in range. With a `budget`, the trades to decode
    and the layer's rows (plus `levels_held` already in hand) are checked once the layers
    are in hand, before any trade is decoded. A segment with a ragged edge counts all its
    trades: it is decoded whole (cached by the worker), then cut. A row a minute counts as the 60 seconds its value
    holds, which the read holds while it decodes them (~1.3 KB a minute row). `layer` names the kind and the
    quantity: with "normal", the layers' normal figures and the trades' `normal()`. With a `variant` (which the
    decoding gives), the layers are that variant of each segment's layer, made from the plain one where it is held.
    """
    kind, decode, quantity = layer
    if time_range is None:
        start, end, whole_start, whole_end = -1, 2**62, -1, 2**62
    else:
        start, end = time_range
        whole_start = -(-start // unit_ms) * unit_ms
        whole_end = max(end - end % unit_ms, whole_start)
    plain = "" if quantity == "all" else quantity
    stored = _cache(cache).layers(db, kind, symbol, segments, decode, *cached_under(variant, plain)) if segments else []
    kept: list[Layer] = []
    with_trades: list[tuple[SegmentSummary, bool]] = []
    for summary, found in zip(segments, stored, strict=True):
        if found is None:
            with_trades.append((summary, False))
            continue
        kept.append(found if time_range is None else found.between(whole_start, whole_end))
        if summary.first_time < whole_start or summary.last_time >= whole_end:
            with_trades.append((summary, True))
    if budget is not None:
        trades = sum(s.trade_count for s, _ in with_trades) + sum(len(v) // TRADE_BYTES for _, v in windows)
        rows = sum(len(found) for found in stored if found is not None)
        budget.check(trades, levels_held + rows * (MINUTE_MS // SECOND_MS if variant is MINUTE_BARS else 1))
    parts: list[TradeColumns] = []
    for at in range(0, len(with_trades), DECODE_THREADS):  # a few decoded at once (`tradetape.store.decoding`)
        batch = with_trades[at : at + DECODE_THREADS]
        for (_, ragged_only), body in zip(batch, _cache(cache).bodies(db, symbol, [s for s, _ in batch]), strict=True):
            if body is None:
                continue  # the segment went (retention) since its summary was read
            inside = (body.time >= start) & (body.time < end)
            if ragged_only:
                inside &= (body.time < whole_start) | (body.time >= whole_end)
            if bool(inside.any()):
                parts.append(body.take(inside))
    if windows:
        young = _cache(cache).windows(symbol, windows)
        parts.append(young if time_range is None else young.between(start, end))
    joined = TradeColumns.concat(parts)
    ordered = sorted((found for found in kept if len(found)), key=lambda found: int(found.time[0]))  # disjoint
    return ordered, joined.normal() if quantity == "normal" else joined


_UNCACHED = SegmentCache(0)
