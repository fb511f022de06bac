"""`BulkAcks` acks a fetched run of JetStream messages as `Msg.ack` does, against a real server."""

from __future__ import annotations

import asyncio
import uuid

import nats
import pytest
from nats.aio.msg import Msg
from nats.errors import BadSubjectError
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from tradetape.bus.acks import BulkAcks


async def test_a_fetched_run_is_acked_at_once_and_never_delivered_again(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream = f"ACKS{uuid.uuid4().hex[:8]}"
    try:
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"]))
        for i in range(300):
            await js.publish(f"{stream}.x", str(i).encode())
        config = ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0)
        subscription = await js.pull_subscribe(f"{stream}.>", durable="c", stream=stream, config=config)
        msgs = await subscription.fetch(300, timeout=5)
        assert len(msgs) == 300
        await BulkAcks(nc).ack_all(msgs[:299])
        await msgs[299].nak()
        await nc.flush()
        for _ in range(100):  # the server applies acks apart from the client's flush
            info = await js.consumer_info(stream, "c")
            if info.ack_floor.stream_seq == 299:
                break
            await asyncio.sleep(0.05)
        assert info.ack_floor.stream_seq == 299 and info.num_ack_pending == 1
        again = await subscription.fetch(10, timeout=3)  # only the nak'd one, even after the ack wait
        assert [m.data for m in again] == [b"299"]
    finally:
        await nc.close()


async def test_a_reply_that_would_inject_protocol_is_refused_and_nothing_is_acked(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        seen = await nc.subscribe(">")
        await nc.flush()
        good = Msg(nc, subject="s", reply="acks.good", data=b"")
        bad = Msg(nc, subject="s", reply="acks.bad 0\r\n\r\nPUB acks.injected", data=b"")
        with pytest.raises(BadSubjectError):
            await BulkAcks(nc).ack_all([good, bad])
        await nc.publish("acks.end")
        assert (await seen.next_msg(timeout=5)).subject == "acks.end", "nothing was sent before the end marker"
    finally:
        await nc.close()
