"""Temporary directories named by the process that owns them, and the sweep of those whose owner died.

A process killed outright (SIGKILL, OOM killer, a segfault) runs no clean-up, so a
temporary directory it made stays behind for good: a RocksDB secondary's directory
holds its info logs and grows with every restart of a crashing worker. Each directory
made here carries its owner's pid and start time in its name
(``<prefix><pid>-<start>-<random>``); `sweep` removes those of the same prefix whose
owner no longer runs. The start time tells a dead owner from a new process that got
its pid again. Directories of other shapes under the prefix (made before this scheme)
are left alone: nothing tells whether their owner still runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), None when it does not run (or is a zombie).

    Without /proc (not Linux), "0" for any pid that exists.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "0"
        return "0"
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def owned_tempdir(prefix: str, parent: Path | None = None) -> Path:
    """A new temporary directory named by this process (pid and start time) under `parent` (the temp dir)."""
    pid = os.getpid()
    start = process_start(pid) or "0"
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{pid}-{start}-", dir=parent))


def sweep(prefix: str, parent: Path | None = None) -> list[Path]:
    """Remove the directories `owned_tempdir(prefix)` made for processes that no longer run; the ones removed."""
    root = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in candidates:
        if not path.is_dir() or path.is_symlink():
            continue
        if not _abandoned(path.name[len(prefix) :]):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    if removed:
        logger.info("removed abandoned temporary directories", extra={"prefix": prefix, "count": len(removed)})
    return removed


def _abandoned(rest: str) -> bool:
    """Whether `<pid>-<start>-<random>` names a process that no longer runs."""
    parts = rest.split("-", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return False
    running = process_start(int(parts[0]))
    return running is None or (running != parts[1] and "0" not in (running, parts[1]))
