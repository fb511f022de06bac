"""Child processes that never outlive their parent."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGTERM the child when its parent dies (None elsewhere).

    Linux sends it when the thread that forked the child ends, so fork from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None

    def _set() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return _set


def tradetape_command(*args: str) -> list[str]:
    """`tradetape <args>` as a child runs it: this interpreter, so the same environment."""
    return [sys.executable, "-m", "tradetape.cli", *args]
