"""The web page in headless Chromium against a running system: real nats-server with its WebSocket
listener and the project's users (`deploy/nats/auth.conf`), the simulator, ingest, persist and
analytics. The page connects as the query-only user, joins while the simulator trades, follows the
live updates, and must show the POC the NATS `volume_profile` reply names."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path

import nats
import pytest
from playwright.async_api import async_playwright
from pydantic import SecretStr

from services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from tests.harness import request, run_services, settings_for, wait_for, wait_until_stored
from tradetape.runtime.nats_server import EmbeddedNatsServer
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


async def test_page_shows_the_poc_of_the_nats_reply_and_follows_live_updates(
    chromium: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = {role: secrets.token_hex(8) for role in ROLES}
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
        # 50x real time: the file's 12 minutes of trades arrive over about 15 seconds.
        config = ExchangeConfig(symbols=("BTCUSDT",), replay=(BUNDLED_REPLAY,), rate=0, speed=50)
        exchange = await stack.enter_async_context(Exchange(config))
        settings = settings_for(admin_url, tmp_path / "data", exchange, "BTCUSDT").model_copy(
            update={
                "web_nats_url": server.websocket_url,
                "web_nats_user": "query",
                "web_nats_password": SecretStr(passwords["QUERY"]),
            }
        )
        web = stack.enter_context(WebServer(settings, port=0))
        running = await stack.enter_async_context(run_services(settings, "persist", "analytics", "ingest"))
        client = await nats.connect(admin_url)
        stack.push_async_callback(client.close)
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


async def _stored_at_least(client: nats.NATS, count: int) -> int:
    reply, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
    stored: int = reply.get("trade_count", 0)
    return stored if stored >= count else 0
