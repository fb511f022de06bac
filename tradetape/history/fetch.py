"""Fetching Binance's public dumps by date: download, verify SHA-256, import, remember.

The host is data.binance.vision, or any host serving the same paths
(`Settings.history_url`); the files' paths, names and checksum lines are
`tradetape.binance.dumps`. A calendar month asked for whole (and already over) is one
monthly file, falling back to its days when the monthly file is not there; every other
day is a daily file. A file is downloaded to ``<data dir>/history/downloads/`` (a
partial download resumes with an HTTP Range request; `tradetape.history.download` bounds
its size, its time and its host), its SHA-256 compared with the checksum file (which
must name it) before it is read (a mismatch imports nothing and deletes the download),
read with every trade required to lie in the file's day or month, imported
(`tradetape.history.load`), and recorded in ``<data dir>/history/imported.json``, so a
second run skips it: fetching resumes where it stopped. Each market's dumps lie under its own
root (``data/spot``, ``data/futures/um``, ``data/futures/cm``), and the reader refuses a file
whose rows are another market's. Paths and URLs are built only
from an instrument `check_instrument` accepts and a date, and the download's path is checked to
lie in the data directory.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from tradetape.binance.dumps import (
    CHECKSUM_SUFFIX,
    DAILY,
    MONTHLY,
    PERIOD_KINDS,
    checksum_line,
    dump_name,
    dump_path,
    period_label,
)
from tradetape.domain.instruments import Market, check_instrument, market_of, split_instrument, symbol_of_instrument
from tradetape.history.download import Deadline, DownloadLimits, FetchError, HistoryHost
from tradetape.history.dumps import DumpError, FileLimits, TimeBounds, read_dump
from tradetape.history.load import ImportResult, Progress, TapeImporter
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Period:
    """One dump file: a day or a whole month of one instrument (checked: its name and URL are built from it)."""

    symbol: str
    """The instrument's name (`BTCUSDT`, `um:BTCUSDT`); the file's name carries its bare symbol."""
    kind: str
    """``daily`` or ``monthly``."""
    label: str
    """``2026-01-01`` or ``2026-01``."""
    first: date
    last: date

    def __post_init__(self) -> None:
        check_instrument(self.symbol)
        if self.kind not in PERIOD_KINDS or self.label != period_label(self.kind, self.first):
            raise ValueError(f"not a dump period: {self.kind} {self.label!r}")

    @property
    def name(self) -> str:
        return dump_name(symbol_of_instrument(self.symbol), self.label)

    @property
    def bounds(self) -> TimeBounds:
        """The times its trades must lie in: the day, or the month, UTC."""
        start, end = (datetime.combine(d, time(), UTC) for d in (self.first, self.last + timedelta(1)))
        what = "the file's day" if self.kind == DAILY else "the file's month"
        return TimeBounds(int(start.timestamp() * 1000), int(end.timestamp() * 1000), what)

    @property
    def path(self) -> str:
        """Its path on the host, below its market's root (`tradetape.binance.dumps`): ``data/futures/um/daily/...``."""
        market, symbol = split_instrument(self.symbol)
        return dump_path(self.kind, symbol, self.label, market)

    @property
    def download_name(self) -> str:
        """Where under the downloads its file goes: spot's as named, another market's in its own directory."""
        market = market_of(self.symbol)
        return self.name if market is Market.SPOT else f"{market.value}/{self.name}"

    def days(self) -> list[Period]:
        return [daily(self.symbol, self.first + timedelta(n)) for n in range((self.last - self.first).days + 1)]


def daily(symbol: str, day: date) -> Period:
    return Period(symbol, DAILY, period_label(DAILY, day), day, day)


