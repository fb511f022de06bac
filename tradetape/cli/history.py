"""`tradetape import | fetch-history | export | repair`: history into and out of the tape.

Each writes through `tradetape.history.load.TapeImporter` (the running persist over NATS,
or the store directly when no persist holds the shard) and reads through a secondary
view, so all of them are safe while `tradetape up` runs. Progress goes to stderr as a
rich bar with trades/s; the summary goes to stdout. Exit codes: 0 done, 1 a file or a
gap failed (named in the summary), 2 the store or its persist could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from rich.progress import Progress, TaskID

from tradetape.api.models import parse_duration_ms, parse_time_ms
from tradetape.api.times import iso_time
from tradetape.cli.progress import progress_bar
from tradetape.domain.instruments import instrument_from_input, market_of
from tradetape.settings import Settings

if TYPE_CHECKING:
    from tradetape.history.fetch import FetchReport
    from tradetape.history.load import ImportResult


def _time_range(args: argparse.Namespace, *, required: bool) -> tuple[int, int] | None:
    now = int(time.time() * 1000)
    if args.last:
        if args.start or args.end:
            raise ValueError("--last goes without --start and --end")
        return now - parse_duration_ms(args.last), now
    if not args.start:
        if args.end or required:
            raise ValueError("give --start (and --end) or --last")
        return None
    start = parse_time_ms(args.start)
    end = parse_time_ms(args.end) if args.end else now
    if end <= start:
        raise ValueError("--end must be after --start")
    return start, end


def run_history(args: argparse.Namespace, settings: Settings) -> int:
    from tradetape.history.dumps import DumpError
    from tradetape.history.export import ExportError
    from tradetape.history.load import ImportTargetError
    from tradetape.store import ShardLockedError, StoreError

    try:
        _check_symbols(args)
        if args.command == "export":
            return _export(args, settings)
        if args.command == "fetch-history":
            _check_days(args.first, args.last)
        if args.command in ("fetch-history", "repair"):
            settings = simulator_settings(settings)
        return asyncio.run(_run_async(args, settings))
    except (DumpError, ExportError, ValueError) as exc:
        print(f"tradetape {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ImportTargetError, StoreError, ShardLockedError) as exc:
        print(f"tradetape {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _check_symbols(args: argparse.Namespace) -> None:
    """Every instrument given (`BTCUSDT`, `um:BTCUSDT`), folded and checked, before anything is read or written."""
    if args.command == "fetch-history":
        args.symbols_to_fetch = [instrument_from_input(s) for s in args.symbols_to_fetch]
    elif args.symbol is not None:
        args.symbol = instrument_from_input(args.symbol)


def _check_days(first: date, last: date) -> None:
    """`ValueError` for days not over yet: a day's dump is published after it ends (UTC), never before."""
    today = datetime.now(UTC).date()
    if last >= today:
        raise ValueError(
            f"--to {last} is not over yet (today is {today} UTC): a day's dump is published once the day has "
            f"ended, so the last day to fetch is {today - timedelta(days=1)}"
        )
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")


def simulator_settings(settings: Settings) -> Settings:
    """The running `up --simulate`'s exchange for the REST and dump URLs not set explicitly (flag or environment).

    `up --simulate` records it in `<data dir>/exchange.url` while it runs; said on stderr, so no one
    mistakes the simulator's history for Binance's.
    """
    from tradetape.ground.url_files import read_url_file

    fields = ("binance_rest_url", "binance_um_rest_url", "binance_cm_rest_url", "history_url")  # one REST root
    unset = [f for f in fields if f not in settings.model_fields_set]
    url = read_url_file(settings.exchange_url_file) if unset else None
    if url is None:
        return settings
    print(f"using the simulator of `tradetape up --simulate` at {url} ({settings.exchange_url_file})", file=sys.stderr)
    return settings.model_copy(update=dict.fromkeys(unset, url))


async def _run_async(args: argparse.Namespace, settings: Settings) -> int:
    from tradetape.history.load import TapeImporter

    async with TapeImporter(settings, persist_wait_s=getattr(args, "wait_for_persist", 0.0)) as importer:
        if args.command == "import":
            return await _import(args, settings, importer)
        if args.command == "fetch-history":
            return await _fetch(args, settings, importer)
        return await _repair(args, settings, importer)


async def _import(args: argparse.Namespace, settings: Settings, importer: object) -> int:
    """Each file in turn, all or nothing; a file that fails is reported and the next one goes on.

    Only a store or persist that cannot be reached stops the command (every later file would
    fail the same way): the files not tried are named, and the exit code is 2.
    """
    from tradetape.history.dumps import DumpError, FileLimits, read_dump
    from tradetape.history.load import ImportTargetError, TapeImporter
    from tradetape.store import ShardLockedError, StoreError

    assert isinstance(importer, TapeImporter)
    limits = FileLimits.of(settings)
    failed = 0
    totals = [0, 0]
    results: list[ImportResult] = []
    spans: dict[str, tuple[int, int]] = {}
    """Per symbol, the times the imported files span: the summary counts the store's gaps over them."""
    with progress_bar() as progress:
        for at, path in enumerate(args.files):
            task = progress.add_task(path.name, total=None)
            try:
                dump = await asyncio.to_thread(read_dump, path, args.symbol, limits=limits)
                progress.update(task, total=len(dump.trades))
                result = await importer.import_dump(dump, _advance(progress, task))
            except DumpError as exc:
                where = f"line {exc.line}: " if exc.line is not None else ""
                print(f"{path.name}: FAILED, nothing of it imported: {where}{exc.reason}")
                failed += 1
                continue
            except (ImportTargetError, StoreError, ShardLockedError):
                for later in args.files[at:]:
                    print(f"{later.name}: not imported: the command stopped (below)")
                raise
            results.append(result)
            totals[0] += result.added
            totals[1] += result.duplicates
            if len(dump.trades):
                low, high = int(dump.trades.time.min()), int(dump.trades.time.max()) + 1
                before = spans.get(result.symbol, (low, high))
                spans[result.symbol] = (min(before[0], low), max(before[1], high))
            print(
                f"{path.name}: {result.symbol} {result.trades} trades, {result.added} imported, "
                f"{result.duplicates} duplicates skipped, {len(result.gaps)} gaps "
                f"{_gap_text(result.gaps)}(via {result.route})"
            )
    if len(args.files) > 1:
        held = {symbol: importer.gaps(symbol, span) for symbol, span in spans.items()}  # also between the files
        gaps = sum(len(found) for found in held.values())
        print(f"total: {totals[0]} imported, {totals[1]} duplicates skipped, {gaps} gaps, {failed} files failed")
        for symbol, found in held.items():
            if found:
                start, end = (iso_time(t) for t in spans[symbol])
                print(
                    f"{symbol}: the store has {len(found)} gaps from {start} to {end} {_gap_text(found)}"
                    f"({sum(high - low + 1 for low, high in found)} ids missing; `tradetape repair` closes them)"
                )
    _retention_warning(results, settings)
    return 1 if failed else 0


