"""How late trades reach ingest: the exchange → ingest hop, measured where ingest reads each frame.

Per new trade, the wall clock at receipt minus the trade time `T` (the whole hop, the exchange's
own delay included) and minus the event time `E` (what the socket and ingest's event loop add).
The last `SAMPLES` of each are kept in fixed arrays (one store per trade, nothing allocated), and
summarised as p50/p99/max per stats interval (`ingest progress` line), then started afresh.
"""

from __future__ import annotations

import time

import numpy as np

SAMPLES = 8192
"""Samples kept per interval (the most recent); the p99 of 8,192 rests on its top 82."""


class ArrivalLags:
    def __init__(self, samples: int = SAMPLES) -> None:
        self._since_trade = np.zeros(samples, dtype=np.int64)
        self._since_event = np.zeros(samples, dtype=np.int64)
        self._trades = 0
        self._events = 0

    def record(self, trade_time_ms: int, event_time: object) -> None:
        """One trade received now: `T` is validated; `E` is whatever the frame held (used only if an int)."""
        now = time.time_ns() // 1_000_000
        self._since_trade[self._trades % len(self._since_trade)] = now - trade_time_ms
        self._trades += 1
        if type(event_time) is int and 0 < event_time < 1 << 53:
            self._since_event[self._events % len(self._since_event)] = now - event_time
            self._events += 1

    def summary(self) -> dict[str, int]:
        """p50/p99/max of receipt − T and receipt − E (ms) over the interval's samples; then a fresh interval."""
        fields: dict[str, int] = {}
        for name, values, count in (
            ("since_trade", self._since_trade, self._trades),
            ("since_event", self._since_event, self._events),
        ):
            if count:
                kept = values[: min(count, len(values))]
                p50, p99, top = np.percentile(kept, [50, 99, 100])
                fields.update({f"{name}_p50_ms": int(p50), f"{name}_p99_ms": int(p99), f"{name}_max_ms": int(top)})
        self._trades = self._events = 0
        return fields
