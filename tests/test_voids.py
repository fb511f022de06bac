"""Binance's void rows end to end: a REST gap fill that meets one closes the gap, and no analytic sees it.

The simulator replays the real BTCUSDT file with the `void_every` fault: agg id
3800400000 (the one multiple of 5000 among the file's ids) is released as a void, which
the WebSocket never streams, so ingest sees a one-id gap and its REST fill gets the void
row (`p`/`q` "0.00000000", `f`/`l` -1). Every method over NATS must then answer exactly
what its handler computes over the same trades without the void.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.analytics.test_methods_over_nats import REQUESTS
from tests.chaos import invariant
from tests.cluster.test_scale_out import exchange_history
from tests.harness import coverage_of, replay_pipeline, request, wait_for
from tradetape.api.registry import methods
from tradetape.cli.renderers import renderer
from tradetape.domain.decimals import parse_units
from tradetape.domain.trade import TradeRow
from tradetape.services.exchange import FaultConfig
from tradetape.testing import HeldTrades, simulator_settings

pytestmark = pytest.mark.timeout(150)

SYMBOL = "BTCUSDT"
VOID_ID = 3_800_400_000
FIRST_ID, LAST_ID = 3_800_397_495, 3_800_402_494


@pytest.mark.slow
async def test_a_gap_fill_that_meets_a_void_closes_the_gap_and_no_analytic_sees_it(
    nats_url: str, tmp_path: Path
) -> None:
    faults = FaultConfig(void_every=5000)
    async with replay_pipeline(nats_url, tmp_path / "data", faults=faults) as (exchange, running, client):

        async def settled() -> dict[str, Any] | None:
            reply = await coverage_of(client, SYMBOL)
            done = reply.get("last_id") == LAST_ID and not reply.get("gaps") and reply.get("ingest_gaps") == []
            return reply if done and reply.get("void_count") == 1 else None

        coverage = await wait_for(settled, 90, running=running)
        assert (coverage["first_id"], coverage["trade_count"], coverage["void_count"]) == (FIRST_ID, 4999, 1)
        assert coverage["missing_count"] == 0
        released = exchange.history(SYMBOL).trades()
        assert [t.agg_id for t in released if t.void] == [VOID_ID]
        rows = [
            TradeRow(
                t.agg_id, parse_units(t.price), parse_units(t.qty), t.first_id, t.last_id, t.time_ms, t.buyer_maker
            )
            for t in released
            if not t.void
        ]
        source = HeldTrades.from_rows(rows)
        span = {"start": coverage["first_time"], "end": coverage["last_time"] + 1}
        for name, extra in REQUESTS.items():
            if name == "coverage":
                continue
            body = {**span, **extra}
            reply, headers = await request(client, f"tape.query.{name}.{SYMBOL}", body)
            assert "Nats-Service-Error-Code" not in headers, (name, reply)
            spec = methods()[name]
            expected = spec.handler(source, SYMBOL, spec.parse_request(body), 0).model_dump(mode="json")
            assert reply == expected, name
        ranged, _ = await request(client, f"tape.query.coverage.{SYMBOL}", span)
        assert (ranged["trade_count"], ranged["void_count"], ranged["gaps"]) == (4999, 1, [])
        assert (ranged["first_id"], ranged["last_id"]) == (FIRST_ID, LAST_ID)
        # the chaos suite's invariant holds with a void: every id once, as the exchange serves it
        await invariant.settled(client, SYMBOL, LAST_ID, time.monotonic() + 10)
        shard_dir = simulator_settings(exchange, nats_url, tmp_path / "data", SYMBOL).shard_dir
        stored, raw = invariant.stored_raw(shard_dir, SYMBOL)
        expected_rows = await asyncio.to_thread(exchange_history, exchange.rest_url, SYMBOL, FIRST_ID, LAST_ID)
        assert invariant.compare(SYMBOL, stored, raw, expected_rows, FIRST_ID, LAST_ID) == 5000
        running.check()


def test_the_coverage_rendering_shows_voids_only_when_there_are_some() -> None:
    spec = methods()["coverage"]
    base = {"symbol": SYMBOL, "start": None, "end": None, "trade_count": 4999, "first_id": FIRST_ID}
    base |= {"last_id": LAST_ID, "first_time": 1, "last_time": 2, "missing_count": 0, "gaps": []}
    console = Console(width=200, record=True, file=io.StringIO())
    for void_count in (0, 1):
        console.print(renderer("coverage")(spec.reply.model_validate({**base, "void_count": void_count})))
    shown = console.export_text()
    assert shown.count("voids") == 1 and "voids 1" in shown
