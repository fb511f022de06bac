"""Live queries: a snapshot joined with the live subjects' updates (profile, 1 s bars, trades), never missing one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import ValidationError

from tradetape.api.live.joining import (
    LiveBars,
    LiveProfile,
    LiveTrades,
    LiveTradesBatch,
    SnapshotIds,
    UpdateOrder,
    align_range,
)
from tradetape.api.live.messages import LiveBarsUpdate, LiveBatch, LiveProfileUpdate, LiveTradesUpdate
from tradetape.api.methods.bars import BarReply, BarsReply
from tradetape.api.methods.coverage import CoverageReply
from tradetape.api.methods.trades import MAX_PAGE
from tradetape.api.methods.volume_profile import VolumeProfileReply, VolumeProfileRequest
from tradetape.api.models import MAX_INTERVALS, parse_duration_ms, parse_time_ms
from tradetape.bus.subjects import bars_subject, live_trades_subject, profile_subject
from tradetape.client.errors import ClientQueryError, TapeUnavailable
from tradetape.client.queries import QueryClient, checked_instrument
from tradetape.domain.aggregates import SECOND_MS
from tradetape.ground.tasks import raise_if_cancelled

logger = logging.getLogger(__name__)

LIVE_JOIN_ATTEMPTS = 50
LIVE_BARS_CHUNK_MS = 900_000
LIVE_TRADES_QUEUE = 10_000
"""Live trades messages held for the caller at most; past that they are dropped and read again (`_fill`)."""
LIVE_TRADES_QUEUE_BYTES = 16 * 2**20
"""And their bytes at most: persist's messages run up to a share of the max payload each (10,000 of them: GBs)."""
LIVE_TRADES_RETRY_S = 0.05


