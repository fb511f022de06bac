"""Sessions, tz bars and threshold bars over NATS: stored the real way, answered by the analytics service.

Three days of trades go JetStream → persist → RocksDB; the service (reading histograms for
whole hours, trades at the edges) must answer exactly what the handlers compute in memory,
which `tests/api/test_sessions.py` checks against independent references; the threshold
bars and the session windows are also checked against those references here.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.analytics.test_methods_over_nats import serving
from tests.api.test_sessions import reference_threshold_bars
from tests.harness import request
from tests.sessions_reference import reference_windows
from tradetape.api.registry import methods
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SYMBOL = "BTCUSDT"
COUNT = 3000
SPAN_MS = 3 * 86_400_000


def three_days(now_ms: int) -> list[TradeRow]:
    rng = random.Random(22)
    start = now_ms - SPAN_MS
    rows, price = [], 87_000 * 10**8
    for i in range(COUNT):
        price = max(10**8, price + rng.choice((-2, -1, 0, 0, 1, 2)) * 10**6)
        qty = int(rng.paretovariate(1.3) * 10**5)
        rows.append(TradeRow(50_000 + i, price, qty, 3 * i, 3 * i + 2, start + i * (SPAN_MS // COUNT)
                             + rng.randrange(1000), rng.random() < 0.45))
    return rows


NEW_YORK_NIGHT = {"tz": "America/New_York", "start": "18:00", "end": "09:30"}
ASKED: list[tuple[str, dict[str, Any]]] = [
    ("volume_profile", {"session": "utc-day", "row_size": "5", "min_trades": 100}),
    ("volume_profile", {"session": NEW_YORK_NIGHT, "rows": 40, "min_trades": 100}),
    ("volume_profile", {"session": "london", "row_size": "5", "min_trades": 100}),
    ("bars", {"interval": "1d", "tz": "America/New_York"}),
    ("bars", {"interval": "1w"}),
    ("bars", {"tick_bar": 100}),
    ("bars", {"volume_bar": "0.5"}),
    ("bars", {"dollar_bar": "25000"}),
]


async def test_sessions_and_new_bars_answer_over_nats_as_computed(nats_url: str, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    rows = three_days(now_ms)
    async with serving(nats_url, tmp_path, rows) as (client, running, coverage):
        span = {"start": coverage["first_time"], "end": coverage["last_time"] + 1}
        held = HeldTrades.from_rows(rows)
        for name, extra in ASKED:
            body = {**span, **extra}
            reply, headers = await request(client, f"tape.query.{name}.{SYMBOL}", body, timeout=30)
            assert "Nats-Service-Error-Code" not in headers, (name, extra, reply)
            spec = methods()[name]
            assert reply == spec.handler(held, SYMBOL, spec.parse_request(body), now_ms).model_dump(mode="json")
            kind = next((k for k in ("tick_bar", "volume_bar", "dollar_bar") if k in extra), None)
            if kind is not None:
                expected = reference_threshold_bars(rows, kind, Decimal(str(extra[kind])))
                assert [(b["time"], b["end_time"], b["trade_count"], b["partial"]) for b in reply["bars"]] == [
                    (e[0], e[1], e[8], e[9]) for e in expected]
            if "session" in extra and extra["session"] == NEW_YORK_NIGHT:
                windows = reference_windows("America/New_York", "18:00", "09:30", span["start"], span["end"])
                assert [s["label"] for s in reply["sessions"]] == [label for label, *_ in windows]
                assert reply["naked_pocs"] is not None
        for hostile in (
            {"session": "x" * 100_000},
            {"session": {"tz": "../../../etc/passwd", "start": "00:00", "end": "01:00"}},
            {"interval": "1d", "tz": "America/Nowhere"},
            {"tick_bar": 1, "last": "40d"},
            {"volume_bar": "0.00000001", "tick_bar": 3},
        ):
            answer, headers = await request(client, f"tape.query.bars.{SYMBOL}", hostile, timeout=30)
            assert answer["error"]["code"] in ("invalid_request", "range_too_large"), hostile
            answer, _ = await request(client, f"tape.query.volume_profile.{SYMBOL}", hostile, timeout=30)
            assert answer["error"]["code"] == "invalid_request", hostile
        running.check()
