"""The query API: pydantic models that are its single definition (and its JSON Schema).

Requests and replies of `tape.query.<method>.<SYMBOL>`. Decimal values are exact JSON
strings, counts integers, times epoch ms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.tape.decimals import DecimalFormatError, parse_units

DEFAULT_LAST_MS = 3_600_000
MAX_PROFILE_ROWS = 100_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """`"15m"`, `"1h"`, `"24h"`, `"7d"`, `"90s"`, `"500ms"` → milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration {text!r} is not a number followed by ms, s, m, h, d or w")
    ms = int(Decimal(match.group(1)) * _UNIT_MS[match.group(2)])
    if ms <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return ms


def parse_time_ms(value: int | str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (UTC when it names no zone)."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {value!r} is neither epoch milliseconds nor ISO-8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    start: int | str | None = Field(default=None, description="Range start, epoch ms or ISO-8601, inclusive.")
    end: int | str | None = Field(default=None, description="Range end, epoch ms or ISO-8601, exclusive.")
    last: str | None = Field(default=None, description='Duration ending now, e.g. "15m", "1h", "24h".')

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: int | str | None) -> int | None:
        return None if value is None else parse_time_ms(value)

    @field_validator("last")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration_ms(value)
        return value

    @model_validator(mode="after")
    def _range(self) -> _Request:
        if self.last is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either last or start/end, not both")
        if isinstance(self.start, int) and isinstance(self.end, int) and self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    def time_range(self, now_ms: int, default_ms: int | None = DEFAULT_LAST_MS) -> tuple[int, int] | None:
        """`[start, end)` in epoch ms; None means the whole tape (only when `default_ms` is None)."""
        if self.last is not None:
            return now_ms - parse_duration_ms(self.last), now_ms
        if self.start is None and self.end is None:
            return None if default_ms is None else (now_ms - default_ms, now_ms)
        start = self.start if isinstance(self.start, int) else 0
        end = self.end if isinstance(self.end, int) else now_ms
        return start, end


class VolumeProfileRequest(_Request):
    row_size: str | None = Field(default=None, description='Row height as a decimal string, e.g. "10".')
    rows: int = Field(default=100, ge=1, le=10_000, description="Row count when row_size is absent.")
    value_area: float = Field(default=0.7, gt=0, le=1, description="Share of volume in the value area.")
    min_trades: int = Field(default=1000, ge=0, description="Fewer trades is the error insufficient_trades.")

    @field_validator("row_size", mode="before")
    @classmethod
    def _row_size(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            try:
                units = parse_units(value.strip())
            except DecimalFormatError as exc:
                raise ValueError(f"row_size {exc}") from None
            if units <= 0:
                raise ValueError("row_size must be positive")
            return value.strip()
        return value

    def row_size_units(self) -> int | None:
        return None if self.row_size is None else parse_units(self.row_size)

    def value_area_fraction(self) -> Decimal:
        try:
            return Decimal(str(self.value_area))
        except InvalidOperation:  # pragma: no cover - pydantic has checked it is a number
            raise ValueError(f"value_area {self.value_area!r}") from None


class LiquidityVacuumsRequest(VolumeProfileRequest):
    min_rows: int = Field(default=3, ge=1, description="Fewest consecutive thin rows that make a vacuum.")
    threshold: float = Field(default=0.2, gt=0, description="A row is thin below threshold × mean row volume.")


class CoverageRequest(_Request):
    pass


class ProfileRowReply(BaseModel):
    price_low: str
    price_high: str
    volume: str
    buy_volume: str
    sell_volume: str
    trade_count: int


class ProfileSummary(BaseModel):
    """What every reply computed from a volume profile starts with."""

    symbol: str
    start: int
    end: int
    trade_count: int
    row_size: str
    total_volume: str


class VolumeProfileReply(ProfileSummary):
    buy_volume: str
    sell_volume: str
    poc: str
    poc_low: str
    poc_high: str
    vah: str
    val: str
    value_area: float
    rows: list[ProfileRowReply]


class VacuumReply(BaseModel):
    price_low: str
    price_high: str
    rows: int
    volume: str
    share: float


class LiquidityVacuumsReply(ProfileSummary):
    row_count: int
    threshold: float
    min_rows: int
    vacuums: list[VacuumReply]


class GapReply(BaseModel):
    from_id: int
    to_id: int


class CoverageReply(BaseModel):
    symbol: str
    start: int | None
    end: int | None
    trade_count: int
    first_id: int | None
    last_id: int | None
    first_time: int | None
    last_time: int | None
    missing_count: int
    gaps: list[GapReply]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(BaseModel):
    error: ErrorDetail


METHODS: dict[str, tuple[type[_Request], type[BaseModel]]] = {
    "volume_profile": (VolumeProfileRequest, VolumeProfileReply),
    "liquidity_vacuums": (LiquidityVacuumsRequest, LiquidityVacuumsReply),
    "coverage": (CoverageRequest, CoverageReply),
}


def api_schema() -> dict[str, Any]:
    """JSON Schema of every method's request and reply, and of the error reply."""
    return {
        "subject": "tape.query.<method>.<SYMBOL>",
        "methods": {
            name: {"request": request.model_json_schema(), "reply": reply.model_json_schema()}
            for name, (request, reply) in METHODS.items()
        },
        "error": ErrorReply.model_json_schema(),
    }
