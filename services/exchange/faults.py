"""Fault injection: what a connection sends wrong, and how the REST endpoint misbehaves.

WebSocket faults act only on what a connection sends, never on the history, so the REST
endpoint still has every trade: a dropped trade is exactly the id gap a backfill must
repair, and a bad frame is a copy of a good one (if a parser accepts it, it shows as a
duplicate or a phantom id). REST faults make the gap fill wait (`rest_lag_s`) or fail
(`rest_error`). `void_every` makes the exchange invalidate trades as Binance's 2022 data
audit did: such a trade is released as a void row (REST and the dumps serve it as `p`/`q`
"0.00000000", `f`/`l` -1) and never streamed, so ingest meets it only in a gap fill. The
config can be replaced while the exchange runs (`Exchange.set_faults`,
or `GET /control/faults?...`); counters stay per connection.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from tradetape.services.exchange.history import AggTrade, encode_event

logger = logging.getLogger(__name__)

REST_ERRORS = ("", "503", "429", "418", "html")
"""`rest_error` values: none, HTTP 503, 429 + Retry-After, 418 + Retry-After, 200 with an HTML body."""
HTML_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>"


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What to break; every WebSocket counter is per connection and 0 means off."""

    drop_every: int = 0
    """Every Nth trade is not sent (it stays in the history, so the client sees a gap)."""
    drop_after: int = 0
    """After N trades, none is sent: a burst's last trades lost, seen by no later id while the symbol is quiet."""
    malformed_every: int = 0
    """After every Nth sent trade, send one malformed frame (kinds rotate)."""
    invalid_every: int = 0
    """After every Nth sent trade, send one well-formed frame with an invalid value (kinds rotate)."""
    duplicate_every: int = 0
    """After every Nth sent trade, send it again."""
    oversized_every: int = 0
    """After every Nth sent trade, send a copy padded to `oversized_bytes`."""
    oversized_bytes: int = 1024 * 1024
    disconnect_after: int = 0
    """Close the connection after N trade frames."""
    shutdown_after: int = 0
    """After N trade frames send `serverShutdown`, keep streaming `shutdown_grace_s`, then close."""
    shutdown_grace_s: float = 2.0
    silent_after: int = 0
    """After N trade frames send nothing more and stop reading (no pongs), without closing."""
    rest_lag_s: float = 0.0
    """REST returns only trades released at least this long ago."""
    rest_error: str = ""
    """One of `REST_ERRORS`: how aggTrades calls fail."""
    rest_error_calls: int = 0
    """How many aggTrades calls fail with `rest_error` (0: all, while it is set)."""
    retry_after_s: int = 1
    corrupt_checksum: str = ""
    """A day (``YYYY-MM-DD``) or month (``YYYY-MM``) whose history dump gets a wrong ``.CHECKSUM``."""
    void_every: int = 0
    """Every trade whose agg id is a multiple of N is released as a void (from then on: history is not rewritten)."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{item.name} must be >= 0")
        if self.rest_error not in REST_ERRORS:
            raise ValueError(f"rest_error must be one of {REST_ERRORS}")

    @property
    def active(self) -> bool:
        return self != FaultConfig()

    def replace(self, **changes: Any) -> FaultConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_query(cls, base: FaultConfig, params: dict[str, str]) -> FaultConfig:
        """`base` with the fields named in a control request's query string changed."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for name, text in params.items():
            kind = types.get(name)
            if kind is None:
                raise ValueError(f"unknown fault {name!r}")
            changes[name] = float(text) if kind == "float" else text if kind == "str" else int(text)
        return dataclasses.replace(base, **changes)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))


class MalformedKind(enum.Enum):
    """The defects a parser must survive, sent in rotation."""

    INVALID_JSON = "invalid_json"
    MISSING_PRICE = "missing_price"
    NON_NUMERIC_PRICE = "non_numeric_price"


class InvalidKind(enum.Enum):
    """Well-formed JSON with a value strict validation must refuse."""

    UNICODE_DIGIT = "unicode_digit"
    """`"²"` in the quantity: `str.isdigit` accepts it."""
    PRICE_OVERFLOW = "price_overflow"
    """A price beyond what int64 holds in units of 1e-8."""
    ID_OVERFLOW = "id_overflow"
    """An agg id of 2^63."""
    SECONDS_TIME = "seconds_time"
    """`T` in seconds, not milliseconds."""
    ID_JUMP = "id_jump"
    """An agg id of 10^15: valid, but implausibly far ahead."""


