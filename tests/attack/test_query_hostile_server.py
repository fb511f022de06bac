"""A worker's reply the client cannot read (a hostile or broken responder on `tape.query.>`): a `TapeUnavailable`
naming the subject, as for every other worker fault, not a pydantic `ValidationError` out of the client."""

from __future__ import annotations

import nats
import pytest
from nats.aio.msg import Msg

from tradetape.client import TapeClient, TapeUnavailable

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("body", [b'{"symbol": "BTCUSDT"}', b"not json", b"[]", b'{"trade_count": "many"}'])
async def test_a_reply_that_is_not_the_methods_reply_is_unavailable_not_a_validation_error(
    nats_url: str, body: bytes
) -> None:
    nc = await nats.connect(nats_url)
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(body)

        await nc.subscribe("tape.query.coverage.BTCUSDT", cb=answer)
        await nc.flush()
        async with await TapeClient.connect(url=nats_url, timeout=3) as client:
            with pytest.raises(TapeUnavailable, match="tape.query.coverage.BTCUSDT"):
                await client.query("coverage", "BTCUSDT")
            with pytest.raises(TapeUnavailable, match="tape.query.coverage.BTCUSDT"):
                async for _ in client.live_trades("BTCUSDT"):
                    break
    finally:
        await nc.close()
