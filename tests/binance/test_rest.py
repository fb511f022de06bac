"""The REST client: validated pages, the weight budget, and the simulator's REST faults over real HTTP."""

from __future__ import annotations

import logging
import time

import orjson
import pytest

from tradetape.binance.rest import GapFillError, RestClient, WeightBudget, parse_page
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig, FaultConfig

pytestmark = pytest.mark.timeout(30)

FIRST_ID = 3800397495
ROW = {"a": 7, "p": "1.5", "q": "2", "f": 1, "l": 1, "T": 1_767_225_600_003, "m": False, "M": True}


def test_a_valid_page_keeps_the_raw_rows() -> None:
    rows = [ROW, {**ROW, "a": 8}]
    page = parse_page(orjson.dumps(rows), 7, 1000)
    assert [obj for obj, _ in page] == rows
    assert [row.agg_id for _, row in page] == [7, 8]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"code": -1003}', "not a list"),
        (orjson.dumps([{**ROW, "a": "7"}]), "row 0: field 'a'"),
        (orjson.dumps([{**ROW, "p": "1²"}]), "row 0"),
        (orjson.dumps([ROW, ROW]), "does not ascend"),
        (orjson.dumps([{**ROW, "a": 6}]), "does not ascend"),
        (orjson.dumps([ROW, {**ROW, "a": 8}]), "more than the limit"),
    ],
)
def test_anything_but_a_well_formed_page_is_a_failed_attempt(body: bytes, reason: str) -> None:
    limit = 1 if reason == "more than the limit" else 1000
    with pytest.raises(GapFillError, match=reason):
        parse_page(body, 7, limit)


def test_weight_budget_refills_evenly() -> None:
    now = [0.0]
    budget = WeightBudget(240, clock=lambda: now[0])  # 4 weight a second, bursts of 60
    for _ in range(15):
        assert budget.wait_for(4) == 0
        budget.spend(4)
    assert budget.wait_for(4) == pytest.approx(1.0)
    now[0] = 0.5
    assert budget.wait_for(4) == pytest.approx(0.5)
    assert budget.used == 60


async def test_pages_come_from_the_simulator() -> None:
    config = ExchangeConfig(symbols=(), replay=(BUNDLED_REPLAY,), rate=0)
    async with Exchange(config) as exchange:
        exchange.history("BTCUSDT")
        client = RestClient(exchange.rest_url, weight_per_minute=6000)
        assert await client.agg_trades("BTCUSDT", FIRST_ID) == [], "nothing released before a subscriber"
        with pytest.raises(GapFillError, match="HTTP 400"):
            await client.agg_trades("DOGEUSDT", 1)
        assert [item.symbol for item in await client.listing()] == ["BTCUSDT"]
        assert client.budget.used == 4 + 4 + 20


@pytest.mark.slow
@pytest.mark.parametrize(
    ("error", "match"),
    [("503", "HTTP 503"), ("429", "HTTP 429, retry after 1"), ("418", "HTTP 418, retry after 1"), ("html", "not JSON")],
)
async def test_rest_faults_are_failed_attempts_and_throttles_pause(
    error: str, match: str, caplog: pytest.LogCaptureFixture
) -> None:
    faults = FaultConfig(rest_error=error, rest_error_calls=1, retry_after_s=1)
    async with Exchange(ExchangeConfig(symbols=("BTCUSDT",), rate=0, faults=faults)) as exchange:
        client = RestClient(exchange.rest_url, weight_per_minute=6000)
        with caplog.at_level(logging.WARNING, "tradetape.binance.rest"), pytest.raises(GapFillError, match=match):
            await client.agg_trades("BTCUSDT", 1)
        started = time.monotonic()
        assert await client.agg_trades("BTCUSDT", 1) == []
        waited = time.monotonic() - started
        if error in ("429", "418"):
            assert waited >= 0.9, "Retry-After must be honoured"
            level = logging.ERROR if error == "418" else logging.WARNING
            assert any(r.levelno == level and "backing off" in r.getMessage() for r in caplog.records)
        else:
            assert waited < 0.5
        assert exchange.rest_failures == 1
