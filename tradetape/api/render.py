"""What every method's CLI rendering shares: times, headers and tables in rich."""

from __future__ import annotations

from datetime import UTC, datetime

from rich import box
from rich.table import Table


def iso_time(ms: int | None) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds (`2026-01-01 00:00:00.000Z`)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def time_span(start: int | None, end: int | None) -> str:
    return "whole tape" if start is None else f"{iso_time(start)} → {iso_time(end)}"


def table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    """A plain table: one header line, no borders, so it stays readable when piped."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns:
        grid.add_column(name, justify="right" if name in right else "left", no_wrap=True)
    return grid
