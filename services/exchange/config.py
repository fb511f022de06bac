"""What the exchange serves (`ExchangeConfig`): instruments, replays, rates, faults, limits; built once at the edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tradetape.domain.instruments import check_instrument
from tradetape.services.exchange.connection import MAX_INCOMING_PER_S
from tradetape.services.exchange.faults import FaultConfig
from tradetape.services.exchange.generator import format_units, to_units
from tradetape.services.exchange.markets import FUTURES_MAX_INCOMING_PER_S, FUTURES_PING_INTERVAL, MarketWire
from tradetape.services.exchange.replay import symbol_from_path
from tradetape.services.exchange.stored import StoredFrames
from tradetape.services.exchange.streams import MAX_STREAMS

DEFAULT_TICK_SIZE = "0.01"
PING_INTERVAL = 20.0
"""Binance pings every 20 s ..."""
PING_TIMEOUT = 60.0
"""... and drops a client whose pong has not come within a minute."""
MAX_HISTORY_DAYS = 366


@dataclass(frozen=True)
class ExchangeConfig:
    """Everything the simulator serves; built once at the edge and passed in."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read it back from ``Exchange.port``."""
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT")
    """Instruments listed (``BTCUSDT``, ``um:BTCUSDT``, ``cm:BTCUSD_PERP``); unless replayed, generated at ``rate``."""
    replay: Sequence[Path | str] | Mapping[str, Path | str] = ()
    """Dumps to replay; a sequence takes each (spot) symbol from its file name, a mapping names the instrument."""
    speed: float | None = None
    """Replay speed factor (10 = ten times real time); None = as fast as possible."""
    original_times: bool = False
    """Keep the dump's trade times instead of shifting them to the present."""
    rate: float = 50.0
    """Generated trades per second per symbol; 0 lists the symbols without trading them."""
    seed: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    tick_sizes: Mapping[str, str] = field(default_factory=dict)
    """Per-instrument PRICE_FILTER tick size (default 0.01); the generator trades on it too."""
    max_history: int | None = 1_000_000
    """Trades retained per symbol (oldest dropped first); None keeps all."""
    state_dir: Path | None = None
    """Where every symbol records the trades it released (`released`), so a restart answers
    them on REST and continues right after them; None forgets everything at a stop."""
    history_days: int = 0
    """With a state directory, finished days invented before the first start (`past_trades`,
    ending right below the first live id), so the dumps and REST have past days to serve."""
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    max_streams: int = MAX_STREAMS
    """Streams one connection may hold (Binance: 1024); tests use fewer."""
    max_incoming_per_s: int = MAX_INCOMING_PER_S
    """Messages a spot client may send a connection a second (Binance: 5)."""
    futures_ping_interval: float = FUTURES_PING_INTERVAL
    """Futures connections are pinged this often (Binance: every 3 minutes)."""
    futures_max_incoming_per_s: int = FUTURES_MAX_INCOMING_PER_S
    """Messages a futures client may send a connection a second (Binance: 10)."""
    stored: StoredFrames | None = None
    """A stored range to serve (`stored.StoredFeed`, `tradetape exchange --from-store`): no symbol is generated."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.speed is not None and self.speed <= 0:
            raise ValueError("speed must be positive or None")
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError("max_history must be positive or None")
        if not 0 <= self.history_days <= MAX_HISTORY_DAYS:
            raise ValueError(f"history_days must be 0..{MAX_HISTORY_DAYS}")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        replay = self.replay
        object.__setattr__(self, "replay", dict(replay) if isinstance(replay, Mapping) else tuple(replay))
        object.__setattr__(self, "tick_sizes", dict(self.tick_sizes))
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        for name in (*self.symbols, *self.replay_map, *self.tick_sizes):
            check_instrument(name)
        for tick in self.tick_sizes.values():
            to_units(tick)

    @property
    def replay_map(self) -> dict[str, Path]:
        """Replayed symbols and their dumps."""
        if isinstance(self.replay, Mapping):
            return {symbol: Path(path) for symbol, path in self.replay.items()}
        replays: dict[str, Path] = {}
        for entry in self.replay:
            path = Path(entry)
            symbol = symbol_from_path(path)
            if symbol in replays:
                raise ValueError(f"two replay files for {symbol}")
            replays[symbol] = path
        return replays

    @property
    def all_symbols(self) -> list[str]:
        """Every instrument served, generated or replayed."""
        return sorted({*self.symbols, *self.replay_map})

    def tick_size(self, name: str) -> str:
        return format_units(to_units(self.tick_sizes.get(name, DEFAULT_TICK_SIZE)))

    def ping_interval_of(self, wire: MarketWire) -> float:
        return self.futures_ping_interval if wire.futures else self.ping_interval

    def max_incoming_of(self, wire: MarketWire) -> int:
        return self.futures_max_incoming_per_s if wire.futures else self.max_incoming_per_s
