"""The completeness index: per symbol, the agg ids stored, as maximal runs of consecutive ids.

Agg ids are consecutive per symbol, so a complete tape is one run and every gap splits
one; the index's size grows with the number of gaps, never with the number of trades.
The writer updates it in the same atomic write as the trades it adds (so it is never
ahead of or behind the store) and uses it to drop trades it holds already, which keeps
each agg id once across windows and segments. Coverage of the whole tape is answered
from it alone. The runs are `tradetape.domain.id_runs.IdRuns`; this module is their value codec
(sealed: `tradetape.store.sealed`).
"""

from __future__ import annotations

import msgpack
import numpy as np

from tradetape.domain.id_runs import IdRuns
from tradetape.errors import FormatError
from tradetape.store.sealed import seal, unseal

INDEX_FORMAT = 1


class IndexFormatError(FormatError):
    """A stored index value that this version cannot read."""


def encode_runs(runs: IdRuns) -> bytes:
    """The index value of `runs`, sealed."""
    body = {"v": INDEX_FORMAT, "low": runs.low.astype("<i8").tobytes(), "high": runs.high.astype("<i8").tobytes()}
    return seal(msgpack.packb(body, use_bin_type=True))


def decode_runs(value: bytes | None) -> IdRuns:
    """An index value back into runs (None: no index yet, no ids); `IndexFormatError` or `ChecksumError` if it fails."""
    if value is None:
        return IdRuns.empty()
    try:
        body = msgpack.unpackb(unseal(value), raw=False)
        if body.get("v") != INDEX_FORMAT:
            raise IndexFormatError(f"unknown index format {body.get('v')!r}")
        low = np.frombuffer(body["low"], dtype="<i8").astype(np.int64)
        high = np.frombuffer(body["high"], dtype="<i8").astype(np.int64)
    except (KeyError, TypeError, ValueError, AttributeError, msgpack.ExtraData) as exc:
        if isinstance(exc, IndexFormatError):
            raise
        raise IndexFormatError(f"unreadable index: {exc}") from exc
    if low.shape != high.shape:
        raise IndexFormatError("index runs of different lengths")
    return IdRuns(low, high)
