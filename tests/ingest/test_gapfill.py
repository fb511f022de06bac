"""The REST gap-fill client against a real HTTP server on loopback: paging, throttles, errors."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from services.ingest.gapfill import AggTradesClient, GapFillError

pytestmark = pytest.mark.timeout(30)

IDS = range(100, 2600)


class Exchange(http.server.BaseHTTPRequestHandler):
    """Serves ids 100..2599; the first call of each client is throttled once with 429."""

    throttled_once = False
    calls: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        type(self).calls.append(query)
        if query.get("symbol") != "BTCUSDT":
            self._send(400, {"code": -1121, "msg": "Invalid symbol."})
            return
        if not type(self).throttled_once:
            type(self).throttled_once = True
            self._send(429, {"code": -1003, "msg": "Too many requests."}, {"Retry-After": "1"})
            return
        start, limit = int(query["fromId"]), int(query.get("limit", 500))
        base = 1_767_225_600_000
        rows = [{"a": i, "p": "1.0", "q": "1", "f": i, "l": i, "T": base + i, "m": False} for i in IDS if i >= start]
        rows = rows[:limit]
        self._send(200, rows)

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rest_url() -> Iterator[str]:
    Exchange.throttled_once = False
    Exchange.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exchange)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_a_range_is_paged_and_trimmed_after_honouring_retry_after(rest_url: str) -> None:
    client = AggTradesClient(rest_url)
    started = time.monotonic()
    pages = [page async for page in client.trades_from("BTCUSDT", 150, 1320)]
    assert time.monotonic() - started >= 1.0, "Retry-After: 1 must be waited out"
    ids = [trade["a"] for page in pages for trade in page]
    assert ids == list(range(150, 1321))
    assert [len(page) for page in pages] == [1000, 171]
    assert [call["fromId"] for call in Exchange.calls] == ["150", "150", "1150"]
    assert Exchange.calls[-1]["limit"] == "171"


async def test_open_ended_fill_stops_at_the_newest_trade(rest_url: str) -> None:
    client = AggTradesClient(rest_url)
    pages = [page async for page in client.trades_from("BTCUSDT", 2000, None)]
    assert [t["a"] for page in pages for t in page] == list(range(2000, 2600))


async def test_a_client_error_is_a_specific_gap_fill_error(rest_url: str) -> None:
    client = AggTradesClient(rest_url)
    with pytest.raises(GapFillError, match="HTTP 400.*Invalid symbol"):
        await client.page("ETHUSDT", 1)
