"""Epoch-ms times as a person reads them: in replies' messages, the CLI's tables and the charts' titles.

Pure text, no terminal library, so the query API (a cursor describing itself) and the CLI share one spelling.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso_time(ms: int | None) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds (`2026-01-01 00:00:00.000Z`)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def time_span(start: int | None, end: int | None) -> str:
    return "whole tape" if start is None else f"{iso_time(start)} → {iso_time(end)}"
