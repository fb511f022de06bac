"""The Python client: any registered query method over NATS, replies as typed models.

    async with await TapeClient.connect() as tape:
        profile = await tape.query("volume_profile", "BTCUSDT", last="1h")
        rows = profile.to_polars()
        async for frame in tape.replay(["BTCUSDT", "ETHUSDT"], start=..., end=...):
            ...  # polars DataFrames of stored trades, merged by time

It finds the server as the CLI does (`NATS_URL`, else `<data dir>/nats.url`), checks a
request against the method's model before sending it, and raises:

    TapeError
    ├── ClientQueryError  an error reply (`code`, `message`, `details`; a `tradetape.api.errors.QueryError`),
    │                     or a request refused before it is sent (an unknown method: the known ones listed)
    └── TapeUnavailable   NATS unreachable, nobody serving the method and symbol (`served`: what is, from the
                          served lists analytics keeps in NATS KV, `tradetape.bus.served`), or no reply in time

`SyncTapeClient` is the same for code that is not async (scripts, notebooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import ValidationError

from tradetape.api.errors import QueryError
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
from tradetape.api.models import MAX_INTERVALS, ErrorReply, parse_duration_ms, parse_time_ms
from tradetape.api.registry import method as registered_method
from tradetape.api.registry import methods
from tradetape.api.replay import DEFAULT_CHUNK, DEFAULT_WINDOW, ReplayRequest
from tradetape.api.replay.chunks import (
    ReplayChunk,
    ReplayEnd,
    ReplayMessageError,
    ReplayStart,
    decode_message,
    trade_frame,
)
from tradetape.api.replay.merging import ReplayMerge
from tradetape.api.replay.pacing import Schedule
from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect, resolve_nats_url
from tradetape.bus.served import read_served, served_methods
from tradetape.bus.subjects import (
    REPLAY_FLOW_PREFIX,
    VIEW_HEADER,
    bars_subject,
    live_trades_subject,
    profile_subject,
    query_subject,
    replay_subject,
)
from tradetape.domain.aggregates import SECOND_MS
from tradetape.domain.columns import TradeColumns
from tradetape.domain.instruments import instrument_from_input
from tradetape.domain.symbols import SymbolError
from tradetape.errors import TradetapeError
from tradetape.ground.redaction import redact_url
from tradetape.ground.tasks import cancel_and_wait
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
LIVE_JOIN_ATTEMPTS = 50
LIVE_BARS_CHUNK_MS = 900_000
LIVE_TRADES_QUEUE = 10_000
"""Live trades messages held for the caller at most; past that they are dropped and read again (`_fill`)."""
LIVE_TRADES_RETRY_S = 0.05
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
UNSERVED = "unserved"
"""The error code of the shard an instrument belongs to when it does not serve it (`tradetape.api.errors`)."""
SHOWN_SYMBOLS = 50
"""Served symbols an error message names at most (with `TRADETAPE_SYMBOLS=ALL` there are thousands)."""
MAX_REPLAY_INSTRUMENTS = 100
"""Instruments one replay merges at most: a stream each, and each worker serves `replay_max_streams` at once."""
REPLAY_RESUMES = 3
"""Times one instrument's replay is asked again from its last trade after a lost chunk or a silent worker."""
PACE_SPIN_S = 0.002
"""With `speed`, a frame's last 2 ms before it is due are waited for on the CPU, not asleep (measured at speed=1 on
a busy 2-core machine: p99 lateness 5.9 ms asleep all the way)."""
_FLOW_SUBJECT = re.compile(re.escape(REPLAY_FLOW_PREFIX) + r"\.[A-Za-z0-9]{1,64}")


class TapeError(TradetapeError):
    """Anything the client raises."""


