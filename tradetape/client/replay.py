"""Replay: stored ranges streamed back by the analytics workers with flow control, merged by time, paced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from tradetape.api.errors import QueryError
from tradetape.api.replay import DEFAULT_CHUNK, DEFAULT_WINDOW, ReplayRequest
from tradetape.api.replay.chunks import (
    ReplayChunk,
    ReplayEnd,
    ReplayMessageError,
    ReplayStart,
    chunk_bytes,
    decode_message,
    trade_frame,
)
from tradetape.api.replay.merging import ReplayMerge
from tradetape.api.replay.pacing import Schedule
from tradetape.bus.subjects import REPLAY_FLOW_PREFIX, replay_subject
from tradetape.client.errors import ERROR_CODE_HEADER, ClientQueryError, TapeError, TapeUnavailable, error_of
from tradetape.client.queries import QueryClient
from tradetape.domain.columns import TradeColumns
from tradetape.domain.instruments import instrument_from_input
from tradetape.domain.symbols import SymbolError
from tradetape.ground.tasks import cancel_and_wait, raise_if_cancelled

logger = logging.getLogger(__name__)

MAX_REPLAY_INSTRUMENTS = 100
"""Instruments one replay merges at most: a stream each, and each worker serves `replay_max_streams` at once."""
REPLAY_RESUMES = 3
"""Times one instrument's replay is asked again from its last trade after a lost chunk or a silent worker."""
PACE_SPIN_S = 0.002
"""With `speed`, a frame's last 2 ms before it is due are waited for on the CPU, not asleep (measured at speed=1 on
a busy 2-core machine: p99 lateness 5.9 ms asleep all the way)."""
KEEP_ALIVE_MIN_S = 0.05
"""Keep-alives go at most 20 times a second a stream, whatever idle timeout a worker's start claims."""
HELD_MESSAGES = 4
"""Messages an inbox holds beyond the window's chunks: the end or an error, and slack."""
_FLOW_SUBJECT = re.compile(re.escape(REPLAY_FLOW_PREFIX) + r"\.[A-Za-z0-9]{1,64}")


class ReplayClient(QueryClient):
    """`replay` over the query client."""

    async def replay(
        self,
        symbols: str | Sequence[str],
        /,
        *,
        start: int | str,
        end: int | str,
        speed: float | None = None,
        chunk: int = DEFAULT_CHUNK,
        window: int = DEFAULT_WINDOW,
    ) -> AsyncIterator[pl.DataFrame]:
        """The stored trades of `symbols` in `[start, end)`, as DataFrames of up to `chunk` trades.

        Columns: symbol, agg_id, price and qty (exact `Decimal(38, 8)`), first_id, last_id, time (UTC),
        buyer_maker; the same trades `trades` answers, merged by time, then symbol, then agg id. Each
        instrument is one stream from its shard's worker (`tradetape.api.replay`), acked as it is consumed,
        so a slow consumer slows the worker; a lost chunk or a silent worker asks again from the last trade.
        `speed` paces by trade time from the first trade (1: real time, 10: ten times faster): each frame
        is yielded when its first trade is due and holds the trades due by then.
        """
        names = _instruments(symbols)
        try:
            request = ReplayRequest.parse({"start": start, "end": end, "chunk": chunk, "window": window})
        except QueryError as exc:
            raise ClientQueryError(exc.code, exc.message, exc.details, status=exc.status) from None
        if speed is not None and not speed > 0:
            raise ClientQueryError("invalid_request", f"speed must be positive: {speed}")
        streams = {name: _ReplayStream(self, name, request) for name in names}
        keepalive: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(stream.open() for stream in streams.values()))
            keepalive = asyncio.create_task(_keep_alive(list(streams.values())), name="replay-keepalive")
            blocks = _merged(streams)
            if speed is None:
                async for trades, which in blocks:
                    yield trade_frame(trades, names, which)
            else:
                async for frame in _paced(blocks, names, speed):
                    yield frame
        finally:
            await cancel_and_wait(keepalive)
            await asyncio.gather(*(stream.close() for stream in streams.values()), return_exceptions=True)


def _instruments(symbols: str | Sequence[str]) -> list[str]:
    """The instruments a caller named (any case, `um:` and `cm:` too), each once, in order; checked before sending."""
    named = [symbols] if isinstance(symbols, str) else list(symbols)
    if not named or len(named) > MAX_REPLAY_INSTRUMENTS:
        raise ClientQueryError("invalid_request", f"replay 1 to {MAX_REPLAY_INSTRUMENTS} instruments, not {len(named)}")
    try:
        return list(dict.fromkeys(instrument_from_input(name) for name in named))
    except SymbolError as exc:
        raise ClientQueryError("invalid_request", str(exc), status=400) from None


