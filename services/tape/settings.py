"""Settings every service and the CLI share, read once at the edge and passed in.

Environment variables carry the names DESIGN.md fixes (`NATS_URL`, `TRADETAPE_*`);
CLI options of the same names override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADETAPE_", extra="ignore", frozen=True)

    nats_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="NATS server to use; unset: `tradetape up` starts an embedded one.",
    )
    data_dir: Path = Field(default=Path("./data"), description="Holds RocksDB and the embedded NATS store.")
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("BTCUSDT", "ETHUSDT"), description="Comma-separated symbols to ingest, persist and serve."
    )
    binance_ws_url: str = Field(default="wss://data-stream.binance.vision")
    binance_rest_url: str = Field(default="https://data-api.binance.vision")
    retention_days: float = Field(default=7.0, gt=0, description="Stream max age and RocksDB retention.")
    shard: str = Field(
        default="main",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Persist shard: owns `symbols` and its own RocksDB under data_dir/shards/<shard>.",
    )
    log_level: str = Field(default="INFO")

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            symbols = tuple(str(s).strip().upper() for s in value if str(s).strip())
            for symbol in symbols:
                if not symbol.isalnum():
                    raise ValueError(f"symbol {symbol!r} must be letters and digits only")
            if not symbols:
                raise ValueError("at least one symbol is needed")
            return symbols
        return value

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
