"""One WebSocket client: its cursors, its live sending, its requests, its faults.

Each subscribed stream has a cursor into its symbol's history, starting at the history's
end (live trades only, as on Binance). One sender drains every cursor whenever a history
wakes it; one reader answers SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tradetape.services.exchange.faults import (
    FaultConfig,
    FaultState,
    invalid_payload,
    malformed_payload,
    oversized_payload,
)
from tradetape.services.exchange.history import AggTrade, TradeHistory, encode_event, now_ms
from tradetape.services.exchange.markets import MarketWire
from tradetape.services.exchange.streams import MAX_STREAMS, StreamError, Subscription, stream_symbol

logger = logging.getLogger(__name__)

FRAMES_PER_WRITE = 64
"""Trade frames sent to a client in one socket write at most: a client that reads slowly still holds up the
sender after each write (the write buffer's high-water mark), as it did after each frame."""
MAX_INCOMING_PER_S = 5
"""Binance disconnects a client sending more messages a second (pings, pongs, requests)."""


def _peer(websocket: ServerConnection) -> str:
    address = websocket.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


def _error(code: int, msg: str, request_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


@dataclass(slots=True)
class _Cursor:
    history: TradeHistory
    position: int


class StreamSession:
    """Serves one accepted WebSocket connection until it closes."""

    def __init__(
        self,
        websocket: ServerConnection,
        subscription: Subscription,
        histories: Mapping[str, TradeHistory],
        faults: FaultConfig,
        on_subscribe: Callable[[str], None],
        *,
        wire: MarketWire,
        max_streams: int = MAX_STREAMS,
        max_incoming_per_s: int = MAX_INCOMING_PER_S,
    ) -> None:
        """`histories`: the market's, by the exchange's symbol; `wire`: how the market writes its frames."""
        self.websocket = websocket
        self.wire = wire
        self.combined = subscription.combined
        self.time_scale = subscription.time_scale
        self.faults = FaultState(faults)
        self.skipped = 0
        self._histories = histories
        self._on_subscribe = on_subscribe
        self._cursors: dict[str, _Cursor] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._initial = subscription.streams
        self._max_streams = max_streams
        self._max_incoming = max_incoming_per_s
        self._incoming: deque[float] = deque()
        self._shutdown_sent = False
        self._group: asyncio.TaskGroup
        self.peer = _peer(websocket)

    @property
    def streams(self) -> list[str]:
        return list(self._cursors)

    def position(self, history: TradeHistory) -> int | None:
        """How far this connection has sent `history` (None: it does not follow it)."""
        positions = [c.position for c in self._cursors.values() if c.history is history]
        return min(positions) if positions else None

    async def run(self) -> None:
        """Stream until the client leaves, a fault disconnects it, or the server closes."""
        self._subscribe(self._initial)
        logger.info(
            "client %s connected: %s %s %d streams", self.peer, self.wire.market, self._framing, len(self.streams)
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read())
                group.create_task(self._send())
                self._group = group
        finally:
            for cursor in self._cursors.values():
                cursor.history.remove_listener(self._wake)
            logger.info(
                "client %s disconnected (code %s): %s sent=%d dropped=%d malformed=%d skipped=%d",
                self.peer,
                self.websocket.close_code,
                self.streams,
                self.faults.sent,
                self.faults.dropped,
                self.faults.malformed,
                self.skipped,
            )

    async def announce_shutdown(self) -> None:
        """Send Binance's ``serverShutdown`` event; the server closes the socket after."""
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(
                orjson.dumps({"e": "serverShutdown", "E": now_ms() * self.time_scale}),
                text=True,
            )

    @property
    def _framing(self) -> str:
        return "combined" if self.combined else "raw"

    def _subscribe(self, streams: tuple[str, ...] | list[str]) -> None:
        for stream in streams:
            if stream in self._cursors:
                continue
            history = self._histories[stream_symbol(stream, self._histories)]
            self._cursors[stream] = _Cursor(history, history.end)
            history.add_listener(self._wake)
            self._on_subscribe(history.name)

    def _unsubscribe(self, streams: list[str]) -> None:
        for stream in streams:
            cursor = self._cursors.pop(stream, None)
            if cursor is not None and not any(c.history is cursor.history for c in self._cursors.values()):
                cursor.history.remove_listener(self._wake)

    def _stop(self) -> None:
        self._closing = True
        self._wake.set()

    async def _read(self) -> None:
        try:
            async for message in self.websocket:
                if self._over_rate():
                    logger.warning("client %s sent more than %d messages a second", self.peer, self._max_incoming)
                    await self.websocket.close(1008, "Too many requests")
                    return
                reply = self._handle_request(message)
                await self.websocket.send(orjson.dumps(reply), text=True)
        except ConnectionClosed:
            pass
        finally:
            self._stop()

    def _over_rate(self) -> bool:
        """Binance drops a connection that sends more messages a second than its market allows (5 spot, 10 futures)."""
        now = time.monotonic()
        incoming = self._incoming
        incoming.append(now)
        while incoming and incoming[0] <= now - 1.0:
            incoming.popleft()
        return len(incoming) > self._max_incoming

    def _handle_request(self, message: str | bytes) -> dict[str, Any]:
        """Answer a live subscription request the way Binance's stream API does."""
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            return _error(3, "Invalid JSON: expected a JSON object", None)
        if not isinstance(request, dict):
            return _error(2, "Invalid request: expected a JSON object", None)
        request_id = request.get("id")
        method, params = request.get("method"), request.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": self.streams, "id": request_id}
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return _error(2, f"Invalid request: unknown method {method!r}", request_id)
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _error(1, "Invalid value type: expected a list of stream names", request_id)
        if method == "UNSUBSCRIBE":
            self._unsubscribe(params)
            return {"result": None, "id": request_id}
        try:
            for stream in params:
                stream_symbol(stream, self._histories)
        except StreamError as exc:
            return _error(2, f"Invalid request: {exc.msg}", request_id)
        if len(set(self._cursors) | set(params)) > self._max_streams:
            return _error(2, f"Invalid request: at most {self._max_streams} streams per connection", request_id)
        self._subscribe(params)
        self._wake.set()
        return {"result": None, "id": request_id}

    async def _send(self) -> None:
        try:
            while not self._closing:
                self._wake.clear()
                for stream, cursor in list(self._cursors.items()):
                    start, trades = cursor.history.since(cursor.position)
                    self.skipped += start - cursor.position
                    cursor.position = start
                    while trades:
                        sent, fault = await self._send_trades(stream, cursor.history, trades)
                        cursor.position += sent
                        trades = trades[sent:]
                        if fault and not await self._fault_due():
                            return
                if not self._closing:
                    await self._wake.wait()
        except ConnectionClosed:
            pass
        finally:
            self._stop()

    async def _send_trades(self, stream: str, history: TradeHistory, trades: list[AggTrade]) -> tuple[int, bool]:
        """Send trades one frame each, applying faults; returns how many were taken and whether a fault is due.

        Each trade is its own text message, as on Binance; up to `FRAMES_PER_WRITE` of them go to the
        socket in one write (`_write`).
        """
        symbol, scale, faults, best_match = history.symbol, self.time_scale, self.faults, self.wire.best_match
        prefix = b'{"stream":"' + stream.encode() + b'","data":' if self.combined else b""
        suffix = b"}" if self.combined else b""
        frames: list[bytes] = []
        for index, trade in enumerate(trades):
            if self._closing:
                return len(trades), False
            if trade.void or not faults.take():
                continue
            event_ms = max(now_ms(), trade.time_ms)  # Binance never sends an event before its trade (E ≥ T)
            frame = prefix + encode_event(trade, symbol, event_ms, scale, best_match=best_match) + suffix
            frames.append(frame)
            kind = faults.sent_one()
            if kind is not None:
                frames.append(prefix + malformed_payload(kind, trade, symbol, event_ms, scale) + suffix)
            if faults.active:
                frames.extend(self._extras(frame, prefix, suffix, trade, symbol, event_ms))
                if faults.disconnect_due or faults.silence_due or (faults.shutdown_due and not self._shutdown_sent):
                    await self._write(frames)
                    return index + 1, True
            if len(frames) >= FRAMES_PER_WRITE:
                await self._write(frames)
        await self._write(frames)
        return len(trades), False

    async def _write(self, frames: list[bytes]) -> None:
        """Each frame a text message of its own, all in one socket write, then wait while the client's buffer is
        full (as `send` does for one): a write per frame was the simulator's largest cost at 10,000 trades/s."""
        if not frames:
            return
        websocket = self.websocket
        protocol = websocket.protocol
        async with websocket.send_context():  # checks the connection is open; on exit, waits on a full buffer
            for frame in frames:
                protocol.send_text(frame)
            # joined: `send_context` would write each frame's bytes on its own, a syscall each. Only frames are
            # pending here (text frames sent while open never ask for an EOF; every other path writes at once).
            websocket.transport.writelines(protocol.data_to_send())
        frames.clear()

    def _extras(
        self, frame: bytes, prefix: bytes, suffix: bytes, trade: AggTrade, symbol: str, event_ms: int
    ) -> list[bytes]:
        """The invalid, duplicate and oversized frames due after `frame`, in that order."""
        invalid, duplicate, oversized = self.faults.extras()
        scale = self.time_scale
        extras: list[bytes] = []
        if invalid is not None:
            extras.append(prefix + invalid_payload(invalid, trade, symbol, event_ms, scale) + suffix)
        if duplicate:
            extras.append(frame)
        if oversized:
            size = self.faults.config.oversized_bytes
            extras.append(prefix + oversized_payload(trade, symbol, event_ms, size, scale) + suffix)
        return extras

    async def _fault_due(self) -> bool:
        """Close, go silent, or announce a shutdown (closing after the grace period); True: keep streaming."""
        faults = self.faults
        if faults.disconnect_due:
            await self.websocket.close(reason="disconnect_after fault")
            return False
        if faults.silence_due:
            logger.info("client %s: going silent (silent_after fault)", self.peer)
            self.websocket.transport.pause_reading()
            return False
        self._shutdown_sent = True
        await self.announce_shutdown()
        self._group.create_task(self._close_after(faults.config.shutdown_grace_s))
        return True

    async def _close_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.websocket.close(1001, "serverShutdown fault")
