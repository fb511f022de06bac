"""The ledger read at most once per `max_age_s` a symbol, from a real NATS KV bucket (reads counted on the wire)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from tradetape.bus.ledger import LedgerEntry, LedgerFormatError, LedgerGap, ledger_bucket, ledger_key, write_entry
from tradetape.bus.ledger_cache import LedgerCache

pytestmark = pytest.mark.timeout(30)

OPEN = LedgerEntry("BTCUSDT", 100, 400, 0, (LedgerGap(101, 150, 0),))
CLOSED = LedgerEntry("BTCUSDT", 400, 400, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Client]:
    """A client of a fresh server (`nats_url`) holding the ledger bucket, empty."""
    nc = await nats.connect(nats_url)
    try:
        assert await ledger_bucket(nc.jetstream(), create=True) is not None
        yield nc
    finally:
        await nc.close()


async def counted_gets(nc: Client) -> list[str]:
    """The KV gets of the ledger bucket, as the server routes them (direct or stream message gets)."""
    gets: list[str] = []

    async def count(msg: Msg) -> None:
        gets.append(msg.subject)

    await nc.subscribe("$JS.API.DIRECT.GET.KV_TAPE_INGEST_LEDGER.>", cb=count)
    await nc.subscribe("$JS.API.STREAM.MSG.GET.KV_TAPE_INGEST_LEDGER", cb=count)
    await nc.flush()
    return gets


async def test_one_read_answers_every_ask_until_it_is_max_age_old(client: Client) -> None:
    kv = await ledger_bucket(client.jetstream())
    assert kv is not None
    await write_entry(kv, OPEN)
    clock = Clock()
    cache = LedgerCache(client.jetstream, max_age_s=0.25, clock=clock)
    gets = await counted_gets(client)

    together = await asyncio.gather(*(cache.entry("BTCUSDT") for _ in range(20)))  # one read in flight, shared
    assert together == [OPEN] * 20
    await write_entry(kv, CLOSED)
    clock.now = 0.2
    assert await cache.entry("BTCUSDT") == OPEN  # read 0.2 s ago: still answers
    clock.now = 0.25
    assert await cache.entry("BTCUSDT") == CLOSED
    assert await cache.entry("ETHUSDT") is None  # no entry: read, and kept as such
    await client.flush()
    assert len(gets) == 3, gets


async def test_a_read_that_failed_is_not_kept_and_a_caller_giving_up_leaves_the_read_running(client: Client) -> None:
    kv = await ledger_bucket(client.jetstream())
    assert kv is not None
    await kv.put(ledger_key("BTCUSDT"), b"{not a ledger value")
    cache = LedgerCache(client.jetstream, max_age_s=60, clock=Clock())
    with pytest.raises(LedgerFormatError):
        await cache.entry("BTCUSDT")
    await write_entry(kv, OPEN)
    assert await cache.entry("BTCUSDT") == OPEN  # the same moment: the failure was not kept

    fresh = LedgerCache(client.jetstream, max_age_s=60, clock=Clock())
    gets = await counted_gets(client)
    first = asyncio.create_task(fresh.entry("BTCUSDT"))
    await asyncio.sleep(0)  # the read has begun
    first.cancel()
    assert await fresh.entry("BTCUSDT") == OPEN  # the same read, not cancelled with its first asker
    await client.flush()
    assert len(gets) == 1, gets


async def test_no_bucket_is_no_entry_until_one_is_made(nats_url: str) -> None:
    async with await nats.connect(nats_url) as nc:  # a fresh server: no bucket
        js = nc.jetstream()
        clock = Clock()
        cache = LedgerCache(nc.jetstream, max_age_s=0.25, clock=clock)
        assert await cache.entry("BTCUSDT") is None
        kv = await ledger_bucket(js, create=True)
        assert kv is not None
        await write_entry(kv, OPEN)
        clock.now = 0.25
        assert await cache.entry("BTCUSDT") == OPEN
