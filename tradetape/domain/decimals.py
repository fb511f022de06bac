"""Exact decimals as integers in units of 1e-8 (Binance's finest price and quantity step).

Prices and quantities never pass through floats where a value is stored or a row boundary
is decided: they are parsed from the exchange's decimal strings straight into integers,
which must fit the int64 columns they are stored in.
"""

from __future__ import annotations

from tradetape.errors import InputError

SCALE_DIGITS = 8
SCALE: int = 10**SCALE_DIGITS
MAX_UNITS = 2**63 - 1
"""The largest value an int64 column holds: 92,233,720,368.54775807 in decimal."""
MAX_TEXT_LENGTH = 40
"""Longer strings are refused before any conversion (no exchange writes one)."""

_FRACTION_SCALE = tuple(10 ** (SCALE_DIGITS - places) for places in range(SCALE_DIGITS + 1))
"""Units of one step in the last of `places` decimal places."""


class DecimalFormatError(InputError):
    """A decimal string that is not a plain non-negative number with at most 8 places, or too large."""


def _is_digits(text: str) -> bool:
    """ASCII digits only: `str.isdigit` alone also accepts "²" and other Unicode digits (and, for
    ASCII text, only 0-9: two C calls, measured twice as fast as a set test on every trade)."""
    return text.isascii() and text.isdigit()


def parse_units(text: str) -> int:
    """Parse a decimal string such as ``"87648.21000000"`` into units of 1e-8."""
    if len(text) > MAX_TEXT_LENGTH:
        raise DecimalFormatError(f"decimal longer than {MAX_TEXT_LENGTH} characters: {text[:MAX_TEXT_LENGTH]!r}...")
    whole, dot, frac = text.partition(".")
    if not _is_digits(whole) or (dot and not (frac == "" or _is_digits(frac))):
        raise DecimalFormatError(f"not a plain decimal: {text!r}")
    if len(frac) > SCALE_DIGITS:
        stripped = frac.rstrip("0")
        if len(stripped) > SCALE_DIGITS:
            raise DecimalFormatError(f"more than {SCALE_DIGITS} decimal places: {text!r}")
        frac = stripped
    units = int(whole) * SCALE + (int(frac) * _FRACTION_SCALE[len(frac)] if frac else 0)
    if units > MAX_UNITS:
        raise DecimalFormatError(f"{text!r} exceeds {format_units(MAX_UNITS)}, the largest value stored exactly")
    return units


def format_units(units: int) -> str:
    """Format units of 1e-8 as the shortest exact decimal string (``"87648.21"``, ``"10"``).

    From the integer's digits (no division): measured 4x faster than `divmod` and a format,
    which a reply of a few thousand bars calls tens of thousands of times.
    """
    if units < 0:
        return "-" + format_units(-units)
    digits = str(units)
    if len(digits) > SCALE_DIGITS:
        whole, frac = digits[:-SCALE_DIGITS], digits[-SCALE_DIGITS:].rstrip("0")
    else:
        whole, frac = "0", digits.zfill(SCALE_DIGITS).rstrip("0")
    return f"{whole}.{frac}" if frac else whole
