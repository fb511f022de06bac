"""A query whose reads would outgrow `query_memory_mb` is `range_too_large`, with the figures, before it reads.

Before the budget, a worker decoded whatever range it was asked (up to 31 days) in each
of its `query_concurrency` threads at once, and a flood of long ranges killed it.
"""

from __future__ import annotations

import time
from pathlib import Path

import nats
import orjson
import pytest

from tests.analytics.test_isolation import HOUR_MS, SYMBOL, TRADES, busy_day
from tests.harness import wait_for
from tests.processes import ServiceProcesses, service_env
from tradetape.api.registry import methods
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
async def test_a_range_over_the_memory_budget_is_refused_with_its_figures(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    now_ms = int(time.time() * 1000)
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,), query_memory_mb=48)
    busy_day(settings.shard_dir, now_ms)
    processes.start(["analytics"], service_env(settings))
    client = await nats.connect(nats_url)

    async def ask(method: str, body: dict[str, object]) -> tuple[dict[str, str] | None, dict[str, object]]:
        msg = await client.request(f"tape.query.{method}.{SYMBOL}", orjson.dumps(body), timeout=30)
        return msg.headers, orjson.loads(msg.data)

    try:
        await wait_for(lambda: ask("coverage", {}), timeout=30)
        day = {"start": now_ms - 24 * HOUR_MS, "end": now_ms}
        headers, reply = await ask("large_trades", day)
        error = reply["error"]
        assert isinstance(error, dict) and error["code"] == "range_too_large", reply
        assert headers is not None and headers.get("Nats-Service-Error-Code") == "413"
        details = error["details"]
        assert details["budget_bytes"] == 48 * 2**20
        assert details["estimated_bytes"] == details["trades"] * methods()["large_trades"].trade_bytes > 48 * 2**20
        assert TRADES * 0.95 < details["trades"] <= TRADES + 100_000
        assert "shorter range" in details["hint"] and "TRADETAPE_QUERY_MEMORY_MB" in details["hint"]
        _, hour = await ask("large_trades", {"start": now_ms - 3 * HOUR_MS, "end": now_ms - 2 * HOUR_MS})
        assert isinstance(hour.get("trade_count"), int) and hour["trade_count"] > 10_000, hour
        # From the aggregate layer: 86,400 1-second bars (300 B each) and the edge segments' trades, about an hour of
        # them (76 B each) whatever the time of day: ~36 MB at most. (With a 32 MB budget this failed in the first
        # ~12 minutes of every hour, when the day's oldest edge segment held most of its hour.)
        _, vwap = await ask("vwap", day)
        assert vwap.get("trade_count") == TRADES, vwap
        _, profile = await ask("volume_profile", {**day, "row_size": "10"})  # from histograms: fits
        assert profile.get("trade_count") == TRADES, profile
    finally:
        await client.close()
