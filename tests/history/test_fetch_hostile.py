"""fetch-history against a hostile host (tests/history/conftest.py): every download bounded, every claim checked."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.history.conftest import HostileHost, body, drip, endless, lying_length, redirect
from tradetape.history.fetch import FetchReport, HistoryFetcher
from tradetape.history.load import TapeImporter
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
DAY = date(2026, 1, 1)
NAME = "BTCUSDT-aggTrades-2026-01-01.zip"
PATH = f"/data/spot/daily/aggTrades/BTCUSDT/{NAME}"
MIB = 1 << 20


def day_zip(csv_name: str = "BTCUSDT-aggTrades-2026-01-01.csv") -> bytes:
    """The real trades of 2026-01-01 as data.binance.vision zips them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(csv_name, REAL.read_bytes())
    return buffer.getvalue()


def checksum(data: bytes, name: str = NAME) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


def settings_for(tmp_path: Path, host: HostileHost, **limits: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", symbols=("BTCUSDT",), history_url=host.url, retention_days=3650, **limits
    )


async def fetch(settings: Settings, symbol: str = "BTCUSDT", day: date = DAY) -> FetchReport:
    async with TapeImporter(settings) as importer:
        return await HistoryFetcher(settings, importer).fetch(symbol, day, day)


def stored(settings: Settings) -> int:
    if not settings.shard_dir.exists():
        return 0
    secondary = SecondaryStore(settings.shard_dir)
    try:
        return len(read_all_trades(secondary.catch_up(), "BTCUSDT"))
    finally:
        secondary.close()


def failure(report: FetchReport) -> str:
    assert not report.imported and [name for name, _ in report.failed] == [NAME], report
    return report.failed[0][1]


def leftovers(settings: Settings) -> list[str]:
    downloads = settings.data_dir / "history" / "downloads"
    return sorted(path.name for path in downloads.iterdir()) if downloads.exists() else []


async def test_a_redirect_is_followed_on_the_history_host_and_refused_to_another(
    tmp_path: Path, hostile_host: HostileHost
) -> None:
    data = day_zip()
    hostile_host.routes[PATH + ".CHECKSUM"] = body(checksum(data), "text/plain")
    hostile_host.routes["/elsewhere/" + NAME] = body(data)
    hostile_host.routes[PATH] = redirect(f"http://localhost:{hostile_host.port}/elsewhere/{NAME}")
    settings = settings_for(tmp_path, hostile_host)
    reason = failure(await fetch(settings))
    assert f"redirected to http://localhost:{hostile_host.port}, not the history host" in reason
    assert "/elsewhere/" + NAME not in hostile_host.requests and stored(settings) == 0

    hostile_host.routes[PATH] = redirect(f"{hostile_host.url}/elsewhere/{NAME}")  # same scheme, host and port
    report = await fetch(settings)
    assert [r.added for r in report.imported] == [5000] and not report.failed


async def test_an_endless_body_stops_at_the_size_cap_and_leaves_nothing(
    tmp_path: Path, hostile_host: HostileHost
) -> None:
    hostile_host.routes[PATH + ".CHECKSUM"] = body(checksum(b"whatever"), "text/plain")
    hostile_host.routes[PATH] = endless()
    settings = settings_for(tmp_path, hostile_host, history_max_download_bytes=4 * MIB)
    started = time.monotonic()
    reason = failure(await fetch(settings))
    assert time.monotonic() - started < 10
    assert reason.endswith(f"{PATH}: more than {4 * MIB} bytes (history_max_download_bytes)")
    assert leftovers(settings) == []

    hostile_host.routes[PATH] = lying_length(b"x" * 10, 64 * 1024**3)  # a length above the cap: not even read
    assert "68719476736 bytes, more than 4194304" in failure(await fetch(settings))


async def test_a_body_longer_or_shorter_than_its_content_length_is_refused(
    tmp_path: Path, hostile_host: HostileHost
) -> None:
    data = day_zip()
    hostile_host.routes[PATH + ".CHECKSUM"] = body(checksum(data), "text/plain")
    settings = settings_for(tmp_path, hostile_host)
    hostile_host.routes[PATH] = lying_length(data + b"trailing junk", len(data))
    assert f"the body is longer than its Content-Length {len(data)}" in failure(await fetch(settings))
    assert leftovers(settings) == []
    hostile_host.routes[PATH] = lying_length(data[:-100], len(data))
    assert f"the body ended after {len(data) - 100} of its {len(data)} bytes" in failure(await fetch(settings))
    assert stored(settings) == 0

    hostile_host.routes[PATH] = body(data)  # the next run resumes the partial and finishes it
    report = await fetch(settings)
    assert [r.added for r in report.imported] == [5000] and leftovers(settings) == []
    assert [p for p in hostile_host.requests if p == PATH] == [PATH] * 3


