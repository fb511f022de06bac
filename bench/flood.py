"""A query flood against one analytics worker: no crash, no wrong answer, memory within its budget.

`--days` (10) × `--per-day` (300k) real-like BTCUSDT trades (`tape_data.generate`) are
written as one data.binance.vision dump a day and imported with the project's own import
path (`read_dump` + `TapeImporter.import_dump`). One `tradetape analytics` process, with
the default settings unless told otherwise, then gets `--queries` (1,000) requests at
once: `--heavy-share` (half) over the whole history (volume profile, liquidity vacuums,
large trades, VWAP, flow, trades, bars), the rest small (a few minutes). Afterwards each
distinct request is asked alone, one after another, and timed: that is the raw ceiling of
the same run (what the flood's answers would have cost asked in turn).

Figures: crashes of the worker (target 0), answers that differ from the same request
asked alone (0), replies that are neither an answer nor `overloaded` (0), how many of
each kind were answered, and the worker's peak RSS (VmHWM) beside
`query_cache_mb + query_concurrency × query_memory_mb` (target: within it, and ≤ 1.5 GB
at the defaults). Nothing here is part of the test run.

    python bench/flood.py                          # ~3 minutes the first time (the import), table on stdout
    python bench/flood.py --work-dir /tmp/tt-flood # keep the store; a second run reuses it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from tape_data import SYMBOL, generate, rss_mb, write_dump

from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.runtime.processes import die_with_parent, tradetape_command
from tradetape.settings import Settings

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
GB = 1536  # MB: the ceiling for one worker at the defaults
HEAVY = (
    ("volume_profile", {"row_size": "10", "min_trades": 1}),
    ("liquidity_vacuums", {"row_size": "10", "min_trades": 1}),
    ("large_trades", {"top": 100}),
    ("vwap", {"interval": "1h"}),
    ("flow", {"interval": "1h"}),
    ("trades", {"limit": 1000}),
    ("bars", {"interval": "1h"}),
)
SMALL = (
    ("volume_profile", {"row_size": "1", "min_trades": 1}),
    ("bars", {"interval": "1s"}),
    ("trades", {"limit": 200}),
    ("vwap", {}),
    ("flow", {"interval": "10s"}),
    ("large_trades", {"top": 10}),
    ("coverage", {}),
)


def log(message: str) -> None:
    print(f"[flood {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare_store(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The history imported into `<root>/data` unless `root` already holds the same; its first and last trade time."""
    meta_file = root / "store.json"
    wanted = {"days": args.days, "per_day": args.per_day, "seed": args.seed}
    if meta_file.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            log(f"reusing the store in {root}")
            return meta
        raise SystemExit(f"{root} holds a store of {meta}, not {wanted}: pick another --work-dir")
    from tradetape.history.dumps import read_dump
    from tradetape.history.load import TapeImporter

    settings = Settings(data_dir=root / "data", symbols=(SYMBOL,), retention_days=3650)
    dumps = root / "dumps"
    dumps.mkdir(parents=True, exist_ok=True)
    first = last = None
    total, started = 0, time.perf_counter()

    async def run() -> int:
        nonlocal first, last
        added = 0
        async with TapeImporter(settings) as importer:
            for day, trades in enumerate(generate(args.days, args.per_day, args.seed)):
                first = int(trades.time[0]) if first is None else first
                last = int(trades.time[-1])
                path = write_dump(trades, dumps)
                del trades
                added += (await importer.import_dump(read_dump(path))).added
                path.unlink()
                log(f"imported day {day + 1} of {args.days}")
        return added

    total = asyncio.run(run())
    meta = {**wanted, "trades": total, "first_ms": first, "last_ms": last, "import_s": time.perf_counter() - started}
    meta_file.write_text(json.dumps(meta))
    log(f"imported {total:,} trades in {meta['import_s']:.0f} s")
    return meta


@dataclass(frozen=True)
class Ask:
    method: str
    body: bytes
    heavy: bool


