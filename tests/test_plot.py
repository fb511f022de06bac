"""Charts made from a known trade set open as images of the expected size; the SVG parses."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.api.test_methods import BASE, ListSource
from tradetape import plot
from tradetape.api.methods import bars, flow, liquidity_vacuums, volume_profile
from tradetape.domain.trade import TradeRow


def known_trades() -> ListSource:
    """Two volume shelves with a thin stretch between them, over an hour, both sides."""
    rows = []
    for i in range(1200):
        price = (100 + (i % 7)) if i % 3 else (130 + (i % 5))
        rows.append(TradeRow(i + 1, price * 10**8, (1 + i % 4) * 10**7, i, i, BASE + i * 3000, i % 2 == 0))
    return ListSource(rows)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_profile_and_bars_figures_as_png_and_svg(tmp_path: Path) -> None:
    source, end = known_trades(), BASE + 3_600_000
    span = {"start": BASE, "end": end, "row_size": "1", "min_trades": 100}
    profile = volume_profile.handle(source, "X", volume_profile.VolumeProfileRequest(**span), end)
    vacuums = liquidity_vacuums.handle(source, "X", liquidity_vacuums.LiquidityVacuumsRequest(**span), end)
    assert vacuums.vacuums, "the known set has a thin stretch between its shelves"
    png = plot.save(plot.volume_profile_figure(profile, vacuums), tmp_path / "profile.png")
    assert png_size(png) == (1000, 800)

    window = {"start": BASE, "end": end, "interval": "5m"}
    figure = plot.bars_figure(
        bars.handle(source, "X", bars.BarsRequest(**window), end),
        flow.handle(source, "X", flow.FlowRequest(**window), end),
    )
    svg = plot.save(figure, tmp_path / "bars.svg")
    root = ElementTree.parse(svg).getroot()
    assert root.tag.endswith("svg") and root.attrib["width"].startswith("720")  # 10 in × 72 pt

    with pytest.raises(ValueError, match="png or .svg"):
        plot.save(plot.volume_profile_figure(profile), tmp_path / "profile.jpg")
