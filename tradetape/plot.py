"""Charts of query replies, as traders read them: PNG or SVG by the file's extension.

- `volume_profile_figure`: horizontal volume bars per price row split into buy and sell,
  the POC marked, the value area shaded, liquidity vacuums hatched; the POC, VAH and VAL
  prices labelled in a column of their own at the right, clear of bars and hatching.
- `bars_figure`: candles, volume beneath them, and the cumulative delta of the flow, over
  the time the bars cover (not the range asked: a day asked of 12 minutes of trades would
  squeeze them into the last 1 %), on a UTC time axis labelled by matplotlib's date
  locator and concise formatter.
- `footprint_figure`: a column a bar on the same time axis, a cell a price row coloured by
  its delta, its buy × sell volumes written in it where they fit, imbalances striped (and
  their numbers bold), stacked runs barred, each bar's POC boxed, value area and candle beside;
  the bars' deltas beneath.
- `market_profile_figure`: the TPO letters of each row, its count as a bar behind them
  coloured by POC and value area, single prints hatched, the initial balance barred at the
  left, the POC/VAH/VAL labels as the volume profile has them.

Text written in cells (volumes, letters) gets the largest font, from 8 (letters 10) down to 5 points,
that fits every cell; where none does, the colours and bars carry the chart alone. All use
constrained layout, so no label leaves the 1000 × 800 figure (`tests/test_plot.py`
measures every text's box).

They take the reply models the client returns, so `tradetape plot` and Python code draw
the same figure. matplotlib runs headless (Agg); nothing here opens a window.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402 - the backend is chosen first
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from tradetape.api.methods.bars import BarsReply  # noqa: E402
from tradetape.api.methods.flow import FlowReply  # noqa: E402
from tradetape.api.methods.footprint import FootprintBarReply, FootprintReply  # noqa: E402
from tradetape.api.methods.liquidity_vacuums import LiquidityVacuumsReply  # noqa: E402
from tradetape.api.methods.market_profile import MarketProfileReply  # noqa: E402
from tradetape.api.methods.volume_profile import VolumeProfileReply  # noqa: E402
from tradetape.api.times import iso_time, time_span  # noqa: E402

SIZE_INCHES = (10.0, 8.0)
DPI = 100
"""So a PNG is 1000 × 800 pixels."""
FORMATS = (".png", ".svg")
BUY, SELL = "#2e9d5b", "#d0473e"
VALUE_AREA, POC, DELTA = "#3a7bd5", "#e0a800", "#3a7bd5"
LABEL_COLUMN = 0.2
"""The right fifth of the profile holds the POC/VAH/VAL labels: bars and vacuum hatching stop short of it."""
LABEL_GAP_PX = 6.0
DAY_MS = 86_400_000
"""matplotlib's date axes count in days."""
CELL_FONT_PT = (8.0, 7.5, 7.0, 6.5, 6.0, 5.5, 5.0)
"""Sizes tried, largest first, for text written in cells: below 5 points no one reads it."""
CELL_PAD_PX = 3.0
"""Room kept between a cell's text and the cell's edges."""
PAIR_MIN_PT = 6.0
"""Below this, a cell shows its delta rather than two numbers too small to read."""
VOLUME_DIGITS = (4, 3)
"""Significant digits the largest volume in a footprint is written with: the fewer where the more do not fit."""
CELLS = (0.16, 0.94)
"""Where a bar's cells start and end, as fractions of its interval: its candle (at 0.07) and value-area line
(at 0.13) stand left of them, its stacked runs (buy at 0.955, sell at 0.98) right."""
CANDLE_AT, VALUE_AREA_AT, RUN_AT = 0.07, 0.13, {"buy": 0.955, "sell": 0.98}
STRIPE = 0.025
"""An imbalance's stripe, as a fraction of the interval, inside its cell's buy (right) or sell (left) edge."""
DELTA_COLOURS = LinearSegmentedColormap.from_list("delta", ["#e8857d", "#ffffff", "#7acb9c"])
"""Pale ends, so the dark cell text stays readable on either side."""
BUY_TEXT, SELL_TEXT, CELL_TEXT = "#0b6b34", "#a3231b", "#222222"
SINGLE_PRINT, INITIAL_BALANCE, TPO_ROW = "#c47f00", "#7b4fb3", "#c9d1db"
MIN_TPO_COLUMNS = 20
"""A profile of few periods keeps its letters this close together, rather than spread over the width."""
BALANCE_COLUMN = 1.0
"""TPO columns left of the letters, for the initial-balance and single-print bars."""
LETTER_FONT_PT = (10.0, 9.0, *CELL_FONT_PT)


