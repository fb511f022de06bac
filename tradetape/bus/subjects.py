"""NATS names: the trades stream, its per-symbol subjects, dead letters, query, live, import and micro subjects.

Every subject tradetape publishes or subscribes to is spelled here.

A subject built from a symbol checks it (`tradetape.domain.symbols`): whatever a caller
passes, no subject leaves here with a wildcard, an extra token or a length that would make
nats-server close the connection (its control line holds 4 KiB).
"""

from __future__ import annotations

from tradetape.domain.instruments import instrument_token
from tradetape.domain.symbols import SymbolError, check_symbol, quoted_name

TRADES_STREAM = "TAPE_TRADES"
TRADES_PREFIX = "tape.trades.binance"
TRADES_SUBJECTS = f"{TRADES_PREFIX}.>"

DEADLETTER_STREAM = "TAPE_DEADLETTER"
DEADLETTER_PREFIX = "tape.deadletter"
REASON_HEADER = "Tradetape-Reason"
ORIGINAL_SIZE_HEADER = "Tradetape-Original-Size"
TRUNCATED_HEADER = "Tradetape-Truncated"
MSG_ID_HEADER = "Nats-Msg-Id"
VIEW_HEADER = "Tradetape-View"
"""On a query reply: the analytics worker and the state of the store it read (`<worker>.<generation>`), when the
answer read one state; two replies with the same view read the same trades (how a live join checks its snapshot)."""

QUERY_PREFIX = "tape.query"
QUERY_SUBJECT = f"{QUERY_PREFIX}.<method>.<SYMBOL>"
LIVE_PREFIX = "tape.live"
PROFILE_SUBJECT = f"{LIVE_PREFIX}.profile.<SYMBOL>"
BARS_SUBJECT = f"{LIVE_PREFIX}.bars.1s.<SYMBOL>"
LIVE_TRADES_SUBJECT = f"{LIVE_PREFIX}.trades.<SYMBOL>"
IMPORT_PREFIX = "tape.persist.import"
WRITTEN_PREFIX = "tape.persist.written"
"""Core NATS: persist's notice after each durable write of a shard, so its analytics workers catch up at once."""
INGEST_STATS_SUBJECT = "tape.ingest.stats"
"""Request-reply: ingest answers with its per-symbol counters and open gaps (JSON)."""

EXCHANGE = "binance"


def trade_subject(symbol: str) -> str:
    return f"{TRADES_PREFIX}.{instrument_token(symbol)}"


def symbol_of(subject: str) -> str:
    """The symbol is always the last token of a trade or query subject."""
    return subject.rsplit(".", 1)[-1]


def trade_msg_id(symbol: str, agg_id: int) -> str:
    """JetStream drops a second publish with the same id inside the duplicate window."""
    return f"{EXCHANGE}:{symbol}:{agg_id}"


def deadletter_subject(source: str, symbol: str | None = None) -> str:
    return f"{DEADLETTER_PREFIX}.{source}.{symbol or 'unknown'}"


def query_subject(method: str, symbol: str) -> str:
    return f"{QUERY_PREFIX}.{method}.{check_symbol(symbol)}"


def method_queries(method: str) -> str:
    """Every query subject of `method`, whatever instrument it names: one wildcard endpoint a method."""
    return f"{QUERY_PREFIX}.{method}.>"


def queried_symbol(method: str, subject: str) -> str:
    """The instrument a query subject of `method` names (`symbol_of`), checked by spelling it back.

    A subject the wildcard endpoint received may carry anything after the method; only one
    that `query_subject` would have written for the name read from it is a query of that name
    (`SymbolError` otherwise), so an extra token never passes for another instrument.
    """
    symbol = symbol_of(subject)
    if query_subject(method, symbol) != subject:
        raise SymbolError(f"subject {quoted_name(subject)} is not a query of {method} about one instrument")
    return symbol


def profile_subject(symbol: str) -> str:
    return f"{LIVE_PREFIX}.profile.{check_symbol(symbol)}"


def bars_subject(symbol: str) -> str:
    return f"{LIVE_PREFIX}.bars.1s.{check_symbol(symbol)}"


def live_trades_subject(instrument: str) -> str:
    """Each write's newly stored trades of `instrument` (`tradetape.api.live.messages.LiveTradesUpdate`)."""
    return f"{LIVE_PREFIX}.trades.{instrument_token(instrument)}"


def written_subject(shard: str) -> str:
    """Persist's notice that a write of `shard` (a settings-checked name: letters, digits, `_`, `-`) is durable."""
    return f"{WRITTEN_PREFIX}.{shard}"


def import_subject(symbol: str) -> str:
    return f"{IMPORT_PREFIX}.{check_symbol(symbol)}"


def max_deliveries_subject(durable: str) -> str:
    """JetStream's advisory when a message of the trades stream ran out of deliveries to `durable`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{TRADES_STREAM}.{durable}"


def micro_subject(verb: str, service: str | None = None) -> str:
    """nats micro's discovery subject `$SRV.<verb>[.<service>]` (PING, INFO, STATS)."""
    return f"$SRV.{verb}" + (f".{service}" if service else "")


ANALYTICS_SERVICE = "tradetape-analytics"
"""The micro service name: `$SRV.INFO.tradetape-analytics` lists every worker and its endpoints."""

SCHEMA_SUBJECT = "tape.schema"
"""Request-reply: the JSON Schema of every query method (what `tradetape schema` prints).

One endpoint, not a copy in each endpoint's metadata: with hundreds of symbols the copies
would push `$SRV.INFO` past the server's max payload."""


def analytics_queue_group(shard: str) -> str:
    """Replicas of one shard's workers share this queue group."""
    return f"{ANALYTICS_SERVICE}-{shard}"
