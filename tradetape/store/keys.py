"""RocksDB key layout: the one place that knows how keys are spelled.

A window of one instrument's trades lives under ``trades:{INSTRUMENT}:{window_start_ms:013d}``,
and what the last live writes added to it under that key plus ``+`` (`tail_key`: after the
window's own key, before the next window's), and the window's summary (trade count, first and last id and
time: `tradetape.store.segments.SegmentSummary`) under ``wsum:`` with the window start; a segment under
``seg:``, its summary under ``sum:``, its price histogram under ``hist:`` and its
aggregate layer under ``secs:`` and ``mlvl:`` with the segment start, the voids of a
segment span under ``void:``; what each holds, and why, is in
`tradetape.store.segments`. Timestamps are zero-padded to 13 digits (and clamped to
them), so byte order equals time order and a time range of one kind of one symbol is
one contiguous key range.

``{INSTRUMENT}`` is the instrument's token (`tradetape.domain.instruments`): the bare
symbol for spot, so every spot key is what it always was, and ``um.BTCUSDT`` for USD-M
(``:`` separates key fields, a token holds none). Every function here takes the
instrument's name and spells its token; ``trades:BTCUSDT:`` and ``trades:um.BTCUSDT:``
are disjoint prefixes, so markets never share a key range.
"""

from __future__ import annotations

import functools
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tradetape.domain.instruments import instrument_of_token, instrument_token

_Times = TypeVar("_Times", int, npt.NDArray[np.int64])

WINDOW_MS = 1000
_TIME_WIDTH = 13


def window_start(trade_time_ms: _Times) -> _Times:
    """The start of the 1-second window holding a trade time (an int or a numpy column of them)."""
    return trade_time_ms - trade_time_ms % WINDOW_MS


_MAX_TIME = 10**_TIME_WIDTH - 1
_TAIL = b"+"

WINDOW = "trades"
SEGMENT = "seg"
SUMMARY = "sum"
WINDOW_SUMMARY = "wsum"
HISTOGRAM = "hist"
SECOND_BARS = "secs"
MINUTE_LEVELS = "mlvl"
VOID = "void"
INDEX = "index"
ROLLED = "meta:rolled"
RETAINED = "meta:retained"
LAYOUT_KEY = b"meta:layout"


@functools.lru_cache(maxsize=8192)
def _token(symbol: str) -> str:
    """`instrument_token`, remembered: a range read spells keys per segment. Checked each time, a key took 2.4x
    (spot) to 3.1x (futures) as long as before instruments; remembered, within 10 % (100,000 keys timed in one
    process). More names than fit are checked again."""
    return instrument_token(symbol)


def _clamped(time_ms: int) -> int:
    """A bound with more digits would sort before every stored key: keep it in the 13 digits."""
    return int(min(max(time_ms, 0), _MAX_TIME))


def timed_key(kind: str, symbol: str, start_ms: int) -> bytes:
    """The key of a window or of a segment's body, summary or histogram."""
    return f"{kind}:{_token(symbol)}:{_clamped(start_ms):0{_TIME_WIDTH}d}".encode()


def window_key(symbol: str, start_ms: int) -> bytes:
    return timed_key(WINDOW, symbol, start_ms)


def window_summary_key(symbol: str, start_ms: int) -> bytes:
    return timed_key(WINDOW_SUMMARY, symbol, start_ms)


def kind_prefix(kind: str, symbol: str) -> bytes:
    return f"{kind}:{_token(symbol)}:".encode()


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (which ends in ``:``)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def index_key(symbol: str) -> bytes:
    return f"{INDEX}:{_token(symbol)}".encode()


def rolled_key(symbol: str) -> bytes:
    """Holds the window start before which every window of `symbol` is in a segment."""
    return f"{ROLLED}:{_token(symbol)}".encode()


def retained_key(symbol: str) -> bytes:
    """Holds the latest retention cutoff of `symbol` (epoch ms), written after its compaction."""
    return f"{RETAINED}:{_token(symbol)}".encode()


def tail_key(window: bytes) -> bytes:
    """The key of the tail of the window whose own key is `window`: the trades the last live writes added to it.
    Sorts after `window` and before the next window's key."""
    return window + _TAIL


def window_of(key: bytes) -> bytes:
    """The window's own key, for its own key or its tail's."""
    return key[: key.rindex(b":") + 1 + _TIME_WIDTH]


def window_values_end(window: bytes) -> bytes:
    """The first key after the window's own and its tail's (`window` its own key)."""
    return window + bytes([_TAIL[0] + 1])


def parse_window_key(key: bytes) -> tuple[str, int]:
    """The instrument's name and the window start of a window's or its tail's key."""
    _, token, start = window_of(key).decode().split(":")
    return instrument_of_token(token), int(start)


def window_key_range(symbol: str, start_ms: int, end_ms: int, kind: str = WINDOW) -> tuple[bytes, bytes]:
    """Keys of the windows (or their summaries: `kind`) that can hold trades with ``start_ms <= T < end_ms``:
    ``[lower, upper)``."""
    lower = timed_key(kind, symbol, window_start(max(start_ms, 0)))
    upper = timed_key(kind, symbol, window_start(max(end_ms - 1, 0)) + WINDOW_MS)
    return lower, upper
