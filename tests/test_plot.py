"""Charts open as images of the expected size and can be read: no two tick labels overlap, no text leaves
the figure, the POC/VAH/VAL labels sit inside the axes clear of each other and of the vacuum hatching, the
bars fill the time axis, and text written in footprint cells and TPO rows overlaps nothing and stays in its
cell. `docs/`'s charts are drawn here from the simulator's trades, through ingest, persist and analytics and
the `tradetape plot` command's own code."""

from __future__ import annotations

import itertools
import os
import struct
import xml.etree.ElementTree as ElementTree
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from tests.api.test_methods import BASE
from tests.harness import replay_pipeline, wait_until_stored
from tradetape import plot
from tradetape.api.methods import bars, flow, footprint, liquidity_vacuums, market_profile, volume_profile
from tradetape.cli.main import build_parser
from tradetape.cli.plot import chart_figure
from tradetape.client import TapeClient
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" if os.environ.get("TRADETAPE_UPDATE_DOCS") == "1" else ROOT / "test-artifacts"
"""Where the charts go: `docs/` only when asked (`TRADETAPE_UPDATE_DOCS=1`), so a test run changes no tracked file."""
SLACK_PX = 0.5
"""Text extents are measured in float pixels: touching is not overlapping."""


def known_trades() -> HeldTrades:
    """Two volume shelves with a thin stretch between them, over an hour, both sides: the value area (70 %)
    lies in the lower shelf (80 %), so VAH borders the stretch."""
    rows = []
    for i in range(1200):
        price = (100 + (i % 7)) if i % 5 else (130 + (i // 5 % 5))
        rows.append(TradeRow(i + 1, price * 10**8, (1 + i % 4) * 10**7, i, i, BASE + i * 3000, i % 2 == 0))
    return HeldTrades.from_rows(rows)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _shown(texts: list[Text]) -> list[Text]:
    return [text for text in texts if text.get_visible() and text.get_text().strip()]


def _tick_labels(axis: Axis) -> list[Text]:
    """The labels of the ticks drawn: those in view (matplotlib keeps others, placed off the axes, undrawn)."""
    return [label for tick in axis._update_ticks() for label in (tick.label1, tick.label2)]  # noqa: SLF001


def _texts(figure: Figure) -> list[Text]:
    """Every text the figure draws: tick labels, offsets, axis labels, titles, annotations, legends."""
    texts = list(figure.texts)
    for legend in [*figure.legends, *(axes.get_legend() for axes in figure.axes)]:
        if legend is not None:
            texts += legend.get_texts()
    for axes in figure.axes:
        texts += [axes.title, axes._left_title, axes._right_title, *axes.texts]  # noqa: SLF001 - the other titles
        for axis in (axes.xaxis, axes.yaxis):
            texts += [axis.label, axis.get_offset_text(), *_tick_labels(axis)]
    return _shown(texts)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK_PX and min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK_PX


def unreadable(figure: Figure) -> list[str]:
    """What stops a reader: tick labels drawn over each other, text cut off by the figure's edge."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    problems = []
    frame = figure.bbox
    for text in _texts(figure):
        box = text.get_window_extent(renderer)
        if box.x0 < frame.x0 - SLACK_PX or box.y0 < frame.y0 - SLACK_PX or box.x1 > frame.x1 + SLACK_PX or (
            box.y1 > frame.y1 + SLACK_PX
        ):
            problems.append(f"{text.get_text()!r} leaves the figure: {box.bounds} in {frame.bounds}")
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            labels = _shown(_tick_labels(axis))
            for a, b in itertools.combinations(labels, 2):
                if _overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)):
                    problems.append(f"tick labels {a.get_text()!r} and {b.get_text()!r} overlap")
    return problems


def misplaced_price_labels(figure: Figure) -> list[str]:
    """POC, VAH and VAL labels outside their axes, over one another, a legend or a vacuum's hatching."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    axes: Axes = figure.axes[0]
    frame = axes.get_window_extent(renderer)
    labels = [text for text in _shown(list(axes.texts)) if text.get_text().split()[0] in ("POC", "VAH", "VAL")]
    assert sorted(text.get_text().split()[0] for text in labels) == ["POC", "VAH", "VAL"]
    hatched = [patch.get_window_extent(renderer) for patch in axes.patches if patch.get_hatch()]
    legends = [legend.get_window_extent(renderer) for legend in [*figure.legends, axes.get_legend()] if legend]
    problems = []
    for label in labels:
        box = label.get_window_extent(renderer)
        if not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1):
            problems.append(f"{label.get_text()!r} is not inside the axes: {box.bounds} in {frame.bounds}")
        problems += [f"{label.get_text()!r} is on a vacuum's hatching" for span in hatched if _overlap(box, span)]
        problems += [f"{label.get_text()!r} is under a legend" for legend in legends if _overlap(box, legend)]
    for a, b in itertools.combinations(labels, 2):
        if _overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)):
            problems.append(f"{a.get_text()!r} and {b.get_text()!r} overlap")
    return problems


