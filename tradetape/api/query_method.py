"""What a query method declares: its name, request and reply models, and its handler.

Apart from the registry that finds the method modules, so that a method module imports this and
the registry imports the method modules, with no circle between them. How the CLI shows a reply is
not declared here but in `tradetape.cli.renderers`, so the analytics process loads no terminal library.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from tradetape.api.errors import invalid_request
from tradetape.api.models import RangeRequest
from tradetape.domain.aggregates import MINUTE_MS, MinuteLevels, OhlcRows, SecondBars, second_bars
from tradetape.domain.columns import Quantity, TradeColumns
from tradetape.domain.instruments import Market, market_of
from tradetape.domain.price_levels import PriceLevels

RequestT = TypeVar("RequestT", bound=RangeRequest)
ReplyT = TypeVar("ReplyT", bound=BaseModel)


class TradeSource(Protocol):
    """Where handlers read trades from: a shard's store, or anything a test builds."""

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        """Trades in `[start, end)`, or the whole tape when `time_range` is None."""
        ...


@runtime_checkable
class PriceLevelSource(Protocol):
    """A source that can sum trades per distinct price without handing them over (segment histograms)."""

    def price_levels(self, symbol: str, time_range: tuple[int, int] | None) -> PriceLevels | None:
        """Volume, buy volume and trade count per price; None when the sums could leave int64."""
        ...


@runtime_checkable
class SecondBarSource(Protocol):
    """A source that keeps 1-second bars (the store's aggregate layer): a long range reads a row a second."""

    def second_bars(self, symbol: str, time_range: tuple[int, int] | None) -> SecondBars:
        """The 1-second bars of the trades in the range, exactly as `second_bars` of those trades."""
        ...


@runtime_checkable
class MinuteBarSource(Protocol):
    """A source that keeps its 1-second bars rolled to minutes too (the store's layer, cached so)."""

    def minute_bars(self, symbol: str, time_range: tuple[int, int] | None) -> OhlcRows:
        """The range's bars a row a minute (a second at its ragged edges): rolled to whole minutes, exactly the
        1-second bars rolled."""
        ...


@runtime_checkable
class MinuteLevelSource(Protocol):
    """A source that keeps per-minute price levels (the store's aggregate layer)."""

    def minute_levels(
        self, symbol: str, time_range: tuple[int, int] | None, price_step: int = 1
    ) -> MinuteLevels | None:
        """The per-minute levels of the trades in the range (a ragged minute holds only its trades in range);
        None when a sum could leave int64. With a `price_step`, as `MinuteLevels.bucketed(price_step)`."""
        ...


@runtime_checkable
class QuantitySource(Protocol):
    """A source that answers over USD-M's normal quantity itself (the store: its layer keeps normal figures)."""

    def with_quantity(self, quantity: Quantity) -> TradeSource:
        """The same source, every volume it hands out summed over `quantity`."""
        ...


class NormalTrades:
    """Any source's trades with their normal quantity as `qty` (`TradeColumns.normal`): what a source without
    its own `with_quantity` answers "normal" from; every aggregate is then built from these trades."""

    def __init__(self, source: TradeSource) -> None:
        self._source = source

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        return self._source.trades(symbol, time_range).normal()


def quantity_source(source: TradeSource, symbol: str, quantity: Quantity) -> TradeSource:
    """`source` summing `quantity`: "normal" only on USD-M (the one market whose trades carry `nq`), else
    `invalid_request` saying why. Every volume-based handler starts here, so every one of them answers "normal"
    the same way: each trade weighs its `nq` instead of `q`; prices, sides and trade counts are unchanged."""
    if quantity == "all":
        return source
    market = market_of(symbol)
    if market is not Market.UM:
        raise invalid_request(
            f'quantity "normal" is USD-M\'s nq (the quantity without RPI orders); {symbol} is {market.value}, whose'
            ' trades carry no nq: ask quantity "all"',
            field="quantity",
            market=market.value,
        )
    return source.with_quantity(quantity) if isinstance(source, QuantitySource) else NormalTrades(source)


@runtime_checkable
class ContractSizeSource(Protocol):
    """A source that knows COIN-M contract sizes (the analytics worker: from COIN-M's exchangeInfo)."""

    def contract_size(self, symbol: str) -> int | None:
        """USD value of one contract of the COIN-M instrument `symbol`; None while not known."""
        ...


def contract_size_of(source: TradeSource, symbol: str) -> int | None:
    """The contract size of a COIN-M instrument, when the source knows it; None for other markets."""
    if market_of(symbol) is not Market.CM or not isinstance(source, ContractSizeSource):
        return None
    return source.contract_size(symbol)


def second_bars_of(source: TradeSource, symbol: str, time_range: tuple[int, int] | None) -> SecondBars:
    """The range's 1-second bars: from the source's layer when it keeps one, else built from its trades."""
    if isinstance(source, SecondBarSource):
        return source.second_bars(symbol, time_range)
    return second_bars(source.trades(symbol, time_range))


