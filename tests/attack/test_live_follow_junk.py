"""`live_profile` / `live_bars` while something that is not a live update arrives on their subject (any local client
under `tradetape up`, which gives local commands every right): the follower logs it and keeps following, as
`live_trades` does, instead of raising pydantic's `ValidationError` out of the iterator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.analytics.test_replay import serving_an_hour
from tradetape.bus.subjects import bars_subject, profile_subject

pytestmark = pytest.mark.timeout(90)

JUNK = (b"junk", b"{}", b'{"symbol": "BTCUSDT", "run": "r", "seq": "x", "batches": []}')


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["profile", "bars"])
async def test_junk_on_a_live_subject_is_skipped_and_the_follower_keeps_following(
    nats_url: str, tmp_path: Path, kind: str
) -> None:
    async with serving_an_hour(nats_url, tmp_path) as (_, _, running, client):
        follower: AsyncIterator[Any] = (
            client.live_profile("BTCUSDT", last="1h") if kind == "profile" else client.live_bars("BTCUSDT", last="1h")
        )
        subject = profile_subject("BTCUSDT") if kind == "profile" else bars_subject("BTCUSDT")
        publisher = await nats.connect(nats_url)
        try:
            assert await asyncio.wait_for(anext(follower), 20) is not None  # the snapshot
            for junk in JUNK:
                await publisher.publish(subject, junk)
            await publisher.flush()
            with pytest.raises(TimeoutError):  # still following: nothing changed, so nothing is yielded
                await asyncio.wait_for(anext(follower), 2)
        finally:
            await publisher.close()
            await follower.aclose()  # type: ignore[attr-defined]
        running.check()