def bars_fill(figure: Figure) -> float:
    """The share of the price axes' width that the candles span, first to last."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    price_axes = figure.axes[0]
    candles = [patch.get_window_extent(renderer) for patch in price_axes.patches if isinstance(patch, Rectangle)]
    assert candles, "the chart draws candles"
    frame = price_axes.get_window_extent(renderer)
    return (max(box.x1 for box in candles) - min(box.x0 for box in candles)) / frame.width


def crowded_cells(figure: Figure) -> list[str]:
    """Text in the first axes (cell volumes, deltas, letters, price labels) over other such text or outside the axes;
    a cell's text outside its own cell (the row its y names, the column its x stands in)."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    axes: Axes = figure.axes[0]
    frame = axes.get_window_extent(renderer)
    texts = _shown(list(axes.texts))
    boxes = np.array([text.get_window_extent(renderer).extents for text in texts]).reshape(-1, 4)
    problems = [f"{texts[i].get_text()!r} is not inside the axes" for i, (x0, y0, x1, y1) in enumerate(boxes)
                if x0 < frame.x0 or y0 < frame.y0 or x1 > frame.x1 or y1 > frame.y1]
    wide = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    tall = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    for i, j in zip(*np.nonzero(np.triu((wide > SLACK_PX) & (tall > SLACK_PX), 1)), strict=True):
        problems.append(f"{texts[i].get_text()!r} and {texts[j].get_text()!r} overlap")
    cells = [collection for collection in axes.collections if collection.get_gid() == "cells"]
    for collection in cells:
        assert isinstance(collection, PatchCollection)
        extents = [path.get_extents(axes.transData) for path in collection.get_paths()]
        for text, box in zip(texts, boxes, strict=True):
            if text.get_gid() in ("volume", "delta") and not any(
                cell.x0 - SLACK_PX <= box[0] and box[2] <= cell.x1 + SLACK_PX
                and cell.y0 - SLACK_PX <= box[1] and box[3] <= cell.y1 + SLACK_PX for cell in extents
            ):
                problems.append(f"{text.get_text()!r} is not inside a cell")
    return problems


def poc_boxes(figure: Figure) -> list[float]:
    """The lower price of each POC box drawn in the footprint, in time order."""
    boxes = [patch for patch in figure.axes[0].patches if patch.get_gid() == "poc"]
    return [box.get_y() for box in sorted(boxes, key=lambda box: box.get_x()) if isinstance(box, Rectangle)]


def drawn_letters(figure: Figure) -> dict[float, str]:
    """The TPO letters drawn, by row (the text's height), left to right."""
    rows: dict[float, str] = {}
    for (y, _), text in sorted((text.get_position()[::-1], text.get_text()) for text in figure.axes[0].texts
                               if text.get_gid() == "letter"):
        rows[y] = rows.get(y, "") + text
    return rows


