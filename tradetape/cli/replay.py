"""`tradetape replay SYMBOL... --start T --end T`: stored trades streamed back, to a file or to a NATS subject.

The range is `--start`/`--end` or `--last` (before now). The trades come from `TapeClient.replay`
(merged by time, then symbol, then agg id; `--speed X` paces them by trade time, 1 = real time).
Output (`-o`): `FILE.jsonl` or `-` (stdout, the default without `--to-subject`), one JSON object a
trade with the DataFrame's columns (price and qty exact decimal strings with 8 places, time epoch
ms); `FILE.parquet`, the DataFrame's columns as they are (decimal128(38, 8), timestamp in µs UTC),
written a frame at a time. `--to-subject S` publishes each trade to the core NATS subject S as a
Binance combined-stream frame (`{"stream":"btcusdt@aggTrade","data":{...}}`,
`tradetape.binance.events`), so code written against Binance's live frames runs unchanged; S may
not be one of tradetape's own subjects (`tape.>`). Exit codes: 0 done, 1 a refused request or an
output that cannot be written, 2 NATS or the service cannot be reached. A summary line (trades,
seconds, rate) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow.parquet as pq

from tradetape.api.errors import QueryError
from tradetape.api.models import parse_duration_ms
from tradetape.api.replay import DEFAULT_CHUNK, MAX_WINDOW
from tradetape.binance.events import combined_events
from tradetape.bus.publish.bulk import CorePublish
from tradetape.bus.subjects import check_foreign_subject
from tradetape.cli.exit_codes import no_reply
from tradetape.client import TapeClient, TapeUnavailable
from tradetape.settings import Settings

STDOUT = "-"
WINDOW = MAX_WINDOW
"""Chunks the worker may send beyond the last ack: the most the protocol allows (16 MB at most in flight), as the
command only streams. Measured with `--to-subject` on a loaded 2-core machine, against the default 8: 319/266/346k
against 265/248/290k trades/s in three alternating pairs (the CLI waited less on a starved worker)."""


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    output = args.output if args.output is not None else (None if args.to_subject else STDOUT)
    try:
        args.start, args.end = _range(args.start, args.end, args.last)
        if args.to_subject is not None:
            check_foreign_subject(args.to_subject)
        if output not in (None, STDOUT) and Path(output).suffix not in (".jsonl", ".parquet"):
            raise ValueError(f"-o {output}: write FILE.jsonl, FILE.parquet or - (stdout)")
    except ValueError as exc:
        print(f"tradetape replay: {exc}", file=sys.stderr)
        return 1
    began = time.perf_counter()
    try:
        count = asyncio.run(_replay(args, settings, output))
    except (QueryError, TapeUnavailable) as exc:
        return no_reply("replay", exc, lambda error: f"{error.code}: {error.message}")
    except OSError as exc:
        print(f"tradetape replay: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - began
    print(f"replayed {count} trades in {seconds:.2f} s ({count / max(seconds, 1e-9):,.0f} trades/s)", file=sys.stderr)
    return 0


def _range(start: str | None, end: str | None, last: str | None) -> tuple[int | str, int | str]:
    """`--start`/`--end` as given, or `--last` before now; `ValueError` unless exactly one of the two ways."""
    if last is not None:
        if start is not None or end is not None:
            raise ValueError("give --last or --start/--end, not both")
        now_ms = int(time.time() * 1000)
        return now_ms - parse_duration_ms(last), now_ms
    if start is None or end is None:
        raise ValueError("give --start and --end (or --last)")
    return start, end


async def _replay(args: argparse.Namespace, settings: Settings, output: str | None) -> int:
    count = 0
    async with await TapeClient.connect(settings, timeout=args.timeout) as tape:
        publisher = CorePublish(tape.nc, args.to_subject) if args.to_subject is not None else None
        with _Sink(output) as sink:
            frames = tape.replay(
                args.symbols,
                start=args.start,
                end=args.end,
                speed=args.speed,
                chunk=DEFAULT_CHUNK if args.chunk is None else args.chunk,
                window=WINDOW,
            )
            async for frame in frames:
                if publisher is not None:
                    await publisher.publish(combined_events(frame))
                sink.write(frame)
                count += len(frame)
        await tape.nc.flush()
    return count


class _Sink:
    """Where the frames go: nowhere, JSON lines (a file or stdout), or Parquet written a frame at a time."""

    def __init__(self, output: str | None) -> None:
        self._output = output
        self._handle: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> _Sink:
        if self._output == STDOUT:
            self._handle = sys.stdout.buffer
        elif self._output is not None and self._output.endswith(".jsonl"):
            self._handle = open(self._output, "wb")  # noqa: SIM115 - closed in __exit__
        return self

    def write(self, frame: pl.DataFrame) -> None:
        if self._handle is not None:
            frame.with_columns(
                pl.col("price", "qty").cast(pl.String), pl.col("time").dt.epoch("ms")
            ).write_ndjson(self._handle)
        elif self._output is not None:
            table = frame.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._output, table.schema, compression="zstd")
            self._parquet.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._handle is not None:
            self._handle.flush()
            if self._handle is not sys.stdout.buffer:
                self._handle.close()
