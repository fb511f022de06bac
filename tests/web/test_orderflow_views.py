"""The page's footprint and market profile (TPO) views in headless Chromium, against the running system of
`tests/web/test_page.py` (the project's NATS users, the simulator replaying the bundled BTCUSDT file, ingest,
persist, analytics; the page as the query user). Each view must draw what its method answers over NATS for the
request the page made: every row, each bar's POC boxed in the POC colour, every row's TPO letters; and a row
size that asks for more rows than the server draws must be said in words, not drawn or thrown."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.harness import request, wait_until_stored
from tests.web import test_page
from tests.web.test_page import ARTIFACTS, TOTAL, running_system
from tradetape.services.exchange import BUNDLED_REPLAY, ExchangeConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" if os.environ.get("TRADETAPE_UPDATE_DOCS") == "1" else ARTIFACTS
"""Where the views' screenshots go: `docs/` only when asked (`TRADETAPE_UPDATE_DOCS=1`)."""
POC_BOX = (242, 201, 76, 255)
"""`--poc` in index.html: each footprint bar's POC box is stroked in it."""
POC_ROW = (242, 201, 76, 89)
"""`--poc-row`: the TPO POC row's bar, `--poc` at 35 %."""
chromium = test_page.chromium
"""The page tests' browser fixture (Debian's chromium, or a skip outside CI)."""
DRAWN = "Number(document.getElementById('orderflow-canvas').dataset.trades) === {total}"


async def _drawn(page: Page) -> dict[str, str]:
    """What the view recorded of its last drawing (the canvas's data attributes)."""
    found: dict[str, str] = await page.evaluate("({...document.getElementById('orderflow-canvas').dataset})")
    return found


async def _pixel(page: Page, x: float, y: float) -> tuple[int, int, int, int]:
    """The canvas's own colour and opacity at CSS pixel (x, y) (the canvas is transparent where nothing is drawn)."""
    script = """([x, y]) => {
        const canvas = document.getElementById('orderflow-canvas');
        const ratio = canvas.width / canvas.clientWidth;
        return [...canvas.getContext('2d').getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data];
    }"""
    red, green, blue, alpha = await page.evaluate(script, [x, y])
    return red, green, blue, alpha


def _near(colour: tuple[int, int, int, int], wanted: tuple[int, int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(colour, wanted, strict=True))


async def _nats_reply(client: Any, drawn: dict[str, str]) -> dict[str, Any]:
    """The page's own request for its last drawing, asked again over NATS."""
    asked = json.loads(drawn["request"])
    method, symbol = asked.pop("method"), asked.pop("symbol")
    reply, _ = await request(client, f"tape.query.{method}.{symbol}", asked)
    assert "error" not in reply, reply
    return dict(reply)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_footprint_and_tpo_views_draw_the_nats_replies_and_say_when_a_range_is_too_large(
    chromium: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As under `tradetape up --simulate`, the bundled file replayed at once: 12 minutes of trades up to now, so
    a quarter-hour is 1-minute bars and periods (the page cuts a range into at most 15)."""
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(BUNDLED_REPLAY,), rate=0)
    async with running_system(chromium, tmp_path, monkeypatch, config, ("BTCUSDT",)) as system:
        page, web, running, client = system.page, system.web, system.running, system.client
        await wait_until_stored(client, "BTCUSDT", TOTAL, running=running)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        await page.goto(f"{web.url}?symbol=BTCUSDT&range=900&view=footprint")
        await page.wait_for_function(DRAWN.format(total=TOTAL), timeout=30_000)
        footprint_drawn = await _drawn(page)
        footprint = await _nats_reply(client, footprint_drawn)
        boxes = json.loads(footprint_drawn["pocBoxes"])
        poc_edges = [await _pixel(page, x + width / 2, y) for x, y, width, _ in boxes]
        candles_hidden = await page.evaluate("document.getElementById('candles-view').hidden")
        footprint_shot = tmp_path / "web-footprint.png"
        await page.screenshot(path=str(footprint_shot))

        await page.select_option("#view", "tpo")  # the switch alone: no reload, no "show"
        await page.wait_for_function(f"{DRAWN.format(total=TOTAL)} && document.getElementById('orderflow-canvas')"
                                     ".dataset.letters?.length > 2")
        tpo_drawn = await _drawn(page)
        tpo = await _nats_reply(client, tpo_drawn)
        poc_row = await _pixel(page, float(tpo_drawn["pocLeft"]) + 1, float(tpo_drawn["pocY"]))
        linked = await page.evaluate("location.search")
        tpo_shot = tmp_path / "web-tpo.png"
        await page.screenshot(path=str(tpo_shot))

        refused = {}
        for view in ("footprint", "tpo"):
            await page.goto(f"{web.url}?symbol=BTCUSDT&range=3600&view={view}&row_size=0.01")
            await page.wait_for_function("!document.getElementById('notice').hidden", timeout=30_000)
            refused[view] = (await page.text_content("#notice") or "", await _drawn(page))

    rows = [row for bar in footprint["bars"] for row in bar["rows"]]
    assert footprint["trade_count"] == TOTAL and len(footprint["bars"]) >= 12 and candles_hidden
    assert footprint["interval"] == "1m" and json.loads(tpo_drawn["request"])["period"] == "1m"
    assert footprint_drawn["bars"] == str(len(footprint["bars"])) and footprint_drawn["rows"] == str(len(rows))
    assert json.loads(footprint_drawn["pocs"]) == [bar["poc"] for bar in footprint["bars"]]
    assert footprint_drawn["cellText"] in ("buy × sell", "delta"), footprint_drawn
    assert poc_edges and all(_near(colour, POC_BOX) for colour in poc_edges), poc_edges

    assert json.loads(tpo_drawn["letters"]) == [row["letters"] for row in tpo["rows"] if row["letters"]]
    assert len(tpo["periods"]) >= 12
    assert tpo_drawn["poc"] == tpo["poc"] and tpo["trade_count"] == TOTAL
    assert _near(poc_row, POC_ROW), poc_row
    assert "view=tpo" in linked

    for view, (notice, drawn) in refused.items():
        assert "too large to draw" in notice and "row size of 0.01" in notice, (view, notice)
        assert drawn.get("refused") in ("range_too_large", "invalid_request"), (view, drawn)
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    for shot in (footprint_shot, tpo_shot):
        assert shot.stat().st_size > 10_000
        shutil.copy(shot, DOCS / shot.name)
