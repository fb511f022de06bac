"""Every method over NATS answers what its handler computes, and hostile requests get coded errors.

Trades go the real way in (JetStream → persist → RocksDB) and are read back by the
analytics service as a secondary; the expected replies come from the handlers over the
same trades in memory (`tests/api/test_methods.py` checks those against references).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client

from tests.harness import Running, request, run_services, wait_until_stored
from tradetape.api.registry import methods
from tradetape.bus.provision import ensure_streams
from tradetape.domain.decimals import format_units
from tradetape.domain.trade import TradeRow
from tradetape.settings import Settings
from tradetape.testing import HeldTrades

pytestmark = pytest.mark.timeout(120)

SYMBOL = "BTCUSDT"
COUNT = 3000


def generated_rows(now_ms: int) -> list[TradeRow]:
    rng = random.Random(7)
    start = now_ms - 50 * 60_000
    rows, price = [], 87_000 * 10**8
    for i in range(COUNT):
        price = max(10**8, price + rng.choice((-2, -1, 0, 0, 1, 2)) * 10**6)
        qty = int(rng.paretovariate(1.3) * 10**5)
        time_ms = start + i * 1000 + rng.randrange(1000)
        rows.append(TradeRow(10_000 + i, price, qty, 3 * i, 3 * i + 2, time_ms, rng.random() < 0.45))
    return rows


def wire(row: TradeRow) -> bytes:
    return orjson.dumps(
        {"e": "aggTrade", "E": row.time, "s": SYMBOL, "a": row.agg_id, "p": format_units(row.price),
         "q": format_units(row.qty), "f": row.first_id, "l": row.last_id, "T": row.time, "m": row.buyer_maker,
         "M": True}
    )


@contextlib.asynccontextmanager
async def serving(
    nats_url: str, tmp_path: Path, rows: list[TradeRow]
) -> AsyncIterator[tuple[Client, Running, dict[str, Any]]]:
    """`rows` gone the real way in (JetStream → persist → RocksDB) and an analytics worker answering once every one
    is stored: a plain client, the services and the coverage reply."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        await asyncio.gather(*[await js.publish_async(f"tape.trades.binance.{SYMBOL}", wire(row)) for row in rows])
        async with run_services(settings, "persist", "analytics") as running:
            yield client, running, await wait_until_stored(client, SYMBOL, len(rows), running=running)
    finally:
        await client.close()


REQUESTS: dict[str, dict[str, Any]] = {
    "volume_profile": {"row_size": "50", "min_trades": 100},
    "liquidity_vacuums": {"row_size": "5", "min_trades": 100, "min_rows": 2},
    "vwap": {"interval": "5m", "bands": [1, 2]},
    "bars": {"interval": "1m"},
    "flow": {"interval": "5m"},
    "large_trades": {"top": 15},
    "trades": {"limit": 700},
    "coverage": {},
    "footprint": {"interval": "5m", "rows": 10},
    "market_profile": {"period": "5m", "rows": 50},
}

HOSTILE: list[bytes] = [
    b"{not json",
    b"[]",
    b'"a string"',
    b"null",
    b'{"start": "yesterday"}',
    b'{"start": 1767225600000000}',
    b'{"end": 1767225600}',
    b'{"last": "-1h"}',
    b'{"last": "1h", "start": 1767225600000}',
    b'{"start": 1483228800000, "end": 4102444800000}',
    b'{"rows": 100000}',
    b'{"row_size": "0.00000001", "min_trades": 1}',
    b'{"row_size": "-5"}',
    b'{"interval": "0s"}',
    b'{"interval": "1s", "last": "24h"}',
    b'{"top": -1}',
    b'{"min_qty": "1e9"}',
    b'{"limit": 999999}',
    b'{"cursor": "AAAA"}',
    b'{"bands": [1e308]}',
    b'{"anchor": "2016-01-01T00:00:00Z"}',
    b'{"value_area": "NaN"}',
    b'{"unknown_field": 1}',
    b"\xff\xfe\x00",
    b'{"start": ' + b"9" * 5000 + b"}",
]
CODES = {"invalid_request", "insufficient_trades", "range_too_large", "reply_too_large"}


@pytest.mark.slow
async def test_every_method_answers_as_its_handler_and_survives_hostile_requests(
    nats_url: str, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    rows = generated_rows(now_ms)
    async with serving(nats_url, tmp_path, rows) as (client, running, coverage):
        span = {"start": coverage["first_time"], "end": coverage["last_time"] + 1}
        source = HeldTrades.from_rows(rows)
        for name, extra in REQUESTS.items():
            body = {**span, **extra} if name != "coverage" else {}
            reply, headers = await request(client, f"tape.query.{name}.{SYMBOL}", body)
            assert "Nats-Service-Error-Code" not in headers, (name, reply)
            spec = methods()[name]
            expected = spec.handler(source, SYMBOL, spec.parse_request(body), now_ms).model_dump(mode="json")
            if name == "coverage":
                reply, expected = (_without(r, ("start", "end")) for r in (reply, expected))
            assert reply == expected, name

        for name in methods():
            for body in HOSTILE:
                msg = await client.request(f"tape.query.{name}.{SYMBOL}", body, timeout=10)
                answer = json.loads(msg.data)
                if "error" in answer:
                    assert answer["error"]["code"] in CODES, (name, body, answer)
                    assert msg.headers and msg.headers["Nats-Service-Error-Code"] in ("400", "413", "422")
                    assert answer["error"]["message"]

        stats_before = await _requests_served(client)
        target = await client.subscribe("tape.trades.binance.>")
        for name in methods():  # no reply subject, or one outside the inboxes: dropped before any work
            await client.publish(f"tape.query.{name}.{SYMBOL}", b"{}")
            await client.publish(f"tape.query.{name}.{SYMBOL}", b"{}", reply=f"tape.trades.binance.{SYMBOL}")
        await client.flush()
        await asyncio.sleep(0.3)
        guard = running.services["analytics"].replies
        assert (guard.dropped_without_reply, guard.dropped_reply_subject) == (len(methods()), len(methods()))
        assert await _requests_served(client) == stats_before, "micro never saw them"
        with pytest.raises(nats.errors.TimeoutError):
            await target.next_msg(timeout=0.2)
        ok, _ = await request(client, f"tape.query.coverage.{SYMBOL}", {})
        assert ok["trade_count"] == COUNT
        running.check()


def _without(reply: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in keys}


async def _requests_served(client: Any) -> int:
    stats = json.loads((await client.request("$SRV.STATS.tradetape-analytics", b"", timeout=2)).data)
    return sum(e["num_requests"] for e in stats["endpoints"])
