"""Replay from a hostile `query` client (the browser role of `deploy/nats/auth.conf`) against a real worker on a
real store: streams aimed at someone else's inbox, many streams at once, flow messages that claim too much.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import polars as pl
import pytest
from nats.aio.msg import Msg

from tests.attack.secured_worker import DAY_MS, secured_worker
from tests.harness import wait_for
from tradetape.api.replay import ReplayChunk, ReplayStart, decode_message
from tradetape.bus.subjects import replay_subject
from tradetape.client import ClientQueryError, TapeClient

pytestmark = pytest.mark.timeout(120)


async def _true(value: bool) -> bool:
    return value


async def test_a_replay_aimed_at_another_roles_inbox_sends_it_no_trades(tmp_path: Path) -> None:
    """Before: a reader asked a replay with a monitor's (or admin's) inbox as its reply subject, and the worker
    pushed its whole window of chunks there (up to 32 of 20,000 trades, ~31 MB a request) though nobody who could
    read the inbox had asked: one small publish, megabytes into a victim's connection. Now the worker sends trades
    only once the asker has answered the start on the stream's flow subject, which only a reader of the inbox
    learns."""
    async with secured_worker(tmp_path, replay_idle_timeout_s=1.0) as worker:
        attacker, victim = await worker.connect("query"), await worker.connect("monitor")
        received: list[Msg] = []

        async def on_message(msg: Msg) -> None:
            received.append(msg)

        try:
            await victim.subscribe("_INBOX_MONITOR.>", cb=on_message)
            await victim.flush()
            body = {"start": worker.start_ms, "end": worker.end_ms, "window": 32}
            await attacker.publish(replay_subject("BTCUSDT"), orjson.dumps(body), reply="_INBOX_MONITOR.victim.1")
            await attacker.flush()
            await asyncio.sleep(1.0)
            kinds = [type(decode_message(msg.data, 20_000)) for msg in received]
            assert ReplayChunk not in kinds, f"{kinds.count(ReplayChunk)} chunks pushed into the monitor's inbox"
            assert kinds == [ReplayStart]
            replay = worker.running.services["analytics"].replay
            await wait_for(lambda: _true(not replay.streams), timeout=10)  # stopped after its idle timeout
            assert replay.counts["replay_abandoned"] == 1

            honest = TapeClient(await worker.connect("query"), owns_connection=True)
            async with honest:
                frames = [f async for f in honest.replay("BTCUSDT", start=worker.start_ms, end=worker.end_ms)]
                assert len(pl.concat(frames)) == 58_800  # every trade of the week (60,000 less 2% voids)
            worker.running.check()
        finally:
            await attacker.close()
            await victim.close()


async def test_streams_are_bounded_a_worker_and_forged_credit_gives_nothing(tmp_path: Path) -> None:
    """More streams than `replay_max_streams` are `overloaded`; an ack far beyond what was sent, a cancel of a stream
    nobody opened and junk on the flow subject neither move a stream on nor stop the worker."""
    async with secured_worker(tmp_path, replay_max_streams=2, replay_idle_timeout_s=1.0) as worker:
        attacker = await worker.connect("query")
        try:
            inbox = attacker.new_inbox()
            subscription = await attacker.subscribe(inbox + ".>")
            body = orjson.dumps({"start": worker.start_ms, "end": worker.start_ms + DAY_MS, "window": 1, "chunk": 5})
            for index in range(3):
                await attacker.publish(replay_subject("BTCUSDT"), body, reply=f"{inbox}.{index}")
            starts: dict[str, ReplayStart] = {}
            refused = []
            for _ in range(3):
                msg = await subscription.next_msg(timeout=10)
                if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
                    refused.append(orjson.loads(msg.data)["error"]["code"])
                else:
                    start = decode_message(msg.data, 5)
                    assert isinstance(start, ReplayStart)
                    starts[msg.subject] = start
            assert refused == ["overloaded"] and len(starts) == 2
            for start in starts.values():
                await attacker.publish(start.flow_subject, b"{}")  # the asker answers the start ...
            first = [decode_message((await subscription.next_msg(timeout=10)).data, 5) for _ in starts]
            assert all(isinstance(chunk, ReplayChunk) and chunk.seq == 0 for chunk in first)
            for start in starts.values():  # ... then claims credit it was never given, and sends junk
                for junk in (b'{"ack": 1000000000}', b'{"ack": 1e308}', b'{"ack": -5}', b"[" * 5000, b"\xff"):
                    await attacker.publish(start.flow_subject, junk)
            await attacker.publish("tape.replay.flow.nobody", b'{"cancel": true}')
            await attacker.flush()
            later = []
            with pytest.raises(TimeoutError):  # the huge ack counts up to what was sent: chunk 0, so chunk 1 goes
                while True:
                    later.append(decode_message((await subscription.next_msg(timeout=0.7)).data, 5))
            assert sorted((type(m), getattr(m, "seq", None)) for m in later) == [(ReplayChunk, 1), (ReplayChunk, 1)]
            replay = worker.running.services["analytics"].replay
            await wait_for(lambda: _true(not replay.streams), timeout=10)
            assert replay.counts["replay_abandoned"] == 2 and replay.counts["replay_bad_flow"] >= 6
            with pytest.raises(ClientQueryError) as too_long:
                honest = TapeClient(await worker.connect("query"), owns_connection=True)
                async with honest:
                    [f async for f in honest.replay("BTCUSDT", start=worker.start_ms, end=worker.end_ms + 60 * DAY_MS)]
            assert too_long.value.code == "range_too_large"
            worker.running.check()
        finally:
            await attacker.close()