def _advance(progress: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda n: progress.advance(task, n)


def _retention_warning(results: list[ImportResult], settings: Settings) -> None:
    beyond = sum(r.beyond_retention for r in results)
    if beyond:
        print(
            f"warning: {beyond} imported trades are older than the retention ({settings.retention_days:g} days): "
            f"persist deletes them within the hour; raise {Settings.env_name('retention_days')} to keep them",
            file=sys.stderr,
        )


def _gap_text(gaps: list[tuple[int, int]]) -> str:
    if not gaps:
        return ""
    shown = ", ".join(f"{low}..{high}" for low, high in gaps[:5])
    return f"[{shown}{', …' if len(gaps) > 5 else ''}] "


async def _fetch(args: argparse.Namespace, settings: Settings, importer: object) -> int:
    from tradetape.history.fetch import HistoryFetcher
    from tradetape.history.load import TapeImporter

    assert isinstance(importer, TapeImporter)
    with progress_bar() as progress:

        def on_file(name: str, trades: int) -> Callable[[int], None]:
            task = progress.add_task(name, total=trades)
            return lambda n: progress.advance(task, n)

        fetcher = HistoryFetcher(settings, importer, on_file=on_file)
        reports = [(s, await fetcher.fetch(s, args.first, args.last)) for s in args.symbols_to_fetch]
    failed = 0
    for symbol, report in reports:
        failed += len(report.failed)
        _print_fetch(symbol, args.first, args.last, report)
    _retention_warning([r for _, report in reports for r in report.imported], settings)
    return 1 if failed else 0


def _print_fetch(symbol: str, first: date, last: date, report: FetchReport) -> None:
    for result in report.imported:
        print(
            f"{result.source}: {result.trades} trades, {result.added} imported, "
            f"{result.duplicates} duplicates skipped, {len(result.gaps)} gaps {_gap_text(result.gaps)}".rstrip()
        )
    for name in report.skipped:
        print(f"{name}: imported before, skipped")
    for name in report.missing:
        print(f"{name}: not published (404)")
    for name, reason in report.failed:
        print(f"{name}: FAILED: {reason}")
    added = sum(r.added for r in report.imported)
    print(
        f"{symbol} {first}..{last}: {len(report.imported)} files imported ({added} trades), "
        f"{len(report.skipped)} skipped, {len(report.missing)} missing, {len(report.failed)} failed"
    )


async def _repair(args: argparse.Namespace, settings: Settings, importer: object) -> int:
    from tradetape.binance.rest import RestClient
    from tradetape.history.fetch import HistoryFetcher
    from tradetape.history.load import TapeImporter
    from tradetape.history.repair import repair

    assert isinstance(importer, TapeImporter)
    symbol = args.symbol
    time_range = _time_range(args, required=False)
    gaps = importer.gaps(symbol, time_range)
    rest = RestClient.of(settings, market_of(symbol))
    with progress_bar() as progress:
        task = progress.add_task(f"{symbol} gaps", total=sum(high - low + 1 for low, high in gaps))
        fetcher = HistoryFetcher(settings, importer) if args.dump_min_gap > 0 else None
        report = await repair(
            importer, rest, symbol, gaps, _advance(progress, task), fetcher=fetcher, dump_min_ids=args.dump_min_gap
        )
    for low, high in report.closed:
        print(f"closed {low}..{high} ({high - low + 1} trades)")
    for low, high, reason in report.still_open:
        print(f"open   {low}..{high} ({high - low + 1} trades): {reason}")
    print(
        f"{symbol}: {len(report.gaps)} gaps, {len(report.closed)} closed, {len(report.still_open)} still open; "
        f"{report.added} trades added from REST ({rest.calls} calls, weight {rest.budget.used}), "
        f"{report.from_dumps} from daily dumps"
    )
    return 1 if report.still_open else 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from tradetape.history.export import export
    from tradetape.history.load import shard_dir_of

    symbol = args.symbol
    time_range = _time_range(args, required=True)
    assert time_range is not None
    started = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(f"{symbol} → {args.output.name}", total=None)
        shard_dir = shard_dir_of(settings, symbol)
        rows = export(shard_dir, symbol, *time_range, args.output, lambda n: progress.advance(task, n))
    elapsed = time.perf_counter() - started
    first, last = (datetime.fromtimestamp(t / 1000, UTC).isoformat() for t in time_range)
    print(f"{args.output}: {rows} {symbol} trades {first} → {last} in {elapsed:.1f} s")
    return 0