def volume_profile_figure(profile: VolumeProfileReply, vacuums: LiquidityVacuumsReply | None = None) -> Figure:
    figure, axes = plt.subplots(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    lows = [float(row.price_low) for row in profile.rows]
    height = float(profile.row_size)
    buys = [float(row.buy_volume) for row in profile.rows]
    sells = [float(row.sell_volume) for row in profile.rows]
    axes.barh(lows, buys, height=height, align="edge", color=BUY, label="buy volume")
    axes.barh(lows, sells, height=height, left=buys, align="edge", color=SELL, label="sell volume")
    peak = max((buy + sell for buy, sell in zip(buys, sells, strict=True)), default=0.0) or 1.0
    axes.set_xlim(0, peak / (1 - LABEL_COLUMN))
    axes.axhspan(float(profile.val), float(profile.vah), color=VALUE_AREA, alpha=0.12, label="value area")
    axes.axhline(float(profile.poc), color=POC, linewidth=2, label="POC")
    for edge in (profile.vah, profile.val):
        axes.axhline(float(edge), color=VALUE_AREA, linewidth=1, linestyle="--")
    for i, vacuum in enumerate(vacuums.vacuums if vacuums else []):
        axes.axhspan(float(vacuum.price_low), float(vacuum.price_high), xmax=1 - LABEL_COLUMN, facecolor="none",
                     edgecolor="#888", hatch="///", linewidth=0, label="liquidity vacuum" if i == 0 else None)
    axes.set_xlabel("volume (base asset)")
    axes.set_ylabel("price")
    axes.set_title(f"{profile.symbol} volume profile  {time_span(profile.start, profile.end)}\n"
                   f"{profile.trade_count} trades, row size {profile.row_size}", fontsize=10)
    figure.legend(loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    _price_labels(figure, axes, [(profile.poc, "POC", POC), (profile.vah, "VAH", VALUE_AREA),
                                 (profile.val, "VAL", VALUE_AREA)])
    return figure


def _price_labels(figure: Figure, axes: Axes, labels: list[tuple[str, str, str]]) -> None:
    """Each label right-aligned in the label column at its price, moved apart where two would overlap."""
    texts = [
        axes.annotate(f"{name} {price}", (0.995, float(price)), xycoords=("axes fraction", "data"), ha="right",
                      va="center", fontsize=8, color=colour,
                      bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": colour, "linewidth": 0.6})
        for price, name, colour in labels
    ]
    figure.draw_without_rendering()  # the layout settles, so pixels are where they will be drawn
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = axes.get_window_extent(renderer)
    to_pixels = axes.transData
    heights = [text.get_window_extent(renderer).height + LABEL_GAP_PX for text in texts]
    wanted = [to_pixels.transform((0.0, float(price)))[1] for price, _, _ in labels]
    for text, y in zip(texts, spread(wanted, heights, frame.y0, frame.y1), strict=True):
        text.xy = (0.995, to_pixels.inverted().transform((0.0, y))[1])


def spread(centres: list[float], heights: list[float], low: float, high: float) -> list[float]:
    """Centres moved as little as keeps boxes of these heights apart, in their order, and within low..high."""
    order = sorted(range(len(centres)), key=centres.__getitem__)
    placed = [centres[i] for i in order]
    sizes = [heights[i] for i in order]
    for k in range(len(placed)):  # up, clear of the one below
        floor = low + sizes[k] / 2 if k == 0 else placed[k - 1] + (sizes[k - 1] + sizes[k]) / 2
        placed[k] = max(placed[k], floor)
    for k in reversed(range(len(placed))):  # down, under the one above and the top
        ceiling = high - sizes[k] / 2 if k == len(placed) - 1 else placed[k + 1] - (sizes[k] + sizes[k + 1]) / 2
        placed[k] = min(placed[k], ceiling)
    result = [0.0] * len(centres)
    for k, i in enumerate(order):
        result[i] = placed[k]
    return result


def bars_figure(bars: BarsReply, flow: FlowReply) -> Figure:
    figure, (price_axes, volume_axes, delta_axes) = plt.subplots(
        3, 1, figsize=SIZE_INCHES, dpi=DPI, sharex=True, height_ratios=[3, 1, 1], layout="constrained"
    )
    interval_ms = flow.interval_ms  # both asked for the same interval; threshold bars have none
    step = interval_ms / DAY_MS
    lefts = _dates([bar.time for bar in bars.bars])
    price_span = max((float(bar.high) for bar in bars.bars), default=0.0) - min(
        (float(bar.low) for bar in bars.bars), default=0.0
    )
    for left, bar in zip(lefts, bars.bars, strict=True):
        opened, closed = float(bar.open), float(bar.close)
        colour = BUY if Decimal(bar.close) >= Decimal(bar.open) else SELL
        price_axes.vlines(left + step / 2, float(bar.low), float(bar.high), color=colour, linewidth=1)
        body = max(abs(closed - opened), price_span * 0.002 or 1e-9)
        price_axes.add_patch(Rectangle((left + step * 0.1, min(opened, closed)), step * 0.8, body, color=colour))
    buys = [float(bar.buy_volume) for bar in bars.bars]
    volume_axes.bar(lefts + step / 2, buys, width=step * 0.8, color=BUY, label="buy")
    volume_axes.bar(lefts + step / 2, [float(bar.sell_volume) for bar in bars.bars], width=step * 0.8, bottom=buys,
                    color=SELL, label="sell")
    delta_times = _dates([row.time for row in flow.rows]) + interval_ms / DAY_MS / 2
    delta_axes.plot(delta_times, [float(row.cumulative_delta) for row in flow.rows], color=DELTA)
    delta_axes.axhline(0, color="#888", linewidth=0.5)
    if not bars.bars:
        price_axes.text(0.5, 0.5, "no trades in this range", transform=price_axes.transAxes, ha="center")
    price_axes.set_ylabel("price")
    volume_axes.set_ylabel("volume")
    delta_axes.set_ylabel("cum. delta")
    price_axes.autoscale_view()
    price_axes.set_title(f"{bars.symbol} {bars.interval} bars  {time_span(bars.start, bars.end)}\n"
                         f"{len(bars.bars)} bars, {bars.trade_count} trades", fontsize=10)
    volume_axes.legend(loc="upper left", fontsize=7)
    _time_axis(delta_axes, *_traded_range([bar.time for bar in bars.bars], interval_ms, bars.start, bars.end))
    return figure


def footprint_figure(footprint: FootprintReply) -> Figure:
    figure, (cells_axes, delta_axes) = plt.subplots(
        2, 1, figsize=SIZE_INCHES, dpi=DPI, sharex=True, height_ratios=[5, 1], layout="constrained"
    )
    step = footprint.interval_ms / DAY_MS
    lefts = _dates([bar.time for bar in footprint.bars])
    row_size = float(footprint.row_size or 0)
    deltas = [float(row.buy_volume) - float(row.sell_volume) for bar in footprint.bars for row in bar.rows]
    reach = max((abs(delta) for delta in deltas), default=0.0) or 1.0
    norm = Normalize(-reach, reach)
    first, last = CELLS
    cells = [Rectangle((left + step * first, float(row.price_low)), step * (last - first), row_size)
             for left, bar in zip(lefts, footprint.bars, strict=True) for row in bar.rows]
    cells_axes.add_collection(PatchCollection(cells, facecolors=DELTA_COLOURS(norm(deltas)), edgecolors="#c8c8c8",
                                              linewidths=0.4, gid="cells"))
    for left, bar in zip(lefts, footprint.bars, strict=True):
        _footprint_marks(cells_axes, left, step, row_size, bar)
    bar_deltas = [float(bar.delta) for bar in footprint.bars]
    delta_axes.bar(lefts + step * (first + last) / 2, bar_deltas, width=step * (last - first),
                   color=[BUY if delta >= 0 else SELL for delta in bar_deltas])
    delta_axes.axhline(0, color="#888", linewidth=0.5)
    delta_axes.set_ylabel("bar delta")
    if footprint.bars:
        cells_axes.set_ylim(min(float(bar.rows[0].price_low) for bar in footprint.bars) - row_size / 2,
                            max(float(bar.rows[-1].price_high) for bar in footprint.bars) + row_size / 2)
    else:
        cells_axes.text(0.5, 0.5, "no trades in this range", transform=cells_axes.transAxes, ha="center")
    cells_axes.set_ylabel("price")
    title = (f"{footprint.symbol} footprint {footprint.interval}  {time_span(footprint.start, footprint.end)}\n"
             f"{len(footprint.bars)} bars, {footprint.trade_count} trades, row size {footprint.row_size or '-'}, "
             f"imbalance {footprint.imbalance:g}× diagonally, stacked ≥ {footprint.stacked} rows")
    cells_axes.set_title(title, fontsize=10)  # two lines now, so the layout the cells' text is fitted to holds
    figure.colorbar(plt.cm.ScalarMappable(norm, DELTA_COLOURS), ax=[cells_axes, delta_axes], shrink=0.5,
                    aspect=30, pad=0.01, label="row delta: buy − sell")
    figure.legend(handles=[
        Patch(facecolor="none", edgecolor=POC, linewidth=1.8, label="bar POC"),
        Line2D([], [], color=VALUE_AREA, linewidth=2, label="value area"),
        Patch(color=BUY, label="buy imbalance"),
        Patch(color=SELL, label="sell imbalance"),
        Line2D([], [], color="#555", linewidth=3, label="stacked (right of the bar)"),
    ], loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    times = [bar.time for bar in footprint.bars]
    _time_axis(delta_axes, *_traded_range(times, footprint.interval_ms, footprint.start, footprint.end))
    written = _cell_volumes(figure, cells_axes, lefts, step, footprint)
    cells_axes.set_title(f"{title}; {written}" if written else title, fontsize=10)
    return figure


def _footprint_marks(axes: Axes, left: float, step: float, row_size: float, bar: FootprintBarReply) -> None:
    """One bar's candle, value-area line, imbalance stripes, stacked runs and POC box."""
    first, last = CELLS
    opened, closed = float(bar.open), float(bar.close)
    colour = BUY if closed >= opened else SELL
    candle = left + step * CANDLE_AT
    axes.vlines(candle, float(bar.low), float(bar.high), color=colour, linewidth=1)
    body = max(abs(closed - opened), row_size * 0.1)
    axes.add_patch(Rectangle((candle - step * 0.025, min(opened, closed)), step * 0.05, body, color=colour))
    axes.vlines(left + step * VALUE_AREA_AT, float(bar.val), float(bar.vah), color=VALUE_AREA,
                linewidth=2)
    for row in bar.rows:
        low = float(row.price_low)
        if row.buy_imbalance:
            axes.add_patch(Rectangle((left + step * (last - STRIPE), low), step * STRIPE, row_size, color=BUY))
        if row.sell_imbalance:
            axes.add_patch(Rectangle((left + step * first, low), step * STRIPE, row_size, color=SELL))
    for run in bar.stacked_imbalances:
        axes.vlines(left + step * RUN_AT[run.side], float(run.price_low), float(run.price_high),
                    color=BUY_TEXT if run.side == "buy" else SELL_TEXT, linewidth=3)
    poc = next(row for row in bar.rows if Decimal(row.price_low) < Decimal(bar.poc) < Decimal(row.price_high))
    axes.add_patch(Rectangle((left + step * first, float(poc.price_low)), step * (last - first), row_size,
                             facecolor="none", edgecolor=POC, linewidth=1.8, zorder=3, gid="poc"))


def _cell_volumes(figure: Figure, axes: Axes, lefts: npt.NDArray[np.float64], step: float,
                  footprint: FootprintReply) -> str:
    """Each traded cell's `buy × sell`, at the largest size (down to PAIR_MIN_PT), then the most digits, at which the
    widest pair fits a cell; else its delta at the largest size that fits; else nothing. Says which, for the title."""
    cells = [(x, row) for x, bar in zip(lefts + step * sum(CELLS) / 2, footprint.bars, strict=True) for row in bar.rows
             if row.trade_count]
    if not cells:
        return ""
    largest = max(Decimal(volume) for _, row in cells for volume in (row.buy_volume, row.sell_volume))
    row_size = float(footprint.row_size or 0)
    width, height = _pixels(figure, axes, step * (CELLS[1] - CELLS[0] - 2 * STRIPE), row_size)
    cross = _text_width(figure, "×", CELL_FONT_PT[0]) / 2 + CELL_PAD_PX
    widest = {digits: "8" * len(_volume_text(str(largest), _volume_places(largest, digits)))
              for digits in VOLUME_DIGITS}
    pair = next(((size, digits) for size in CELL_FONT_PT if size >= PAIR_MIN_PT for digits in VOLUME_DIGITS
                 if _fits(2 * (_text_width(figure, widest[digits], size) + cross), _text_height(size), width, height)),
                None)
    if pair is not None:
        size, digits = pair
        places = _volume_places(largest, digits)
        to_data = axes.transData.inverted()
        for x, row in cells:
            y = float(row.price_low) + row_size / 2
            centre = axes.transData.transform((x, y))
            buy_at, sell_at = to_data.transform([centre - (cross, 0.0), centre + (cross, 0.0)])[:, 0]
            axes.text(x, y, "×", ha="center", va="center", fontsize=size, color="#777")
            for text, imbalanced, colour, align, at in (
                (_volume_text(row.buy_volume, places), row.buy_imbalance, BUY_TEXT, "right", buy_at),
                (_volume_text(row.sell_volume, places), row.sell_imbalance, SELL_TEXT, "left", sell_at),
            ):
                axes.text(at, y, text, ha=align, va="center", fontsize=size, fontweight="bold" if imbalanced else None,
                          color=colour if imbalanced else CELL_TEXT, gid="volume")
        return "cells: buy × sell"
    places = _volume_places(largest, VOLUME_DIGITS[-1])
    deltas = [_volume_text(str(Decimal(row.buy_volume) - Decimal(row.sell_volume)), places) for _, row in cells]
    sample = "-" + "8" * max(len(delta.lstrip("-")) for delta in deltas)
    fitting = [pt for pt in CELL_FONT_PT if _fits(_text_width(figure, sample, pt), _text_height(pt), width, height)]
    if not fitting:
        return "cells: delta by colour"
    for (x, row), delta in zip(cells, deltas, strict=True):
        axes.text(x, float(row.price_low) + row_size / 2, delta, ha="center", va="center", fontsize=fitting[0],
                  color=CELL_TEXT, gid="delta")
    return "cells: delta, buy − sell"


def _volume_places(largest: Decimal, digits: int) -> int:
    """Decimal places giving the largest volume `digits` significant digits (0 to 8)."""
    if largest <= 0:
        return 0
    return max(0, min(8, digits - 1 - largest.adjusted()))


def _volume_text(volume: str, places: int) -> str:
    value = Decimal(volume)
    return "0" if value == 0 else f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def market_profile_figure(profile: MarketProfileReply) -> Figure:
    figure, axes = plt.subplots(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    height = float(profile.row_size)
    lows = [float(row.price_low) for row in profile.rows]
    counts = [row.tpo_count for row in profile.rows]
    val, vah = Decimal(profile.val), Decimal(profile.vah)
    colours = [POC if row.price_low == profile.poc_low else
               VALUE_AREA if val <= Decimal(row.price_low) and Decimal(row.price_high) <= vah else TPO_ROW
               for row in profile.rows]
    axes.barh(lows, counts, height=height, align="edge", color=colours, alpha=0.35, linewidth=0)
    columns = max([*counts, MIN_TPO_COLUMNS])
    axes.set_xlim(-BALANCE_COLUMN, (columns + BALANCE_COLUMN) / (1 - LABEL_COLUMN) - BALANCE_COLUMN)
    if lows:
        axes.set_ylim(lows[0] - height / 2, lows[-1] + height * 1.5)
    if profile.initial_balance is not None:
        axes.vlines(-BALANCE_COLUMN * 0.6, float(profile.initial_balance.low), float(profile.initial_balance.high),
                    color=INITIAL_BALANCE, linewidth=4)
    for run in profile.single_prints:
        axes.vlines(-BALANCE_COLUMN * 0.2, float(run.price_low), float(run.price_high), color=SINGLE_PRINT, linewidth=4)
    axes.set_xlabel("TPOs: periods that traded at the price, lettered in time order")
    axes.set_ylabel("price")
    notes = [name for name, flag in (("poor high", profile.poor_high), ("poor low", profile.poor_low)) if flag]
    if profile.initial_balance is None:
        notes.append("no initial balance (A and B did not trade)")
    ends = profile.periods[:1] + profile.periods[1:][-1:]
    lettered = " … ".join(f"{period.letter} {iso_time(period.start)[11:16]}" for period in ends)
    axes.set_title(f"{profile.symbol} market profile (TPO) {profile.period}  {time_span(profile.start, profile.end)}\n"
                   f"{len(profile.periods)} periods traded ({lettered} UTC), {profile.trade_count} trades, "
                   f"row size {profile.row_size}{''.join('; ' + note for note in notes)}", fontsize=10)
    figure.legend(handles=[
        Patch(color=POC, alpha=0.35, label="POC row"),
        Patch(color=VALUE_AREA, alpha=0.35, label="value area"),
        Line2D([], [], color=SINGLE_PRINT, linewidth=4, label="single prints"),
        Line2D([], [], color=INITIAL_BALANCE, linewidth=4, label="initial balance (first two periods)"),
    ], loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    _price_labels(figure, axes, [(profile.poc, "POC", POC), (profile.vah, "VAH", VALUE_AREA),
                                 (profile.val, "VAL", VALUE_AREA)])
    _letters(figure, axes, profile)
    return figure


def _letters(figure: Figure, axes: Axes, profile: MarketProfileReply) -> None:
    """Each row's letters, one a TPO column, at the largest size at which a letter fits its cell; none if none does.
    Single prints' letters in their colour."""
    width, height = _pixels(figure, axes, 1.0, float(profile.row_size))
    fitting = [pt for pt in LETTER_FONT_PT
               if _fits(_text_width(figure, "W", pt, "monospace"), _text_height(pt), width, height)]
    if not fitting:
        return
    singles = [(Decimal(run.price_low), Decimal(run.price_high)) for run in profile.single_prints]
    for row in profile.rows:
        y = float(row.price_low) + float(profile.row_size) / 2
        single = any(low <= Decimal(row.price_low) < high for low, high in singles)
        for k, letter in enumerate(row.letters):
            axes.text(k + 0.5, y, letter, ha="center", va="center", fontsize=fitting[0], family="monospace",
                      color=SINGLE_PRINT if single else CELL_TEXT, fontweight="bold" if single else None, gid="letter")


def _fits(text_width: float, text_height: float, width: float, height: float) -> bool:
    """Whether text of this extent (pixels) fits a cell of this size with CELL_PAD_PX to spare at the sides."""
    return text_width + 2 * CELL_PAD_PX <= width and text_height <= height


def _pixels(figure: Figure, axes: Axes, width: float, height: float) -> tuple[float, float]:
    """A data-space extent in pixels, once the constrained layout has settled."""
    figure.draw_without_rendering()
    (x0, y0), (x1, y1) = axes.transData.transform([(0.0, 0.0), (width, height)])
    return abs(x1 - x0), abs(y1 - y0)


def _text_width(figure: Figure, text: str, points: float, family: str = "sans-serif") -> float:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    width, _, _ = renderer.get_text_width_height_descent(text, FontProperties(size=points, family=family), False)
    return float(width)


def _text_height(points: float) -> float:
    """A line of text's height in pixels: the font's size and a little leading."""
    return points * DPI / 72 * 1.15


def _traded_range(times: list[int], interval_ms: int, start: int, end: int) -> tuple[int, int]:
    """From the first bar's open to the last bar's close, so the bars fill the chart; `start`..`end` if none."""
    if not times:
        return start, end
    return min(times), max(times) + interval_ms


def _time_axis(axes: Axes, start_ms: int, end_ms: int) -> None:
    """UTC times, as few and as short as matplotlib's concise date labels make them; the date once, beside."""
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call] # matplotlib.dates is unannotated
    for frequency in (mdates.MINUTELY, mdates.SECONDLY):  # steps of 2 too: 12 minutes get 6 labels, not 3
        locator.intervald[frequency] = [1, 2, 5, 10, 15, 20, 30]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    start, end = _dates([start_ms, end_ms])
    margin = (end - start) * 0.01
    axes.set_xlim(start - margin, end + margin)
    axes.set_xlabel("time (UTC)")


def _dates(times_ms: list[int]) -> npt.NDArray[np.float64]:
    """Epoch ms as matplotlib date numbers."""
    days = mdates.date2num(np.array(times_ms, dtype="datetime64[ms]"))  # type: ignore[no-untyped-call]
    return np.asarray(days, dtype=np.float64)


def save(figure: Figure, path: Path) -> Path:
    """Write the figure as PNG or SVG, chosen by the extension, and close it."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"plot files end in {' or '.join(FORMATS)}, not {path.suffix or 'nothing'!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, format=path.suffix.lower().lstrip("."), dpi=DPI)
    finally:
        plt.close(figure)
    return path
