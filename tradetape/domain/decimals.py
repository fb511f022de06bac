"""Exact decimals as integers in units of 1e-8 (Binance's finest price and quantity step).

Prices and quantities never pass through floats where a value is stored or a row boundary
is decided: they are parsed from the exchange's decimal strings straight into integers.
"""

from __future__ import annotations

SCALE_DIGITS = 8
SCALE: int = 10**SCALE_DIGITS


class DecimalFormatError(ValueError):
    """A decimal string that is not a plain non-negative number with at most 8 places."""


def parse_units(text: str) -> int:
    """Parse a decimal string such as ``"87648.21000000"`` into units of 1e-8."""
    whole, dot, frac = text.partition(".")
    if not whole.isdigit() or (dot and not (frac.isdigit() or frac == "")):
        raise DecimalFormatError(f"not a plain decimal: {text!r}")
    if len(frac) > SCALE_DIGITS:
        stripped = frac.rstrip("0")
        if len(stripped) > SCALE_DIGITS:
            raise DecimalFormatError(f"more than {SCALE_DIGITS} decimal places: {text!r}")
        frac = stripped
    return int(whole) * SCALE + (int(frac.ljust(SCALE_DIGITS, "0")) if frac else 0)


def format_units(units: int) -> str:
    """Format units of 1e-8 as the shortest exact decimal string (``"87648.21"``, ``"10"``)."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), SCALE)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:08d}".rstrip("0")
