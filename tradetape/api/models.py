"""What every query shares: the time range of a request, and the error reply.

Each method's own request and reply models live in its module under
`tradetape.api.methods`; together they are the API's single definition (and its JSON
Schema). Decimal values are exact JSON strings, counts integers, times epoch ms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_LAST_MS = 3_600_000

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


class RangeRequest(BaseModel):
    """What every request has: a time range as `start`/`end` or `last`."""

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
    def _range(self) -> RangeRequest:
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


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(BaseModel):
    error: ErrorDetail
