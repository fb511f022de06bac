"""Reading one young window as it is stored: its own value and its tail's (`tradetape.store.window_writes`)."""

from __future__ import annotations

from rocksdict import Rdict

from tradetape.domain.columns import TradeColumns
from tradetape.store.codec import decode_window, decode_windows
from tradetape.store.keys import window_of, window_values_end
from tradetape.store.rocks import scan
from tradetape.store.sealed import decoded_together


def whole_window(db: Rdict, key: bytes) -> TradeColumns:
    """The trades of the window `key` belongs to (its own key or its tail's): its own value's and its tail's."""
    return decoded_together(whole_window_values(db, key), decode_windows, decode_window)


def whole_window_values(db: Rdict, key: bytes) -> list[tuple[bytes, bytes]]:
    """The keys and values of the window `key` belongs to: its own and its tail's."""
    window = window_of(key)
    return scan(db, window, window_values_end(window))