def requests(meta: dict[str, Any], count: int, heavy_share: float) -> list[Ask]:
    """Fixed past ranges only, so an answer never depends on when it is asked: every heavy one the whole
    history (three end points, so the cache and the edges differ), small ones a few minutes here and there."""
    first, last = int(meta["first_ms"]), int(meta["last_ms"]) + 1
    heavy_kinds = [
        Ask(name, orjson.dumps({**fields, "start": first, "end": last - k * 7 * MINUTE_MS}), True)
        for k in range(3)
        for name, fields in HEAVY
    ]
    small_kinds = [
        Ask(name, orjson.dumps({**fields, "start": begin, "end": begin + (2 + k) * MINUTE_MS}), False)
        for k, begin in enumerate(first + (last - first) * i // 9 + 1_234 for i in range(8))
        for name, fields in SMALL
    ]
    heavy = round(count * heavy_share)
    chosen = [heavy_kinds[i % len(heavy_kinds)] for i in range(heavy)]
    chosen += [small_kinds[i % len(small_kinds)] for i in range(count - heavy)]
    return [chosen[i] for i in sorted(range(count), key=lambda i: (i * 7919) % count)]  # heavy and small mixed


@dataclass
class Outcome:
    kinds: Counter[str] = field(default_factory=Counter)
    """answer / overloaded / error:<code> / timeout, per request."""
    answers: dict[Ask, list[bytes]] = field(default_factory=dict)
    wall_s: float = 0.0


def kind_of(data: bytes) -> str:
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "unparsable"
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        return f"error:{reply['error'].get('code')}"
    return "answer"


def canonical(data: bytes) -> Any:
    return orjson.loads(data)


async def flood(nc: Client, asks: list[Ask], timeout_s: float) -> Outcome:
    outcome = Outcome()

    async def one(ask: Ask) -> None:
        try:
            msg = await nc.request(f"tape.query.{ask.method}.{SYMBOL}", ask.body, timeout=timeout_s)
        except NatsTimeoutError:
            outcome.kinds["timeout"] += 1
            return
        except nats.errors.NoRespondersError:
            outcome.kinds["no responders"] += 1
            return
        kind = kind_of(msg.data)
        outcome.kinds[kind] += 1
        if kind == "answer" or kind.startswith("error:") and kind != "error:overloaded":
            outcome.answers.setdefault(ask, []).append(msg.data)

    started = time.perf_counter()
    await asyncio.gather(*(one(ask) for ask in asks))
    outcome.wall_s = time.perf_counter() - started
    return outcome


class Worker:
    """The one analytics process, its RSS sampled while it works; killed by pid if it lingers."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        with log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                tradetape_command("analytics"), env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent(), start_new_session=True, close_fds=True,
            )  # fmt: skip
        self.peak_sampled_mb = 0.0

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            self.peak_sampled_mb = max(self.peak_sampled_mb, rss_mb(self.proc.pid))

    def peak_mb(self) -> float:
        """VmHWM: the kernel's own high-water mark of the process's resident memory."""
        try:
            return rss_mb(self.proc.pid, "VmHWM")
        except OSError:
            return self.peak_sampled_mb

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def wait_ready(nc: Client, worker: Worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"the analytics worker exited with code {worker.proc.returncode} while starting")
        with contextlib.suppress(NatsTimeoutError, nats.errors.NoRespondersError):
            await nc.request(f"tape.query.coverage.{SYMBOL}", b"{}", timeout=2)
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the analytics worker did not answer within {timeout:.0f} s")


async def sampling(worker: Worker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        worker.sample()
        await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace, root: Path, meta: dict[str, Any]) -> int:
    server = EmbeddedNatsServer(root / "nats")
    await server.start()
    overrides = {k: v for k, v in (("query_memory_mb", args.query_memory_mb), ("query_concurrency", args.concurrency),
                                   ("query_max_pending", args.max_pending)) if v is not None}  # fmt: skip
    settings = Settings(data_dir=root / "data", symbols=(SYMBOL,), nats_url=server.url, **overrides)
    worker = Worker({**os.environ, **settings.to_env()}, root / "analytics.log")
    nc = await nats.connect(server.url, max_reconnect_attempts=0)
    try:
        await wait_ready(nc, worker)
        idle_mb = rss_mb(worker.proc.pid)
        asks = requests(meta, args.queries, args.heavy_share)
        log(f"flood: {len(asks)} requests at once ({sum(a.heavy for a in asks)} over {args.days} days)")
        stop = asyncio.Event()
        sampler = asyncio.create_task(sampling(worker, stop))
        outcome = await flood(nc, asks, args.timeout_s)
        stop.set()
        await sampler
        peak_mb = worker.peak_mb()
        crashed = worker.proc.poll() is not None
        log(f"flood done in {outcome.wall_s:.1f} s: {dict(outcome.kinds)}; asking each distinct request alone")
        if crashed:
            worker = Worker({**os.environ, **settings.to_env()}, root / "analytics.log")
            await wait_ready(nc, worker)
        alone: dict[Ask, bytes] = {}
        alone_s: dict[Ask, float] = {}
        for ask in sorted(set(asks), key=lambda a: (not a.heavy, a.method, a.body)):
            started = time.perf_counter()
            msg = await nc.request(f"tape.query.{ask.method}.{SYMBOL}", ask.body, timeout=args.timeout_s)
            alone_s[ask] = time.perf_counter() - started
            alone[ask] = msg.data
        differ = sum(
            1 for ask, got in outcome.answers.items() for data in got if canonical(data) != canonical(alone[ask])
        )
        alone_kinds = Counter(kind_of(data) for data in alone.values())
        report(args, settings, meta, asks, outcome, alone_s, alone_kinds, differ, crashed, (idle_mb, peak_mb), worker)
        return 1 if crashed or differ or set(outcome.kinds) - {"answer", "error:overloaded"} else 0
    finally:
        await nc.close()
        worker.stop()
        await server.stop()


def report(
    args: argparse.Namespace, settings: Settings, meta: dict[str, Any], asks: list[Ask], outcome: Outcome,
    alone_s: dict[Ask, float], alone_kinds: Counter[str], differ: int, crashed: bool, rss: tuple[float, float],
    worker: Worker,
) -> None:  # fmt: skip
    idle_mb, peak_mb = rss
    budget_mb = settings.query_cache_mb + settings.query_concurrency * settings.query_memory_mb
    answered = Counter(ask.heavy for ask, got in outcome.answers.items() for _ in got)
    other = {k: v for k, v in outcome.kinds.items() if k not in ("answer", "error:overloaded")}
    sequential_s = sum(alone_s[ask] for ask, got in outcome.answers.items() for _ in got)
    heavy_alone = sorted(s for ask, s in alone_s.items() if ask.heavy)
    print(f"command: python bench/flood.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"store: {meta['trades']:,} trades over {args.days} days ({args.per_day:,}/day), imported with "
          f"read_dump + TapeImporter.import_dump")
    print(f"worker: query_concurrency {settings.query_concurrency}, query_max_pending {settings.query_max_pending}, "
          f"query_cache_mb {settings.query_cache_mb}, query_memory_mb {settings.query_memory_mb}")
    print()
    print("| figure | value | target |")
    print("| --- | --- | --- |")
    print(f"| requests sent at once | {len(asks)} ({sum(a.heavy for a in asks)} over {args.days} days) | |")
    print(f"| worker crashes | {int(crashed)} | 0 |")
    print(f"| answers differing from the same request alone | {differ} | 0 |")
    print(f"| replies neither an answer nor `overloaded` | {sum(other.values())} {other or ''} | 0 |")
    print(f"| answered (heavy / small) | {answered[True]} / {answered[False]} | |")
    print(f"| `overloaded` | {outcome.kinds['error:overloaded']} | |")
    print(f"| flood wall time | {outcome.wall_s:.1f} s | |")
    print(f"| the flood's answers asked one by one (raw ceiling, same run) | {sequential_s:.1f} s | |")
    print(f"| a heavy request alone, min / max | {heavy_alone[0] * 1e3:.0f} / {heavy_alone[-1] * 1e3:.0f} ms | |")
    print(f"| distinct requests alone: kinds | {dict(alone_kinds)} | all answers |")
    print(f"| worker RSS idle, before the flood | {idle_mb:.0f} MB | |")
    print(f"| worker peak RSS (VmHWM) | {peak_mb:.0f} MB (sampled {worker.peak_sampled_mb:.0f} MB) | "
          f"<= {budget_mb} MB = cache {settings.query_cache_mb} + {settings.query_concurrency} x "
          f"{settings.query_memory_mb}; <= {GB} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=300_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--heavy-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per request")
    parser.add_argument("--concurrency", type=int, help="query_concurrency (default: the settings' default)")
    parser.add_argument("--query-memory-mb", type=int, help="query_memory_mb (default: the settings' default)")
    parser.add_argument("--max-pending", type=int, help="query_max_pending (default: the settings' default)")
    parser.add_argument("--work-dir", type=Path, help="keep the store here and reuse it on the next run")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.work_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tradetape-bench-flood-")))
        else:
            root = args.work_dir
            root.mkdir(parents=True, exist_ok=True)
        meta = prepare_store(args, root)
        sys.exit(asyncio.run(measure(args, root, meta)))


if __name__ == "__main__":
    main()
