"""The CLI's tables in rich: the method renderers and `tradetape status` draw them alike."""

from __future__ import annotations

from rich import box
from rich.table import Table


def table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    """A plain table: one header line, no borders, so it stays readable when piped."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns:
        grid.add_column(name, justify="right" if name in right else "left", no_wrap=True)
    return grid
