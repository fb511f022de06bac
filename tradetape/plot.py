"""Charts of query replies, as traders read them: PNG or SVG by the file's extension.

- `volume_profile_figure`: horizontal volume bars per price row split into buy and sell,
  the POC marked, the value area shaded, liquidity vacuums hatched; the POC, VAH and VAL
  prices labelled in a column of their own at the right, clear of bars and hatching.
- `bars_figure`: candles, volume beneath them, and the cumulative delta of the flow, over
  the time the bars cover (not the range asked: a day asked of 12 minutes of trades would
  squeeze them into the last 1 %), on a UTC time axis labelled by matplotlib's date
  locator and concise formatter.

Both use constrained layout, so no label leaves the 1000 × 800 figure (`tests/test_plot.py`
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
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from tradetape.api.methods.bars import BarsReply  # noqa: E402
from tradetape.api.methods.flow import FlowReply  # noqa: E402
from tradetape.api.methods.liquidity_vacuums import LiquidityVacuumsReply  # noqa: E402
from tradetape.api.methods.volume_profile import VolumeProfileReply  # noqa: E402
from tradetape.api.times import time_span  # noqa: E402

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
    _time_axis(delta_axes, *_traded_range(bars, interval_ms))
    return figure


def _traded_range(bars: BarsReply, interval_ms: int) -> tuple[int, int]:
    """From the first bar's open to the last bar's close, so the bars fill the chart; the range asked if none."""
    if not bars.bars:
        return bars.start, bars.end
    return min(bar.time for bar in bars.bars), max(bar.time for bar in bars.bars) + interval_ms


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
