"""How a command that asks the tape ends when it gets no reply: one line on stderr and an exit code.

1: the tape answered with an error reply (`QueryError`: the request, not the system, is at fault);
2: there was no tape to ask (`TapeUnavailable`: NATS down, nobody serving), as `tradetape status`.
`query`, `replay` and `plot` share it, each saying an error reply its own way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from tradetape.api.errors import QueryError

if TYPE_CHECKING:
    from tradetape.client import TapeUnavailable

EXIT_ERROR_REPLY = 1
EXIT_UNAVAILABLE = 2


def no_reply(command: str, exc: QueryError | TapeUnavailable, describe: Callable[[QueryError], str]) -> int:
    """Print why `tradetape <command>` got no reply (an error reply as `describe` says it); its exit code."""
    if isinstance(exc, QueryError):
        print(f"tradetape {command}: {describe(exc)}", file=sys.stderr)
        return EXIT_ERROR_REPLY
    print(f"tradetape {command}: {exc}", file=sys.stderr)
    return EXIT_UNAVAILABLE
