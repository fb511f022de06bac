"""What every query shares: the time range of a request, and the error reply.

Each method's own request and reply models live in its module under
`tradetape.api.methods`; together they are the API's single definition (and its JSON
Schema). Decimal values are exact JSON strings, counts integers, times epoch ms.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from tradetape.domain.bars import check_interval
from tradetape.domain.columns import Quantity
from tradetape.domain.decimals import DecimalFormatError, parse_units
from tradetape.domain.local_time import zone
from tradetape.domain.profile import MAX_PROFILE_ROWS
from tradetape.domain.sessions import PRESETS, SessionSpec

DEFAULT_LAST_MS = 3_600_000

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
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


EARLIEST_MS = 1_483_228_800_000
"""2017-01-01T00:00:00Z: no Binance trade is older."""
LATEST_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z: a later value is not epoch ms (microseconds, say)."""
SECONDS_BELOW = 100_000_000_000
"""Epoch numbers below this (1973 as ms, 5138 as seconds) are taken to be seconds."""


def parse_time_ms(value: int | str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (UTC when it names no zone), from 2017 to 2100.

    The bounds turn microseconds or seconds into a clear error instead of a range that
    silently holds no trades.
    """
    if isinstance(value, bool):
        raise ValueError(f"time {value!r} is neither epoch milliseconds nor ISO-8601")
    number = isinstance(value, int) or (value.strip().isascii() and value.strip().isdigit())
    if number:
        ms = int(value)
    else:
        assert isinstance(value, str)
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"time {value!r} is neither epoch milliseconds nor ISO-8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
    if number and 0 <= ms < SECONDS_BELOW:
        raise ValueError(f"time {value!r} looks like epoch seconds: times are epoch milliseconds (or ISO-8601)")
    if number and ms > LATEST_MS:
        raise ValueError(
            f"time {value!r} is after 2100-01-01 as epoch milliseconds: microseconds? times are epoch milliseconds"
        )
    if ms < EARLIEST_MS:
        raise ValueError(f"time {value!r} is before 2017-01-01, Binance's first trade: the tape holds nothing older")
    if ms > LATEST_MS:
        raise ValueError(f"time {value!r} is after 2100-01-01")
    return ms


def decimal_field(value: Any, name: str, *, positive: bool = False) -> Any:
    """A request's decimal-string field (numbers accepted too), checked exactly and kept as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        try:
            units = parse_units(value.strip())
        except DecimalFormatError as exc:
            raise ValueError(f"{name} {exc}") from None
        if positive and units <= 0:
            raise ValueError(f"{name} must be positive")
        return value.strip()
    return value


class RangeRequest(BaseModel):
    """What every request has: a time range as `start`/`end` or `last`."""

    model_config = ConfigDict(extra="forbid", strict=False)

    start: int | str | None = Field(
        default=None, description="Range start, epoch ms or ISO-8601, inclusive; alone: from it to now."
    )
    end: int | str | None = Field(
        default=None,
        description="Range end, epoch ms or ISO-8601, exclusive; alone: the hour before it "
        "(coverage: the tape up to it).",
    )
    last: str | None = Field(default=None, description='Duration ending now, e.g. "15m", "1h", "24h".')

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: int | str | None) -> int | None:
        return None if value is None else parse_time_ms(value)

    @field_validator("last")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration_ms(value)
            except ValueError as exc:
                raise ValueError(f'{exc}; last counts back from now: "1h" is the hour before now') from None
        return value

    @model_validator(mode="after")
    def _range(self) -> RangeRequest:
        if self.last is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either last or start/end, not both")
        if isinstance(self.start, int) and isinstance(self.end, int) and self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    def time_range(self, now_ms: int, default_ms: int | None = DEFAULT_LAST_MS) -> tuple[int, int] | None:
        """`[start, end)` in epoch ms; None means the whole tape (only when `default_ms` is None).

        Without a range, the `default_ms` before now; `start` alone runs to now; `end` alone
        is the `default_ms` before it (the tape up to it when `default_ms` is None).
        """
        if self.last is not None:
            return now_ms - parse_duration_ms(self.last), now_ms
        if self.start is None and self.end is None:
            return None if default_ms is None else (now_ms - default_ms, now_ms)
        end = self.end if isinstance(self.end, int) else now_ms
        if isinstance(self.start, int):
            return self.start, end
        return (0 if default_ms is None else end - default_ms), end


QuantityField = Annotated[
    Quantity,
    Field(
        description='Volume summed: "all" (each trade\'s quantity q, default) or "normal" (USD-M only: nq, the'
        " quantity without RPI orders)."
    ),
]
"""The `quantity` field of every volume-based method (`quantity: QuantityField = "all"`)."""


def omitted(value: object) -> bool:
    """For `Field(exclude_if=omitted)`: a reply field left out of the JSON when it does not apply, so a request
    that does not ask for it is answered exactly as before the field existed."""
    return value is None


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(BaseModel):
    error: ErrorDetail


def parse_interval_ms(text: str) -> int:
    """A bar interval such as `"1s"`, `"5m"`, `"1h"`, `"1d"`: whole seconds from 1 s to 1 d."""
    ms = parse_duration_ms(text)
    check_interval(ms)
    return ms


def _interval(value: str) -> str:
    parse_interval_ms(value)
    return value