_ROTATION = tuple(MalformedKind)
_INVALID_ROTATION = tuple(InvalidKind)


def malformed_payload(kind: MalformedKind, trade: AggTrade, symbol: str, event_ms: int, time_scale: int = 1) -> bytes:
    """A broken copy of the trade just sent: if a parser accepts it, it shows as a duplicate.

    Invalid JSON is the event cut in half, so it stays invalid inside a combined wrapper.
    """
    valid = encode_event(trade, symbol, event_ms, time_scale)
    if kind is MalformedKind.INVALID_JSON:
        return valid[: len(valid) // 2]
    event = orjson.loads(valid)
    if kind is MalformedKind.MISSING_PRICE:
        del event["p"]
    else:
        event["p"] = "not-a-number"
    return orjson.dumps(event)


def invalid_payload(kind: InvalidKind, trade: AggTrade, symbol: str, event_ms: int, time_scale: int = 1) -> bytes:
    event = orjson.loads(encode_event(trade, symbol, event_ms, time_scale))
    if kind is InvalidKind.UNICODE_DIGIT:
        event["q"] = "1²"
    elif kind is InvalidKind.PRICE_OVERFLOW:
        event["p"] = "92233720369.00000000"
    elif kind is InvalidKind.ID_OVERFLOW:
        event["a"] = 2**63
    elif kind is InvalidKind.SECONDS_TIME:
        event["T"] = event["T"] // 1000
    else:
        event["a"] = 10**15
    return orjson.dumps(event)


def oversized_payload(trade: AggTrade, symbol: str, event_ms: int, size: int, time_scale: int = 1) -> bytes:
    """The trade's event padded with an extra field to `size` bytes."""
    valid = encode_event(trade, symbol, event_ms, time_scale)
    padding = max(0, size - len(valid) - 7)
    return valid[:-1] + b',"x":"' + b"a" * padding + b'"}'


@dataclass
class FaultState:
    """The per-connection counters that decide, trade by trade, which fault fires."""

    config: FaultConfig
    considered: int = 0
    sent: int = 0
    dropped: int = 0
    malformed: int = 0
    invalid: int = 0
    duplicated: int = 0
    oversized: int = 0
    active: bool = False
    """Any fault beyond drop/malformed set: checked per trade, so computed once per config."""
    _rotation: int = field(default=0, repr=False)
    _invalid_rotation: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.reconfigure(self.config)

    def reconfigure(self, config: FaultConfig) -> None:
        self.config = config
        c = config
        self.active = bool(
            c.invalid_every
            or c.duplicate_every
            or c.oversized_every
            or c.disconnect_after
            or c.shutdown_after
            or c.silent_after
        )

    def take(self) -> bool:
        """Count one trade due to be sent; False means drop it."""
        self.considered += 1
        every, after = self.config.drop_every, self.config.drop_after
        if (every and self.considered % every == 0) or (after and self.considered > after):
            self.dropped += 1
            return False
        return True

    def sent_one(self) -> MalformedKind | None:
        """Count one sent trade frame; returns the malformed frame to send after it, if any."""
        self.sent += 1
        every = self.config.malformed_every
        if not every or self.sent % every:
            return None
        kind = _ROTATION[self._rotation % len(_ROTATION)]
        self._rotation += 1
        self.malformed += 1
        return kind

    def extras(self) -> tuple[InvalidKind | None, bool, bool]:
        """After the trade just counted: the invalid frame to send, whether to repeat it, whether to send it padded."""
        config, sent = self.config, self.sent
        invalid: InvalidKind | None = None
        if config.invalid_every and sent % config.invalid_every == 0:
            invalid = _INVALID_ROTATION[self._invalid_rotation % len(_INVALID_ROTATION)]
            self._invalid_rotation += 1
            self.invalid += 1
        duplicate = bool(config.duplicate_every) and sent % config.duplicate_every == 0
        oversized = bool(config.oversized_every) and sent % config.oversized_every == 0
        self.duplicated += duplicate
        self.oversized += oversized
        return invalid, duplicate, oversized

    @property
    def disconnect_due(self) -> bool:
        limit = self.config.disconnect_after
        return bool(limit) and self.sent >= limit

    @property
    def shutdown_due(self) -> bool:
        limit = self.config.shutdown_after
        return bool(limit) and self.sent >= limit

    @property
    def silence_due(self) -> bool:
        limit = self.config.silent_after
        return bool(limit) and self.sent >= limit
