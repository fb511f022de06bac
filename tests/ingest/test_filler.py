"""The gap filler against the simulator's real REST: an attempt is counted when it starts and always ends."""

from __future__ import annotations

import asyncio
import time

import pytest

from tradetape.binance.rest import RestClient, RestTrade
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.services.exchange.history import AggTrade
from tradetape.services.ingest.filler import GapFiller
from tradetape.services.ingest.tailprobe import TailSchedule
from tradetape.services.ingest.tape import SymbolTape

pytestmark = pytest.mark.timeout(30)


def trade(agg_id: int) -> AggTrade:
    return AggTrade(agg_id, "3000.00000000", "0.01000000", agg_id, agg_id, 1_765_000_000_000 + agg_id, False)


async def test_an_answer_that_skips_the_gap_ends_the_attempt_and_counts_it() -> None:
    """REST has no ids 105..110 and answers `fromId=105` with a full page from 111 on (a simulator
    that forgot what it released): the attempt must end, counted, instead of asking for ever."""
    async with Exchange(ExchangeConfig(symbols=("ETHUSDT",), rate=0)) as exchange:
        exchange.history("ETHUSDT").append([trade(i) for i in (*range(100, 105), *range(111, 130))])
        tape = SymbolTape("ETHUSDT", max_id_jump=1000)
        for agg_id in (*range(100, 105), 111):
            tape.offer(agg_id)
        assert [(g.from_id, g.to_id, g.attempts) for g in tape.gaps] == [(105, 110, 0)]

        def accept(symbol: str, page: list[RestTrade]) -> int:
            return sum(tape.offer(row.agg_id, live=False).value == "new" for _, row in page)

        rest = RestClient(exchange.rest_url, weight_per_minute=6000)
        filler = GapFiller(rest, {"ETHUSDT": tape}, accept, lambda: True, TailSchedule(60, 60))
        await asyncio.wait_for(filler._fill_gap(tape, tape.gaps[0]), 10)
        assert rest.calls == 1
        (gap,) = tape.gaps
        assert (gap.from_id, gap.to_id, gap.attempts) == (105, 110, 1)
        assert "111" in gap.last_error and "105" in gap.last_error, gap.last_error


async def test_an_attempt_in_flight_is_counted() -> None:
    """A slow REST answer: the gap shows its attempt while it waits, not only once the answer came."""
    async with Exchange(ExchangeConfig(symbols=("ETHUSDT",), rate=0)) as exchange:
        exchange.history("ETHUSDT").append([trade(i) for i in (*range(100, 105), *range(111, 130))])
        tape = SymbolTape("ETHUSDT", max_id_jump=1000)
        for agg_id in (*range(100, 105), 111):
            tape.offer(agg_id)
        rest = RestClient(exchange.rest_url, weight_per_minute=6000)
        rest.paused_until = time.monotonic() + 3600.0  # as after a 429: the call waits
        filler = GapFiller(rest, {"ETHUSDT": tape}, lambda s, p: 0, lambda: True, TailSchedule(60, 60))
        task = asyncio.create_task(filler._fill_gap(tape, tape.gaps[0]))
        try:
            await asyncio.sleep(0.2)
            assert not task.done()
            assert tape.gaps[0].attempts == 1
        finally:
            task.cancel()


async def test_the_filler_ends_when_a_poke_and_its_cancel_land_together() -> None:
    """Before: its idle wait is Python 3.11's `asyncio.wait_for`, which returns the wake-up that lands with the cancel
    and drops the cancel (tradetape/ground/tasks.py); the filler looped on, and ingest, awaiting its end on SIGTERM,
    hung with it. A poke comes whenever a feed subscribes or a frame asks for a check, so at any moment."""
    async with Exchange(ExchangeConfig(symbols=("ETHUSDT",), rate=0)) as exchange:
        rest = RestClient(exchange.rest_url, weight_per_minute=6000)
        filler = GapFiller(rest, {}, lambda s, p: 0, lambda: False, TailSchedule(60, 60))
        task = asyncio.create_task(filler.run())
        try:
            await asyncio.sleep(0.1)  # idle: waiting for a poke
            filler.poke()
            await asyncio.sleep(0)  # the wake-up is in, the filler not yet resumed
            task.cancel()
            await asyncio.wait((task,), timeout=2)
            assert task.done()
        finally:
            task.cancel()
            await asyncio.wait((task,), timeout=2)
