"""One `tradetape up` per data directory: an advisory lock on `<data dir>/tradetape.lock`.

The holder keeps the file locked (`flock`, released by the kernel even if the holder is
killed) and writes its pid and NATS URL into it, so a second `up` can name the running
one. The file is never deleted: unlinking a locked file would let a third process lock a
fresh inode while the second still holds the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tradetape.errors import ConfigError

_READ_ATTEMPTS = 5
_READ_RETRY_S = 0.05


@dataclass(frozen=True)
class LockHolder:
    """What the running holder wrote into the lock file (None where it has not yet)."""

    pid: int | None
    nats_url: str | None


class DataDirLocked(ConfigError, RuntimeError):
    """Another process holds the data directory's lock."""

    def __init__(self, path: Path, holder: LockHolder) -> None:
        self.path = path
        self.holder = holder
        pid = holder.pid if holder.pid is not None else "unknown"
        url = holder.nats_url or "not yet known"
        super().__init__(
            f"tradetape up is already running on {path.parent} (pid {pid}, NATS {url}); "
            "stop it first or use another --data-dir"
        )


class DataDirLock:
    """`acquire()` or raise `DataDirLocked`; `release()` is safe twice; also `with`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(self.path, read_holder(self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.record(None)

    def record(self, nats_url: str | None) -> None:
        """Write this process's pid and NATS URL, for the message a second `up` prints."""
        if self._fd is None:
            raise RuntimeError("the lock is not held")
        data = json.dumps({"pid": os.getpid(), "nats_url": nats_url}).encode() + b"\n"
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def read_holder(path: Path) -> LockHolder:
    """The holder's record; retried briefly, since it may be between acquiring and writing."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            record = json.loads(path.read_text())
            pid, url = record.get("pid"), record.get("nats_url")
            return LockHolder(pid if isinstance(pid, int) else None, url if isinstance(url, str) else None)
        except (OSError, ValueError, AttributeError):
            if attempt + 1 < _READ_ATTEMPTS:
                time.sleep(_READ_RETRY_S)
    return LockHolder(None, None)
