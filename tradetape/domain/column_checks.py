"""Checks over whole columns: decimal text into units (`tradetape.domain.decimals`), the first flagged row, id order.

Imports (a day of a busy symbol is millions of rows) cannot afford a Python object per
row, so the decimal rules run here as polars expressions (ASCII-digit decimals with at
most 8 places that fit int64 units of 1e-8, exactly what `parse_units` accepts), and
the exchange's trade rules over columns (`tradetape.binance.aggtrade.first_invalid`)
report through `first_of`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tradetape.domain.columns import BoolArray, Int64Array
from tradetape.domain.decimals import MAX_TEXT_LENGTH, MAX_UNITS, SCALE_DIGITS


def decimal_units(text: pl.Series) -> tuple[Int64Array, BoolArray]:
    """Decimal strings as units of 1e-8, and per row whether the string was valid (invalid rows hold 0).

    The vectorised `parse_units`: ASCII digits with at most one dot and a digit before it;
    more than 8 places only when the extra ones are zeros; at most `MAX_UNITS`.
    """
    t = pl.col("t")
    dot = t.str.find(".", literal=True)
    length = t.str.len_bytes()
    whole_len = dot.fill_null(length)
    frac_len = (length - dot - 1).fill_null(0)
    # polars' integer cast takes ASCII digits and a leading sign only: refuse the sign, then
    # a null cast is any other character (a second dot included).
    digits = t.str.replace(".", "", literal=True).cast(pl.UInt64, strict=False).cast(pl.Int128)
    frame = pl.DataFrame({"t": text.cast(pl.String)}).lazy()
    out = (
        frame.select(
            ok=(
                digits.is_not_null()
                & ~t.str.starts_with("+")
                & (whole_len >= 1)
                & (length <= MAX_TEXT_LENGTH)
            ).fill_null(False),
            long=(frac_len > SCALE_DIGITS).fill_null(False),
            units=digits * pl.lit(10, dtype=pl.Int128).pow(pl.lit(SCALE_DIGITS) - frac_len.clip(0, SCALE_DIGITS)),
        )
        .with_columns(ok=pl.col("ok") & ~pl.col("long") & (pl.col("units") <= MAX_UNITS).fill_null(False))
        .with_columns(units=pl.when(pl.col("ok")).then(pl.col("units")).otherwise(0).cast(pl.Int64))
        .collect()
    )
    ok = out["ok"].to_numpy().astype(np.bool_)
    units = out["units"].to_numpy().astype(np.int64)
    long = np.flatnonzero(out["long"].to_numpy())
    if len(long):
        # More than 8 places: valid only if the extra ones are zeros; strip them and parse again.
        stripped = text.gather(long).str.replace(r"^([0-9]*\.[0-9]{8})0+$", "${1}")
        again, again_ok = decimal_units(stripped) if bool((stripped != text.gather(long)).any()) else (None, None)
        if again is not None and again_ok is not None:
            units[long], ok[long] = again, again_ok
    return units, ok


def first_of(checks: list[tuple[BoolArray, str]]) -> tuple[int, str] | None:
    """The earliest row any mask flags, with that mask's reason."""
    found: tuple[int, str] | None = None
    for mask, reason in checks:
        hits = np.flatnonzero(mask)
        if len(hits) and (found is None or int(hits[0]) < found[0]):
            found = (int(hits[0]), reason)
    return found


def first_not_ascending(agg_id: Int64Array, previous: int | None) -> int | None:
    """The first index whose agg id does not rise above the one before it (`previous`: before index 0)."""
    if len(agg_id) == 0:
        return None
    before = np.r_[np.int64(-1 if previous is None else previous), agg_id[:-1]]
    hits = np.flatnonzero(agg_id <= before)
    return int(hits[0]) if len(hits) else None
