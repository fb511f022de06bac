"""Fetching Binance's public dumps by date: download, verify SHA-256, import, remember.

Layout (data.binance.vision, or any host serving the same paths, `Settings.history_url`):
``data/spot/daily/aggTrades/<SYM>/<SYM>-aggTrades-<YYYY-MM-DD>.zip`` and
``data/spot/monthly/aggTrades/<SYM>/<SYM>-aggTrades-<YYYY-MM>.zip``, each with a
``.CHECKSUM`` file beside it. A calendar month asked for whole (and already over) is one
monthly file, falling back to its days when the monthly file is not there; every other
day is a daily file. A file is downloaded to ``<data dir>/history/downloads/`` (a partial
download resumes with an HTTP Range request), its SHA-256 compared with the checksum
file before it is read (a mismatch imports nothing and deletes the download), imported
(`tradetape.history.load`), and recorded in ``<data dir>/history/imported.json``, so a
second run skips it: fetching resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tradetape.domain.symbols import check_symbol
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.load import ImportResult, Progress, TapeImporter
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 1024 * 1024
HTTP_TIMEOUT_S = 60.0


class FetchError(RuntimeError):
    """A dump that could not be downloaded or verified (the name says which)."""


@dataclass(frozen=True)
class Period:
    """One dump file: a day or a whole month of one symbol."""

    symbol: str
    kind: str
    """``daily`` or ``monthly``."""
    label: str
    """``2026-01-01`` or ``2026-01``."""
    first: date
    last: date

    @property
    def name(self) -> str:
        return f"{self.symbol}-aggTrades-{self.label}.zip"

    @property
    def path(self) -> str:
        return f"data/spot/{self.kind}/aggTrades/{self.symbol}/{self.name}"

    def days(self) -> list[Period]:
        return [daily(self.symbol, self.first + timedelta(n)) for n in range((self.last - self.first).days + 1)]


def daily(symbol: str, day: date) -> Period:
    return Period(symbol, "daily", day.isoformat(), day, day)


def periods(symbol: str, first: date, last: date, today: date) -> list[Period]:
    """The files that cover ``[first, last]`` (inclusive): whole past months monthly, other days daily."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    found: list[Period] = []
    day = first
    while day <= last:
        month_end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
        if day.day == 1 and month_end <= last and month_end < today.replace(day=1):
            found.append(Period(symbol, "monthly", day.strftime("%Y-%m"), day, month_end))
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
        self._base = settings.history_url.rstrip("/")
        self._importer = importer
        self._downloads = settings.data_dir / "history" / "downloads"
        self.manifest = ImportManifest(settings.data_dir / "history" / "imported.json")
        self._on_file = on_file

    async def fetch(self, symbol: str, first: date, last: date, *, again: bool = False) -> FetchReport:
        """Import the files of ``[first, last]``; `again`: also those the manifest lists (a repair)."""
        check_symbol(symbol)
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
                if period.kind == "monthly":
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
        url = f"{self._base}/{period.path}"
        expected = (await asyncio.to_thread(_get_text, url + ".CHECKSUM")).split()
        if not expected or len(expected[0]) != 64:
            raise FetchError(f"{period.name}.CHECKSUM: not a SHA-256 checksum line")
        target = self._downloads / period.name
        await asyncio.to_thread(_download, url, target)
        digest = await asyncio.to_thread(_sha256, target)
        if digest != expected[0].lower():
            target.unlink(missing_ok=True)
            raise FetchError(
                f"{period.name}: SHA-256 {digest} does not match its .CHECKSUM {expected[0]}; nothing imported"
            )
        dump = await asyncio.to_thread(read_dump, target, period.symbol)
        progress = self._on_file(period.name, len(dump.trades)) if self._on_file is not None else None
        result = await self._importer.import_dump(dump, progress)
        self.manifest.record(period.symbol, period.name, digest, result)
        target.unlink(missing_ok=True)
        return result


def _open(request: urllib.request.Request) -> urllib.request._UrlopenRet:
    try:
        return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise FileNotFoundError(request.full_url) from None
        raise FetchError(f"{request.full_url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{request.full_url}: unreachable ({exc!r})") from None


def _get_text(url: str) -> str:
    with _open(urllib.request.Request(url)) as response:
        return response.read(4096).decode(errors="replace")  # type: ignore[no-any-return]


def _download(url: str, target: Path) -> None:
    """`url` into `target`, resuming ``target.part`` with a Range request if a previous run left one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = _open(request)
    except FetchError:
        if not offset:
            raise
        partial.unlink(missing_ok=True)  # a stale partial (416 or similar): start over
        response = _open(urllib.request.Request(url))
        offset = 0
    with response:
        mode = "ab" if offset and response.status == 206 else "wb"
        with partial.open(mode) as handle:
            while block := response.read(DOWNLOAD_CHUNK):
                handle.write(block)
    partial.replace(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(DOWNLOAD_CHUNK):
            digest.update(block)
    return digest.hexdigest()