def minute_bars_of(source: TradeSource, symbol: str, time_range: tuple[int, int] | None) -> OhlcRows:
    """The range's bars to roll to whole minutes: a row a minute from a source keeping them, else its second bars."""
    if isinstance(source, MinuteBarSource):
        return source.minute_bars(symbol, time_range)
    return second_bars_of(source, symbol, time_range).ohlc()


def rows_to_roll(source: TradeSource, symbol: str, time_range: tuple[int, int] | None, interval_ms: int) -> OhlcRows:
    """The range's rows to roll into bars of `interval_ms` (whole seconds): a row a minute for whole minutes (a day
    is 1,440 rows from the store's layer, not 86,400), else a row a second; the same bars either way."""
    if interval_ms % MINUTE_MS == 0:
        return minute_bars_of(source, symbol, time_range)
    return second_bars_of(source, symbol, time_range).ohlc()


@dataclass(frozen=True)
class QueryMethod(Generic[RequestT, ReplyT]):
    name: str
    """The `<method>` token of `tape.query.<method>.<SYMBOL>`."""
    summary: str
    """One line for help texts and the schema."""
    request: type[RequestT]
    reply: type[ReplyT]
    handler: Callable[[TradeSource, str, RequestT, int], ReplyT]
    """`(source, symbol, request, now_ms) -> reply`; raises `QueryError` for what a client must hear."""
    reply_hint: str = "ask for a shorter range"
    """What to change when the reply exceeds the server's max payload."""
    bounded_range: bool = True
    """Whether `query_max_range_days` applies (not to `coverage`, which reads no trades)."""
    reads_ingest_ledger: bool = False
    """Whether the service hands the handler ingest's open gaps (`IngestGapSource`) read from NATS KV."""
    trade_bytes: int = 128
    """Peak bytes the handler needs per trade it reads: the decoded columns and what it computes from them.

    Measured with tracemalloc over 3M real-like trades (`bench/flood.py`'s history) and
    rounded up; with `query_memory_mb`, the read is refused before decoding past the
    budget. The default is deliberately dear, for a method nobody measured yet.
    """
    level_bytes: int = 100
    """Peak bytes per row of the aggregate layer a read merges (a histogram's or a minute's price level, a
    1-second bar), measured the same way."""
    encoder: Callable[[TradeSource, str, RequestT, int], bytes] | None = None
    """The reply's JSON straight from the answer, byte for byte what `handler`'s reply dumps (`model_dump_json`):
    what the service sends when given, for replies of thousands of rows whose models cost more than the answer."""

    def reply_json(self, source: TradeSource, symbol: str, request: RequestT, now_ms: int) -> bytes:
        """The reply's JSON body: from `encoder` when the method has one, else `handler`'s reply dumped."""
        if self.encoder is not None:
            return self.encoder(source, symbol, request, now_ms)
        return self.handler(source, symbol, request, now_ms).model_dump_json().encode()

    def parse_request(self, data: bytes | dict[str, Any]) -> RequestT:
        """A JSON body (or its fields) as this method's request; `invalid_request` naming each failing field."""
        return parse_body(self.request, self.name, data)


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(model: type[ModelT], name: str, data: bytes | dict[str, Any]) -> ModelT:
    """A JSON body (or its fields) as `model`; `invalid_request` naming `name` and each failing field."""
    try:
        if isinstance(data, dict):
            return model.model_validate(data)
        parsed = model.model_validate_json(data or b"{}")
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": _reason(e["msg"])}
            for e in exc.errors()
        ]
        _refuse(name, problems)
    try:
        repeated = repeated_keys(data)  # only once valid: JSON the model's parser took, within its depth limit
    except (ValueError, RecursionError) as exc:  # what the standard library reads differently (a 5,000-digit int)
        _refuse(name, [{"field": "body", "message": f"not JSON this worker reads: {exc}"[:200]}])
    if repeated:
        _refuse(name, [{"field": field, "message": "given twice"} for field in repeated])
    return parsed


class _Object(dict[str, Any]):
    """A JSON object as `repeated_keys` parses it: its fields and the paths of the keys given more than once in it."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    built = _Object(pairs)
    built.repeated = []
    seen: set[str] = set()
    for key, value in pairs:
        if key in seen:
            built.repeated.append(key)
        seen.add(key)
        built.repeated += [f"{key}.{path}" for path in _repeated_inside(value)]
    return built


def _repeated_inside(value: Any) -> list[str]:
    if isinstance(value, _Object):
        return value.repeated
    if isinstance(value, list):
        return [f"{index}.{path}" for index, item in enumerate(value) for path in _repeated_inside(item)]
    return []


def repeated_keys(data: bytes) -> list[str]:
    """The dotted paths of keys a JSON body gives more than once (parsers differ on which one counts: a proxy that
    checked the first would see another request than the one answered, so such a body is refused).

    `ValueError` or `RecursionError` for what the standard library cannot read."""
    return _repeated_inside(json.loads(data or b"{}", object_pairs_hook=_object))


def _refuse(name: str, problems: list[dict[str, str]]) -> NoReturn:
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    raise invalid_request(f"invalid {name} request: {summary}", errors=problems) from None


def _reason(message: str) -> str:
    """Pydantic's message without the "Value error, " it puts before a validator's own text."""
    return message.removeprefix("Value error, ")
