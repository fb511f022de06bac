"""What a tradetape export says it holds: symbol, market, time range and the version that wrote it.

An export that carries its symbol can be imported under any file name, and one imported
under the wrong symbol is refused instead of mixing two instruments in one tape. Parquet
carries the label as key-value metadata (``tradetape.symbol``, ``tradetape.market``,
``tradetape.start``, ``tradetape.end``, ``tradetape.version``: DuckDB's
``parquet_kv_metadata`` lists them), CSV as its first line, a comment:
``# tradetape export symbol=BTCUSDT market=spot start=2026-01-01T00:00:00.000Z end=… version=0.1.0``.
The range is ``[start, end)`` as asked of `tradetape export`; every trade of the file lies in it.
The market is ``spot``, ``um`` or ``cm``: with the symbol it names the instrument (`instrument`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tradetape.domain.instruments import Market, instrument_name
from tradetape.domain.symbols import check_symbol
from tradetape.errors import InputError

KEY_PREFIX = "tradetape."
CSV_MARK = "# tradetape export"
YEAR_10000_MS = 253_402_300_800_000


class LabelError(InputError):
    """A label that is present but cannot be believed (one line saying which field and why)."""


class ExportLabel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(max_length=64)
    market: Literal["spot", "um", "cm"] = "spot"
    """The market of `symbol` (`tradetape.domain.instruments`): an export of `um:BTCUSDT` says `um` and `BTCUSDT`."""
    start: int
    """Epoch ms, inclusive."""
    end: int
    """Epoch ms, exclusive."""
    version: str = Field(max_length=64, pattern=r"^[0-9A-Za-z.+_-]+$")

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        return check_symbol(value)

    @property
    def instrument(self) -> str:
        """The instrument's name: `BTCUSDT` (spot), `um:BTCUSDT`."""
        return instrument_name(Market(self.market), self.symbol)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: object) -> int:
        """Epoch ms as given to `export` (any range it was asked for), or the ISO-8601 text the file carries."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < YEAR_10000_MS:
            return value
        if isinstance(value, str) and value.endswith("Z"):
            try:
                return int(datetime.fromisoformat(value.removesuffix("Z") + "+00:00").timestamp() * 1000)
            except ValueError:
                pass
        raise ValueError("not a UTC time (ISO-8601 ending in Z)")

    @model_validator(mode="after")
    def _range(self) -> ExportLabel:
        if self.end <= self.start:
            raise ValueError("end is not after start")
        return self

    def pairs(self) -> dict[str, str]:
        """As Parquet key-value metadata."""
        return {KEY_PREFIX + name: text for name, text in self._texts().items()}

    def comment(self) -> str:
        """As a CSV export's first line (no newline)."""
        return " ".join([CSV_MARK, *(f"{name}={text}" for name, text in self._texts().items())])

    def _texts(self) -> dict[str, str]:
        return {
            "symbol": self.symbol,
            "market": self.market,
            "start": iso_ms(self.start),
            "end": iso_ms(self.end),
            "version": self.version,
        }

    @classmethod
    def from_pairs(cls, pairs: Mapping[bytes, bytes]) -> ExportLabel | None:
        """The label in Parquet key-value metadata; None if it has none (an export older than labels)."""
        ours = {
            key.decode(errors="replace")[len(KEY_PREFIX) :]: value.decode(errors="replace")
            for key, value in pairs.items()
            if key.startswith(KEY_PREFIX.encode())
        }
        return cls._checked(ours) if ours else None

    @classmethod
    def from_comment(cls, line: str) -> ExportLabel | None:
        """The label of a CSV's first line; None if the line is not one."""
        if not line.startswith(CSV_MARK + " "):
            return None
        fields: dict[str, str] = {}
        for token in line[len(CSV_MARK) :].split():
            name, equals, value = token.partition("=")
            if not equals or name in fields:
                raise LabelError(f"the export label's {token[:40]!r} is not one name=value")
            fields[name] = value
        return cls._checked(fields)

    @classmethod
    def _checked(cls, fields: dict[str, str]) -> ExportLabel:
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "label"
            raise LabelError(f"the export label's {where} is wrong: {error['msg']}") from None


def iso_ms(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds and no spaces (``2026-01-01T00:00:00.000Z``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
