"""Settings every service and the CLI share: the one definition, read once at the edge and passed in.

Environment variables carry the names docs/design.md fixes (`NATS_URL`, `TRADETAPE_*`); the
CLI's options (`--nats-url`, `--data-dir`, ...) are derived from the same fields and win
over the environment, which wins over the config file (`tradetape.toml`, `tradetape.config_file`);
the environment of a child process is `Settings.to_env()`.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tradetape.config_file import CONFIG_ENV, config_path, read_config
from tradetape.domain.instruments import Market, instrument_from_input, instrument_name, is_instrument, split_instrument
from tradetape.errors import ConfigError
from tradetape.ground.hosts import parse_allowed_host
from tradetape.ground.inboxes import DEFAULT_INBOX_PREFIX, INBOX_PREFIX_PATTERN

ENV_PREFIX = "TRADETAPE_"
_UNPREFIXED = {"nats_url": "NATS_URL"}
ALL_SYMBOLS = "ALL"
"""`TRADETAPE_SYMBOLS=ALL`: every TRADING symbol of the exchange, learned at start (`tradetape.binance.symbols`).

Written with a market prefix it is that market's: `um:ALL`, `cm:ALL`; bare, spot's."""
MIN_TOKEN_CHARS = 16
"""A bearer token shorter than this is refused: it would be guessable."""
_config_option: ContextVar[Path | None] = ContextVar("tradetape_config_option", default=None)
"""The `--config FILE` of the `Settings.load` call building settings now (pydantic builds sources per class)."""


MARKET_URL_FIELDS = {
    Market.SPOT: ("binance_ws_url", "binance_rest_url"),
    Market.UM: ("binance_um_ws_url", "binance_um_rest_url"),
    Market.CM: ("binance_cm_ws_url", "binance_cm_rest_url"),
}
"""Per market the settings holding its WebSocket and REST URLs (`up --simulate` points each at the simulator)."""
MARKET_WEIGHT_FIELDS = {
    Market.SPOT: "ingest_rest_weight_per_minute",
    Market.UM: "ingest_um_rest_weight_per_minute",
    Market.CM: "ingest_cm_rest_weight_per_minute",
}


class SymbolsUnresolvedError(ConfigError, RuntimeError):
    """`TRADETAPE_SYMBOLS=ALL` stands for a list only exchangeInfo knows; resolve it before asking for the symbols."""


def shard_of(symbol: str, shard_count: int) -> int:
    """The shard that owns instrument `symbol`: CRC-32 of its name, stable across processes and versions.

    The name carries the market (`um:BTCUSDT`), so the market is part of the hash, and a
    spot name is the bare symbol, so every spot symbol stays on the shard it always had.
    """
    return zlib.crc32(symbol.encode()) % shard_count


def market_of_all(name: str) -> Market | None:
    """The market whose every TRADING symbol `name` stands for (`ALL`: spot, `um:ALL`, `cm:ALL`), else None."""
    market, symbol = split_instrument(name)
    return market if symbol == ALL_SYMBOLS else None


def _futures_rest_url(default: str, market: str, family: str) -> Any:
    """A futures market's REST URL setting: USD-M's and COIN-M's differ only by host and REST family."""
    return Field(default=default, description=f"{market} futures REST URL ({family}/v1: gap fill, exchangeInfo)")


