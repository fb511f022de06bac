"""Charts of query replies, as traders read them: PNG or SVG by the file's extension.

- `volume_profile_figure`: horizontal volume bars per price row split into buy and sell,
  the POC marked, the value area shaded, liquidity vacuums hatched.
- `bars_figure`: candles, volume beneath them, and the cumulative delta of the flow.

They take the reply models the client returns, so `tradetape plot` and Python code draw
the same figure. matplotlib runs headless (Agg); nothing here opens a window.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from tradetape.api.methods.bars import BarsReply  # noqa: E402
from tradetape.api.methods.flow import FlowReply  # noqa: E402
from tradetape.api.methods.liquidity_vacuums import LiquidityVacuumsReply  # noqa: E402
from tradetape.api.methods.volume_profile import VolumeProfileReply  # noqa: E402
from tradetape.api.render import iso_time, time_span  # noqa: E402

SIZE_INCHES = (10.0, 8.0)
DPI = 100
"""So a PNG is 1000 × 800 pixels."""
FORMATS = (".png", ".svg")
BUY, SELL = "#2e9d5b", "#d0473e"


def volume_profile_figure(profile: VolumeProfileReply, vacuums: LiquidityVacuumsReply | None = None) -> Figure:
    figure, axes = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    lows = [float(row.price_low) for row in profile.rows]
    height = float(profile.row_size)
    buys = [float(row.buy_volume) for row in profile.rows]
    sells = [float(row.sell_volume) for row in profile.rows]
    axes.barh(lows, buys, height=height, align="edge", color=BUY, label="buy volume")
    axes.barh(lows, sells, height=height, left=buys, align="edge", color=SELL, label="sell volume")
    axes.axhspan(float(profile.val), float(profile.vah), color="#3a7bd5", alpha=0.12, label="value area")
    axes.axhline(float(profile.poc), color="#e0a800", linewidth=2, label=f"POC {profile.poc}")
    for edge, name in ((profile.vah, "VAH"), (profile.val, "VAL")):
        axes.axhline(float(edge), color="#3a7bd5", linewidth=1, linestyle="--")
        axes.annotate(f"{name} {edge}", (1.0, float(edge)), xycoords=("axes fraction", "data"), ha="right",
                      va="bottom", fontsize=8, color="#3a7bd5")
    for i, vacuum in enumerate(vacuums.vacuums if vacuums else []):
        axes.axhspan(float(vacuum.price_low), float(vacuum.price_high), facecolor="none", edgecolor="#888",
                     hatch="///", linewidth=0, label="liquidity vacuum" if i == 0 else None)
    axes.set_xlabel("volume (base asset)")
    axes.set_ylabel("price")
    axes.set_title(f"{profile.symbol} volume profile  {time_span(profile.start, profile.end)}\n"
                   f"{profile.trade_count} trades, row size {profile.row_size}", fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def bars_figure(bars: BarsReply, flow: FlowReply) -> Figure:
    figure, (price_axes, volume_axes, delta_axes) = plt.subplots(
        3, 1, figsize=SIZE_INCHES, dpi=DPI, sharex=True, gridspec_kw={"height_ratios": [3, 1, 1]}
    )
    width = bars.interval_ms * 0.8
    for bar in bars.bars:
        low, high = float(bar.low), float(bar.high)
        opened, closed = float(bar.open), float(bar.close)
        colour = BUY if Decimal(bar.close) >= Decimal(bar.open) else SELL
        price_axes.vlines(bar.time + bars.interval_ms / 2, low, high, color=colour, linewidth=1)
        body = max(abs(closed - opened), (high - low) * 0.002 or 1e-9)
        price_axes.add_patch(Rectangle((bar.time + bars.interval_ms * 0.1, min(opened, closed)), width, body,
                                       color=colour))
    times = [bar.time + bars.interval_ms / 2 for bar in bars.bars]
    volume_axes.bar(times, [float(bar.buy_volume) for bar in bars.bars], width=width, color=BUY, label="buy")
    volume_axes.bar(times, [float(bar.sell_volume) for bar in bars.bars], width=width,
                    bottom=[float(bar.buy_volume) for bar in bars.bars], color=SELL, label="sell")
    delta_times = [row.time + flow.interval_ms / 2 for row in flow.rows]
    delta_axes.plot(delta_times, [float(row.cumulative_delta) for row in flow.rows], color="#3a7bd5")
    delta_axes.axhline(0, color="#888", linewidth=0.5)
    price_axes.set_ylabel("price")
    volume_axes.set_ylabel("volume")
    delta_axes.set_ylabel("cum. delta")
    price_axes.autoscale_view()
    price_axes.set_title(f"{bars.symbol} {bars.interval} bars  {time_span(bars.start, bars.end)}", fontsize=10)
    ticks = delta_axes.get_xticks()
    delta_axes.set_xticks(ticks, [iso_time(int(t))[5:16] for t in ticks], fontsize=7)
    delta_axes.set_xlim(bars.start, bars.end)
    volume_axes.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    return figure


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
