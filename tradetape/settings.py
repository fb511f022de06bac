"""Settings every service and the CLI share: the one definition, read once at the edge and passed in.

Environment variables carry the names DESIGN.md fixes (`NATS_URL`, `TRADETAPE_*`); the
CLI's options (`--nats-url`, `--data-dir`, ...) are derived from the same fields and win
over the environment; the environment of a child process is `Settings.to_env()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TRADETAPE_"
_UNPREFIXED = {"nats_url": "NATS_URL"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    nats_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="NATS server URL; unset: `tradetape up` embeds one, other commands look in <data dir>/nats.url",
    )
    data_dir: Path = Field(
        default=Path("./data"), description="holds RocksDB (shards/), the embedded NATS store (nats/), nats.url"
    )
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("BTCUSDT", "ETHUSDT"), description="comma-separated symbols to ingest, persist and serve"
    )
    binance_ws_url: str = Field(default="wss://data-stream.binance.vision", description="exchange WebSocket URL")
    binance_rest_url: str = Field(default="https://data-api.binance.vision", description="exchange REST URL (gap fill)")
    retention_days: float = Field(default=7.0, gt=0, description="days of trades kept in the stream and in RocksDB")
    shard: str = Field(
        default="main",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="persist shard: owns the symbols, its RocksDB under <data dir>/shards/<shard>",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            symbols = tuple(str(s).strip().upper() for s in value if str(s).strip())
            for symbol in symbols:
                if not (symbol.isascii() and symbol.isalnum()):
                    raise ValueError(f"symbol {symbol!r} must be letters and digits only")
            if not symbols:
                raise ValueError("at least one symbol is needed")
            return symbols
        return value

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable of a field: `NATS_URL`, `TRADETAPE_DATA_DIR`, ..."""
        return _UNPREFIXED.get(field, ENV_PREFIX + field.upper())

    @staticmethod
    def flag(field: str) -> str:
        """The CLI option of a field: `--nats-url`, `--data-dir`, ..."""
        return "--" + field.replace("_", "-")

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables a child process reads them from."""
        env: dict[str, str] = {}
        for field in type(self).model_fields:
            value: Any = getattr(self, field)
            if value is None:
                continue
            if field == "symbols":
                value = ",".join(value)
            elif field == "data_dir":
                value = Path(value).resolve()
            env[self.env_name(field)] = str(value)
        return env

    @property
    def shard_dir(self) -> Path:
        return self.data_dir / "shards" / self.shard

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def nats_url_file(self) -> Path:
        """Where `tradetape up` writes the embedded server's URL so other commands find it."""
        return self.data_dir / "nats.url"

    @property
    def lock_file(self) -> Path:
        """Held by the one `tradetape up` running on this data directory."""
        return self.data_dir / "tradetape.lock"
