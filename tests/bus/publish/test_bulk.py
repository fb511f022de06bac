"""`hpub` writes what nats-py's `publish` writes, and `BulkPublish` delivers it, in order, to a real server."""

from __future__ import annotations

import asyncio

import nats
import polars as pl
import pytest
from nats.aio.msg import Msg
from nats.protocol.command import hpub_cmd

from tradetape.bus.publish.bulk import BulkPublish, CorePublish, hpub
from tradetape.bus.subjects import MSG_ID_HEADER


def test_hpub_is_the_bytes_nats_py_builds() -> None:
    header = f"NATS/1.0\r\n{MSG_ID_HEADER}: binance:BTCUSDT:42\r\n\r\n".encode()
    payload = b'{"e":"aggTrade","a":42}'
    expected = hpub_cmd("tape.trades.binance.BTCUSDT", "_INBOX.x.b-1.500.fail.7.1.$FI", header, payload)
    assert (
        hpub("tape.trades.binance.BTCUSDT", "_INBOX.x.b-1.500.fail.7.1.$FI", "binance:BTCUSDT:42", payload) == expected
    )


async def test_gathered_publishes_arrive_in_order_with_their_ids_and_replies(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        got: list[Msg] = []
        done = asyncio.Event()

        async def receive(msg: Msg) -> None:
            got.append(msg)
            if len(got) == 1001:
                done.set()

        await nc.subscribe("bulk.>", cb=receive)
        bulk = BulkPublish(nc)
        for i in range(1000):
            bulk.add(f"bulk.{i % 3}", f"reply.{i}", f"id:{i}", str(i).encode())
        await bulk.flush()
        await nc.publish("bulk.after", b"last", headers={MSG_ID_HEADER: "id:after"})
        await asyncio.wait_for(done.wait(), 5)
        assert [m.data for m in got] == [str(i).encode() for i in range(1000)] + [b"last"]
        assert [m.subject for m in got[:4]] == ["bulk.0", "bulk.1", "bulk.2", "bulk.0"]
        assert all(
            m.reply == f"reply.{i}" and m.headers == {MSG_ID_HEADER: f"id:{i}"} for i, m in enumerate(got[:1000])
        )
    finally:
        await nc.close()


async def test_core_publishes_of_a_sliced_batch_arrive_whole_and_in_order(nats_url: str) -> None:
    """The batch is taken from its Arrow buffer: a slice (a buffer offset) must send exactly its own strings."""
    nc = await nats.connect(nats_url)
    try:
        subscription = await nc.subscribe("core.frames")
        texts = pl.Series([f'{{"a":{i},"p":"{"9" * (i % 40)}"}}' for i in range(2000)])
        publisher = CorePublish(nc, "core.frames")
        await publisher.publish(texts.slice(700, 600))
        await publisher.publish(texts.slice(0, 0))
        await publisher.publish(pl.Series(["last"]))
        got = [(await subscription.next_msg(timeout=5)).data.decode() for _ in range(601)]
        assert got == [*texts.slice(700, 600).to_list(), "last"]
        with pytest.raises(ValueError, match="ASCII"):
            await publisher.publish(pl.Series(["prix: 87 648,21 €"]))
        with pytest.raises(ValueError, match="max payload"):
            await publisher.publish(pl.Series(["x" * (nc.max_payload + 1)]))
    finally:
        await nc.close()
