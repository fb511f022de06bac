"""Leaving a background client's block ends its loop, even when a cancel lands as a reply arrives.

Python 3.11's `asyncio.wait_for` (nats-py's `request` waits in it) returns the reply and drops a
cancel that comes as the reply does; the fuzzer's loop then went on, and the chaos scenario hung
in `async with QueryFuzzer` until its timeout, every check already passed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from nats.aio.client import Client

from tests.chaos.hostile_client import ClientReport, HostileClient

pytestmark = pytest.mark.timeout(60)


@dataclass
class Rounds(ClientReport):
    def summary(self) -> str:
        return f"{self.sent} rounds"


class ReplyAsCancelled(HostileClient):
    """Each round waits in `wait_for` on a reply that is already on its way, then pauses, as the fuzzer does."""

    name = "reply-as-cancelled"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.report = Rounds()

    async def _run(self, nc: Client) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reply: asyncio.Future[bytes] = loop.create_future()
            loop.call_soon(reply.set_result, b"{}")
            await asyncio.wait_for(reply, 5)
            self.report.sent += 1
            await asyncio.sleep(0.001)


@pytest.mark.slow
async def test_leaving_the_block_ends_a_loop_that_swallowed_the_cancel(nats_url: str) -> None:
    client = ReplyAsCancelled(nats_url)
    for _ in range(20):  # the cancel lands as the reply does now and then
        await client.__aenter__()
        await asyncio.sleep(0.01)
        await asyncio.wait_for(client.__aexit__(None, None, None), 10)
        assert client._task is not None and client._task.done()
