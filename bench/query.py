"""The query bench: tradetape's answers over NATS through the client, beside DuckDB on Parquet, in one run.

Writes `--days` of a busy real-like symbol (`--per-day` trades a day, default 7 x 2.3M)
through the real `ShardWriter` with roll-ups into segments, and the same trades into a
Parquet file with zstd (`bench/tape_data.py`, shared with `bench/store.py`). Starts a
nats-server and `--replicas` analytics processes (`python -m tradetape.cli analytics`),
which read the store as RocksDB secondaries, and asks them through `TapeClient`:
`volume_profile` over 1 h, 24 h and the whole range (7 d), `bars`, `flow` and `vwap` (its
running series) at 1 m over 24 h and at 5 m over the whole range (1 m over 7 d would pass
`bars`' 4,000 bars a reply), `footprint` at 5 m and `market_profile` (TPO) at 30 m over 24 h
and the whole range, and `coverage` of the whole tape; warm-up, then sequential
requests for p50/p99, each timed from the client's call to its parsed reply. DuckDB
computes the same answers from the Parquet file in the same run (profiles and bars with
exact integer math on its integer units; VWAP in doubles, centred), and every tradetape
answer is checked equal to DuckDB's (VWAP within float tolerance). Then `--concurrency`
requests in flight for `--throughput-seconds`, with every replica and then with one; last,
each figure cold: the workers restarted (their caches empty; the OS page cache is not
dropped) and the figure's first answer timed. In this process, with the workers stopped:
each figure's own compute (`AnalyticsService.answer`), and the peak memory (tracemalloc) of
the answers that read the aggregate layer per layer row they read, what `level_bytes`
budgets. Prints one table: each figure beside its target and its DuckDB peer, and the bytes
a trade at rest with and without the aggregate layer. Nothing here is part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import nats
import numpy as np
import orjson
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from tape_data import DAY_MS, SYMBOL, dir_bytes, write_store  # bench/tape_data.py

from tradetape.api.registry import method as registered_method
from tradetape.api.registry import methods
from tradetape.bus.subjects import ANALYTICS_SERVICE, query_subject
from tradetape.client import ClientQueryError, TapeClient
from tradetape.domain.decimals import parse_units
from tradetape.domain.footprint import level_step
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.runtime.processes import die_with_parent, tradetape_command
from tradetape.settings import Settings
from tradetape.store.keys import MINUTE_LEVELS, SECOND_BARS, kind_prefix, prefix_end
from tradetape.store.rocks import open_primary, scan

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
FOOTPRINT_ROWS = {"24 h": "10", "whole": "200"}
"""Footprint row sizes: a 5m footprint over 24 h holds ~2,000 rows at 10 USDT (394 KB of JSON), over 7 d ~2,700 at
200 (971 KB, with 2,016 bars); 5 and 100 USDT pass NATS's 1 MiB a reply."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTED: list[subprocess.Popen[bytes]] = []
"""Every child this bench started, so the last `finally` can kill any that is still running, by pid."""
SERVERS: list[EmbeddedNatsServer] = []


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the store


