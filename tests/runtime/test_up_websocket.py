"""`tradetape up`'s WebSocket listener lets in only the page: its origin, with the query user `tradetape web` hands it.

One real `tradetape up --simulate` (with `TRADETAPE_WEB_PORT` on a port of this test's),
the page's config from `tradetape web`'s own HTTP server on that port, and a raw NATS
client over WebSocket sending what any page in a browser could send.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nats
import pytest
from playwright.async_api import async_playwright
from websockets.exceptions import InvalidStatus

from tests.nats_ws import NatsWebSocket
from tests.runtime.test_up import REPLAYED, Up, clean_env
from tests.web.test_page import CHROMIUM, CHROMIUM_ARGS, chromium  # noqa: F401 - the fixture, for usefixtures
from tradetape.ground.inboxes import ROLE_INBOX_PREFIXES
from tradetape.settings import Settings
from tradetape.web.server import WebServer

pytestmark = pytest.mark.timeout(120)

EVIL = "http://evil.example"
QUERY_INBOX = f"{ROLE_INBOX_PREFIXES['query']}.test"
"""An inbox under the query role's prefix."""


@dataclass(frozen=True)
class Page:
    """What the page served by `tradetape web` knows: its origin and its config.json."""

    origin: str
    servers: str
    user: str | None
    password: str | None


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with socket.socket() as probe:  # the page's port: `up` only needs to know it
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    running = Up(tmp_path_factory.mktemp("up"), {**clean_env(), "TRADETAPE_WEB_PORT": str(web_port)})
    try:
        running.wait_for_replay()
        yield running
    finally:
        running.kill_all()


@pytest.fixture(scope="module")
def page(up: Up) -> Iterator[Page]:
    settings = Settings(data_dir=up.cwd / "data", web_port=int(up.env["TRADETAPE_WEB_PORT"]))
    with WebServer(settings) as web, urllib.request.urlopen(web.url + "config.json", timeout=10) as response:
        config = json.loads(response.read())
        yield Page(web.url.rstrip("/"), config["servers"], config["user"], config["password"])


@pytest.fixture
async def internal(up: Up) -> AsyncIterator[nats.NATS]:
    """The services' own connection, through the URL `up` recorded for the local commands."""
    client = await nats.connect(up.nats_url, connect_timeout=10)
    yield client
    await client.close()


@pytest.mark.slow
async def test_a_page_of_another_origin_is_refused(page: Page) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with NatsWebSocket.open(page.servers, EVIL):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.slow
async def test_no_credentials_or_a_wrong_password_are_refused(page: Page) -> None:
    assert page.user == "query" and page.password
    for user, password in ((None, None), ("query", page.password[::-1]), ("nobody", page.password)):
        async with NatsWebSocket.open(page.servers, page.origin) as ws:
            answer = await ws.connect(user, password)
        assert answer.error == "'Authorization Violation'", (user, answer)


async def test_the_internal_user_is_not_for_websocket_clients(up: Up, page: Page) -> None:
    """Even with its password, which only the local commands read, a WebSocket client is never the services' user."""
    userinfo = urlsplit(up.nats_url)
    assert userinfo.username and userinfo.password
    async with NatsWebSocket.open(page.servers, page.origin) as ws:
        answer = await ws.connect(unquote(userinfo.username), unquote(userinfo.password))
    assert answer.error == "'Authorization Violation'", answer


async def test_the_page_queries_but_cannot_delete_the_stream_or_publish_trades(page: Page, internal: nats.NATS) -> None:
    js = internal.jsm()
    before = await js.stream_info("TAPE_TRADES")
    async with NatsWebSocket.open(page.servers, page.origin) as ws:
        assert (await ws.connect(page.user, page.password)).kind == "PONG"
        coverage = await ws.request("tape.query.coverage.BTCUSDT", {}, QUERY_INBOX)
        assert coverage["trade_count"] == REPLAYED

        deleted = await ws.publish("$JS.API.STREAM.DELETE.TAPE_TRADES", b"", reply=QUERY_INBOX)
        assert deleted.error == "'Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.TAPE_TRADES\"'"
        forged = await ws.publish("tape.trades.binance.BTCUSDT", b'{"forged": true}')
        assert forged.error == "'Permissions Violation for Publish to \"tape.trades.binance.BTCUSDT\"'"
        _, tapped = await ws.subscribe("tape.trades.>")
        assert tapped.error == "'Permissions Violation for Subscription to \"tape.trades.>\"'"
        assert (await ws.request("tape.query.coverage.BTCUSDT", {}, QUERY_INBOX + "2"))["trade_count"] == REPLAYED
    after = await js.stream_info("TAPE_TRADES")
    assert (after.created, after.state.first_seq) == (before.created, before.state.first_seq)
    assert after.state.messages >= before.state.messages >= REPLAYED


def test_the_credential_is_the_data_dirs_and_only_its_owners(up: Up, page: Page) -> None:
    settings = Settings(data_dir=up.cwd / "data")
    for private in (settings.nats_url_file, settings.nats_ws_user_file):
        assert private.stat().st_mode & 0o777 == 0o600, private
    assert page.password is not None and page.password not in Path(up.log_path).read_text()


@pytest.mark.slow
@pytest.mark.usefixtures("chromium")
async def test_in_a_browser_the_page_follows_the_tape_and_a_copy_elsewhere_is_refused(up: Up, page: Page) -> None:
    """Chromium names the page's origin itself: `tradetape web`'s page works, the same page from another port not."""
    settings = Settings(data_dir=up.cwd / "data")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            await tab.goto(f"{page.origin}/?symbol=BTCUSDT&range=3600")
            trades = f"document.getElementById('stats').dataset.trades === '{REPLAYED}'"
            await tab.wait_for_function(trades, timeout=30_000)
            assert errors == []
            with WebServer(settings, port=0) as elsewhere:
                await tab.goto(elsewhere.url + "?symbol=BTCUSDT&range=3600")
                await tab.wait_for_function("document.getElementById('status').textContent === 'not connected'")
                assert await tab.get_attribute("#stats", "data-trades") in (None, "")
        finally:
            await browser.close()
