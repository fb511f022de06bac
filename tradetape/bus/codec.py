"""The trade message on the bus: the raw aggTrade JSON object, exactly as the exchange sent it.

Ingest encodes, persist decodes; both validate with the same `parse_trade`, so a message
that one side accepts the other side accepts too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tradetape.binance.aggtrade import TradeFormatError, parse_trade, parse_trades
from tradetape.domain.trade import TradeRow


def encode_trade(obj: dict[str, Any]) -> bytes:
    """The payload published to `tape.trades.binance.<SYMBOL>` for one aggTrade object."""
    return orjson.dumps(obj)


def decode_trade(payload: bytes, *, now_ms: int | None = None) -> TradeRow:
    """A trade message back into an exact row; `TradeFormatError` (with the reason) if it is not one.

    `now_ms` as in `parse_trade`."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise TradeFormatError(f"not JSON: {exc}") from None
    return parse_trade(obj, now_ms=now_ms)


class TradeDecoder:
    """The trade messages of a fetched batch into rows in one call (`parse_trades`), exactly as `decode_trade` one
    by one; the decimals' units are remembered from batch to batch. One per consumer: not shared between threads."""

    def __init__(self) -> None:
        self._units: dict[str, int] = {}

    @property
    def remembered(self) -> int:
        """How many decimal strings' units are remembered (bounded by `parse_trades`)."""
        return len(self._units)

    def decode(self, payloads: Sequence[bytes], *, now_ms: int | None = None) -> list[TradeRow | TradeFormatError]:
        """Per payload its row, or the `TradeFormatError` `decode_trade` would raise for it."""
        objs: list[Any] = []
        not_json: dict[int, TradeFormatError] = {}
        for index, payload in enumerate(payloads):
            try:
                objs.append(orjson.loads(payload))
            except orjson.JSONDecodeError as exc:
                not_json[index] = TradeFormatError(f"not JSON: {exc}")
                objs.append(None)
        rows = parse_trades(objs, now_ms=now_ms, known_units=self._units)
        for index, error in not_json.items():
            rows[index] = error
        return rows
