"""`footprint` and `market_profile` asked over NATS equal the Decimal reference (tests/reference_order_flow.py).

Trades go the real way in (JetStream → persist → RocksDB) and a real analytics service answers
from its store; the expected answers are the reference's over the same trades, not the handlers'.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.analytics.test_methods_over_nats import SYMBOL, generated_rows, serving
from tests.harness import request
from tests.reference_order_flow import Trade, decimals_of, reference_footprint, reference_tpo
from tradetape.domain.trade import TradeRow

pytestmark = pytest.mark.timeout(120)


def decimal_trades(rows: list[TradeRow], start: int, end: int) -> list[Trade]:
    chosen = sorted((r for r in rows if start <= r.time < end), key=lambda r: r.agg_id)
    return [(r.time, Decimal(r.price).scaleb(-8), Decimal(r.qty).scaleb(-8), r.buyer_maker) for r in chosen]


@pytest.mark.slow
async def test_footprint_and_market_profile_over_nats_equal_the_reference(nats_url: str, tmp_path: Path) -> None:
    rows = generated_rows(int(time.time() * 1000))
    async with serving(nats_url, tmp_path, rows) as (client, running, coverage):
        start, end = coverage["first_time"] + 123_456, coverage["last_time"] - 234_567  # ragged edges
        trades = decimal_trades(rows, start, end)

        asked = {"start": start, "end": end, "interval": "5m", "row_size": "0.03", "imbalance": 1.5, "stacked": 2}
        reply, headers = await request(client, f"tape.query.footprint.{SYMBOL}", asked)
        assert "Nats-Service-Error-Code" not in headers, reply
        expected = reference_footprint(trades, 300_000, "0.03", "1.5", 2, "0.7")
        assert decimals_of(reply)["bars"] == expected and len(expected) >= 9
        assert any(bar["stacked_imbalances"] for bar in expected)  # the tape is rich enough to check them

        reply, headers = await request(client, f"tape.query.footprint.{SYMBOL}", {"start": start, "end": end})
        assert "Nats-Service-Error-Code" not in headers, reply
        widest = max(len(bar["rows"]) for bar in reply["bars"])
        assert reply["interval"] == "1m" and widest <= 20
        assert decimals_of(reply)["bars"] == reference_footprint(trades, 60_000, reply["row_size"], "3", 3, "0.7")

        for period, period_ms, row_size in (("5m", 300_000, "0.02"), ("30m", 1_800_000, "0.1")):
            asked = {"start": start, "end": end, "period": period, "row_size": row_size}
            reply, headers = await request(client, f"tape.query.market_profile.{SYMBOL}", asked)
            assert "Nats-Service-Error-Code" not in headers, reply
            expected = reference_tpo(trades, period_ms, start, row_size, "0.7")
            got = decimals_of(reply)
            assert {key: got[key] for key in expected} == expected, period
            assert reply["trade_count"] == len(trades)
        running.check()
