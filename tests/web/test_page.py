"""The web page in headless Chromium against a running system: real nats-server with its WebSocket
listener and the project's users (`deploy/nats/auth.conf`), the simulator, ingest, persist and
analytics. The page connects as the query-only user, joins while the simulator trades, follows the
live updates, and must show the POC the NATS `volume_profile` reply names; opened without a symbol, it must
choose one that trades, label its candles' axes and explain a symbol no analytics serves."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import SecretStr

from tests.harness import Running, request, run_services, wait_for, wait_until_stored
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from tradetape.testing import simulator_settings
from tradetape.web.server import WebServer

pytestmark = pytest.mark.timeout(120)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" if os.environ.get("TRADETAPE_UPDATE_DOCS") == "1" else ARTIFACTS
"""Where the first-load screenshot goes: `docs/` only when asked (`TRADETAPE_UPDATE_DOCS=1`)."""
PICTURED_MS = 40_000 if DOCS != ARTIFACTS else 5_000
"""ETHUSDT's trades before the first-load picture: 40 s of candles for README's picture; 5 s (a few 1 s candles, so
time and price labels) otherwise, as the page's 10 s window needs BTCUSDT quiet for 11 s anyway."""
AUTH_CONF = ROOT / "deploy" / "nats" / "auth.conf"
ROLES = ("INGEST", "PERSIST", "ANALYTICS", "QUERY", "IMPORTER", "MONITOR", "ADMIN")
TOTAL = 5000


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs the Debian chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    return CHROMIUM


@dataclass
class System:
    """NATS with the project's users, the simulator, the services, the web server and a browser page."""

    page: Page
    web: WebServer
    running: Running
    client: nats.NATS


@contextlib.asynccontextmanager
async def running_system(
    chromium: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: ExchangeConfig,
    page_symbols: tuple[str, ...],
) -> AsyncIterator[System]:
    """The services trade `config.symbols`; the web server lists `page_symbols` (its own TRADETAPE_SYMBOLS)."""
    # Starting with a letter, as deploy/make-env makes them: nats-server reads a `$VARIABLE`'s value as a config token,
    # and 16 hex digits that are all digits (one password in ~1,800) are an integer it then refuses as a password.
    passwords = {role: "p" + secrets.token_hex(16) for role in ROLES}
    for role, password in passwords.items():  # nats-server reads them from its environment
        monkeypatch.setenv(f"TRADETAPE_{role}_PASSWORD", password)
    async with contextlib.AsyncExitStack() as stack:
        nats_server = EmbeddedNatsServer(tmp_path / "nats", config_file=AUTH_CONF, websocket_port=0)
        server = await stack.enter_async_context(nats_server)
        assert server.websocket_url is not None
        admin_url = server.url.replace("nats://", f"nats://admin:{passwords['ADMIN']}@")
        # The browser first: it is the slow part to start, and the page must join while trades arrive.
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        stack.push_async_callback(browser.close)
        page = await browser.new_page(viewport={"width": 1400, "height": 720})
        exchange = await stack.enter_async_context(Exchange(config))
        settings = simulator_settings(exchange, admin_url, tmp_path / "data", *config.symbols)
        page_settings = settings.model_copy(
            update={
                "symbols": page_symbols,
                "web_nats_url": server.websocket_url,
                "web_nats_user": "query",
                "web_nats_password": SecretStr(passwords["QUERY"]),
            }
        )
        web = stack.enter_context(WebServer(page_settings, port=0))
        running = await stack.enter_async_context(run_services(settings, "persist", "analytics", "ingest"))
        client = await nats.connect(admin_url)
        stack.push_async_callback(client.close)
        yield System(page, web, running, client)


