"""What a replay's client sends: the request that opens a stream, and the acks that keep it flowing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tradetape.api.errors import QueryError
from tradetape.api.models import parse_time_ms
from tradetape.api.query_method import parse_body

DEFAULT_CHUNK = 10_000
"""Trades a chunk: about 490 KB of columns, well under NATS's default max payload of 1 MiB."""
MAX_CHUNK = 20_000
"""49 bytes a trade: 980 KB. The worker lowers a chunk further to fit a server with a smaller max payload."""
DEFAULT_WINDOW = 8
MAX_WINDOW = 32
"""Chunks a worker may have in flight to one stream: what one slow client can make it hold, at most ~31 MB."""
MAX_FLOW_BYTES = 128
"""A flow message is `{"ack": <int>}` or `{"cancel": true}`: anything longer is not one."""


class ReplayRequest(BaseModel):
    """`[start, end)` of one instrument's stored trades, streamed in chunks of `chunk` trades."""

    model_config = ConfigDict(extra="forbid")

    start: int | str = Field(description="Range start, epoch ms or ISO-8601, inclusive.")
    end: int | str = Field(description="Range end, epoch ms or ISO-8601, exclusive.")
    after_id: int | None = Field(
        default=None,
        ge=0,
        description="Resume: leave out the trades at exactly `start` whose agg id is at most this one (the last "
        "trade a broken stream delivered).",
    )
    chunk: int = Field(default=DEFAULT_CHUNK, ge=1, le=MAX_CHUNK, description="Trades per chunk.")
    window: int = Field(default=DEFAULT_WINDOW, ge=1, le=MAX_WINDOW, description="Chunks in flight before an ack.")

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: int | str) -> int:
        return parse_time_ms(value)

    @model_validator(mode="after")
    def _ordered(self) -> ReplayRequest:
        if not self.start_ms < self.end_ms:
            raise ValueError("start must be before end")
        return self

    @property
    def start_ms(self) -> int:
        assert isinstance(self.start, int)
        return self.start

    @property
    def end_ms(self) -> int:
        assert isinstance(self.end, int)
        return self.end

    @classmethod
    def parse(cls, data: bytes | dict[str, Any]) -> ReplayRequest:
        """A request body (or its fields); `invalid_request` naming each failing field."""
        return parse_body(cls, "replay", data)


class FlowMessage(BaseModel):
    """The client's word on the flow subject: chunks consumed up to `ack`, or `cancel` the stream."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ack: int | None = Field(default=None, ge=0)
    cancel: bool = False

    @classmethod
    def parse(cls, data: bytes) -> FlowMessage | None:
        """The message `data` holds; None for anything that is not one (counted by the worker, never trusted)."""
        if len(data) > MAX_FLOW_BYTES:
            return None
        try:
            return cls.model_validate_json(data)
        except ValidationError:
            return None


def unknown_instrument(instrument: str) -> QueryError:
    """The answer of the shard an instrument belongs to when it does not serve it."""
    return QueryError(
        "unknown_symbol", f"{instrument} is not served by this shard's workers", {"symbol": instrument}, status=404
    )