@pytest.mark.slow
@pytest.mark.parametrize(
    ("interval", "written"), [("15m", "buy × sell"), ("5m", "delta, buy − sell"), ("1m", "delta by colour")]
)
def test_footprint_cells_hold_readable_text_or_colour_alone_and_every_bar_its_poc(interval: str, written: str) -> None:
    """4 bars of 35 rows leave room for `buy × sell`, 12 for each cell's delta, 60 for colour alone; each bar's POC
    is boxed at its row, every row is a cell, and no text overlaps another or leaves its cell."""
    source, end = known_trades(), BASE + 3_600_000
    request = footprint.FootprintRequest(start=BASE, end=end, interval=interval, row_size="1")
    reply = footprint.handle(source, "X", request, end)
    figure = plot.footprint_figure(reply)
    cells = [collection for collection in figure.axes[0].collections if collection.get_gid() == "cells"]
    volumes = [text.get_text() for text in figure.axes[0].texts if text.get_gid() == "volume"]
    assert unreadable(figure) == [] and crowded_cells(figure) == []
    assert [len(collection.get_paths()) for collection in cells] == [sum(len(bar.rows) for bar in reply.bars)]
    poc_rows = [next(row for row in bar.rows if Decimal(row.price_low) < Decimal(bar.poc) < Decimal(row.price_high))
                for bar in reply.bars]
    assert poc_boxes(figure) == [float(row.price_low) for row in poc_rows]
    assert figure.axes[0].get_title().endswith(f"cells: {written}")
    if written == "buy × sell":
        assert len(volumes) == 2 * sum(1 for bar in reply.bars for row in bar.rows if row.trade_count)
        bold = {text.get_text() for text in figure.axes[0].texts if text.get_gid() == "volume"
                and text.get_fontweight() == "bold"}
        assert bold, "the known set has imbalances, written in bold"


def test_a_footprint_of_no_trades_says_so() -> None:
    end = BASE + 3_600_000
    reply = footprint.handle(HeldTrades.empty(), "X", footprint.FootprintRequest(start=BASE, end=end), end)
    figure = plot.footprint_figure(reply)
    assert unreadable(figure) == []
    assert [text.get_text() for text in figure.axes[0].texts] == ["no trades in this range"]


@pytest.mark.slow
def test_market_profile_letters_every_row_as_the_reply_does(tmp_path: Path) -> None:
    source, end = known_trades(), BASE + 3_600_000
    request = market_profile.MarketProfileRequest(start=BASE, end=end, period="5m", rows=40)
    reply = market_profile.handle(source, "X", request, end)
    figure = plot.market_profile_figure(reply)
    assert unreadable(figure) == [] and crowded_cells(figure) == [] and misplaced_price_labels(figure) == []
    assert list(drawn_letters(figure).values()) == [row.letters for row in reply.rows if row.letters]
    assert png_size(plot.save(figure, tmp_path / "tpo.png")) == (1000, 800)


@pytest.mark.slow
def test_profile_and_bars_figures_as_png_and_svg(tmp_path: Path) -> None:
    source, end = known_trades(), BASE + 3_600_000
    span = {"start": BASE, "end": end, "row_size": "1", "min_trades": 100}
    profile = volume_profile.handle(source, "X", volume_profile.VolumeProfileRequest(**span), end)
    vacuums = liquidity_vacuums.handle(source, "X", liquidity_vacuums.LiquidityVacuumsRequest(**span), end)
    assert vacuums.vacuums, "the known set has a thin stretch between its shelves"
    figure = plot.volume_profile_figure(profile, vacuums)
    assert unreadable(figure) == [] and misplaced_price_labels(figure) == []
    png = plot.save(figure, tmp_path / "profile.png")
    assert png_size(png) == (1000, 800)

    window = {"start": BASE, "end": end, "interval": "5m"}
    figure = plot.bars_figure(
        bars.handle(source, "X", bars.BarsRequest(**window), end),
        flow.handle(source, "X", flow.FlowRequest(**window), end),
    )
    assert unreadable(figure) == []
    svg = plot.save(figure, tmp_path / "bars.svg")
    root = ElementTree.parse(svg).getroot()
    assert root.tag.endswith("svg") and root.attrib["width"].startswith("720")  # 10 in × 72 pt

    with pytest.raises(ValueError, match="png or .svg"):
        plot.save(plot.volume_profile_figure(profile), tmp_path / "profile.jpg")