class LiveClient(QueryClient):
    """Live profile, bars and trades over the query client."""

    async def live_profile(
        self,
        symbol: str,
        /,
        *,
        last: str | None = None,
        start: int | str | None = None,
        end: int | str | None = None,
        **fields: Any,
    ) -> AsyncIterator[VolumeProfileReply]:
        """The volume profile of the range, yielded after the snapshot and after every update that changed it.

        The range is `last` (default 1h) back from now, or `start` to `end` (`end` alone: the
        hour before it), in whole seconds; without `end` it stays open and grows as trades are stored. `fields` are
        `volume_profile`'s (`row_size`, `rows`, `value_area`): the snapshot's row size is
        kept from then on. Join rules: `tradetape.api.live.messages`.
        """
        symbol = checked_instrument(symbol)
        begin, finish = _live_range(last, start, end)
        request = VolumeProfileRequest.model_validate({**fields, "start": begin, "end": finish})

        async def join() -> LiveProfile:
            # The snapshot and the ids it holds: asked together, they read one state of the store when both
            # replies name the same view (a write is seldom visible within the few ms they take).
            for _ in range(LIVE_JOIN_ATTEMPTS):
                asked = {**fields, "start": begin, "end": finish or _open_end(), "min_trades": 0}
                asking = asyncio.ensure_future(self._ask("coverage", symbol))
                try:
                    snapshot, view = await self._ask("volume_profile", symbol, **asked)
                except ClientQueryError as exc:
                    if exc.code != "insufficient_trades":
                        asking.cancel()
                        raise
                    snapshot, view = None, None
                held, held_view = await asking
                if snapshot is None:  # nothing in the range, no view on an error: held before and after must agree
                    after = await self.query("coverage", symbol)
                    if SnapshotIds.agree(held, after):
                        return LiveProfile(symbol, request, begin, finish, None, SnapshotIds(after))
                elif view is not None and view == held_view:
                    return LiveProfile(symbol, request, begin, finish, snapshot, SnapshotIds(held))
            raise TapeUnavailable(f"{symbol}: no snapshot read one state of the store in {LIVE_JOIN_ATTEMPTS} tries")

        async for profile in self._follow(profile_subject(symbol), LiveProfileUpdate, join):
            yield profile

    async def live_bars(
        self, symbol: str, /, *, last: str | None = None, start: int | str | None = None, end: int | str | None = None
    ) -> AsyncIterator[BarsReply]:
        """The 1 s bars of the range (as for `live_profile`, at most 4,000 seconds), kept current."""
        symbol = checked_instrument(symbol)
        begin, finish = _live_range(last, start, end)

        async def join() -> LiveBars:
            stop = finish or _open_end()
            if stop - begin > MAX_INTERVALS * SECOND_MS:
                message = f"live 1 s bars cover at most {MAX_INTERVALS} seconds"
                raise ClientQueryError("range_too_large", message, status=413)
            # Bars replace per second, so the ids held before the snapshot are enough (`LiveBars.apply`).
            before = SnapshotIds(await self.query("coverage", symbol))
            bars: list[BarReply] = []
            for lo in range(begin, stop, LIVE_BARS_CHUNK_MS):
                upto = min(lo + LIVE_BARS_CHUNK_MS, stop)
                chunk = await self.query("bars", symbol, start=lo, end=upto, interval="1s")
                bars += chunk.bars
            return LiveBars(symbol, begin, finish, bars, before)

        async for bars_reply in self._follow(bars_subject(symbol), LiveBarsUpdate, join):
            yield bars_reply

    async def live_trades(
        self, symbols: str | Sequence[str], /, *, start: int | str | None = None, end: int | str | None = None
    ) -> AsyncIterator[LiveTradesBatch]:
        """Every trade of `symbols` with a trade time in `[start, end)`, each once: what the tape held when the
        subscription began (read with `trades`), then each write's newly stored trades as persist announces them.

        `start` defaults to now and `end` to open (the feed then runs until the caller stops iterating). A
        batch is one symbol's trades ascending by agg id (a late gap fill may come after higher ids). A lost
        message or a persist restart is noticed by its `seq` or `run`; what it held is read again, so the
        batches joined equal a fresh `trades` query of the range. Join rules: `tradetape.api.live.messages`.
        """
        names = (
            [checked_instrument(symbols)]
            if isinstance(symbols, str)
            else [checked_instrument(symbol) for symbol in symbols]
        )
        begin = _now_ms() if start is None else _parse_time(start)
        finish = None if end is None else _parse_time(end)
        states = {live_trades_subject(name): LiveTrades(name, begin, finish) for name in dict.fromkeys(names)}
        heard: asyncio.Queue[Msg] = asyncio.Queue(LIVE_TRADES_QUEUE)
        held_bytes = 0

        async def on_message(msg: Msg) -> None:
            nonlocal held_bytes
            if held_bytes + len(msg.data) > LIVE_TRADES_QUEUE_BYTES:
                return  # dropped, as when the queue is full: the next seq shows the loss, it is read again
            with contextlib.suppress(asyncio.QueueFull):
                heard.put_nowait(msg)
                held_bytes += len(msg.data)

        nc = await self._connection()
        subscriptions = [await nc.subscribe(subject, cb=on_message) for subject in states]
        try:
            await nc.flush()
            for state in states.values():
                async for batch in self._fill(state):
                    yield batch
            while True:
                raise_if_cancelled()
                msg = await heard.get()
                held_bytes -= len(msg.data)
                state = states[msg.subject]
                try:
                    update = LiveTradesUpdate.model_validate_json(msg.data)
                except ValidationError:
                    logger.warning("unreadable live trades message", extra={"subject": msg.subject})
                    continue
                if update.symbol != state.symbol:
                    continue
                joined = state.order.started
                if not state.order.follows(update) or not joined:  # the first: a write announced before the
                    async for batch in self._fill(state, update):  # subscription may not have been visible yet
                        yield batch
                taken = state.take(update.trades, update.voids)
                if taken:
                    yield LiveTradesBatch(symbol=state.symbol, trades=taken, stored_at=update.stored_at)
        finally:
            for subscription in subscriptions:
                with contextlib.suppress(NatsError):
                    await subscription.unsubscribe()

    async def _fill(self, state: LiveTrades, lost: LiveTradesUpdate | None = None) -> AsyncIterator[LiveTradesBatch]:
        """The trades of `state`'s range the tape holds but were not delivered: all of them at the start, those of
        lost messages later.

        With `lost` (the first message, or one that showed a loss) the coverage asked must include its write, so
        that it includes every write before it: asked again until it does. Ids held but not found are voids; they
        are looked for again at the next fill (never taken for voids on one reply's word).
        """
        symbol = state.symbol
        end = state.end
        for _ in range(LIVE_JOIN_ATTEMPTS):
            if lost is None or _holds(await self.query("coverage", symbol), lost):
                break
            await asyncio.sleep(LIVE_TRADES_RETRY_S)
        else:
            raise TapeUnavailable(f"{symbol}: the tape did not show a write announced {LIVE_JOIN_ATTEMPTS} times")
        reply = await self.query("coverage", symbol, start=state.start, end=end if end is not None else _open_end())
        for low, high, (first, last) in state.missing(reply):
            upto = (last + 1) if last is not None else _open_end()
            cursor: str | None = None
            last_id: int | None = None
            while True:
                raise_if_cancelled()
                page = await self.query("trades", symbol, start=first, end=upto, limit=MAX_PAGE, cursor=cursor)
                taken = state.take([trade for trade in page.trades if low <= trade.a <= high])
                if taken:
                    yield LiveTradesBatch(symbol=symbol, trades=taken, stored_at=None)
                if page.next_cursor is None:
                    break
                # A page with more to come is full and ascending by agg id after the one before: anything else
                # (a broken or hostile responder) would be asked again forever.
                if not page.trades or (last_id is not None and page.trades[0].a <= last_id):
                    raise TapeUnavailable(f"{symbol}: a trades page that does not continue the one before")
                last_id = page.trades[-1].a
                if last_id >= high:  # the pages after hold higher ids only
                    break
                cursor = page.next_cursor

    async def _follow(self, subject: str, model: type[Any], join: Callable[[], Awaitable[Any]]) -> AsyncIterator[Any]:
        """Subscribe, join a snapshot, then apply updates; a lost update means a new snapshot."""
        await self._connection()
        subscription = await self.nc.subscribe(subject)
        try:
            await self.nc.flush()
            while True:
                state, order = await join(), UpdateOrder()
                if (reply := state.reply(_now_ms())) is not None:
                    yield reply
                while True:
                    raise_if_cancelled()
                    msg = await subscription.next_msg(timeout=None)
                    try:
                        update = model.model_validate_json(msg.data)
                    except ValidationError:  # not persist's: skipped (a lost update shows in the next one's seq)
                        logger.warning("unreadable live message", extra={"subject": subject})
                        continue
                    if not order.follows(update):
                        break
                    if state.apply(update) and (reply := state.reply(_now_ms())) is not None:
                        yield reply
        finally:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _open_end() -> int:
    """An end past every storable trade time (trades may be stamped up to a minute ahead)."""
    return _now_ms() + 120_000


def _live_range(last: str | None, start: int | str | None, end: int | str | None) -> tuple[int, int | None]:
    """`[start, end)` of a live query in whole seconds; end None: open."""
    if last is not None and (start is not None or end is not None):
        raise ClientQueryError("invalid_request", "give either last or start/end, not both")
    try:
        finish = None if end is None else parse_time_ms(end)
        before = (_now_ms() if finish is None else finish) - parse_duration_ms(last or "1h")  # end alone: its hour
        begin = before if start is None else parse_time_ms(start)
    except ValueError as exc:
        raise ClientQueryError("invalid_request", str(exc)) from None
    return align_range(begin, finish)


def _parse_time(value: int | str) -> int:
    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise ClientQueryError("invalid_request", str(exc)) from None


def _holds(coverage: CoverageReply, update: LiveTradesUpdate) -> bool:
    """Whether a whole-tape coverage reply's state includes the write `update` announced."""
    ids = sorted([*(trade.a for trade in update.trades), *update.voids])
    return not ids or SnapshotIds(coverage).holds(LiveBatch(ids=[(ids[0], ids[0])]))
