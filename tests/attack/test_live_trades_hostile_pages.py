"""`TapeClient.live_trades` reading what it missed from a responder whose `trades` pages never end: a clear error,
not a loop asking for the same page forever."""

from __future__ import annotations

import asyncio

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from tradetape.api.methods.trades import MAX_PAGE, TradesCursor
from tradetape.client import TapeClient, TapeUnavailable

pytestmark = pytest.mark.timeout(60)

START = 1_750_000_000_000
END = START + 3_600_000


def coverage() -> bytes:
    return orjson.dumps(
        {
            "symbol": "BTCUSDT",
            "start": START,
            "end": END,
            "trade_count": 10,
            "first_id": 1,
            "last_id": 10,
            "first_time": START,
            "last_time": START + 10,
            "missing_count": 0,
            "gaps": [],
        }
    )


def page(agg_id: int) -> bytes:
    cursor = TradesCursor("BTCUSDT", START, END, MAX_PAGE, agg_id, START + agg_id).encode()  # well-formed
    trade = {
        "a": agg_id,
        "p": "1.00000000",
        "q": "1.00000000",
        "f": agg_id,
        "l": agg_id,
        "T": START + agg_id,
        "m": False,
    }
    return orjson.dumps({"symbol": "BTCUSDT", "start": START, "end": END, "trades": [trade], "next_cursor": cursor})


async def test_a_trades_page_that_does_not_continue_the_one_before_is_refused(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    asked = 0
    try:

        async def answer(msg: Msg) -> None:
            nonlocal asked
            if msg.subject.startswith("tape.query.coverage."):
                await msg.respond(coverage())
            else:
                asked += 1
                await msg.respond(page(5))  # the same page, and more to come, forever

        await nc.subscribe("tape.query.>", cb=answer)
        await nc.flush()
        async with await TapeClient.connect(url=nats_url, timeout=3) as client:

            async def follow() -> None:
                async for _ in client.live_trades("BTCUSDT", start=START, end=END):
                    pass

            with pytest.raises(TapeUnavailable, match="does not continue"):
                await asyncio.wait_for(follow(), 20)
        assert asked < 10
    finally:
        await nc.close()