def periods(symbol: str, first: date, last: date, today: date) -> list[Period]:
    """The files that cover ``[first, last]`` (inclusive): whole past months monthly, other days daily."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    found: list[Period] = []
    day = first
    while day <= last:
        month_end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
        if day.day == 1 and month_end <= last and month_end < today.replace(day=1):
            found.append(Period(symbol, MONTHLY, period_label(MONTHLY, day), day, month_end))
            day = month_end + timedelta(1)
        else:
            found.append(daily(symbol, day))
            day += timedelta(1)
    return found


@dataclass
class FetchReport:
    imported: list[ImportResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Files the manifest says were imported before."""
    missing: list[str] = field(default_factory=list)
    """Files the host does not have (404: not published, or no trading that day)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """Files that could not be downloaded, verified or imported, and why."""


class ImportManifest:
    """``<data dir>/history/imported.json``: per symbol, the dump files fully imported, with their SHA-256."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, dict[str, object]]]:
        try:
            body = json.loads(self.path.read_text())
            return body if isinstance(body, dict) else {}
        except (OSError, ValueError):
            return {}

    def has(self, symbol: str, name: str) -> bool:
        return name in self._read().get(symbol, {})

    def record(self, symbol: str, name: str, sha256: str, result: ImportResult) -> None:
        body = self._read()
        body.setdefault(symbol, {})[name] = {"sha256": sha256, "trades": result.trades, "added": result.added}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        temporary.replace(self.path)


class HistoryFetcher:
    def __init__(
        self,
        settings: Settings,
        importer: TapeImporter,
        *,
        on_file: Callable[[str, int], Progress | None] | None = None,
    ) -> None:
        self._host = HistoryHost(settings.history_url, DownloadLimits.of(settings))
        self._limits = FileLimits.of(settings)
        self._data_dir = settings.data_dir
        self._importer = importer
        self._downloads = settings.data_dir / "history" / "downloads"
        self.manifest = ImportManifest(settings.data_dir / "history" / "imported.json")
        self._on_file = on_file

    async def fetch(self, symbol: str, first: date, last: date, *, again: bool = False) -> FetchReport:
        """Import the files of ``[first, last]``; `again`: also those the manifest lists (a repair).

        `ValueError` before anything is asked or written if `symbol` is not an instrument (`check_instrument`).
        """
        check_instrument(symbol)
        report = FetchReport()
        today = datetime.now(UTC).date()
        queue = periods(symbol, first, last, today)
        while queue:
            period = queue.pop(0)
            if not again and self.manifest.has(symbol, period.name):
                report.skipped.append(period.name)
                continue
            try:
                result = await self._one(period)
            except FileNotFoundError:
                if period.kind == MONTHLY:
                    queue[:0] = period.days()
                else:
                    report.missing.append(period.name)
                continue
            except (FetchError, DumpError) as exc:
                logger.warning("history file failed", extra={"file": period.name, "error": str(exc)})
                report.failed.append((period.name, str(exc)))
                continue
            report.imported.append(result)
        return report

    async def _one(self, period: Period) -> ImportResult:
        target = self._downloads / period.download_name
        if not target.resolve().is_relative_to(self._data_dir.resolve()):
            raise FetchError(f"{period.name}: would be written outside the data directory ({target})")
        deadline = Deadline(self._host.limits.deadline_s, period.name)
        checksum = await asyncio.to_thread(self._host.text, period.path + CHECKSUM_SUFFIX, deadline)
        expected = checksum_of(checksum, period.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._host.download, period.path, target, deadline)
        digest = await asyncio.to_thread(_sha256, target)
        if digest != expected:
            target.unlink(missing_ok=True)
            raise FetchError(
                f"{period.name}: SHA-256 {digest} does not match its .CHECKSUM {expected}; nothing imported"
            )
        try:
            dump = await asyncio.to_thread(read_dump, target, period.symbol, limits=self._limits, within=period.bounds)
        finally:
            target.unlink(missing_ok=True)
        progress = self._on_file(period.name, len(dump.trades)) if self._on_file is not None else None
        result = await self._importer.import_dump(dump, progress)
        self.manifest.record(period.symbol, period.name, digest, result)
        return result


def checksum_of(text: str, name: str) -> str:
    """The SHA-256 a ``.CHECKSUM`` file gives, which must name `name`."""
    line = checksum_line(text)
    if line is None:
        raise FetchError(f"{name}{CHECKSUM_SUFFIX}: not one line of a SHA-256 and a file name: {text[:120]!r}")
    digest, named = line
    if named != name:
        raise FetchError(f"{name}{CHECKSUM_SUFFIX}: names {named[:120]!r}, not {name}; nothing imported")
    return digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()