@pytest.mark.slow
async def test_a_drip_is_cut_off_at_the_whole_file_deadline(tmp_path: Path, hostile_host: HostileHost) -> None:
    data = day_zip()
    hostile_host.routes[PATH + ".CHECKSUM"] = body(checksum(data), "text/plain")
    hostile_host.routes[PATH] = drip(data, every_s=0.2)  # each read gets a byte well within any read timeout
    settings = settings_for(tmp_path, hostile_host, history_download_deadline_s=2.0)
    started = time.monotonic()
    reason = failure(await fetch(settings))
    elapsed = time.monotonic() - started
    assert reason == f"{NAME}: not complete within 2 s (history_download_deadline_s)"
    assert 1.9 < elapsed < 6, elapsed


async def test_a_file_holding_another_days_trades_is_refused(tmp_path: Path, hostile_host: HostileHost) -> None:
    data = day_zip("BTCUSDT-aggTrades-2026-01-02.csv")  # the trades of the 1st, served as the 2nd
    second = PATH.replace("2026-01-01", "2026-01-02")
    hostile_host.routes[second + ".CHECKSUM"] = body(checksum(data, NAME.replace("01-01", "01-02")), "text/plain")
    hostile_host.routes[second] = body(data)
    settings = settings_for(tmp_path, hostile_host)
    report = await fetch(settings, day=date(2026, 1, 2))
    assert not report.imported and len(report.failed) == 1
    assert (
        "BTCUSDT-aggTrades-2026-01-02.zip, line 1: time is outside the file's day "
        "[2026-01-02T00:00:00.000Z, 2026-01-03T00:00:00.000Z)" in report.failed[0][1]
    )
    assert stored(settings) == 0 and leftovers(settings) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (lambda data: checksum(data, "ETHUSDT-aggTrades-2026-01-01.zip"), "names 'ETHUSDT-aggTrades-2026-01-01.zip'"),
        (lambda data: hashlib.sha256(data).hexdigest().encode() + b"\n", "not one line of a SHA-256 and a file name"),
        (lambda data: checksum(data) + checksum(data, "other.zip"), "not one line of a SHA-256 and a file name"),
    ],
)
async def test_a_checksum_line_must_name_the_file(
    tmp_path: Path, hostile_host: HostileHost, line: Any, reason: str
) -> None:
    data = day_zip()
    hostile_host.routes[PATH + ".CHECKSUM"] = body(line(data), "text/plain")
    hostile_host.routes[PATH] = body(data)
    settings = settings_for(tmp_path, hostile_host)
    assert reason in failure(await fetch(settings))
    assert PATH not in hostile_host.requests and stored(settings) == 0


@pytest.mark.slow
async def test_a_symbol_that_is_a_path_is_refused_before_any_request_or_file(
    tmp_path: Path, hostile_host: HostileHost
) -> None:
    data = day_zip()
    hostile_host.fallback = lambda path: (
        body(checksum(data, path.rsplit("/", 1)[-1].removesuffix(".CHECKSUM")))
        if path.endswith(".CHECKSUM")
        else body(data)
    )
    settings = settings_for(tmp_path, hostile_host)
    evil = "../../../outside/EVIL"
    with pytest.raises(ValueError, match="is not a Binance symbol"):
        await fetch(settings, symbol=evil)
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    env |= {"TRADETAPE_DATA_DIR": str(settings.data_dir), "TRADETAPE_HISTORY_URL": hostile_host.url}
    command = [sys.executable, "-m", "tradetape.cli", "fetch-history", "BTCUSDT", evil.lower()]
    ran = subprocess.run(
        [*command, "--from", "2026-01-01", "--to", "2026-01-01"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 1 and "is not a Binance symbol" in ran.stderr, ran.stdout + ran.stderr
    assert hostile_host.requests == []
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) in ([], ["data"])
