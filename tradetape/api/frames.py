"""Reply rows as polars DataFrames, decimal strings as exact Decimal columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from pydantic import BaseModel

DECIMAL = pl.Decimal(38, 8)
"""Prices and volumes: 8 decimal places, like the exchange's own strings."""


def rows_frame(rows: list[dict[str, Any]], model: type[BaseModel], exclude: Sequence[str] = ()) -> pl.DataFrame:
    """`rows` (dumps of `model`) as a DataFrame: its `str` fields Decimal, its `int` fields Int64."""
    fields = {name: info for name, info in model.model_fields.items() if name not in exclude}
    frame = pl.DataFrame(rows, schema={name: pl.String for name in fields}, strict=False)
    return frame.with_columns(
        pl.col(name).cast(DECIMAL if info.annotation is str else pl.Int64) for name, info in fields.items()
    )
