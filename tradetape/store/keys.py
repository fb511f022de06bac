"""RocksDB key layout: the one place that knows how keys are spelled.

A window of one symbol's trades lives under ``trades:{SYMBOL}:{window_start_ms:013d}``.
The timestamp is zero-padded to 13 digits, so byte order equals time order and a time
range of one symbol is one contiguous key range.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

_Times = TypeVar("_Times", int, npt.NDArray[np.int64])

WINDOW_MS = 1000
_TIME_WIDTH = 13


def window_start(trade_time_ms: _Times) -> _Times:
    """The start of the 1-second window holding a trade time (an int or a numpy column of them)."""
    return trade_time_ms - trade_time_ms % WINDOW_MS


def window_key(symbol: str, start_ms: int) -> bytes:
    return f"trades:{symbol}:{start_ms:0{_TIME_WIDTH}d}".encode()


def symbol_prefix(symbol: str) -> bytes:
    return f"trades:{symbol}:".encode()


def parse_window_key(key: bytes) -> tuple[str, int]:
    _, symbol, start = key.decode().split(":")
    return symbol, int(start)


def window_key_range(symbol: str, start_ms: int, end_ms: int) -> tuple[bytes, bytes]:
    """Keys of the windows that can hold trades with ``start_ms <= T < end_ms``: ``[lower, upper)``."""
    lower = window_key(symbol, window_start(max(start_ms, 0)))
    upper = window_key(symbol, window_start(max(end_ms - 1, 0)) + WINDOW_MS)
    return lower, upper
