"""The sessions of a per-session reply as the CLI shows them: one line a session, then the naked POCs.

`volume_profile`, `footprint` and `market_profile` answer per session alike
(`tradetape.api.sessions`); each renderer names the figures of its own session lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from rich.console import RenderableType
from rich.text import Text

from tradetape.api.sessions import NakedPocReply, SessionInfo
from tradetape.api.times import iso_time
from tradetape.cli.tables import table

S = TypeVar("S", bound=SessionInfo)


def session_table(
    sessions: Sequence[S],
    naked: Sequence[NakedPocReply],
    columns: tuple[str, ...],
    cells: Callable[[S], tuple[str, ...]],
) -> list[RenderableType]:
    """A line a session (its label, its part of the range, then `columns` as `cells` fills them), the naked POCs."""
    grid = table("session", "from", "to", *columns, "", right=columns)
    for session in sessions:
        grid.add_row(
            session.label, iso_time(session.start), iso_time(session.end), *cells(session),
            "partial" if session.partial else "",
        )
    shown = ", ".join(f"{poc.poc} ({poc.label})" for poc in naked) or "none"
    return [Text(f"sessions {len(sessions)}", "bold"), grid, Text(f"naked POCs: {shown}", "yellow")]