IntervalField = Annotated[str, AfterValidator(_interval)]
"""A bar interval or TPO period as given (`"5m"`), checked by `parse_interval_ms`: `interval`, `period`."""


class IntervalRequest(RangeRequest):
    """A range cut into intervals aligned to the epoch (UTC)."""

    interval: IntervalField = Field(
        default="1m", description='Interval, whole seconds from "1s" to "1d", e.g. "1m", "1h".'
    )

    def interval_ms(self) -> int:
        return parse_interval_ms(self.interval)

    def reply_head(self, symbol: str, start: int, end: int) -> dict[str, Any]:
        """The fields an interval reply starts with, in its model's order (replies whose JSON is built directly)."""
        return {
            "symbol": symbol,
            "start": start,
            "end": end,
            "interval": self.interval,
            "interval_ms": self.interval_ms(),
        }


MAX_INTERVALS = 4000
"""Bars or flow rows one reply may hold (about 0.8 MB of JSON, under NATS's 1 MiB)."""


def interval_count(time_range: tuple[int, int], interval_ms: int) -> int:
    """How many epoch-aligned intervals `[start, end)` touches."""
    start, end = time_range
    return (end - 1) // interval_ms - start // interval_ms + 1


def _row_size(value: Any) -> Any:
    return decimal_field(value, "row_size", positive=True)


RowSizeField = Annotated[str | None, BeforeValidator(_row_size)]
"""The `row_size` field of every method cutting prices into rows, a positive decimal string
(`row_size: RowSizeField = Field(default=None, description=...)`); with `RowRule` in the request's bases."""

ProfileRowsField = Annotated[
    int | None,
    Field(
        ge=1,
        le=MAX_PROFILE_ROWS,
        description="Row count wanted when row_size is absent (at most); without either, "
        "max(10 ticks, range / 100) rounded to a nice size.",
    ),
]
"""The `rows` field of the profiles (`rows: ProfileRowsField = None`), one profile's rows at most."""


class RowRule(BaseModel):
    """A request's `row_size` sets each row's height and its `rows` their count: it gives one of them at most.

    A base holding no field (the request declares both, where its JSON Schema wants them), only the rule."""

    if TYPE_CHECKING:
        row_size: str | None
        rows: int | None

    @model_validator(mode="after")
    def _one_row_rule(self) -> Self:
        if self.row_size is not None and self.rows is not None:
            raise ValueError("give row_size or rows, not both: row_size sets each row's height, rows their count")
        return self


MAX_ZONE_NAME = 64
"""No IANA zone name is longer (the longest, America/Argentina/ComodRivadavia, has 32 characters)."""
_HOUR_MINUTE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def zone_field(value: Any) -> str:
    """A time zone the tz database names, checked before anything is opened: bounded, then looked up."""
    if not isinstance(value, str) or len(value) > MAX_ZONE_NAME:
        raise ValueError(f"a time zone is an IANA name of at most {MAX_ZONE_NAME} characters, e.g. America/New_York")
    zone(value)
    return value


def minute_of_day(value: Any) -> int:
    """`"HH:MM"`, 00:00 to 23:59, exactly five characters."""
    match = _HOUR_MINUTE.match(value) if isinstance(value, str) else None
    if match is None:
        shown = repr(value[:16]) if isinstance(value, str) else type(value).__name__
        raise ValueError(f"a session time is HH:MM from 00:00 to 23:59, got {shown}")
    return int(match.group(1)) * 60 + int(match.group(2))


class SessionHours(BaseModel):
    """A session's local hours: `end` at or before `start` crosses midnight (`start == end`: the whole day)."""

    model_config = ConfigDict(extra="forbid")

    tz: str = Field(description="IANA time zone, e.g. America/New_York.")
    start: str = Field(description='Local opening time, "HH:MM".')
    end: str = Field(description='Local closing time, "HH:MM" (exclusive).')

    @field_validator("tz", mode="before")
    @classmethod
    def _tz(cls, value: Any) -> str:
        return zone_field(value)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hour_minute(cls, value: Any) -> str:
        minute_of_day(value)
        return str(value)

    def spec(self) -> SessionSpec:
        return SessionSpec(self.tz, minute_of_day(self.start), minute_of_day(self.end))


MAX_SESSION_TEXT = 256


def session_field(value: Any) -> Any:
    """A preset's name, a `SessionHours` object, or that object as JSON text (as a command line gives it)."""
    if isinstance(value, str):
        if len(value) > MAX_SESSION_TEXT:
            raise ValueError(f"a session is a preset name or a small object, not {len(value)} characters")
        if value.lstrip().startswith("{"):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("a session given as text is a preset name or a JSON object") from None
        if value not in PRESETS:
            raise ValueError(f"unknown session {value[:32]!r}: a preset ({', '.join(PRESETS)}) or {{tz, start, end}}")
    return value


SESSION_DESCRIPTION = (
    f"A preset ({', '.join(PRESETS)}) or {{\"tz\": \"America/New_York\", \"start\": \"09:30\", \"end\": \"16:00\"}}:"
    " one answer per session in the range."
)


SessionField = Annotated[
    str | SessionHours | None, BeforeValidator(session_field), Field(description=SESSION_DESCRIPTION)
]
"""The `session` field of every method answering per session (`session: SessionField = None`)."""


def session_spec(value: str | SessionHours) -> SessionSpec:
    return PRESETS[value] if isinstance(value, str) else value.spec()