@pytest.mark.slow
async def test_page_shows_the_poc_of_the_nats_reply_and_follows_live_updates(
    chromium: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 50x real time: the file's 12 minutes of trades arrive over about 15 seconds.
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(BUNDLED_REPLAY,), rate=0, speed=50)
    async with running_system(chromium, tmp_path, monkeypatch, config, ("BTCUSDT",)) as system:
        page, web, running, client = system.page, system.web, system.running, system.client
        await wait_for(lambda: _stored_at_least(client, 300), 60, interval=0.05, running=running)

        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{web.url}?symbol=BTCUSDT&range=3600&row_size=10")
        await page.wait_for_function("document.getElementById('poc').textContent !== '–'")
        joined_with = int(await page.get_attribute("#stats", "data-trades") or 0)
        await wait_until_stored(client, "BTCUSDT", TOTAL, running=running)
        await page.wait_for_function(f"document.getElementById('stats').dataset.trades === '{TOTAL}'", timeout=20_000)
        shown = [await page.text_content(f"#{field}") for field in ("poc", "vah", "val")]
        start = int(await page.get_attribute("#stats", "data-start") or 0)
        row_size = await page.get_attribute("#stats", "data-row-size")
        updates = int(await page.text_content("#updates") or 0)
        await page.wait_for_timeout(300)  # let the bars canvas catch up for the picture
        shot = tmp_path / "web.png"
        await page.screenshot(path=str(shot))

        body = {"start": start, "end": int(time.time() * 1000) + 120_000, "row_size": row_size, "min_trades": 0}
        reply, _ = await request(client, "tape.query.volume_profile.BTCUSDT", body)

        # a link naming no listed symbol (5,000 letters: past the control line as a subject) shows a listed one
        await page.goto(f"{web.url}?symbol={'A' * 5000}&range=3600&row_size=10")
        await page.wait_for_function(f"document.getElementById('stats').dataset.trades === '{TOTAL}'", timeout=20_000)
        linked_symbol = await page.input_value("#symbol")

    assert errors == [] and linked_symbol == "BTCUSDT"
    assert joined_with < TOTAL, "the page joined while trades were still arriving"
    assert updates > 0, "the page applied live updates, not only its snapshot"
    assert reply["trade_count"] == TOTAL
    assert shown == [reply["poc"], reply["vah"], reply["val"]]
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "web.png")


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_first_load_opens_on_a_trading_symbol_with_labelled_axes_and_explains_an_unserved_one(
    chromium: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `tradetape up --simulate` runs it: the bundled BTCUSDT file replayed at once (its last trade at the
    start), ETHUSDT generated on. The page, opened without a symbol, must choose ETHUSDT and follow it; its
    candles get 5-8 round price labels, time labels and their interval named. SOLUSDT, which the web server
    lists but no analytics serves, is explained in words with the served list."""
    config = ExchangeConfig(symbols=("BTCUSDT", "ETHUSDT"), replay=(BUNDLED_REPLAY,), rate=20)
    listed = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    async with running_system(chromium, tmp_path, monkeypatch, config, listed) as system:
        page, web, running, client = system.page, system.web, system.running, system.client
        btc = await wait_until_stored(client, "BTCUSDT", TOTAL, running=running)
        await wait_for(lambda: _stored_at_least(client, 200, "ETHUSDT"), 60, running=running)
        eth, _ = await request(client, "tape.query.coverage.ETHUSDT", {})
        quiet_since = btc["last_time"] + 10_000 + 1_000  # no BTCUSDT trade in the page's 10 s window (and a margin)
        pictured = eth["first_time"] + PICTURED_MS  # ETHUSDT's candles fill the picture (README's, when asked)
        await asyncio.sleep(max(0.0, max(quiet_since, pictured) / 1000 - time.time()))

        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(web.url)
        await page.wait_for_function("document.getElementById('poc').textContent !== '–'", timeout=30_000)
        with contextlib.suppress(PlaywrightTimeoutError):  # a page that follows nothing live: seen below
            await page.wait_for_function("Number(document.getElementById('updates').textContent) > 2", timeout=30_000)
        chosen = await page.input_value("#symbol")
        updates = int(await page.text_content("#updates") or 0)
        interval = await page.evaluate("document.getElementById('candle-interval')?.textContent ?? ''")
        labels = await page.evaluate("({...document.getElementById('bars-canvas').dataset})")
        shot = tmp_path / "web.png"
        await page.screenshot(path=str(shot))

        await page.goto(f"{web.url}?symbol=SOLUSDT")
        explained = "!(document.getElementById('notice')?.hidden ?? true)"
        await page.wait_for_function(f"{explained} || /error/.test(document.getElementById('status').textContent)")
        notice = await page.evaluate("document.getElementById('notice')?.textContent ?? ''")
        status = await page.text_content("#status") or ""
        option = await page.text_content("#symbol option[value='SOLUSDT']") or ""
        unserved_shot = tmp_path / "web-unserved.png"
        await page.screenshot(path=str(unserved_shot))

    prices = json.loads(labels.get("priceLabels", "[]"))
    times = json.loads(labels.get("timeLabels", "[]"))
    seen = {
        "opens on": chosen,  # the symbol still trading, not the finished replay
        "follows live updates": updates > 2,
        "names its candle interval": bool(re.fullmatch(r"\d+ (s|min)", interval)),
        "5 to 8 round price labels": 5 <= len(prices) <= 8 and _evenly_round([float(text) for text in prices]),
        "time labels under the candles": len(times) >= 3
        and times == sorted(times)
        and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", text) for text in times),
        "says SOLUSDT is not served": "SOLUSDT is not served" in notice and status == "SOLUSDT: not served",
        "names the served symbols": "Served: BTCUSDT, ETHUSDT." in notice and "not served" in option,
        "no bare status code": "503" not in notice + status,
    }
    assert seen == {"opens on": "ETHUSDT"} | {finding: True for finding in list(seen)[1:]}, (
        interval, prices, times, notice, status
    )
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "web-first-load.png")
    shutil.copy(unserved_shot, ARTIFACTS / "web-unserved.png")
    DOCS.mkdir(exist_ok=True)
    shutil.copy(shot, DOCS / "web.png")  # README shows what a newcomer meets


def _evenly_round(prices: list[float]) -> bool:
    steps = {round(b - a, 10) for a, b in itertools.pairwise(prices)}
    return len(steps) == 1 and _round(steps.pop())


def _round(step: float) -> bool:
    """1, 2, 2.5 or 5 times a power of ten."""
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, nice) for nice in (1, 2, 2.5, 5))


async def _stored_at_least(client: nats.NATS, count: int, symbol: str = "BTCUSDT") -> int:
    reply, _ = await request(client, f"tape.query.coverage.{symbol}", {})
    stored: int = reply.get("trade_count", 0)
    return stored if stored >= count else 0
