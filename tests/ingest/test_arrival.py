"""The exchange → ingest hop as ingest measures it: receipt − T and receipt − E, per stats interval."""

from __future__ import annotations

import time

from tradetape.services.ingest.arrival import ArrivalLags


def test_lags_are_summarised_per_interval_and_a_hostile_event_time_is_ignored() -> None:
    lags = ArrivalLags(samples=100)
    now = time.time_ns() // 1_000_000
    for age in [100_000] * 100 + [1000] * 100:  # more than kept: the most recent 100 count
        lags.record(now - age, now - 5)
    for hostile in ("123", 2**60, -1, None, 1.5):
        lags.record(now - 1000, hostile)
    summary = lags.summary()
    assert 1000 <= summary["since_trade_p50_ms"] <= summary["since_trade_p99_ms"] <= summary["since_trade_max_ms"]
    assert summary["since_trade_max_ms"] < 1000 + 5_000, "the older samples were overwritten"
    assert 5 <= summary["since_event_p50_ms"] < 5 + 5_000
    assert lags.summary() == {}, "each interval starts afresh"