class _ReplayStream:
    """One instrument's replay: its inbox, its acks, and a new stream from the last trade after a fault."""

    def __init__(self, client: QueryClient, instrument: str, request: ReplayRequest) -> None:
        self.instrument = instrument
        self._client = client
        self._request = request
        self._subscription: Subscription | None = None
        self._start: ReplayStart | None = None
        self._next_seq = 0
        self._acked = -1
        self._last: tuple[int, int] | None = None
        """`(time, agg id)` of the last trade handed on."""
        self._trades = 0
        self._resumes = 0
        self.finished = False

    async def open(self) -> None:
        """Ask for the stream (from after the last trade handed on, if any) and read its start."""
        nc = await self._client._connection()
        inbox = nc.new_inbox()
        # What a worker keeping to the window can have in flight, not nats-py's 128 MB: a flood past it is dropped,
        # which the next chunk's seq shows (the stream is asked again, then refused).
        held = self._request.window + HELD_MESSAGES
        self._subscription = await nc.subscribe(
            inbox, pending_msgs_limit=held, pending_bytes_limit=held * chunk_bytes(self._request.chunk)
        )
        fields = self._request.model_dump(exclude={"after_id"})
        if self._last is not None:
            fields["start"], fields["after_id"] = self._last
        self._next_seq, self._acked, self._trades = 0, -1, 0
        await nc.publish(replay_subject(self.instrument), orjson.dumps(fields), reply=inbox)
        try:
            message = await self._message()
        except _StreamBroken as exc:
            raise TapeUnavailable(f"replay of {self.instrument}: the worker did not start the stream: {exc}") from None
        if not isinstance(message, ReplayStart):
            raise TapeUnavailable(f"replay of {self.instrument}: the worker did not start the stream")
        if (
            not _FLOW_SUBJECT.fullmatch(message.flow_subject)
            or not 1 <= message.chunk <= self._request.chunk
            or not 1 <= message.window <= self._request.window
            or message.idle_ms <= 0
        ):
            raise TapeUnavailable(f"replay of {self.instrument}: the worker's start {message} is not what was asked")
        self._start = message
        await self._publish_flow({})  # the answer the worker waits for: this client reads the inbox it named

    async def next(self) -> TradeColumns | None:
        """The next chunk's trades, None at the end; acks what was consumed before it."""
        while True:
            raise_if_cancelled()
            await self._ack_consumed()
            try:
                message = await self._message()
            except _StreamBroken as exc:
                await self._resume(str(exc))
                continue
            if isinstance(message, ReplayEnd):
                if message.chunks != self._next_seq or message.trades != self._trades:
                    await self._resume(f"the end counts {message} differ from what came")
                    continue
                self.finished = True
                return None
            if not isinstance(message, ReplayChunk):
                raise TapeUnavailable(f"replay of {self.instrument}: a second start in one stream")
            if message.seq != self._next_seq:
                await self._resume(f"chunk {message.seq} came when {self._next_seq} was due")
                continue
            trades = message.trades
            low, high = self._request.start_ms, self._request.end_ms
            if not low <= int(trades.time[0]) <= int(trades.time[-1]) < high:  # a chunk runs in time order
                outside = f"chunk {message.seq} holds trades outside the range asked, [{low}, {high})"
                raise TapeUnavailable(f"replay of {self.instrument}: {outside}")
            first = (int(trades.time[0]), int(trades.agg_id[0]))
            if self._last is not None and first <= self._last:
                raise TapeUnavailable(f"replay of {self.instrument}: trade {first} does not follow {self._last}")
            self._next_seq += 1
            self._trades += len(trades)
            self._last = (int(trades.time[-1]), int(trades.agg_id[-1]))
            return trades

    async def keep_alive(self) -> None:
        """Say again what was acked, so a worker waiting with a full window knows the client is alive."""
        if self._start is not None and not self.finished:
            await self._publish_flow({"ack": self._acked} if self._acked >= 0 else {})

    def keep_alive_s(self) -> float:
        """A third of the worker's idle timeout, at least `KEEP_ALIVE_MIN_S` (a stream being asked again: a second)."""
        return max(KEEP_ALIVE_MIN_S, self._start.idle_ms / 1000 / 3) if self._start is not None else 1.0

    async def close(self) -> None:
        """Cancel the stream unless it ended, and drop the inbox."""
        if self._start is not None and not self.finished:
            with contextlib.suppress(NatsError):
                await self._publish_flow({"cancel": True})
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

    async def _resume(self, reason: str) -> None:
        self._resumes += 1
        if self._resumes > REPLAY_RESUMES:
            raise TapeUnavailable(f"replay of {self.instrument} broke {self._resumes} times; last: {reason}")
        logger.warning("replay stream asked again", extra={"symbol": self.instrument, "reason": reason})
        await self.close()
        self._start = None
        if self._last is not None and self._last[0] >= self._request.end_ms:
            self.finished = True
            return
        await self.open()

    async def _ack_consumed(self) -> None:
        """Ack every chunk handed on, half a window at a time (the worker may run `window` chunks ahead)."""
        assert self._start is not None
        consumed = self._next_seq - 1
        if consumed - self._acked >= max(1, self._start.window // 2):
            self._acked = consumed
            await self._publish_flow({"ack": consumed})

    async def _publish_flow(self, body: dict[str, Any]) -> None:
        if self._start is not None:
            await self._client.nc.publish(self._start.flow_subject, orjson.dumps(body))

    async def _message(self) -> ReplayStart | ReplayChunk | ReplayEnd:
        """The stream's next message, checked; an error message raises it, silence breaks the stream."""
        assert self._subscription is not None
        try:
            msg: Msg = await self._subscription.next_msg(timeout=self._client.timeout)
        except NatsTimeoutError:
            raise _StreamBroken(f"nothing came for {self._client.timeout}s") from None
        headers = msg.headers or {}
        if headers.get(ERROR_CODE_HEADER):
            raise error_of(msg.data, headers)
        if not msg.data and headers.get("Status") == "503":
            raise TapeUnavailable(f"no analytics worker answers replays ({replay_subject(self.instrument)})")
        max_trades = self._start.chunk if self._start is not None else self._request.chunk
        try:
            return decode_message(msg.data, max_trades)
        except ReplayMessageError as exc:
            raise TapeUnavailable(f"replay of {self.instrument}: {exc}") from None


class _StreamBroken(TapeError):
    """Nothing came in time: the stream is asked again from its last trade."""


async def _keep_alive(streams: list[_ReplayStream]) -> None:
    """Tell each open stream's worker the client is alive, a few times per idle timeout, while frames are consumed."""
    while True:
        raise_if_cancelled()
        await asyncio.sleep(min(stream.keep_alive_s() for stream in streams))
        for stream in streams:
            with contextlib.suppress(NatsError):
                await stream.keep_alive()


async def _merged(
    streams: dict[str, _ReplayStream],
) -> AsyncIterator[tuple[TradeColumns, npt.NDArray[np.intp] | None]]:
    """The streams' trades in `(time, symbol, agg id)` order, a block at a time (`which`: each row's symbol)."""
    if len(streams) == 1:
        (stream,) = streams.values()
        while (trades := await stream.next()) is not None:
            yield trades, None
        return
    merge = ReplayMerge(list(streams))
    while not merge.done:
        for name in merge.wanted():
            trades = await streams[name].next()
            if trades is None:
                merge.finish(name)
            else:
                merge.add(name, trades)
        merged = merge.take()
        if merged is not None:
            yield merged.trades, merged.which


async def _paced(
    blocks: AsyncIterator[tuple[TradeColumns, npt.NDArray[np.intp] | None]], names: list[str], speed: float
) -> AsyncIterator[pl.DataFrame]:
    """Each block cut into the frames due together, each yielded when its first trade is due."""
    loop = asyncio.get_running_loop()
    schedule: Schedule | None = None
    async for trades, which in blocks:
        frame = trade_frame(trades, names, which)
        if schedule is None:  # from the first frame in hand: the time building it is not lateness
            schedule = Schedule(speed, loop.time(), int(trades.time[0]))
        index = 0
        while index < len(trades):
            due = schedule.due(int(trades.time[index]))
            if due - loop.time() > PACE_SPIN_S:
                await asyncio.sleep(due - loop.time() - PACE_SPIN_S)
            while loop.time() < due:  # the last PACE_SPIN_S on the CPU (a wake-up from sleep comes late)
                pass
            upto = max(index + 1, schedule.due_count(trades.time, loop.time()))
            yield frame.slice(index, upto - index)
            index = upto