def test_price_labels_of_a_one_row_profile_stay_apart_and_inside() -> None:
    """POC, VAH and VAL a few pixels apart (every trade at one price) are moved apart, not drawn over each other."""
    rows = [TradeRow(i + 1, 100 * 10**8, 10**7, i, i, BASE + i * 1000, i % 2 == 0) for i in range(200)]
    end = BASE + 3_600_000
    request = {"start": BASE, "end": end, "row_size": "1", "min_trades": 100}
    source = HeldTrades.from_rows(rows)
    profile = volume_profile.handle(source, "X", volume_profile.VolumeProfileRequest(**request), end)
    figure = plot.volume_profile_figure(profile)
    assert unreadable(figure) == [] and misplaced_price_labels(figure) == []
    assert plot.spread([10.0, 10.0, 11.0], [4.0, 4.0, 4.0], 0.0, 12.0) == [2.0, 6.0, 10.0]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_docs_charts_drawn_from_the_simulated_tape_can_be_read(nats_url: str, tmp_path: Path) -> None:
    """The bundled replay (12 minutes of BTCUSDT) through the pipeline, charted as docs/charts.md's commands do.

    `--last 24h --interval 5m` is docs/charts.md's bars example: four 5-minute bars in a day, which must fill
    the chart rather than sit in its last 1 %. The footprint and the market profile write text in their cells:
    it must overlap nothing and stay in its cell."""
    commands = {
        "profile.png": ["volume_profile", "BTCUSDT", "--last", "1h", "--rows", "40"],
        "bars.png": ["bars", "BTCUSDT", "--last", "1h", "--interval", "30s"],
        "bars-24h.png": ["bars", "BTCUSDT", "--last", "24h", "--interval", "5m"],
        "footprint.png": ["footprint", "BTCUSDT", "--last", "1h", "--interval", "5m"],
        "footprint-1m.png": ["footprint", "BTCUSDT", "--last", "1h", "--interval", "1m"],
        "tpo.png": ["market_profile", "BTCUSDT", "--last", "15m", "--period", "1m"],
    }
    shown = ("profile.png", "bars.png", "footprint.png", "tpo.png")  # docs/charts.md shows these
    async with replay_pipeline(nats_url, tmp_path / "data") as (_, running, client):
        await wait_until_stored(client, "BTCUSDT", 5000, running=running)
        async with await TapeClient.connect(url=nats_url) as tape:
            figures = {}
            for name, command in commands.items():
                args = build_parser().parse_args(["plot", *command, "-o", str(tmp_path / name)])
                figures[name] = (args, await chart_figure(tape, args))
            tpo = await tape.query("market_profile", "BTCUSDT", last="15m", period="1m", rows=40)

    problems = {name: unreadable(figure) for name, (_, figure) in figures.items()}
    problems["profile.png"] += misplaced_price_labels(figures["profile.png"][1])
    problems["tpo.png"] += misplaced_price_labels(figures["tpo.png"][1])
    for name in ("footprint.png", "footprint-1m.png", "tpo.png"):
        problems[name] += crowded_cells(figures[name][1])
    written = {name: figure.axes[0].get_title().rsplit("; ", 1)[-1] for name, (_, figure) in figures.items()
               if name.startswith("footprint")}
    letters = drawn_letters(figures["tpo.png"][1])
    fills = {name: round(bars_fill(figure), 3) for name, (_, figure) in figures.items() if name.startswith("bars")}
    assert problems == {name: [] for name in commands}
    assert all(fill > 0.9 for fill in fills.values()), fills
    assert written == {"footprint.png": "cells: buy × sell", "footprint-1m.png": "cells: delta, buy − sell"}
    counts = [row.tpo_count for row in tpo.rows if row.tpo_count]  # letters by the minute the test ran: counts
    assert [len(row) for row in letters.values()] == counts and len(counts) >= 20 and tpo.trade_count == 5000
    for name, (args, figure) in figures.items():
        assert png_size(plot.save(figure, args.output)) == (1000, 800)
        if name in shown:
            DOCS.mkdir(exist_ok=True)
            (DOCS / name).write_bytes(args.output.read_bytes())
