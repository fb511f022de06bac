"""The one error tree: every exception tradetape raises on purpose descends from `TradetapeError`.

A branch says whose fault a failure is and so how it is answered; a leaf lives in the
module of its concept and keeps the builtin base its callers catch (a `ValueError` stays
one). Foreign exceptions (RocksDB's, nats-py's, zstd's, msgpack's) are translated at one
boundary each, into a leaf here, with the original as the cause.

::

    TradetapeError
    ├── RequestError (ValueError)        a request that fails validation: answered `invalid_request`
    │   ├── SymbolError                  tradetape.domain.symbols: a name that is no symbol
    │   └── ExportError                  tradetape.history.export: an export that cannot be written as asked
    ├── InputError (ValueError)          data received (exchange, bus, files) that fails its checks: refused,
    │   │                                dead-lettered or reported with the reason, never stored
    │   ├── DecimalFormatError           tradetape.domain.decimals
    │   ├── TradeFormatError             tradetape.binance.aggtrade
    │   ├── FrameError                   tradetape.binance.frames: a WebSocket frame
    │   ├── BatchFormatError             tradetape.history.bulk: a bulk-import request body
    │   ├── DumpError                    tradetape.history.file_limits: a file, its line and why
    │   ├── DumpMarketError              tradetape.binance.dumps: a dump of another market than the instrument's
    │   ├── LabelError                   tradetape.history.labels
    │   ├── ImportConflictError          tradetape.store.conflicts: an imported trade stored with other contents
    │   ├── ReplayFormatError            tradetape.services.exchange.replay: the simulator's dump rows
    │   └── ReleasedRowsError            tradetape.services.exchange.released: the simulator's record of released trades
    ├── FormatError (ValueError)         bytes that do not decode into what their codec claims; the caller's
    │   │                                boundary says whose bytes they were (stored: `StoreCorruptError`)
    │   ├── ChecksumError                tradetape.store.sealed: a stored value's checksum does not match
    │   ├── PackingError                 tradetape.store.packing: packed columns, zstd frames
    │   ├── SegmentFormatError           tradetape.store.segments: segments, summaries, histograms
    │   ├── WindowFormatError            tradetape.store.codec: windows and void records
    │   ├── ReplayMessageError           tradetape.api.replay.chunks: a replay stream's message (the client refuses it)
    │   ├── IndexFormatError             tradetape.store.index
    │   └── LedgerFormatError            tradetape.bus.ledger: ingest's gap ledger in NATS KV
    ├── StoreError (RuntimeError)        tradetape.store.rocks: the store cannot do what was asked
    │   ├── StoreCorruptError            tradetape.store.sealed: a stored value failed its checks (checksum,
    │   │                                format); names the key; answered `store_corrupt` (500)
    │   ├── StoreLayoutError             tradetape.store.layout: another format version or segment span
    │   ├── StoreClosedError             tradetape.store.reader
    │   ├── StoreNotFoundError (FileNotFoundError)  tradetape.store.rocks: no database yet
    │   ├── ShardLockedError             tradetape.store.shards: another process writes the shard
    │   └── ImportTargetError            tradetape.history.load: no shard, or its persist does not answer
    ├── LimitError                       a request beyond what a worker allows (answered `range_too_large`)
    │   ├── ReadTooLargeError (RuntimeError)  tradetape.store.budget: a read over the query memory budget
    │   ├── TooManySessions (ValueError)  tradetape.domain.sessions: a range touching too many sessions
    │   ├── TooManyBars (ValueError)     tradetape.domain.threshold_bars: more volume, tick or dollar bars than allowed
    │   └── SumOverflowError (ArithmeticError)  tradetape.domain.sums: a wide sum past 2**126 units
    ├── ExchangeError                    Binance (or its simulator) refused or answered nothing usable
    │   ├── GapFillError (RuntimeError)  tradetape.binance.rest
    │   ├── FeedError (RuntimeError)     tradetape.services.ingest.feed: a refused subscription
    │   ├── FetchError (RuntimeError)    tradetape.history.download; RefusedBodyError below it
    │   ├── RestError                    tradetape.services.exchange.rest: the simulator's ``{"code", "msg"}`` answer
    │   └── StreamError (ValueError)     tradetape.services.exchange.streams: streams the simulator does not serve
    ├── BusError                         NATS itself
    │   └── NatsClosedError (RuntimeError)  tradetape.services.ingest.publisher: the connection is closed for good
    ├── ConfigError                      settings or the machine do not allow what is asked
    │   ├── SymbolsUnresolvedError (RuntimeError)  tradetape.settings
    │   ├── HttpAccessError (ValueError) tradetape.ground.hosts
    │   ├── WebConfigError (RuntimeError)  tradetape.web.server
    │   ├── MetricsPortError (RuntimeError)  tradetape.runtime.metrics
    │   ├── NatsServerError (RuntimeError)  tradetape.runtime.nats_server; NatsPortInUse below it
    │   ├── DataDirLocked (RuntimeError) tradetape.ground.lock
    │   ├── ForeignStoreError (RuntimeError)  tradetape.bus.shard_stores: not the store the shard's persist writes
    │   ├── StartupError (RuntimeError)  tradetape.runtime.supervisor
    │   └── NatsInternalsError (RuntimeError)  tradetape.bus.nats_internals: a nats-py release not read
    ├── QueryError                       tradetape.api.errors: an error reply (code, message, details)
    │   └── ClientQueryError             tradetape.client: the same, as the client raises it
    └── TapeError                        tradetape.client: anything the client raises
        ├── TapeUnavailable              no worker answers, or NATS is down
        └── ClientQueryError             (also a QueryError)

Only `RequestError` (and the `invalid_request` replies built where a request is parsed)
becomes `invalid_request`: a `ValueError` from anywhere else is the server's fault.
"""

from __future__ import annotations


class TradetapeError(Exception):
    """Anything tradetape raises on purpose."""


class RequestError(TradetapeError, ValueError):
    """A request (a query, a command's arguments) that fails validation: the asker's fault."""


class InputError(TradetapeError, ValueError):
    """Data received from outside that fails its checks: refused with the reason, never stored."""


class FormatError(TradetapeError, ValueError):
    """Bytes that do not decode into what their codec claims; the boundary that read them says whose they were."""


class LimitError(TradetapeError):
    """A request beyond what a worker allows (memory, size): refused before the work."""


class ExchangeError(TradetapeError):
    """The exchange (Binance, or the simulator playing it) refused a request or answered nothing usable."""


class BusError(TradetapeError):
    """NATS itself failed us (a connection closed for good)."""


class ConfigError(TradetapeError):
    """The settings, or the machine, do not allow what is asked (an address taken, a lock held, a list unknown)."""
