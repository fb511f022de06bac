"""The live updates' messages: what persist publishes as it stores trades, and how a subscriber joins them.

Subjects (core NATS, no JetStream, nothing kept): `tape.live.profile.<SYMBOL>`,
`tape.live.bars.1s.<SYMBOL>` and `tape.live.trades.<SYMBOL>`. Persist publishes profile and
bars about once a second for every symbol it stored new trades of; each update covers the
writes ("batches") since the last one and lists, per batch, the agg-id runs that write newly
stored. Trades go out after every write, as soon as it is durable: the trades it newly
stored (validated, deduplicated, gap fills included, ascending by agg id, exact strings as
the `trades` method answers them) and its voids (ids Binance invalidated: held, no trade).

- profile updates carry increments: per 1-second window of trade time and per price, the
  volume, taker-buy volume and trade count the batch added (exact decimal strings);
- bars updates carry the complete 1 s bars of every second the batches touched, as the
  writes left them, which replace a subscriber's bars of those seconds.

A batch too large for one message comes in parts, each with the batch's ids, in
consecutive messages.

Joining exactly (the client and the web page do this): subscribe first; then take the
snapshot (a normal `volume_profile` query) between two whole-tape `coverage` queries that
agree: nothing was written in between, so the snapshot holds exactly the ids those replies
describe. A write is atomic, so a batch is either wholly in the snapshot or not at all:
apply only the batches it does not hold. Bars replace instead of adding up, so the ids of
one `coverage` before the `bars` snapshot are enough: an update whose last batch they do
not hold was read back after the snapshot's state, or is followed by one that was. A `seq`
that does not follow on, or a new `run` (persist restarted, a slow subscriber lost
messages), means an update may be missing: take a new snapshot. The accumulated state then
equals a fresh query of the same range exactly.

Trades join by agg id: every message names its trades and voids, and no write stores an id
twice, so after subscribing a trade is either in the snapshot (a `trades` query, however
many pages) or in a message, and one with an id already seen is dropped. A `seq` that does
not follow on or a new `run` means trades may be missing: the subscriber compares the ids
it has with a `coverage` reply that holds the message which showed the loss (that reply's
state includes every lost write), and reads the missing ids' stretches of time again with
`trades` (`tradetape.api.live.joining.LiveTrades`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tradetape.api.methods.bars import BarReply
from tradetape.api.methods.trades import TradeReply
from tradetape.bus.subjects import BARS_SUBJECT, LIVE_TRADES_SUBJECT, PROFILE_SUBJECT
from tradetape.domain.aggregates import SECOND_MS

IdRun = tuple[int, int]


class LiveLevels(BaseModel):
    """What one batch added to one 1-second window, per price (parallel lists, ascending by price)."""

    time: int = Field(description="Start of the 1-second window of trade time, epoch ms.")
    price: list[str] = Field(description="Prices, exact decimal strings.")
    volume: list[str] = Field(description="Base volume added at each price.")
    buy_volume: list[str] = Field(description="Taker-buy volume added at each price (sell = volume - buy).")
    trade_count: list[int] = Field(description="Trades added at each price.")


class LiveBatch(BaseModel):
    """The trades one persist write newly stored: all of them are in a query snapshot, or none."""

    ids: list[IdRun] = Field(description="Inclusive agg-id runs [from_id, to_id] the write stored, ascending.")
    levels: list[LiveLevels] = Field(
        default_factory=list, description="Profile updates: the increments per window and price."
    )


class LiveMessage(BaseModel):
    """What every live message carries: whose it is, and where it stands in its subject's sequence."""

    symbol: str
    run: str = Field(description="The publishing persist process; a new run means: take a new snapshot.")
    seq: int = Field(description="1, 2, 3 … per subject and run; a jump means an update was lost.")


class LiveUpdate(LiveMessage):
    batches: list[LiveBatch] = Field(description="The writes this update covers, in write order.")


class LiveProfileUpdate(LiveUpdate):
    """On `tape.live.profile.<SYMBOL>`: per-price increments of newly stored trades."""


class LiveBarsUpdate(LiveUpdate):
    """On `tape.live.bars.1s.<SYMBOL>`: the complete 1 s bars of the seconds the batches touched."""

    interval: str = "1s"
    interval_ms: int = SECOND_MS
    bars: list[BarReply]


class LiveTradesUpdate(LiveMessage):
    """On `tape.live.trades.<SYMBOL>`: what one write newly stored of the symbol, sent once it is durable.

    A write too large for one message comes in parts (`part` of `parts`), each in its own
    message with its own `seq`; the ids of a part are its trades' and voids'.
    """

    stored_at: int = Field(description="When the write was stored (persist's clock; its log synced after), epoch ms.")
    part: int = Field(default=1, ge=1, description="This message's part of the write, from 1.")
    parts: int = Field(default=1, ge=1, description="How many messages carry the write.")
    trades: list[TradeReply] = Field(description="The trades, ascending by agg id, as the `trades` method answers.")
    voids: list[int] = Field(
        default_factory=list, description="Agg ids stored as voids (Binance's invalidated ids): held, never a trade."
    )


def live_schema() -> dict[str, Any]:
    """The live subjects and their message schemas, for `api_schema`."""
    return {
        "about": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "profile": {"subject": PROFILE_SUBJECT, "message": LiveProfileUpdate.model_json_schema()},
        "bars": {"subject": BARS_SUBJECT, "message": LiveBarsUpdate.model_json_schema()},
        "trades": {"subject": LIVE_TRADES_SUBJECT, "message": LiveTradesUpdate.model_json_schema()},
    }
