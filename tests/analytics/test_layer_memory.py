"""The memory a bars, flow or vwap answer takes stays within what its budget estimated before reading.

Before, these methods declared `level_bytes` 100 a 1-second bar while their answers peaked at
270-300 bytes a bar (the decoded layers, their join, the exact sums' digits): the admission check
let through queries needing about twice what it counted (bench/query.py measured 300-464 bytes a
row, edges included).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from tests.store.synthetic import SYMBOL, T0, rolled_store, tape
from tradetape.api.registry import method as registered_method
from tradetape.services.analytics.query_source import QuerySource
from tradetape.store import ReadBudget, ReadTooLargeError, ShardReader

HOUR_MS = 3_600_000
HOURS = 26


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """26 h of 8,000 trades an hour: most seconds hold trades, as on a busy symbol."""
    return rolled_store(tmp_path_factory.mktemp("layer-memory") / "shard", tape(HOURS * 8_000, HOURS * HOUR_MS),
                        chunk_ms=HOUR_MS)  # fmt: skip


@pytest.mark.parametrize("name", ["bars", "flow", "vwap"])
@pytest.mark.parametrize("interval", ["1m", "5m"])
def test_an_answer_peaks_below_its_estimate(shard: Path, name: str, interval: str) -> None:
    method = registered_method(name)
    request = method.parse_request(
        {"start": T0 + HOUR_MS + 7 * 60_000 + 300, "end": T0 + (HOURS - 1) * HOUR_MS - 13_000, "interval": interval}
    )
    reader = ShardReader(shard)  # no cache: every layer and edge decoded by the answer itself
    try:
        refused = ReadBudget(0, method.trade_bytes, method.level_bytes)
        with pytest.raises(ReadTooLargeError) as estimated:
            method.handler(QuerySource(reader, refused, SYMBOL), SYMBOL, request, T0 + HOURS * HOUR_MS)
        assert estimated.value.levels > 70_000  # a day of 1-second bars (a few seconds hold no trade), counted
        budget = ReadBudget(1 << 40, method.trade_bytes, method.level_bytes)
        reader.second_bars(SYMBOL, request.time_range(0))  # the store opened, outside the measure
        tracemalloc.start()
        try:
            reply = method.handler(QuerySource(reader, budget, SYMBOL), SYMBOL, request, T0 + HOURS * HOUR_MS)
            reply.model_dump_json()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        reader.close()
    assert peak <= estimated.value.estimate, f"{peak / 2**20:.1f} MB at peak, {estimated.value.estimate / 2**20:.1f} MB"