def _futures_weight(market: str, family: str) -> Any:
    """A futures market's REST weight budget: USD-M and COIN-M each have the same limit of their own."""
    return Field(
        default=1200,
        ge=20,
        description=f"REST request weight ingest spends a minute on {market}, a budget of its own (aggTrades 20; "
        f"Binance allows 2400 an IP on {family})",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    nats_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="NATS server URL (several, comma-separated, for a cluster); unset: `tradetape up` embeds one "
        "(port 4222 if free, else any free port) and records its URL in <data dir>/nats.url, where the other "
        "commands look next, then at nats://127.0.0.1:4222",
    )
    data_dir: Path = Field(
        default=Path("./data"),
        description="holds RocksDB (shards/<shard>/), the embedded NATS store (nats/), nats.url, the `up` lock, "
        "the simulator's released trades (exchange/) and its URL (exchange.url)",
    )
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("BTCUSDT", "ETHUSDT"),
        description="comma-separated instruments to ingest, persist and serve: BTCUSDT (spot), um:BTCUSDT (USD-M), "
        "cm:BTCUSD_PERP (COIN-M); ALL, um:ALL, cm:ALL: every TRADING symbol of that market's exchangeInfo, asked by "
        "each service at its start; a market's ALL stands alone in its market, beside other markets' names "
        "(docs/architecture.md, Many symbols; Markets)",
    )
    binance_ws_url: str = Field(default="wss://data-stream.binance.vision", description="exchange WebSocket URL")
    binance_rest_url: str = Field(
        default="https://data-api.binance.vision",
        description="exchange REST URL (gap fill; exchangeInfo for symbols=ALL)",
    )
    binance_um_ws_url: str = Field(
        default="wss://fstream.binance.com/market",
        description="USD-M futures WebSocket URL, its market-stream path included (streams of um:SYMBOL)",
    )
    binance_um_rest_url: str = _futures_rest_url("https://fapi.binance.com", "USD-M", "/fapi")
    binance_cm_ws_url: str = Field(
        default="wss://dstream.binance.com", description="COIN-M futures WebSocket URL (streams of cm:SYMBOL)"
    )
    binance_cm_rest_url: str = _futures_rest_url("https://dapi.binance.com", "COIN-M", "/dapi")
    retention_days: float = Field(
        default=7.0,
        gt=0,
        description="trades older than this many days (by trade time) are deleted from RocksDB, hourly, as key "
        "ranges (then compacted), imported ones too; also the dead-letter stream's max age",
    )
    shard: str = Field(
        default="main",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="persist shard name: its consumer persist-<shard>, its RocksDB <data dir>/shards/<shard>/, "
        "its analytics queue group",
    )
    log_level: str = Field(
        default="INFO",
        description="DEBUG, INFO, WARNING or ERROR; services log one line per event to stderr, never one per trade",
    )
    log_format: Literal["kv", "json"] = Field(
        default="kv",
        description='kv: the readable `time level logger "message" key=value` line; json: one JSON object a line '
        "(time, level, logger, message, the event's fields with numbers as numbers, exception) for Loki or "
        "Elasticsearch; either way URLs are logged with their user info masked",
    )
    nats_user: str | None = Field(
        default=None,
        description="NATS user (with nats_password: both or neither; nats://user:pass@host in NATS_URL works too, "
        "these win; docs/operations.md, Security)",
    )
    nats_password: SecretStr | None = Field(default=None, description="NATS password of nats_user (prefer the env)")
    nats_token: SecretStr | None = Field(
        default=None, description="NATS authentication token (nats://TOKEN@host works too; prefer the env)"
    )
    nats_nkey_seed_file: FilePath | None = Field(
        default=None, description="file holding this client's NATS nkey seed (SU...); the server knows its public key"
    )
    nats_creds_file: FilePath | None = Field(
        default=None, description="NATS creds file (user JWT and seed, from nsc) for a server in operator mode"
    )
    nats_tls_ca_file: FilePath | None = Field(
        default=None,
        description="CA certificate(s) to verify the NATS server by (else the system's); TLS on, as with a tls:// URL",
    )
    nats_tls_cert_file: FilePath | None = Field(
        default=None, description="client certificate for a NATS server that verifies clients (mutual TLS)"
    )
    nats_tls_key_file: FilePath | None = Field(default=None, description="private key of nats_tls_cert_file")
    nats_inbox_prefix: str = Field(
        default=DEFAULT_INBOX_PREFIX,
        pattern=INBOX_PREFIX_PATTERN,
        description="first token of this client's reply inboxes: its role's _INBOX_<ROLE> under "
        "deploy/nats/auth.conf (docs/operations.md, NATS roles and inboxes)",
    )
    stream_max_age_hours: float = Field(
        default=24.0,
        gt=0,
        description="hours the trades stream buffers raw messages: the longest persist outage survived "
        "(docs/architecture.md, Sizing)",
    )
    stream_max_bytes: int = Field(
        default=8 * 1024**3,
        ge=-1,
        description="bytes the trades stream may hold (-1: unlimited); when full, new publishes are refused, never "
        "old ones dropped",
    )
    rollup_age_s: float = Field(
        default=60.0,
        gt=0,
        description="seconds after which a 1-second window (by trade time) is rolled up into its hour segment",
    )
    shard_count: int = Field(
        default=1,
        ge=1,
        description="persist shards the symbols are split into by a stable hash (CRC-32 of the symbol); give each "
        "shard its own shard name",
    )
    shard_index: int = Field(default=0, ge=0, description="which of the `shard_count` shards this one is (0-based)")
    persist_write_spacing_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="least time between the starts of two persist writes (0: a write starts as soon as the last is "
        "in the store); more gives fewer, larger writes (fewer acks, notices, live messages and analytics "
        "catch-ups) for a longer wait before a trade is stored",
    )
    query_max_range_days: float = Field(
        default=31.0,
        gt=0,
        description="longest time range one query may ask for (range_too_large beyond; not for coverage)",
    )
    query_concurrency: int = Field(
        default=4,
        ge=1,
        description="queries one analytics worker computes at once (each request is its own task, so a small query "
        "never waits behind a heavy one on the same endpoint)",
    )
    query_max_pending: int = Field(
        default=64, ge=1, description="queries one analytics worker holds waiting; more are answered overloaded"
    )
    query_cache_mb: int = Field(
        default=256,
        ge=0,
        description="MB of decoded hour segments and histograms one analytics worker keeps between queries (least "
        "recently used go first; keyed by the segment's summary, so a rewritten segment is never served stale), and "
        "of young windows (at most an eighth, each checked against its stored bytes); 0: none",
    )
    query_memory_mb: int = Field(
        default=256,
        ge=1,
        description="MB one query may use, estimated before it reads (range_too_large beyond); a worker needs"
        " about query_cache_mb + query_concurrency x query_memory_mb (docs/querying.md, Memory and threads)",
    )
    replay_max_streams: int = Field(
        default=8,
        ge=1,
        description="replay streams one analytics worker serves at once (each holds at most two hour pieces and its"
        " window of chunks); more are answered overloaded",
    )
    replay_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="seconds a replay stream waits for its client's answer to its start, or for an ack with its window"
        " full; then it stops (a client that vanished, or never asked, holds a worker no longer than this)",
    )
    query_warm_hours: float = Field(
        default=24.0,
        ge=0,
        description="hours of each served symbol's newest stored trades an analytics worker decodes into its cache"
        " before it serves (its first queries after a restart are mostly about recent data; query_cache_mb bounds"
        " it); 0: none",
    )
    mcp_host: str = Field(default="127.0.0.1", description="`tradetape mcp --http`: the address to listen on")
    mcp_port: int = Field(default=8765, ge=1, le=65535, description="`tradetape mcp --http`: the port to listen on")
    mcp_token: SecretStr | None = Field(
        default=None,
        description="`tradetape mcp --http`: the bearer token every request must carry (at least 16 characters); "
        "required on a non-loopback address (prefer the env)",
    )
    websocket_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="the embedded nats-server's WebSocket listener, for `tradetape web`'s page: plain ws on "
        "127.0.0.1, as the query user of <data dir>/nats-ws.user.json only (0: a free port, recorded in "
        "<data dir>/nats-ws.url)",
    )
    web_host: str = Field(
        default="127.0.0.1",
        description="`tradetape web`: the address to listen on; `up`'s WebSocket listener admits pages of this "
        "origin only (docs/operations.md, Locked listeners)",
    )
    web_port: int = Field(default=8766, ge=1, le=65535, description="`tradetape web`: the port to listen on")
    web_nats_url: str | None = Field(
        default=None,
        description="the NATS WebSocket URL the web page connects to (default: the embedded server's, from "
        "<data dir>/nats-ws.url)",
    )
    web_nats_user: str | None = Field(
        default=None, description="the query-only NATS user the web page connects as (handed to the browser)"
    )
    web_nats_password: SecretStr | None = Field(default=None, description="the password of web_nats_user")
    history_url: str = Field(
        default="https://data.binance.vision",
        description="host of Binance's public dumps (data/spot/daily|monthly/aggTrades/...) and their .CHECKSUM "
        "files, for fetch-history, repair and backfill",
    )
    backfill_days: int = Field(
        default=0,
        ge=0,
        le=366,
        description="`up` fetches this many past days of dumps for its symbols once persist runs (0: off)",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="a service serves GET /metrics (Prometheus) and GET /healthz here (0: off); "
        "`up` gives ingest this port, persist +1, analytics +2",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address the metrics and health endpoint listens on (0.0.0.0 for a Prometheus in another "
        "container or host, with the name it scrapes by in http_allowed_hosts; compose lists "
        "ingest,persist,analytics)",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="replicas of the streams, the consumers and the ledger bucket (3 on a 3-node NATS cluster)",
    )
    http_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated Host names (name: any port, name:port, or an IP network such as 10.0.0.0/8) "
        "the web, mcp and metrics servers answer to besides their bind address and the loopback names",
    )
    http_request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="seconds an HTTP client has from its first byte to send its whole request (headers and body) "
        "before the connection is closed",
    )
    http_max_connections: int = Field(
        default=64, ge=1, description="connections one HTTP server holds at once; beyond, new ones are closed"
    )
    symbols_refresh_s: float = Field(
        default=60.0,
        ge=0,
        description="with symbols=ALL, seconds between two exchangeInfo questions of a running ingest, persist and "
        "analytics: a symbol listed meanwhile is ingested, stored and served without a restart (0: at start only)",
    )

    ingest_max_id_jump: int = Field(
        default=1_000_000,
        gt=0,
        description="a live agg id further ahead of the newest is dead-lettered (implausible_id) until REST shows ids "
        "that far exist",
    )
    ingest_max_frame_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="WebSocket frames larger than this are dropped, counted (oversized) and dead-lettered cut to "
        "this size",
    )
    ingest_streams_per_connection: int = Field(
        default=1024, ge=1, le=1024, description="aggTrade streams per exchange WebSocket connection (Binance: 1024)"
    )
    ingest_buffer_trades: int = Field(
        default=100_000,
        ge=100,
        description="trades held in memory while NATS is away; when full the oldest become gaps in the ledger, "
        "fetched from REST later",
    )
    ingest_rest_weight_per_minute: int = Field(
        default=1200,
        ge=10,
        description="REST request weight ingest (and repair) spends a minute (aggTrades 4, exchangeInfo 20; Binance "
        "allows 6000 an IP)",
    )
    ingest_silence_timeout_s: float = Field(
        default=60.0, gt=0, description="an exchange connection that answers no ping for this long is replaced"
    )
    ingest_max_connection_age_s: float = Field(
        default=23.5 * 3600, gt=0, description="connections are replaced (overlapping) before this age (Binance: 24 h)"
    )
    ingest_gap_retry_max_s: float = Field(
        default=60.0,
        gt=0,
        description="longest wait between REST attempts at one open gap (0.5 s doubling, +-20 %)",
    )
    ingest_stats_interval_s: float = Field(default=10.0, gt=0, description="seconds between ingest summary log lines")
    ingest_fast_batches: bool = Field(
        default=True,
        description="publish trades in JetStream fast-ingest batches (nats-server >= 2.14); false: an ack a trade, "
        "as a server without batches gets anyway",
    )
    ingest_tail_probe_after_s: float = Field(
        default=60.0,
        gt=0,
        description="a symbol without a new trade for this long gets a REST check for trades after its newest "
        "(a burst's last trades lost on the WebSocket), again every this long while it stays quiet",
    )
    ingest_um_rest_weight_per_minute: int = _futures_weight("USD-M", "/fapi")
    ingest_cm_rest_weight_per_minute: int = _futures_weight("COIN-M", "/dapi")

    import_max_line_bytes: int = Field(
        default=4096,
        ge=256,
        le=1024**2,
        description="longest line a CSV dump or export may have (a trade's line is ~90 bytes); longer: refused",
    )
    import_max_member_bytes: int = Field(
        default=64 * 1024**3,
        ge=1,
        description="most bytes a CSV, a zip's CSV once inflated, or a Parquet file's data uncompressed may hold",
    )
    import_max_members: int = Field(
        default=16,
        ge=1,
        description="most entries a zip may list (a dump holds one CSV), counted before its directory is read; more: "
        "refused unread",
    )
    history_max_download_bytes: int = Field(
        default=16 * 1024**3,
        ge=1,
        description="most bytes one downloaded dump file may have (BTCUSDT's largest monthly zips are a few GB)",
    )
    history_download_deadline_s: float = Field(
        default=3600.0,
        gt=0,
        description="seconds one dump file's download may take in all; later: refused, resumed by the next run",
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            symbols = tuple(dict.fromkeys(instrument_from_input(str(s)) for s in value if str(s).strip()))
            if not symbols:
                raise ValueError("at least one symbol is needed")
            whole = {market for market in map(market_of_all, symbols) if market is not None}
            for name in symbols:
                market = split_instrument(name)[0]
                if market in whole and market_of_all(name) is None:
                    every = instrument_name(market, ALL_SYMBOLS)
                    raise ValueError(
                        f"{every} stands alone in its market: it means every TRADING symbol of {market.value}, "
                        f"so {name} is in it already (other markets' instruments may stand beside it)"
                    )
            return symbols
        return value

    @field_validator("http_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            hosts = tuple(str(host).strip() for host in value if str(host).strip())
            for host in hosts:
                parse_allowed_host(host)
            return hosts
        return value

    @field_validator("mcp_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"a token needs at least {MIN_TOKEN_CHARS} characters, e.g. `openssl rand -hex 32`")
        return value

    @model_validator(mode="after")
    def _check_shard(self) -> Settings:
        if self.shard_index >= self.shard_count:
            raise ValueError(f"shard_index {self.shard_index} must be below shard_count {self.shard_count}")
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError("nats_user and nats_password go together: set both or neither")
        if self.nats_tls_key_file is not None and self.nats_tls_cert_file is None:
            raise ValueError("nats_tls_key_file needs nats_tls_cert_file")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Options (init values) over the environment over the config file over the defaults."""
        path = config_path(_config_option.get(), os.environ)
        values = {} if path is None else read_config(path, settings_cls.model_fields)
        return init_settings, env_settings, InitSettingsSource(settings_cls, values)

    @classmethod
    def load(cls, config: Path | None = None, **values: Any) -> Settings:
        """Settings from `values` (the CLI's options), the environment and `config` (else ./tradetape.toml)."""
        token = _config_option.set(config)
        try:
            return cls(**values)
        finally:
            _config_option.reset(token)

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable of a field: `NATS_URL`, `TRADETAPE_DATA_DIR`, ..."""
        return _UNPREFIXED.get(field, ENV_PREFIX + field.upper())

    @staticmethod
    def flag(field: str) -> str:
        """The CLI option of a field: `--nats-url`, `--data-dir`, ..."""
        return "--" + field.replace("_", "-")

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables a child process reads them from (and no config file)."""
        env: dict[str, str] = {CONFIG_ENV: ""}
        for field in type(self).model_fields:
            value: Any = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, tuple):  # symbols, http_allowed_hosts
                value = ",".join(value)
            elif isinstance(value, Path):
                value = value.resolve()
            elif isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[self.env_name(field)] = str(value)
        return env

    @property
    def markets_from_exchange(self) -> tuple[Market, ...]:
        """The markets named by their `ALL` (`ALL`, `um:ALL`, `cm:ALL`), in the order given."""
        return tuple(market for market in map(market_of_all, self.symbols) if market is not None)

    @property
    def symbols_from_exchange(self) -> bool:
        """True when some market is named by its `ALL`: the list is the exchange's, not known before it is asked."""
        return bool(self.markets_from_exchange)

    @property
    def shard_symbols(self) -> tuple[str, ...]:
        """The instruments this shard owns: all of `symbols`, or shard `shard_index` of `shard_count` by stable hash.

        With `ALL` there is no list to split without asking the exchange: `SymbolsUnresolvedError`, so "ALL" is
        never taken for a symbol; services resolve it (`tradetape.binance.symbols`) and call `shard_share`.
        """
        if self.symbols_from_exchange:
            given = ",".join(instrument_name(market, ALL_SYMBOLS) for market in self.markets_from_exchange)
            raise SymbolsUnresolvedError(
                f"{self.env_name('symbols')}={given}: the symbols come from the exchange's exchangeInfo "
                "and are not known before a service has asked for them"
            )
        return self.shard_share(self.symbols)

    def shard_share(self, symbols: Iterable[str]) -> tuple[str, ...]:
        """Those of `symbols` this shard owns, in their order: all of them, or those whose stable hash is ours."""
        return tuple(s for s in symbols if self.owns(s))

    def owns(self, symbol: str) -> bool:
        """Whether instrument `symbol` is this shard's: in `symbols` (or its market's `ALL`), and ours by hash."""
        if not is_instrument(symbol) or market_of_all(symbol) is not None:
            return False
        if symbol not in self.symbols and split_instrument(symbol)[0] not in self.markets_from_exchange:
            return False
        return self.shard_count == 1 or shard_of(symbol, self.shard_count) == self.shard_index

    @property
    def shard_dir(self) -> Path:
        return self.data_dir / "shards" / self.shard

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def nats_ws_url_file(self) -> Path:
        """Where `tradetape up` writes the embedded server's WebSocket URL for `tradetape web`."""
        return self.data_dir / "nats-ws.url"

    @property
    def nats_ws_user_file(self) -> Path:
        """The query user's credential of `tradetape up`'s embedded server, which `tradetape web` hands its page."""
        return self.data_dir / "nats-ws.user.json"

    @property
    def nats_url_file(self) -> Path:
        """Where `tradetape up` writes the embedded server's URL so other commands find it."""
        return self.data_dir / "nats.url"

    @property
    def exchange_url_file(self) -> Path:
        """Where `tradetape up --simulate` writes its simulator's URL, so `fetch-history` and `repair` find it."""
        return self.data_dir / "exchange.url"

    @property
    def lock_file(self) -> Path:
        """Held by the one `tradetape up` running on this data directory."""
        return self.data_dir / "tradetape.lock"

    def binance_urls(self, market: Market) -> tuple[str, str]:
        """The WebSocket and REST URLs of `market` (`binance_ws_url` and `binance_rest_url` for spot)."""
        ws, rest = MARKET_URL_FIELDS[market]
        return getattr(self, ws), getattr(self, rest)

    def rest_weight_per_minute(self, market: Market) -> int:
        """The REST weight budget of `market`: each market has its own limit at the exchange."""
        budget: int = getattr(self, MARKET_WEIGHT_FIELDS[market])
        return budget
