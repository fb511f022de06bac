"""The three markets one simulator serves, side by side on one port: where each lives and how it speaks.

Binance puts spot, USD-M and COIN-M on hosts of their own; the simulator has one port, so
each market's WebSocket paths sit below a prefix named for its host: spot's at the root
(``/ws``, ``/stream``), USD-M's below ``/fstream`` (market streams only under ``/market``,
as on Binance since 2026-04-23: ``/fstream/market/stream``, ``/fstream/market/ws/...``),
COIN-M's below ``/dstream`` (``/dstream/stream``). REST needs no prefix, as the families
differ (``/api/v3``, ``/fapi/v1``, ``/dapi/v1``), and neither do the dumps
(``/data/spot/``, ``/data/futures/um/``, ``/data/futures/cm/``). So a market's base URLs
are ``ws://host:port`` + its WebSocket prefix and ``http://host:port``.

Each market speaks its own dialect, written here from Binance's documentation and not
taken from ingest's code: futures frames and rows have no ``M``; USD-M's carry ``nq`` (the
quantity without RPI orders); COIN-M's quantities are whole contracts; futures dumps have a
header row and ms times; futures allow 10 incoming messages a second per connection and
ping every 3 minutes; an aggTrades call weighs 20 against 2,400 a minute per market.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tradetape.domain.instruments import Market


@dataclass(frozen=True, slots=True)
class MarketWire:
    market: Market
    ws_prefix: str
    """Below it, Binance's WebSocket paths of the market (``/ws/...``, ``/stream``)."""
    rest_prefix: str
    dump_prefix: str
    agg_trades_weight: int
    exchange_info_weight: int
    weight_limit: int
    """Request weight a minute the market allows one client address; beyond: 429."""
    best_match: bool
    """Frames and REST rows carry ``M``, dumps an `isBestMatch` column (spot)."""
    normal_qty: bool
    """Frames and REST rows carry ``nq`` (USD-M)."""
    contracts: bool
    """Quantities are whole contracts of `contract_size` USD (COIN-M)."""
    dump_header: bool
    dump_time_scale: int
    """Dump timestamps: 1000 (µs, spot since 2025) or 1 (ms, futures)."""

    @property
    def futures(self) -> bool:
        return self.market is not Market.SPOT


FUTURES_PING_INTERVAL = 180.0
FUTURES_MAX_INCOMING_PER_S = 10
DUMP_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"

_USD_M = MarketWire(
    Market.UM,
    ws_prefix="/fstream/market",
    rest_prefix="/fapi/v1/",
    dump_prefix="/data/futures/um/",
    agg_trades_weight=20,
    exchange_info_weight=1,
    weight_limit=2400,
    best_match=False,
    normal_qty=True,
    contracts=False,
    dump_header=True,
    dump_time_scale=1,
)

WIRES: dict[Market, MarketWire] = {
    Market.SPOT: MarketWire(
        Market.SPOT,
        ws_prefix="",
        rest_prefix="/api/v3/",
        dump_prefix="/data/spot/",
        agg_trades_weight=4,
        exchange_info_weight=20,
        weight_limit=6000,
        best_match=True,
        normal_qty=False,
        contracts=False,
        dump_header=False,
        dump_time_scale=1000,
    ),
    Market.UM: _USD_M,
    # the futures dialect once: COIN-M speaks USD-M's but at its own paths, without nq, in whole contracts
    Market.CM: replace(
        _USD_M,
        market=Market.CM,
        ws_prefix="/dstream",
        rest_prefix="/dapi/v1/",
        dump_prefix="/data/futures/cm/",
        normal_qty=False,
        contracts=True,
    ),
}


def wire_of(market: Market) -> MarketWire:
    return WIRES[market]


def ws_route(path: str) -> tuple[MarketWire, str] | None:
    """The market a WebSocket path belongs to and the path below its prefix; None if none serves it.

    USD-M's streams exist only below ``/fstream/market``: ``/fstream/ws/...`` is refused, as Binance does.
    """
    for wire in (WIRES[Market.UM], WIRES[Market.CM]):
        if path.startswith(wire.ws_prefix + "/"):
            return wire, path[len(wire.ws_prefix) :]
    if path.startswith(("/fstream", "/dstream")):
        return None
    return WIRES[Market.SPOT], path


def rest_market(path: str) -> MarketWire | None:
    """The market whose REST family a path is in (``/fapi/v1/aggTrades`` → USD-M); None for none."""
    return next((wire for wire in WIRES.values() if path.startswith(wire.rest_prefix)), None)


def contract_size(symbol: str) -> int:
    """A COIN-M contract's value in USD, as Binance sets it: 100 for BTC, 10 for every other coin."""
    return 100 if symbol.startswith("BTC") else 10


def contract_type(symbol: str) -> str:
    """``BTCUSD_PERP`` and ``BTCUSDT`` are perpetual; a dated symbol (``BTCUSD_261225``) is a quarterly."""
    return "CURRENT_QUARTER" if symbol.rpartition("_")[2].isdigit() else "PERPETUAL"