def prepare_store(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The data dir (`<root>/data/shards/main`) and the Parquet file, written unless `root` already holds them."""
    meta_file = root / "store.json"
    wanted = {"days": args.days, "per_day": args.per_day, "segment_minutes": args.segment_minutes, "seed": args.seed}
    if meta_file.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            log(f"reusing the store in {root} (written in {meta['write_s']:.1f} s)")
            meta["reused"] = True
            return meta
        raise SystemExit(f"{root} holds a store of {meta}, not {wanted}: pick another --work-dir")
    shard = Settings(data_dir=root / "data", symbols=(SYMBOL,)).shard_dir
    parquet = root / "trades.parquet"
    log(f"writing {args.days} d x {args.per_day:,} trades through ShardWriter and into {parquet.name}")
    total, write_s = write_store(shard, parquet, args.days, args.per_day, args.segment_minutes * MINUTE_MS, args.seed)
    meta = {**wanted, "trades": total, "write_s": write_s, "store_bytes": dir_bytes(shard)}
    meta["parquet_bytes"] = parquet.stat().st_size
    meta_file.write_text(json.dumps(meta))
    meta["reused"] = False
    return meta


def layer_bytes(shard: Path) -> dict[str, int]:
    """Bytes of the aggregate layer's values per kind (as stored, before RocksDB's own compression of its blocks)."""
    db = open_primary(shard)
    try:
        prefixes = {kind: kind_prefix(kind, SYMBOL) for kind in (SECOND_BARS, MINUTE_LEVELS)}
        return {kind: sum(len(value) for _, value in scan(db, p, prefix_end(p))) for kind, p in prefixes.items()}
    finally:
        db.close()


# --------------------------------------------------------------------------- processes


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int | str) -> float:
    rest = _stat(pid)
    return 0.0 if rest is None else (int(rest[11]) + int(rest[12])) / CLK_TCK


def minor_faults(pids: list[int] | tuple[int | str, ...]) -> int:
    """Minor page faults so far of the given processes, summed (each a page the kernel had to map in)."""
    return sum(int(rest[7]) for rest in map(_stat, pids) if rest is not None)


def run_ns(pids: list[int]) -> int:
    """How long the threads of the given processes have run on a CPU so far, in ns (/proc/<pid>/task/*/schedstat):
    precise where /proc/<pid>/stat counts clock ticks, and what an answer cost its worker however busy the machine is
    (waiting for a core is not counted)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(task.read_text().split()[0])
    return total


def machine_busy_s() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


@dataclass
class CpuMeter:
    """Cores used over a phase: by each process this bench runs, and by everything else on the machine."""

    pids: dict[str, int]
    started: float = 0.0
    machine: float = 0.0
    own: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self.started, self.machine = time.perf_counter(), machine_busy_s()
        self.own = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.started
        self.cores = {name: (cpu_seconds(pid) - self.own[name]) / wall for name, pid in self.pids.items()}
        self.cores["other processes"] = max((machine_busy_s() - self.machine) / wall - sum(self.cores.values()), 0.0)

    def summary(self) -> str:
        return ", ".join(f"{name} {cores:.2f}" for name, cores in self.cores.items())


class Replicas:
    """The analytics processes, each logging to its own file; stopped by pid, killed if they linger."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            name = f"analytics-{len(self.procs) + 1}"
            with open(self.log_dir / f"{name}.log", "ab") as log_file:
                proc = subprocess.Popen(
                    tradetape_command("analytics"), env=self.env, stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent(), start_new_session=True, close_fds=True,
                )  # fmt: skip
            STARTED.append(proc)
            self.procs.append(proc)
            log(f"started {name} (pid {proc.pid})")

    def check(self) -> None:
        for number, proc in enumerate(self.procs, 1):
            if proc.poll() is not None and proc.returncode not in (0, -signal.SIGTERM):
                tail = (self.log_dir / f"analytics-{number}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"analytics-{number} exited with code {proc.returncode}:\n{tail}")

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"analytics pid {proc.pid} did not stop in {timeout:.0f} s; killing it")
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                self.stop(proc)

    def restart(self, count: int) -> None:
        """`count` fresh workers in place of every running one (their caches empty)."""
        self.stop_all()
        self.procs = []
        self.start(count)


async def service_replies(nc: Client, verb: str, wait_s: float = 0.3) -> list[dict[str, Any]]:
    """Every analytics worker's answer to `$SRV.<verb>.tradetape-analytics`."""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    found: list[dict[str, Any]] = []
    try:
        await nc.publish(f"$SRV.{verb}.{ANALYTICS_SERVICE}", b"", reply=inbox)
        while True:
            try:
                msg = await subscription.next_msg(timeout=wait_s)
            except NatsTimeoutError:
                break
            if msg.data:
                found.append(orjson.loads(msg.data))
    finally:
        await subscription.unsubscribe()
    return found


async def wait_ready(nc: Client, replicas: Replicas, count: int, timeout: float = 60.0) -> None:
    """Until exactly `count` workers list every method's endpoint (and the schema's)."""
    wanted = len(methods()) + 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicas.check()
        infos = await service_replies(nc, "INFO")
        if len(infos) == count and all(len(info.get("endpoints") or []) >= wanted for info in infos):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{count} analytics workers did not come up within {timeout:.0f} s")


async def requests_per_worker(nc: Client) -> dict[str, int]:
    return {
        info["id"]: sum(int(e.get("num_requests") or 0) for e in info.get("endpoints") or [])
        for info in await service_replies(nc, "STATS")
    }


# --------------------------------------------------------------------------- measuring


@dataclass
class Samples:
    seconds: list[float]
    faults: float = 0.0
    """Minor page faults per timed call in the processes that computed the answers."""
    first_s: float = float("nan")
    """The first call, before any warm-up: what a query costs with nothing of it cached yet."""
    cpu_ms: float = float("nan")
    """CPU time per timed call of the processes that computed the answers (`run_ns`), a mean."""

    @property
    def n(self) -> int:
        return len(self.seconds)

    def ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.seconds), q)) * 1e3


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's garbage collection waits while one request is timed (it runs after, between requests): its
    full collections over the bench's own heap took 37-48 ms, and a timed request they fell into was the "cold
    stall" (one cold answer in ~20 waiting 50-100 ms past the workers' CPU time) whatever the request."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def sample_async(
    call: Callable[[], Awaitable[Any]], args: argparse.Namespace, pids: list[int]
) -> tuple[Samples, Any]:
    """`--warmup` calls (the first timed alone), then up to `--requests` timed sequential ones (fewer, but at least
    10, past `--budget-s`)."""
    with collector_paused():
        started = time.perf_counter()
        result = await call()
        first_s = time.perf_counter() - started
    for _ in range(args.warmup - 1):
        result = await call()
    faults, ran_ns = minor_faults(pids), run_ns(pids)
    seconds: list[float] = []
    deadline = time.perf_counter() + args.budget_s
    while len(seconds) < args.requests and (len(seconds) < 10 or time.perf_counter() < deadline):
        with collector_paused():
            started = time.perf_counter()
            result = await call()
            seconds.append(time.perf_counter() - started)
    cpu_ms = (run_ns(pids) - ran_ns) / len(seconds) / 1e6
    return Samples(seconds, (minor_faults(pids) - faults) / len(seconds), first_s, cpu_ms), result


def sample_sync(call: Callable[[], Any], args: argparse.Namespace, requests: int | None = None) -> tuple[Samples, Any]:
    result = None
    for _ in range(args.warmup):
        result = call()
    faults = minor_faults(("self",))
    seconds: list[float] = []
    deadline = time.perf_counter() + args.budget_s
    requests = requests or args.requests
    while len(seconds) < requests and (len(seconds) < 10 or time.perf_counter() < deadline):
        with collector_paused():  # DuckDB's calls as tradetape's: the same process, the same pause
            started = time.perf_counter()
            result = call()
            seconds.append(time.perf_counter() - started)
    return Samples(seconds, (minor_faults(("self",)) - faults) / len(seconds)), result


@dataclass
class Figure:
    label: str
    method: str
    fields: dict[str, Any]
    peer: str | None
    """The DuckDB figure it is compared with."""
    target: Callable[[dict[str, Samples]], tuple[float, str]] | None = None
    """(target ms, how it is stated), given the DuckDB samples."""
    samples: Samples | None = None
    reply: Any = None
    reply_bytes: int = 0
    in_process: Samples | None = None
    cold_s: float = float("nan")
    """The figure's first answer from workers started just before it (empty caches)."""
    cold_cpu_ms: float = float("nan")
    """The workers' CPU time for that answer (`run_ns`), the median of the restarts as `cold_s`."""


def absolute(ms: float) -> Callable[[dict[str, Samples]], tuple[float, str]]:
    return lambda _duck: (ms, f"<= {ms:g} ms")


def half_of(peer: str) -> Callable[[dict[str, Samples]], tuple[float, str]]:
    return lambda duck: (0.5 * duck[peer].ms(50), f"<= 0.5 x DuckDB = {0.5 * duck[peer].ms(50):.1f} ms")


# --------------------------------------------------------------------------- DuckDB


def duck_profile_sql(parquet: Path, start: int, end: int, row_size: int) -> str:
    return (
        f"SELECT p // {row_size} AS k, sum(q), coalesce(sum(q) FILTER (WHERE NOT m), 0), count(*) "
        f"FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end} GROUP BY k ORDER BY k"
    )


def duck_bars_sql(parquet: Path, start: int, end: int, interval_ms: int) -> str:
    return (
        f"SELECT T // {interval_ms} * {interval_ms} AS minute, arg_min(p, a), max(p), min(p), arg_max(p, a), sum(q), "
        "coalesce(sum(q) FILTER (WHERE NOT m), 0), coalesce(sum(q) FILTER (WHERE m), 0), count(*) "
        f"FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end} GROUP BY minute ORDER BY minute"
    )


def duck_flow_sql(parquet: Path, start: int, end: int, interval_ms: int) -> str:
    return (
        f"SELECT k * {interval_ms}, buy, sell, sum(buy - sell) OVER (ORDER BY k), n FROM ("
        f"SELECT T // {interval_ms} AS k, coalesce(sum(q) FILTER (WHERE NOT m), 0) AS buy, "
        "coalesce(sum(q) FILTER (WHERE m), 0) AS sell, count(*) AS n "
        f"FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end} GROUP BY k) ORDER BY k"
    )


def duck_vwap_sql(parquet: Path, start: int, end: int, interval_ms: int, reference: int) -> str:
    """The running VWAP and its volume-weighted deviation at the end of each interval, prices centred in doubles."""
    running = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    return (
        f"SELECT (k + 1) * {interval_ms}, {reference} + c1 / c0, sqrt(greatest(c2 / c0 - (c1 / c0) ^ 2, 0)) FROM ("
        f"SELECT k, sum(v) OVER (ORDER BY k {running}) AS c0, sum(x) OVER (ORDER BY k {running}) AS c1, "
        f"sum(x2) OVER (ORDER BY k {running}) AS c2 FROM ("
        f"SELECT T // {interval_ms} AS k, sum(q::DOUBLE) AS v, sum((p - {reference})::DOUBLE * q) AS x, "
        f"sum((p - {reference})::DOUBLE * (p - {reference})::DOUBLE * q) AS x2 "
        f"FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end} GROUP BY k)) ORDER BY 1"
    )


def duck_footprint_sql(parquet: Path, start: int, end: int, interval_ms: int, row_size: int) -> str:
    """Per bar and price row: taker-buy volume, taker-sell volume, trades."""
    return (
        f"SELECT T // {interval_ms} * {interval_ms} AS bar, p // {row_size} AS k, "
        "coalesce(sum(q) FILTER (WHERE NOT m), 0), coalesce(sum(q) FILTER (WHERE m), 0), count(*) "
        f"FROM read_parquet('{parquet}') WHERE T >= {start} AND T < {end} GROUP BY bar, k ORDER BY bar, k"
    )


def duck_tpo_sql(parquet: Path, start: int, end: int, period_ms: int, row_size: int) -> str:
    """Per price row, the periods whose low-high (by row) covers it: the TPO count."""
    return (
        "SELECT k, count(*) FROM (SELECT unnest(range(lo, hi + 1)) AS k FROM ("
        f"SELECT min(p) // {row_size} AS lo, max(p) // {row_size} AS hi FROM read_parquet('{parquet}') "
        f"WHERE T >= {start} AND T < {end} GROUP BY T // {period_ms})) GROUP BY k ORDER BY k"
    )


def duck_coverage_sql(parquet: Path) -> str:
    """What whole-tape coverage answers, computed from the trades: count, first/last id and time, gaps."""
    return (
        "SELECT count(*), min(a), max(a), min(T), max(T), count(*) FILTER (WHERE a - prev > 1) "
        f"FROM (SELECT a, T, lag(a) OVER (ORDER BY a) AS prev FROM read_parquet('{parquet}'))"
    )


# --------------------------------------------------------------------------- checks


def profile_rows(reply: Any, row_size: int) -> list[tuple[int, int, int, int]]:
    rows = []
    for row in reply.rows:
        if row.trade_count == 0:
            assert parse_units(row.volume) == 0, row
            continue
        k = parse_units(row.price_low) // row_size
        assert parse_units(row.price_low) == k * row_size and parse_units(row.price_high) == (k + 1) * row_size, row
        assert parse_units(row.volume) == parse_units(row.buy_volume) + parse_units(row.sell_volume), row
        rows.append((k, parse_units(row.volume), parse_units(row.buy_volume), row.trade_count))
    return rows


def bar_rows(reply: Any) -> list[tuple[int, ...]]:
    return [
        (bar.time, *(parse_units(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
         parse_units(bar.buy_volume), parse_units(bar.sell_volume), bar.trade_count)
        for bar in reply.bars
    ]  # fmt: skip


def flow_rows(reply: Any) -> list[tuple[int, ...]]:
    return [(r.time, parse_units(r.buy_volume), parse_units(r.sell_volume), r.trade_count) for r in reply.rows]


def signed_units(text: str) -> int:
    return -parse_units(text[1:]) if text.startswith("-") else parse_units(text)


def check(figure: Figure, duck: dict[str, Any], row_size: int) -> str | None:
    """None when tradetape's answer equals DuckDB's, else what differs."""
    reply, peer = figure.reply, duck[figure.peer or ""]
    try:
        if figure.method == "volume_profile":
            ours = profile_rows(reply, row_size)
            theirs = [tuple(int(v) for v in row) for row in peer]
            assert ours == theirs, f"{len(ours)} rows vs DuckDB {len(theirs)}, first difference " + str(
                next(((a, b) for a, b in zip(ours, theirs, strict=False) if a != b), None)
            )
            assert reply.trade_count == sum(r[3] for r in theirs)
        elif figure.method == "bars":
            theirs = [tuple(int(v) for v in row) for row in peer]
            assert bar_rows(reply) == theirs, "bars differ"
            assert reply.trade_count == sum(r[-1] for r in theirs)
        elif figure.method == "flow":
            theirs = [(int(r[0]), int(r[1]), int(r[2]), int(r[4])) for r in peer]
            assert flow_rows(reply) == theirs, "flow rows differ"
            buy = sum(r[1] for r in theirs)
            sell = sum(r[2] for r in theirs)
            assert (parse_units(reply.buy_volume), parse_units(reply.sell_volume)) == (buy, sell)
            assert [signed_units(r.cumulative_delta) for r in reply.rows] == [int(r[3]) for r in peer]
        elif figure.method == "vwap":
            ours = [(point.time, point.vwap * 1e8, point.std * 1e8) for point in reply.series]
            assert [t for t, _, _ in ours] == [int(r[0]) for r in peer], "series times differ"
            for (_, mean, std), (_, duck_mean, duck_std) in zip(ours, peer, strict=True):
                assert math.isclose(mean, duck_mean, rel_tol=1e-12), f"VWAP {mean} vs DuckDB {duck_mean}"
                assert math.isclose(std, duck_std, rel_tol=1e-6, abs_tol=1e-3), f"deviation {std} vs DuckDB {duck_std}"
        elif figure.method == "footprint":
            size = parse_units(figure.fields["row_size"])
            cells = [(bar.time, row) for bar in reply.bars for row in bar.rows if row.trade_count]
            assert all(parse_units(row.price_low) % size == 0 for _, row in cells), "rows off the row size"
            ours = [(time_, parse_units(row.price_low) // size, parse_units(row.buy_volume),
                     parse_units(row.sell_volume), row.trade_count) for time_, row in cells]  # fmt: skip
            theirs = [tuple(int(v) for v in row) for row in peer]
            assert ours == theirs, f"{len(ours)} footprint cells vs DuckDB {len(theirs)}"
            assert reply.trade_count == sum(r[-1] for r in theirs)
        elif figure.method == "market_profile":
            size = parse_units(figure.fields["row_size"])
            ours = [(parse_units(row.price_low) // size, row.tpo_count) for row in reply.rows if row.tpo_count]
            assert ours == [(int(k), int(n)) for k, n in peer], "TPO counts differ"
        elif figure.method == "coverage":
            count, first_id, last_id, first_time, last_time, gaps = (int(v) for v in peer[0])
            got = (reply.trade_count, reply.first_id, reply.last_id, reply.first_time, reply.last_time, len(reply.gaps))
            assert got == (count, first_id, last_id, first_time, last_time, gaps), f"{got} vs DuckDB {peer[0]}"
    except AssertionError as exc:
        return f"{figure.label}: {exc}"
    return None


# --------------------------------------------------------------------------- in-process profile


def in_process_service(shard_dir: Path, query_memory_mb: int, cache_mb: int = 256) -> Any:
    """The analytics service's own `answer` (request parsing, read, compute, reply JSON), without NATS."""
    from tradetape.services.analytics.service import AnalyticsService

    settings = Settings(
        data_dir=shard_dir.parents[1], symbols=(SYMBOL,), query_memory_mb=query_memory_mb, query_cache_mb=cache_mb
    )
    return AnalyticsService(settings, SimpleNamespace(max_payload=1 << 20))  # type: ignore[arg-type]


LAYER_READERS = ("bars", "flow", "vwap", "footprint", "market_profile")
"""The methods whose answers read the aggregate layer's rows (1-second bars; footprint also minute levels)."""


@dataclass
class LayerMemory:
    label: str
    peak_bytes: int
    second_rows: int
    """Rows of 1-second bars read (footprint: of bars a minute, a second at the range's ragged edges)."""
    level_rows: int
    """Minute-level rows, read by footprint only (bucketed by its row size)."""

    @property
    def per_row(self) -> float:
        """Peak bytes per row of the larger of its reads: what `level_bytes` must cover, each read budgeted alone."""
        return self.peak_bytes / max(self.second_rows, self.level_rows, 1)


def layer_memory(shard_dir: Path, figures: list[Figure], query_memory_mb: int) -> list[LayerMemory]:
    """Each layer-reading figure's peak memory (tracemalloc) in a service without a segment cache."""
    service = in_process_service(shard_dir, query_memory_mb, cache_mb=0)
    found = []
    try:
        for figure in figures:
            if figure.method not in LAYER_READERS:
                continue
            time_range = (figure.fields["start"], figure.fields["end"])
            bars = service._reader.minute_bars if figure.method == "footprint" else service._reader.second_bars
            seconds = len(bars(SYMBOL, time_range))  # footprint: a row a minute where its segment holds it whole
            levels = None
            if figure.method == "footprint":  # bucketed as the footprint reads them
                step = level_step(parse_units(figure.fields["row_size"]))
                levels = service._reader.minute_levels(SYMBOL, time_range, price_step=step)
            body = orjson.dumps(figure.fields)
            tracemalloc.start()
            try:
                service.answer(registered_method(figure.method), SYMBOL, body)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            found.append(LayerMemory(figure.label, peak, seconds, 0 if levels is None else len(levels)))
    finally:
        service._reader.close()
    return found


def cprofile(service: Any, figure: Figure, repeat: int) -> str:
    spec = registered_method(figure.method)
    body = orjson.dumps(figure.fields)
    profiler = cProfile.Profile()
    for _ in range(repeat):
        profiler.runcall(service.answer, spec, SYMBOL, body)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    return out.getvalue()


# --------------------------------------------------------------------------- the run


async def throughput(client: TapeClient, nc: Client, args: argparse.Namespace, end: int, pids: dict[str, int]) -> str:
    """`--concurrency` clients, each asking a 1 h profile (one of the last 24 h) as soon as it has its answer."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    before = await requests_per_worker(nc)
    stop_at = time.perf_counter() + args.throughput_seconds

    async def one_client(number: int) -> None:
        hour = number
        while time.perf_counter() < stop_at:
            start = end - (hour % 24 + 1) * HOUR_MS
            hour += 1
            started = time.perf_counter()
            try:
                await client.query("volume_profile", SYMBOL, start=start, end=start + HOUR_MS, row_size=args.row_size,
                                   min_trades=1)  # fmt: skip
            except ClientQueryError as exc:
                errors[exc.code] += 1
                continue
            latencies.append(time.perf_counter() - started)

    with CpuMeter(pids) as cpu:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    after = await requests_per_worker(nc)
    split = [after.get(worker, 0) - before.get(worker, 0) for worker in after]
    done = Samples(latencies)
    failed = ", ".join(f"{code} {n}" for code, n in errors.items()) or "none"
    return (
        f"{len(latencies) / elapsed:8,.0f} req/s  ({len(latencies):,} answers in {elapsed:.1f} s, "
        f"latency p50 {done.ms(50):.1f} ms p99 {done.ms(99):.1f} ms; per worker {split}; errors {failed})\n"
        f"      cores used: {cpu.summary()}"
    )


async def run(args: argparse.Namespace, root: Path, meta: dict[str, Any]) -> int:
    shard = Settings(data_dir=root / "data", symbols=(SYMBOL,)).shard_dir
    parquet = root / "trades.parquet"
    con = duckdb.connect()
    bounds = con.execute(f"SELECT count(*), min(T), max(T) FROM read_parquet('{parquet}')").fetchone()
    assert bounds is not None
    count, first_time, last_time = bounds
    tape_end = int(last_time) + 1
    end = tape_end - args.end_offset_minutes * MINUTE_MS
    span_days = min(7, args.days)
    row_size = parse_units(args.row_size)
    log(f"tape: {count:,} trades, {format_ms(int(first_time))} .. {format_ms(tape_end)}; ranges end {format_ms(end)}")

    ranges = {"1 h": HOUR_MS, "24 h": DAY_MS, f"{span_days} d": span_days * DAY_MS}
    profile = {"row_size": args.row_size, "min_trades": 1}
    figures = [
        Figure(f"volume_profile {label}", "volume_profile", {"start": end - span, "end": end, **profile},
               f"profile {label}")
        for label, span in ranges.items()
    ]  # fmt: skip
    figures[0].target = absolute(5)
    figures[1].target = half_of("profile 24 h")
    if span_days == 7:
        figures[2].target = absolute(250)
    day = {"start": end - DAY_MS, "end": end, "interval": "1m"}
    span = {"start": end - span_days * DAY_MS, "end": end, "interval": "5m"}
    tpo = {"end": end, "period": "30m", "row_size": args.tpo_row_size}
    whole = f"{span_days} d"
    figures += [
        Figure("bars 1m over 24 h", "bars", day, "bars 1m 24 h", half_of("bars 1m 24 h")),
        Figure("flow 1m over 24 h", "flow", day, "flow 1m 24 h", half_of("flow 1m 24 h")),
        Figure("vwap 1m over 24 h", "vwap", day, "vwap 1m 24 h", half_of("vwap 1m 24 h")),
        Figure(f"bars 5m over {whole}", "bars", span, f"bars 5m {whole}"),
        Figure(f"flow 5m over {whole}", "flow", span, f"flow 5m {whole}"),
        Figure(f"vwap 5m over {whole}", "vwap", span, f"vwap 5m {whole}"),
        Figure("footprint 5m over 24 h", "footprint", {**day, "interval": "5m", "row_size": FOOTPRINT_ROWS["24 h"]},
               "footprint 5m 24 h", half_of("footprint 5m 24 h")),
        Figure(f"footprint 5m over {whole}", "footprint", {**span, "row_size": FOOTPRINT_ROWS["whole"]},
               f"footprint 5m {whole}"),
        Figure("market_profile 30m over 24 h", "market_profile", {**tpo, "start": end - DAY_MS},
               "market_profile 30m 24 h", half_of("market_profile 30m 24 h")),
        Figure(f"market_profile 30m over {whole}", "market_profile", {**tpo, "start": end - span_days * DAY_MS},
               f"market_profile 30m {whole}"),
        Figure("coverage, whole tape", "coverage", {}, "coverage", absolute(20)),
    ]  # fmt: skip
    older_end = end - (span_days // 2) * DAY_MS  # a day no worker warms at start (query_warm_hours: the newest)
    if span_days >= 3:
        older = {"start": older_end - DAY_MS, "end": older_end, "interval": "1m"}
        figures.append(Figure("bars 1m over an older 24 h", "bars", older, "bars 1m older 24 h"))

    if span_days == 7:
        for figure in figures:
            if figure.label.endswith(f"over {whole}") and figure.method != "volume_profile":
                figure.target = absolute(250)
    if args.only:
        figures = [figure for figure in figures if figure.label.startswith(tuple(args.only))]
        if not figures:
            raise SystemExit(f"--only {args.only} matches no figure")

    # DuckDB first, while the replicas do not exist yet: nothing else of ours competes for the cores.
    duck_sql = {
        f"profile {label}": duck_profile_sql(parquet, end - span, end, row_size) for label, span in ranges.items()
    }
    reference = con.execute(f"SELECT p FROM read_parquet('{parquet}') WHERE T >= {end - DAY_MS} LIMIT 1").fetchone()
    assert reference is not None
    for label, start, interval in (("1m 24 h", end - DAY_MS, MINUTE_MS), (f"5m {whole}", end - span_days * DAY_MS,
                                                                          5 * MINUTE_MS)):  # fmt: skip
        duck_sql[f"bars {label}"] = duck_bars_sql(parquet, start, end, interval)
        duck_sql[f"flow {label}"] = duck_flow_sql(parquet, start, end, interval)
        duck_sql[f"vwap {label}"] = duck_vwap_sql(parquet, start, end, interval, int(reference[0]))
    for label, start, size in (("24 h", end - DAY_MS, FOOTPRINT_ROWS["24 h"]),
                               (whole, end - span_days * DAY_MS, FOOTPRINT_ROWS["whole"])):  # fmt: skip
        duck_sql[f"footprint 5m {label}"] = duck_footprint_sql(parquet, start, end, 5 * MINUTE_MS, parse_units(size))
        duck_sql[f"market_profile 30m {label}"] = duck_tpo_sql(
            parquet, start, end, 30 * MINUTE_MS, parse_units(args.tpo_row_size)
        )
    duck_sql["bars 1m older 24 h"] = duck_bars_sql(parquet, older_end - DAY_MS, older_end, MINUTE_MS)

    duck_sql["coverage"] = duck_coverage_sql(parquet)
    duck_sql = {name: sql for name, sql in duck_sql.items() if name in {figure.peer for figure in figures}}
    duck: dict[str, Samples] = {}
    duck_rows: dict[str, Any] = {}
    with CpuMeter({"bench (DuckDB)": os.getpid()}) as duck_cpu:
        for name, sql in duck_sql.items():
            duck[name], duck_rows[name] = sample_sync(lambda sql=sql: con.execute(sql).fetchall(), args)
            log(f"DuckDB {name}: p50 {duck[name].ms(50):.1f} ms ({duck[name].n} runs)")
    duck_threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.close()

    meta["layer"] = layer_bytes(shard)
    settings = Settings(
        data_dir=root / "data", symbols=(SYMBOL,), log_level="WARNING", query_max_range_days=max(31, args.days + 1),
        query_memory_mb=args.query_memory_mb,
    )
    server = EmbeddedNatsServer(root / "nats")
    SERVERS.append(server)
    replicas: Replicas | None = None
    nc: Client | None = None
    try:
        await server.start()
        env = {**os.environ, **settings.model_copy(update={"nats_url": server.url}).to_env(), "PYTHONUNBUFFERED": "1"}
        replicas = Replicas(root, env)
        replicas.start(args.replicas)
        nc = await nats.connect(server.url, name="tradetape-bench-query", pending_size=256 * 1024 * 1024)
        await wait_ready(nc, replicas, args.replicas)
        client = TapeClient(nc, timeout=120)
        pids = {"bench": os.getpid(), "nats-server": server.pid or 0}
        pids |= {f"analytics-{i}": proc.pid for i, proc in enumerate(replicas.procs, 1)}

        with CpuMeter(pids) as latency_cpu:
            for figure in figures:

                async def call(figure: Figure = figure) -> Any:
                    return await client.query(figure.method, SYMBOL, **figure.fields)

                workers = [proc.pid for proc in replicas.procs]
                figure.samples, figure.reply = await sample_async(call, args, workers)
                raw = await nc.request(query_subject(figure.method, SYMBOL), orjson.dumps(figure.fields), timeout=120)
                figure.reply_bytes = len(raw.data)
                replicas.check()
                log(f"{figure.label}: p50 {figure.samples.ms(50):.1f} ms p99 {figure.samples.ms(99):.1f} ms")

        rate_all = rate_one = None
        if not args.only:
            log(f"throughput: {args.concurrency} in flight for {args.throughput_seconds:g} s, {args.replicas} workers")
            rate_all = await throughput(client, nc, args, end, pids)
        if args.replicas > 1 and not args.only:
            for proc in replicas.procs[1:]:
                replicas.stop(proc)
            await wait_ready(nc, replicas, 1)
            log("throughput again with one worker")
            rate_one = await throughput(client, nc, args, end, {k: v for k, v in pids.items() if k != "analytics-2"})
        replicas.check()
        log(f"cold: each figure's first answer from workers started just before it (median of {args.cold_repeat})")
        for figure in figures:
            colds, cold_cpus = [], []
            for _ in range(args.cold_repeat):
                replicas.restart(args.replicas)
                await wait_ready(nc, replicas, args.replicas)
                workers = [proc.pid for proc in replicas.procs]
                with collector_paused():
                    ran_ns, started = run_ns(workers), time.perf_counter()
                    await client.query(figure.method, SYMBOL, **figure.fields)
                    colds.append(time.perf_counter() - started)
                cold_cpus.append((run_ns(workers) - ran_ns) / 1e6)
            figure.cold_s, figure.cold_cpu_ms = float(np.median(colds)), float(np.median(cold_cpus))
            log(f"{figure.label}: cold {' '.join(f'{s * 1e3:.1f}' for s in colds)} ms, workers' CPU "
                f"{' '.join(f'{ms:.1f}' for ms in cold_cpus)} ms")  # fmt: skip
        replicas.check()
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        if replicas is not None:
            replicas.stop_all()
        await server.stop()

    # The service's own compute, in this process, with nothing else of ours running: the
    # round trip minus this is NATS, the reply's JSON on the wire, and the client's parsing.
    service = in_process_service(shard, args.query_memory_mb)
    try:
        for figure in figures:
            spec = registered_method(figure.method)
            body = orjson.dumps(figure.fields)
            figure.in_process, _ = sample_sync(lambda s=spec, b=body: service.answer(s, SYMBOL, b), args, 30)
        profiles = {f.label: cprofile(service, f, 10) for f in figures if f.label in args.cprofile}
    finally:
        service._reader.close()
    memory = layer_memory(shard, figures, args.query_memory_mb)

    mismatches = [m for m in (check(f, duck_rows, row_size) for f in figures) if m]
    print_report(args, meta, figures, duck, duck_threads, rate_all, rate_one, latency_cpu, duck_cpu, mismatches)
    print_memory(memory)
    for label, text in profiles.items():
        print(f"\ncProfile of {label} (service.answer in-process, 10 calls, top 30 by cumulative time):\n{text}")
    return 1 if mismatches else 0


def format_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def print_report(
    args: argparse.Namespace,
    meta: dict[str, Any],
    figures: list[Figure],
    duck: dict[str, Samples],
    duck_threads: Any,
    rate_all: str | None,
    rate_one: str | None,
    latency_cpu: CpuMeter,
    duck_cpu: CpuMeter,
    mismatches: list[str],
) -> None:
    print()
    print(f"command: python {shlex.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {cpu_model()}; "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__} ({duck_threads} threads); "
        f"load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    write = "reused from --work-dir" if meta.get("reused") else f"written in {meta['write_s']:.0f} s"
    trades, layer = meta["trades"], meta["layer"]
    print(
        f"store: {trades:,} trades over {meta['days']} d ({meta['per_day']:,}/day), segments of "
        f"{meta['segment_minutes']} min, {write}; at rest {meta['store_bytes'] / trades:.2f} B/trade with the "
        f"aggregate layer, {(meta['store_bytes'] - sum(layer.values())) / trades:.2f} without it (the layer: "
        f"{sum(layer.values()) / trades:.2f} B/trade, 1 s bars {layer[SECOND_BARS] / trades:.2f}, minute levels "
        f"{layer[MINUTE_LEVELS] / trades:.2f}); Parquet+zstd {meta['parquet_bytes'] / trades:.2f}; ranges end "
        f"{args.end_offset_minutes} min before the newest trade; profile rows of {args.row_size}"
    )
    print(
        f"requests: {args.warmup} warm-up, then up to {args.requests} sequential (at least 10, fewer past "
        f"{args.budget_s:g} s) per figure, through TapeClient over NATS with {args.replicas} analytics workers "
        f"(query_memory_mb {args.query_memory_mb})"
    )
    print()
    header = (
        f"{'figure':<30} {'trades':>10} {'reply':>8} {'n':>4} {'cold ms':>8} {'first ms':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} "
        f"{'faults':>7} {'in-proc':>8} {'faults':>7}  "
        f"{'target':<27} {'met':<4} {'DuckDB p50':>10} {'p99':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for figure in figures:
        samples = figure.samples
        assert samples is not None and figure.in_process is not None
        peer = duck.get(figure.peer or "")
        target_text, met = "-", "-"
        if figure.target is not None:
            target_ms, target_text = figure.target(duck)
            met = "yes" if samples.ms(50) <= target_ms else "NO"
        ratio = f"{samples.ms(50) / peer.ms(50):.2f}" if peer else "-"
        peer_text = f"{peer.ms(50):10.1f} {peer.ms(99):7.1f}" if peer else f"{'-':>10} {'-':>7}"
        print(
            f"{figure.label:<30} {figure.reply.trade_count:>10,} {figure.reply_bytes / 1024:>6.0f}KB {samples.n:>4} "
            f"{figure.cold_s * 1e3:8.1f} {samples.first_s * 1e3:8.1f} {samples.ms(50):8.1f} {samples.ms(99):8.1f} "
            f"{samples.faults:7.0f} "
            f"{figure.in_process.ms(50):8.1f} "
            f"{figure.in_process.faults:7.0f}  {target_text:<27} "
            f"{met:<4} {peer_text} {ratio:>6}"
        )
    print()
    print("DuckDB peers: profile = GROUP BY p // row (sum q, buy q, count); bars = OHLC by arg_min/arg_max over a,")
    print("  volumes, count per T // interval; flow = buy/sell/count per interval and the cumulative delta (a window);")
    print("  vwap = per interval Σq, Σq·x, Σq·x² in doubles (x = p − a price of the range), running sums (a window);")
    print("  footprint = buy/sell q, count per (T // 5m, p // row); market_profile = per row, the 30m periods whose")
    print("  min(p)//row..max(p)//row covers it (unnest(range(lo, hi + 1)));")
    print("  coverage = count, min/max a and T, gaps by lag(a) over the whole file. Ratio: tradetape p50 / DuckDB p50.")
    print(f"cold: the figure's first answer from workers started just before it (median of {args.cold_repeat} runs;")
    print("  the workers warmed their newest query_warm_hours before serving, OS page cache warm); the older 24 h lies")
    print("  outside what they warmed: its cold answer decodes all it reads (docs/benchmarks.md, Cold answers)")
    colds = [(f, f.samples) for f in figures if "24 h" in f.label and f.samples is not None]

    def verdicts(cold: Callable[[Figure], float], warm: Callable[[Samples], float]) -> str:
        return ", ".join(
            f"{f.label} {cold(f):.0f}/{warm(samples):.0f} ms " + ("yes" if cold(f) <= 2 * warm(samples) else "NO")
            for f, samples in colds
        )

    print("cold <= 2 x warm p50 over 24 h (cold/p50): " + verdicts(lambda f: f.cold_s * 1e3, lambda s: s.ms(50)))
    print("  the same in the workers' CPU time, cold/warm mean (on a busy machine, where waiting for a core inflates")
    print("  every latency): " + verdicts(lambda f: f.cold_cpu_ms, lambda s: s.cpu_ms))
    print("first: the figure's first request, before its warm-up (its segments not yet in the worker's cache);")
    print("  p50/p99 are of the requests after it, served from decoded segments the worker keeps (query_cache_mb).")
    print("in-proc: p50 of the analytics service's own answer() (parse, read, compute, reply JSON) in this process.")
    print("  It runs in the bench process, whose heap is already large: compare the page faults.")
    print("faults: minor page faults per request, in the analytics processes (beside p50) and in this process.")
    print("met: the p50 (round trip through TapeClient over NATS) against the target.")
    print(f"cores used while measuring latency: {latency_cpu.summary()}")
    print(f"cores used while DuckDB ran: {duck_cpu.summary()}")
    print()
    if rate_all is not None:
        print(f"throughput, volume_profile 1 h, {args.concurrency} in flight, {args.replicas} workers: {rate_all}")
    if rate_one is not None:
        print(f"throughput, volume_profile 1 h, {args.concurrency} in flight, 1 worker:  {rate_one}")
    print()
    if mismatches:
        print("CHECKS FAILED: tradetape's answers differ from DuckDB's:")
        for line in mismatches:
            print(f"  {line}")
    else:
        print("checks: every tradetape answer equals DuckDB's (profile rows: volume, buy volume, trades per row;")
        print("  bars: OHLCV, buy/sell volume, trades; flow: buy/sell per interval and the cumulative delta; coverage;")
        print("  footprint: buy/sell volume and trades per bar and row; market_profile: TPO count per row;")
        print("  vwap: the running series, VWAP within 1e-12 and deviation within 1e-6 relative)")


def print_memory(memory: list[LayerMemory]) -> None:
    print()
    print("peak memory of the answers that read the aggregate layer (tracemalloc, in this process, no segment cache):")
    print(f"{'figure':<30} {'peak MB':>8} {'1 s bars':>9} {'min levels':>10} {'B/row':>6}  method's level_bytes")
    for found in memory:
        spec = registered_method(found.label.split()[0])
        print(
            f"{found.label:<30} {found.peak_bytes / 2**20:8.1f} {found.second_rows:>9,} {found.level_rows:>10,} "
            f"{found.per_row:6.0f}  {spec.level_bytes}"
        )
    print("B/row: the peak over the rows of the larger read (each read is budgeted alone: rows x level_bytes, plus the")
    print("  edge trades x trade_bytes); the edges' trades are in the peak too, so this over-states a row's own cost.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7, help="days of trades in the store (default 7)")
    parser.add_argument("--per-day", type=int, default=2_300_000, help="trades a day (default 2.3M)")
    parser.add_argument("--segment-minutes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--replicas", type=int, default=2, help="analytics processes (default 2)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per figure")
    parser.add_argument("--budget-s", type=float, default=20.0, help="stop a figure's requests after this (>= 10 run)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight for the throughput phase")
    parser.add_argument("--throughput-seconds", type=float, default=10.0)
    parser.add_argument("--cold-repeat", type=int, default=1, help="restarts per cold figure (its median)")
    parser.add_argument(
        "--query-memory-mb", type=int, default=512,
        help="the workers' query_memory_mb (default 512: a 7 d profile's estimate, ~2.7M histogram levels at 100 B, "
        "passes the default 256)",
    )  # fmt: skip
    parser.add_argument("--row-size", default="10", help="profile row height, a decimal string (default 10)")
    parser.add_argument("--tpo-row-size", default="10", help="market_profile row height (default 10)")
    parser.add_argument(
        "--end-offset-minutes", type=int, default=25,
        help="ranges end this long before the newest trade, so they cut segments (default 25)",
    )  # fmt: skip
    parser.add_argument(
        "--cprofile", action="append", default=[], metavar="FIGURE",
        help='also print a cProfile of this figure\'s in-process answer, e.g. "volume_profile 24 h" (repeatable)',
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, help="keep the store here and reuse it on the next run")
    parser.add_argument(
        "--only", action="append", default=[], metavar="LABEL",
        help='measure only the figures whose label starts with this, e.g. "footprint" (repeatable; no throughput)',
    )  # fmt: skip
    args = parser.parse_args()
    if args.days < 1 or args.per_day < 1000:
        parser.error("need at least 1 day and 1000 trades a day")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    with contextlib.ExitStack() as stack:
        if args.work_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tradetape-bench-query-")))
        else:
            root = args.work_dir.resolve()
            root.mkdir(parents=True, exist_ok=True)
        try:
            meta = prepare_store(args, root)
            return asyncio.run(run(args, root, meta))
        except KeyboardInterrupt:
            log("interrupted; stopping everything this bench started")
            return 130
        finally:
            # The last resort, whatever happened above: nothing this bench started outlives it.
            for proc in STARTED:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
            for server in SERVERS:
                process = server._process
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait(5)


if __name__ == "__main__":
    sys.exit(main())
