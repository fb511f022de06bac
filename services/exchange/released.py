"""The durable record of a symbol's released trades, so a restarted simulator still has every id it sent.

Ingest fills a gap by asking REST for the missing ids; a simulator that forgot what it
released before a stop (Ctrl-C, kill -9) could never answer, and the tape kept the gap.
So every batch is appended here and fsync'd before the stream or REST can see it (one
write and one fsync per batch, not per trade), and a restart loads it: REST answers the
old ids and new ids continue right after the last one. One file per symbol in the state
directory, named by the instrument's token (``BTCUSDT.released.csv``,
``um.BTCUSDT.released.csv``), in spot dumps' row layout (`dumps.spot_row`, read back with
`replay.parse_row`) plus USD-M's ``nq`` as a ninth field where a trade has one, rows
exactly as served (voids too). Its size follows the
history's retention: when the history drops its oldest trades the file is rewritten with
the retained ones (tmp file, fsync, rename). A write cut short (a kill, a full disk)
leaves at most a torn last line of trades never sent: it is cut off.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from tradetape.domain.instruments import instrument_token
from tradetape.errors import InputError
from tradetape.services.exchange.dumps import spot_row
from tradetape.services.exchange.history import AggTrade
from tradetape.services.exchange.replay import ReplayFormatError, parse_row

logger = logging.getLogger(__name__)

NORMAL_QTY_FIELD = 8
"""Where a row keeps USD-M's ``nq`` (after spot dumps' eight fields)."""
MAX_LINE_BYTES = 256
"""Far above any row written here (about 90 bytes)."""
SUFFIX = ".released.csv"


class ReleasedRowsError(InputError):
    """A record that is not one this module wrote: refused rather than risk serving or reusing wrong ids."""


class ReleasedRows:
    """Append-only, fsync'd rows of one symbol; not shared between threads (the exchange's event loop owns it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0

    @classmethod
    def of(cls, state_dir: Path, name: str) -> ReleasedRows:
        """The record of instrument `name` (``BTCUSDT``, ``um:BTCUSDT``) in `state_dir`."""
        return cls(state_dir / f"{instrument_token(name)}{SUFFIX}")

    def load(self) -> list[AggTrade]:
        """The recorded rows, oldest first (none without a file); a torn last line is cut off the file.

        `ReleasedRowsError` for any other row that does not parse or does not follow the one before.
        """
        try:
            if not stat.S_ISREG(self.path.stat().st_mode):  # a device or a pipe could be endless
                raise ReleasedRowsError(f"{self.path}: not a regular file")
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            logger.warning("%s: cutting off a torn last row (%d bytes, never sent)", self.path, len(data) - whole)
            with self.path.open("r+b") as handle:
                handle.truncate(whole)
                os.fsync(handle.fileno())
        rows: list[AggTrade] = []
        for number, line in enumerate(data[:whole].splitlines(), start=1):
            rows.append(self._row(number, line, rows[-1] if rows else None))
        return rows

    def _row(self, number: int, line: bytes, previous: AggTrade | None) -> AggTrade:
        where = f"{self.path} line {number}"
        if len(line) > MAX_LINE_BYTES:
            raise ReleasedRowsError(f"{where}: longer than {MAX_LINE_BYTES} bytes; delete the file to start afresh")
        try:
            fields = line.decode("ascii").split(",")
            row = parse_row(fields).trade
            if len(fields) > NORMAL_QTY_FIELD:
                row = dataclasses.replace(row, normal_qty=fields[NORMAL_QTY_FIELD].strip())
        except (ReplayFormatError, UnicodeDecodeError) as exc:
            raise ReleasedRowsError(f"{where}: {exc}; delete the file to start afresh") from None
        if previous is not None and (row.agg_id <= previous.agg_id or row.time_ms < previous.time_ms):
            raise ReleasedRowsError(
                f"{where}: trade {row.agg_id} does not follow {previous.agg_id}; delete the file to start afresh"
            )
        return row

    def append(self, trades: Sequence[AggTrade]) -> None:
        """Write and fsync the batch; on `OSError` the file is cut back to what it held, so a retry adds it once."""
        if not trades:
            return
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, record_csv(trades))
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError as exc:
                logger.error("%s: a failed write could not be cut back: %s", self.path, exc)
            raise
        self._size = os.fstat(self._fd).st_size

    def rewrite(self, trades: Sequence[AggTrade]) -> None:
        """Replace the file with `trades` (the retained ones): a crash leaves the old file or the new one."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, record_csv(trades))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def record_csv(trades: Sequence[AggTrade]) -> bytes:
    """The record's rows: a spot dump's, and ``nq`` as a ninth field where a trade has it."""
    return "".join(
        spot_row(t) + ("\n" if t.normal_qty is None else f",{t.normal_qty}\n") for t in trades
    ).encode()


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data``; a write that takes nothing (a full device) is an ``OSError``, not a loop."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.ENOSPC, "no byte written")
        view = view[written:]
