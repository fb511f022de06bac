"""`footprint` and `market_profile` per session over NATS equal the Decimal references, session by session.

Three days of trades go JetStream → persist → RocksDB; the analytics service answers from its
store (whole hours from histograms where it reads levels, trades at the ragged edges). The
expected answers are the references' over the same trades (`tests/reference_order_flow.py`,
session windows from `tests/sessions_reference.py`), not the handlers'.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.analytics.test_methods_over_nats import serving
from tests.analytics.test_order_flow_over_nats import decimal_trades
from tests.analytics.test_sessions_over_nats import NEW_YORK_NIGHT, SYMBOL, three_days
from tests.api.test_order_flow_sessions import expected_footprint_sessions, expected_tpo_sessions
from tests.harness import request
from tests.reference_order_flow import decimals_of, reference_footprint, reference_tpo

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

FOOTPRINTS: list[dict[str, Any]] = [
    {"interval": "1h", "row_size": "0.05", "imbalance": 1.5, "stacked": 2, "session": "utc-day"},
    {"interval": "30m", "rows": 6, "session": NEW_YORK_NIGHT},
]
PROFILES: list[dict[str, Any]] = [
    {"period": "30m", "row_size": "0.05", "session": "new-york"},
    {"period": "1h", "rows": 30, "value_area": 0.5, "session": "london"},
]


async def test_sessions_of_footprint_and_market_profile_over_nats_equal_the_references(
    nats_url: str, tmp_path: Path
) -> None:
    rows = three_days(int(time.time() * 1000))
    async with serving(nats_url, tmp_path, rows) as (client, running, coverage):
        start, end = coverage["first_time"] + 123_456, coverage["last_time"] - 234_567  # ragged edges
        trades = decimal_trades(rows, start, end)
        sessions_seen = naked_seen = 0

        for asked in FOOTPRINTS:
            reply, headers = await request(client, f"tape.query.footprint.{SYMBOL}",
                                           {"start": start, "end": end, **asked}, timeout=30)
            assert "Nats-Service-Error-Code" not in headers, reply
            interval_ms = {"1h": 3_600_000, "30m": 1_800_000}[asked["interval"]]
            rules = {"imbalance": asked.get("imbalance", 3.0), "stacked": asked.get("stacked", 3),
                     "value_area": 0.7}
            got = decimals_of(reply)
            assert got["bars"] == reference_footprint(trades, interval_ms, reply["row_size"],
                                                      str(rules["imbalance"]), rules["stacked"], "0.7")
            sessions, naked = expected_footprint_sessions(rows, asked["session"], start, end, interval_ms,
                                                          reply["row_size"], rules)
            assert got["sessions"] == sessions and got["naked_pocs"] == naked, asked
            sessions_seen += len(sessions)
            naked_seen += len(naked)

        for asked in PROFILES:
            reply, headers = await request(client, f"tape.query.market_profile.{SYMBOL}",
                                           {"start": start, "end": end, **asked}, timeout=30)
            assert "Nats-Service-Error-Code" not in headers, reply
            period_ms = {"1h": 3_600_000, "30m": 1_800_000}[asked["period"]]
            share = str(asked.get("value_area", 0.7))
            got = decimals_of(reply)
            expected = reference_tpo(trades, period_ms, start, reply["row_size"], share)
            assert {key: got[key] for key in expected} == expected
            sessions, naked = expected_tpo_sessions(rows, asked["session"], start, end, period_ms,
                                                    reply["row_size"], share)
            assert got["sessions"] == sessions and got["naked_pocs"] == naked, asked
            sessions_seen += len(sessions)
            naked_seen += len(naked)
        assert sessions_seen >= 8 and naked_seen >= 1  # the tape is rich enough to check them

        for method in ("footprint", "market_profile"):
            for hostile in ({"session": "x" * 100_000}, {"session": {"tz": "../../etc/passwd", "start": "00:00",
                                                                     "end": "01:00"}}):
                answer, _ = await request(client, f"tape.query.{method}.{SYMBOL}", hostile, timeout=30)
                assert answer["error"]["code"] == "invalid_request", (method, hostile)
        running.check()
