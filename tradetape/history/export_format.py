"""tradetape's export format: its columns, its time text and its exact decimals (pure)."""

from __future__ import annotations

import io
from decimal import Decimal

import polars as pl
import pyarrow as pa

from tradetape.domain.columns import Int64Array

EXPORT_FIELDS = ("agg_id", "price", "qty", "first_id", "last_id", "time", "buyer_maker")
"""The columns of a tradetape export, in order (also its CSV header)."""
NQ_FIELD = "nq"
"""A USD-M export's eighth column: each trade's normal quantity, empty (null) where it has none."""
EXPORT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"


def export_text(table: pa.Table) -> bytes:
    """Rows of an export table as the CSV form's lines (times in UTC, whatever zone the column names)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    time = pl.col("time")
    if frame.schema["time"].time_zone is not None:  # type: ignore[attr-defined]
        time = time.dt.convert_time_zone("UTC")
    decimals = [name for name in ("price", "qty", NQ_FIELD) if name in frame.columns]
    text = frame.select(
        pl.col("agg_id", "first_id", "last_id").cast(pl.String),
        pl.col(*decimals).cast(pl.String),
        pl.col("buyer_maker").cast(pl.String),
        time.dt.strftime(EXPORT_TIME_FORMAT),
    ).select(EXPORT_FIELDS + tuple(decimals[2:]))
    buffer = io.BytesIO()
    text.write_csv(buffer, include_header=False)
    return buffer.getvalue()


def export_decimal(units: Int64Array) -> pl.Series:
    """Units of 1e-8 as an exact polars Decimal(38, 8) column."""
    return (pl.Series(units, dtype=pl.Int64).cast(pl.Decimal(38, 8)) * Decimal("0.00000001")).cast(pl.Decimal(38, 8))
