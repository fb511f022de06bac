"""One WebSocket client: its cursors, its live sending, its requests, its faults.

Each subscribed stream has a cursor into its symbol's history, starting at the history's
end (live trades only, as on Binance). One sender drains every cursor whenever a history
wakes it; one reader answers SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from services.exchange.faults import FaultConfig, FaultState, malformed_payload
from services.exchange.history import AggTrade, TradeHistory, encode_event, now_ms
from services.exchange.streams import StreamError, Subscription, stream_symbol

logger = logging.getLogger(__name__)


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
    ) -> None:
        self.websocket = websocket
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
        self.peer = _peer(websocket)

    @property
    def streams(self) -> list[str]:
        return list(self._cursors)

    async def run(self) -> None:
        """Stream until the client leaves, a fault disconnects it, or the server closes."""
        self._subscribe(self._initial)
        logger.info("client %s connected: %s %s", self.peer, self._framing, self.streams)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read())
                group.create_task(self._send())
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
            self._on_subscribe(history.symbol)

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
                reply = self._handle_request(message)
                await self.websocket.send(orjson.dumps(reply), text=True)
        except ConnectionClosed:
            pass
        finally:
            self._stop()

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
                    cursor.position = start + len(trades)
                    if trades and not await self._send_trades(stream, cursor.history, trades):
                        await self.websocket.close(reason="disconnect_after fault")
                        return
                if not self._closing:
                    await self._wake.wait()
        except ConnectionClosed:
            pass
        finally:
            self._stop()

    async def _send_trades(self, stream: str, history: TradeHistory, trades: list[AggTrade]) -> bool:
        """Send trades one frame each, applying faults; False once a disconnect is due."""
        symbol, scale, faults = history.symbol, self.time_scale, self.faults
        prefix = b'{"stream":"' + stream.encode() + b'","data":' if self.combined else b""
        suffix = b"}" if self.combined else b""
        send = self.websocket.send
        for trade in trades:
            if self._closing:
                return True
            if not faults.take():
                continue
            event_ms = now_ms()
            await send(prefix + encode_event(trade, symbol, event_ms, scale) + suffix, text=True)
            kind = faults.sent_one()
            if kind is not None:
                payload = malformed_payload(kind, trade, symbol, event_ms, scale)
                await send(prefix + payload + suffix, text=True)
            if faults.disconnect_due:
                return False
        return True