class TapeUnavailable(TapeError):
    """NATS cannot be reached, no analytics worker serves the subject, or none answered in time.

    For a subject nobody serves, `served` holds what is served (symbol → methods) and the
    message says it: the symbols served, or the symbol's methods.
    """

    def __init__(self, message: str, served: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.served = served


class ClientQueryError(QueryError, TapeError):
    """An error reply from the analytics service."""


class TapeClient:
    def __init__(
        self,
        nc: Client,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        owns_connection: bool = False,
        reopen: Callable[[], Awaitable[Client]] | None = None,
    ) -> None:
        """`reopen` opens a new connection when the server has closed `nc` for good (`connect` passes one)."""
        self.nc = nc
        self.timeout = timeout
        self._owns_connection = owns_connection
        self._reopen = reopen
        self._reopening = asyncio.Lock()

    @classmethod
    async def connect(
        cls, settings: Settings | None = None, *, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> TapeClient:
        """Connect to `url`, or to the server `settings` (default: from the environment) point at."""
        settings = settings or Settings()
        url = url or resolve_nats_url(settings)
        auth = NatsAuth.from_settings(settings)

        async def open_connection() -> Client:
            try:
                return await connect(url, "tradetape-client", auth=auth, retry=False, connect_timeout=3)
            except (NatsError, OSError, TimeoutError) as exc:
                raise TapeUnavailable(
                    f"cannot reach NATS at {redact_url(url)} ({redact_url(str(exc)) or type(exc).__name__}); "
                    "is `tradetape up` running?"
                ) from exc

        return cls(await open_connection(), timeout=timeout, owns_connection=True, reopen=open_connection)

    async def _connection(self) -> Client:
        """`nc`, opened again if the server closed it: nats-py never reconnects after a server's `-ERR`, and a
        long-lived client (the MCP server) must outlive whatever one request or one server restart did to it."""
        async with self._reopening:
            if self.nc.is_closed and self._reopen is not None:
                logger.warning("nats connection closed, opening a new one", extra={"error": repr(self.nc.last_error)})
                self.nc = await self._reopen()
        return self.nc

    async def query(self, method: str, symbol: str, /, **fields: Any) -> Any:
        """Ask `method` about `symbol` with request `fields`; the method's reply model, or `ClientQueryError`."""
        reply, _ = await self._ask(method, symbol, **fields)
        return reply

    async def _ask(self, method: str, symbol: str, /, **fields: Any) -> tuple[Any, str | None]:
        """`query`, with the view the reply read (`VIEW_HEADER`; None when it read more than one state)."""
        try:
            spec = registered_method(method)
        except KeyError:
            known = list(methods())
            message = f"unknown query method {method!r}; known: {', '.join(known)}"
            raise ClientQueryError("invalid_request", message, {"method": method, "known": known}) from None
        try:
            request = spec.parse_request(fields)
        except QueryError as exc:
            raise ClientQueryError(exc.code, exc.message, exc.details, status=exc.status) from None
        symbol = _symbol(symbol)
        subject = query_subject(method, symbol)
        body = orjson.dumps(request.model_dump(mode="json", exclude_unset=True))
        nc = await self._connection()
        if len(body) > nc.max_payload:
            message = f"the request is {len(body)} bytes, above the server's max payload of {nc.max_payload}"
            raise ClientQueryError("invalid_request", message, status=400)
        try:
            msg = await nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            raise await self._unserved(subject, method, symbol) from None
        except NatsTimeoutError:
            raise TapeUnavailable(f"no reply on {subject} within {self.timeout}s") from None
        except NatsError as exc:
            raise TapeUnavailable(f"{subject}: {exc}") from None
        headers = msg.headers or {}
        if headers.get(ERROR_CODE_HEADER):
            error = _error_of(msg.data, headers)
            if error.code == UNSERVED:
                raise await self._unserved(subject, method, symbol) from error
            raise error
        return spec.reply.model_validate_json(msg.data), headers.get(VIEW_HEADER)

    async def _unserved(self, subject: str, method: str, symbol: str) -> TapeUnavailable:
        """Nobody answers `subject`: the error naming what is served."""
        try:
            served = await self.served()
        except TapeUnavailable as exc:
            return TapeUnavailable(f"no analytics worker serves {subject}; what is served is unknown: {exc}")
        return TapeUnavailable(
            f"no analytics worker serves {subject}: {describe_served(served, method, symbol)}", served
        )

    async def served(self) -> dict[str, list[str]]:
        """Instrument → the methods some analytics shard answers for it, from the served lists each shard keeps in
        NATS KV (`tradetape.bus.served`; names that are no symbol left out, as no query could be sent for them)."""
        nc = await self._connection()
        try:
            return served_methods(await read_served(nc.jetstream()))
        except ConnectionClosedError:  # a client used after `close()`: the caller's mistake, not unavailability
            raise
        except (NatsError, TimeoutError) as exc:
            raise TapeUnavailable(f"the served lists in NATS KV cannot be read: {exc!r}") from None

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
        symbol = _symbol(symbol)
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
        symbol = _symbol(symbol)
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
        names = [_symbol(symbols)] if isinstance(symbols, str) else [_symbol(symbol) for symbol in symbols]
        begin = _now_ms() if start is None else _parse_time(start)
        finish = None if end is None else _parse_time(end)
        states = {live_trades_subject(name): LiveTrades(name, begin, finish) for name in dict.fromkeys(names)}
        heard: asyncio.Queue[Msg] = asyncio.Queue(LIVE_TRADES_QUEUE)

        async def on_message(msg: Msg) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # dropped: the next seq shows the loss, it is read again
                heard.put_nowait(msg)

        nc = await self._connection()
        subscriptions = [await nc.subscribe(subject, cb=on_message) for subject in states]
        try:
            await nc.flush()
            for state in states.values():
                async for batch in self._fill(state):
                    yield batch
            while True:
                msg = await heard.get()
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
            while True:
                page = await self.query("trades", symbol, start=first, end=upto, limit=MAX_PAGE, cursor=cursor)
                taken = state.take([trade for trade in page.trades if low <= trade.a <= high])
                if taken:
                    yield LiveTradesBatch(symbol=symbol, trades=taken, stored_at=None)
                if page.next_cursor is None:
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
                    update = model.model_validate_json((await subscription.next_msg(timeout=None)).data)
                    if not order.follows(update):
                        break
                    if state.apply(update) and (reply := state.reply(_now_ms())) is not None:
                        yield reply
        finally:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

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

    async def close(self) -> None:
        """Close the connection if this client opened it, for good; safe to call twice."""
        self._reopen = None
        if self._owns_connection and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def describe_served(served: dict[str, list[str]], method: str, symbol: str) -> str:
    """Why nobody answered `method` about `symbol`, in terms of what is served."""
    if not served:
        return "no analytics worker has said what it serves (start `tradetape up` or `tradetape analytics`)"
    if symbol not in served:
        names = list(served)
        more = f" and {len(names) - SHOWN_SYMBOLS} more" if len(names) > SHOWN_SYMBOLS else ""
        return f"{symbol} is not served; served symbols: {', '.join(names[:SHOWN_SYMBOLS])}{more}"
    return f"{symbol} has no method {method}; its methods: {', '.join(served[symbol])}"


def _symbol(symbol: str) -> str:
    """The instrument a caller typed (`btcusdt`, `um:BTCUSDT`), or `invalid_request` before anything is sent."""
    try:
        return instrument_from_input(symbol)
    except SymbolError as exc:
        raise ClientQueryError("invalid_request", str(exc), status=400) from None


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

    def __init__(self, client: TapeClient, instrument: str, request: ReplayRequest) -> None:
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
        self._subscription = await nc.subscribe(inbox)
        fields = self._request.model_dump(exclude={"after_id"})
        if self._last is not None:
            fields["start"], fields["after_id"] = self._last
        self._next_seq, self._acked, self._trades = 0, -1, 0
        await nc.publish(replay_subject(self.instrument), orjson.dumps(fields), reply=inbox)
        message = await self._message()
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

    async def next(self) -> TradeColumns | None:
        """The next chunk's trades, None at the end; acks what was consumed before it."""
        while True:
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
        """A third of the worker's idle timeout (a stream being asked again: a second)."""
        return (self._start.idle_ms / 1000 / 3) if self._start is not None else 1.0

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
            raise _error_of(msg.data, headers)
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


def _parse_time(value: int | str) -> int:
    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise ClientQueryError("invalid_request", str(exc)) from None


def _holds(coverage: CoverageReply, update: LiveTradesUpdate) -> bool:
    """Whether a whole-tape coverage reply's state includes the write `update` announced."""
    ids = sorted([*(trade.a for trade in update.trades), *update.voids])
    return not ids or SnapshotIds(coverage).holds(LiveBatch(ids=[(ids[0], ids[0])]))


def _error_of(data: bytes, headers: dict[str, str]) -> ClientQueryError:
    status = int(headers.get(ERROR_CODE_HEADER) or 500)
    try:
        reply = ErrorReply.model_validate_json(data)
    except ValidationError:
        return ClientQueryError("internal", headers.get("Nats-Service-Error") or "error without a body", status=status)
    error = reply.error
    return ClientQueryError(error.code, error.message, error.details, status=status)


class SyncTapeClient:
    """`TapeClient` for code that is not async: each call runs on the client's own event loop.

    with SyncTapeClient.connect() as tape:
        bars = tape.query("coverage", "BTCUSDT")
    """

    def __init__(self, runner: asyncio.Runner, client: TapeClient) -> None:
        self._runner = runner
        self._client = client
        self._closed = False

    @classmethod
    def connect(
        cls, settings: Settings | None = None, *, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> SyncTapeClient:
        runner = asyncio.Runner()
        try:
            client = runner.run(TapeClient.connect(settings, url=url, timeout=timeout))
        except BaseException:
            runner.close()
            raise
        return cls(runner, client)

    def query(self, method: str, symbol: str, /, **fields: Any) -> Any:
        return self._runner.run(self._client.query(method, symbol, **fields))

    def served(self) -> dict[str, list[str]]:
        return self._runner.run(self._client.served())

    def close(self) -> None:
        """Close the connection and the event loop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
