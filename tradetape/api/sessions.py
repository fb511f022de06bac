"""Answers per session: a range cut at session opens and closes, and the naked POCs across them.

Every method that answers per session (`volume_profile`, `footprint`, `market_profile`) takes
the same steps: `range_pieces` cuts the range into the sessions' parts and the time between
them; `per_session` walks the pieces, has the method answer each session piece as a range of
its own (`SessionInfo` says which session it is) and collects the prices every piece traded;
`naked_pocs` then checks each closed session's POC row against the prices traded in every
piece after its close.
The windows themselves (time zones, DST, presets) are `tradetape.domain.sessions`'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from tradetape.api.errors import range_too_large
from tradetape.domain.columns import Int64Array
from tradetape.domain.decimals import format_units
from tradetape.domain.sessions import (
    SessionPoc,
    SessionSpec,
    SessionWindow,
    TooManySessions,
    TradedPrices,
    naked_pocs,
    session_windows,
)

ReplyT = TypeVar("ReplyT")

MAX_SESSIONS = 40
"""Sessions one reply may hold: a month of daily sessions and its edges."""


@dataclass(frozen=True, slots=True)
class RangePiece:
    """A part of a range `[start, end)`: a session's part of it, or the time between sessions (`session` None)."""

    start: int
    end: int
    session: SessionWindow | None

    @property
    def range(self) -> tuple[int, int]:
        return self.start, self.end


def range_pieces(spec: SessionSpec, time_range: tuple[int, int]) -> list[RangePiece]:
    """`time_range` cut at every open and close of `spec`'s sessions, in time order, empty parts left out.

    More than `MAX_SESSIONS` sessions is `range_too_large`.
    """
    start, end = time_range
    try:
        windows = session_windows(spec, start, end, MAX_SESSIONS)
    except TooManySessions:
        raise range_too_large(
            f"the range touches more than {MAX_SESSIONS} sessions: ask a shorter range",
            max_sessions=MAX_SESSIONS,
        ) from None
    pieces: list[RangePiece] = []
    at = start
    for window in windows:
        opens, closes = max(window.start, start), min(window.end, end)
        if at < opens:
            pieces.append(RangePiece(at, opens, None))
        pieces.append(RangePiece(opens, closes, window))
        at = closes
    if at < end:
        pieces.append(RangePiece(at, end, None))
    return pieces


class SessionInfo(BaseModel):
    """Which session an answer is about, and the part of it the range held."""

    label: str
    """The local date the session opens on (ISO)."""
    session_start: int
    """When the session opens, epoch ms."""
    session_end: int
    """When it closes (exclusive), epoch ms."""
    start: int
    """Start of the part of it inside the range."""
    end: int
    """End of that part (exclusive)."""
    partial: bool
    """Whether the range cuts the session (start or end differ from the session's)."""


def session_info(piece: RangePiece) -> dict[str, Any]:
    window = piece.session
    assert window is not None
    return {
        "label": window.label,
        "session_start": window.start,
        "session_end": window.end,
        "start": piece.start,
        "end": piece.end,
        "partial": (piece.start, piece.end) != (window.start, window.end),
    }


class NakedPocReply(BaseModel):
    """A session's POC row that no later trade in the range reached."""

    label: str
    session_start: int
    session_end: int
    poc: str
    poc_low: str
    poc_high: str


@dataclass(frozen=True, slots=True)
class PieceAnswer:
    """What a method found on one session piece: its POC row (units of 1e-8) and its mid-price as text."""

    piece: RangePiece
    poc: str
    poc_low: int
    poc_high: int


def naked_poc_replies(
    pieces: Sequence[RangePiece], prices: Sequence[Int64Array], answers: Sequence[PieceAnswer]
) -> list[NakedPocReply]:
    """The POCs of sessions that closed inside the range and that no trade after their close traded in.

    `prices[i]` are the distinct prices traded in `pieces[i]`, ascending. A session still
    open at the range's end is not checked (nothing came after it yet).
    """
    traded = [TradedPrices(piece.start, piece.end, held) for piece, held in zip(pieces, prices, strict=True)]
    closed = [answer for answer in answers if answer.piece.session and answer.piece.session.end <= pieces[-1].end]
    flags = naked_pocs([SessionPoc(a.piece.end, a.poc_low, a.poc_high) for a in closed], traded)
    return [
        NakedPocReply(
            label=answer.piece.session.label,
            session_start=answer.piece.session.start,
            session_end=answer.piece.session.end,
            poc=answer.poc,
            poc_low=format_units(answer.poc_low),
            poc_high=format_units(answer.poc_high),
        )
        for answer, naked in zip(closed, flags, strict=True)
        if naked and answer.piece.session
    ]


SessionAnswer = tuple[Int64Array, tuple[ReplyT, PieceAnswer] | None]
"""What a method found on a session piece: the distinct prices it traded (ascending), and its reply and POC
(None when the piece held no trades)."""


def per_session(
    pieces: Sequence[RangePiece],
    traded: Callable[[RangePiece], Int64Array],
    answer: Callable[[RangePiece], SessionAnswer[ReplyT]],
) -> tuple[list[ReplyT], list[NakedPocReply]]:
    """Each session piece's reply, in time order, and the naked POCs among them.

    `answer` is asked about each session piece, `traded` about each piece between sessions (the
    distinct prices it traded, ascending), once each, in time order: a method reads one piece at a time.
    """
    replies: list[ReplyT] = []
    answers: list[PieceAnswer] = []
    prices: list[Int64Array] = []
    for piece in pieces:
        if piece.session is None:
            prices.append(traded(piece))
            continue
        held, found = answer(piece)
        prices.append(held)
        if found is not None:
            replies.append(found[0])
            answers.append(found[1])
    return replies, naked_poc_replies(pieces, prices, answers)
