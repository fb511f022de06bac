"""Chaos on two markets at once: spot ETHUSDT and USD-M um:ETHUSDT side by side, as processes.

The simulator drops agg ids and cuts connections on both markets' WebSockets (its faults act
on every market alike) while it trades both at the same rate, usually with the same agg ids
(each market's ids start at 1). Then the invariant, per instrument: the tape holds exactly the
simulator's released trades of its own market, each once, gap-free, with exact prices and
quantities (`check_invariant`, which asks each market's REST); and each volume profile over
NATS equals the Decimal reference computed from that market's own released trades. Ingest's
log shows that both markets' gaps were filled and both markets' connections were made again.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.chaos.invariant import SymbolCheck, check_invariant
from tests.chaos.system import System
from tests.chaos.test_feed_faults import OFF
from tests.cluster.test_scale_out import exchange_history
from tests.harness import request
from tests.reference_profile import reference_profile
from tradetape.bus.subjects import query_subject
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import format_units

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(360)]

SPOT, USD_M = "ETHUSDT", "um:ETHUSDT"
FAULTS: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("ids dropped on both markets", {"drop_every": 30}, 4.0),
    ("connections cut every 300 trades on both markets", {"disconnect_after": 300}, 6.0),
    ("ids dropped and connections cut every 250 trades", {"drop_every": 25, "disconnect_after": 250}, 6.0),
)
ROW_SIZE = "0.5"
_GAP_FILLED = re.compile(r'"gap filled" symbol=(\S+)')
_CONNECTED = re.compile(r'"exchange connected" feed=(\S+)')


async def profile_equals_reference(system: System, check: SymbolCheck) -> tuple[TradeColumns, int]:
    """`volume_profile` over the checked trades equals the reference of the simulator's; its trades, the count."""
    released = await asyncio.to_thread(exchange_history, system.rest_url, check.symbol, check.first_id, check.last_id)
    # strictly inside the first and last trade's milliseconds: a trade sharing them may lie outside the checked ids
    start, end = int(released.time[0]) + 1, int(released.time[-1])
    inside = (released.time >= start) & (released.time < end) & (released.first_id >= 0)
    trades = [
        (format_units(int(p)), format_units(int(q)), bool(m))
        for p, q, m in zip(released.price[inside], released.qty[inside], released.buyer_maker[inside], strict=True)
    ]
    assert len(trades) > 500, f"{check.symbol}: only {len(trades)} trades to profile"
    body = {"start": start, "end": end, "row_size": ROW_SIZE, "min_trades": 0}
    reply, headers = await request(system.nats, query_subject("volume_profile", check.symbol), body, timeout=30)
    assert "Nats-Service-Error-Code" not in headers, reply
    expected = reference_profile(trades, ROW_SIZE, "0.7")
    assert reply["symbol"] == check.symbol and reply["trade_count"] == len(trades)
    rows = [
        (Decimal(r["price_low"]), Decimal(r["price_high"]), Decimal(r["volume"]), Decimal(r["buy_volume"]),
         Decimal(r["sell_volume"]), int(r["trade_count"]))
        for r in reply["rows"]
    ]  # fmt: skip
    assert rows == [(low, high, vol, buy, sell, int(n)) for _, low, high, vol, buy, sell, n in expected["rows"]], (
        f"{check.symbol}: the profile's rows differ from the reference"
    )
    assert (Decimal(reply["poc"]), Decimal(reply["val"]), Decimal(reply["vah"])) == (
        expected["poc"],
        expected["val"],
        expected["vah"],
    ), check.symbol
    return released, len(trades)


async def test_faults_on_spot_and_usd_m_lose_nothing_and_mix_nothing(tmp_path: Path) -> None:
    async with System(tmp_path, symbols=(SPOT, USD_M)) as system:
        assert system.settings is not None
        for what, faults, hold in FAULTS:
            await system.set_faults(**{**OFF, **faults})
            print(f"[two markets] {what} for {hold:g}s: {faults}")
            await asyncio.sleep(hold)
            system.check_alive()
        await system.heal()
        checks = await check_invariant(
            system.nats, system.rest_url, system.settings.shard_dir, system.first_ids, "two markets"
        )
        assert [c.symbol for c in checks] == [SPOT, USD_M]
        released: list[TradeColumns] = []
        for check in checks:
            trades, profiled = await profile_equals_reference(system, check)
            released.append(trades)
            print(f"[two markets]   {check.symbol}: volume profile of {profiled} trades == the Decimal reference")
        same_ids = np.intersect1d(released[0].agg_id, released[1].agg_id)
        print(f"[two markets] {len(same_ids)} agg ids traded on both markets, each stored in its own tape")

        log = system.log("ingest")
        filled = Counter(_GAP_FILLED.findall(log))
        connected = Counter("um" if feed.startswith("um-") else "spot" for feed in _CONNECTED.findall(log))
        print(f"[two markets] ingest filled gaps {dict(filled)}, connected {dict(connected)}")
        assert filled[SPOT] and filled[USD_M], f"the dropped ids did not reach both markets: {filled}"
        assert connected["spot"] > 1 and connected["um"] > 1, f"the cut connections were not both markets': {connected}"
        system.check_alive()
