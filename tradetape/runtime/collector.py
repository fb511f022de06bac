"""Python's cyclic garbage collector, told that a service process's start-up is over.

Called by the CLI for each service process and the exchange simulator, never inside a
test process. Ingest allocates a handful of container objects a trade (the decoded
frame, its row, the outgoing message) that die young, while everything built at
start-up (modules, settings, clients) lives for ever. By default a young collection runs
every 700 allocations and the full ones walk the whole start-up heap again and again.
Freezing what exists after start-up and collecting young objects every 20,000
allocations took ingest from 35.6–36.2 to 31.7–32.8 CPU µs a trade (`python
bench/ingest.py --symbols 2`, two runs each), and analytics' 1 h volume profile over
NATS from 12.4–13.0 to 8.8–9.2 ms p50 (`python bench/query.py --work-dir …`, two
interleaved runs each). Reference cycles are still collected, only less often. The
exchange simulator does the same: its full collections walked its start-up heap beside
the trades it keeps, 44 ms where 4 ms is the trades' own (50,000 of them), and each
such pause reads as exchange latency in `bench/pipeline.py`.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle_after_start(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Move every object allocated so far out of the collector's sight; collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
