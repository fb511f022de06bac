"""Import checks: an agg id the store holds must come again with the same contents.

A bulk import (a dump, a repair) or a vetted live batch may carry trades whose agg ids are
stored already; each is compared with the stored trade, read where its own trade time puts
it, so a trade stored at another time differs too, and a void and a trade of one agg id
differ in kind. Functions of a handle: the writer checks before it writes, and an importer
checks a whole file against a secondary view before it sends anything.
"""

from __future__ import annotations

import numpy as np
from rocksdict import Rdict

from tradetape.domain.columns import BASE_COLUMNS, TradeColumns
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.errors import InputError
from tradetape.store.reads import read_trades
from tradetape.store.voids import read_voids
from tradetape.store.windows import split_by


class ImportConflictError(InputError):
    """An imported trade whose agg id the store holds with different contents: nothing was written."""

    def __init__(self, symbol: str, agg_id: int, reason: str) -> None:
        super().__init__(f"{symbol} agg id {agg_id}: {reason} than the imported one")
        self.symbol = symbol
        self.agg_id = agg_id
        self.reason = reason


_FIELD_NAMES = (
    "agg id", "price", "quantity", "first trade id", "last trade id", "time", "buyer-maker flag",
    "quantity without RPI orders (nq)",
)  # fmt: skip


def check_same(db: Rdict, symbol: str, incoming: TradeColumns, segment_ms: int) -> None:
    """Every incoming trade must equal the stored one of its agg id, read where its trade time puts it.

    A void and a trade of one agg id differ too (a `conflict`: the stored one is kept); USD-M's
    `nq` only where both have one (a trade from a dump, which has none, is the live one).
    Raises `ImportConflictError` for the first that differs (works on a secondary too, so an
    importer can check a whole file before it sends anything).
    """
    differences = stored_differences(db, symbol, incoming, segment_ms)
    if differences:
        index, what = differences[0]
        raise ImportConflictError(symbol, int(incoming.agg_id[index]), f"it is stored {what}")


def stored_differences(db: Rdict, symbol: str, incoming: TradeColumns, segment_ms: int) -> list[tuple[int, str]]:
    """The incoming trades (whose agg ids are stored) that differ from the stored one: index and how.

    How reads after "stored": "with another price", "as another kind (a void)". The stored
    trade is read where the incoming trade time puts it, so one stored at another time
    differs "with another trade time". Ascending by index.
    """
    starts = incoming.time - incoming.time % segment_ms
    order = np.argsort(starts, kind="stable")  # the order `split_by` hands the parts out in
    differences: list[tuple[int, str]] = []
    offset = 0
    for start, part in split_by(incoming, starts):
        positions = order[offset : offset + len(part)]
        offset += len(part)
        span = (start, start + segment_ms)
        stored = TradeColumns.concat([read_trades(db, symbol, *span), read_voids(db, symbol, span, segment_ms)])
        stored = stored.sorted_unique()
        if len(stored) == 0:
            differences += [(int(position), _differs_in(0)) for position in positions]
            continue
        found = stored.take(np.minimum(np.searchsorted(stored.agg_id, part.agg_id), len(stored) - 1))
        kind = (found.agg_id == part.agg_id) & (found.voids() != part.voids())
        first_field = np.full(len(part), -1)
        pairs = zip(part.arrays()[:BASE_COLUMNS], found.arrays()[:BASE_COLUMNS], strict=True)
        for field, (mine, theirs) in enumerate(pairs):
            first_field[(mine != theirs) & (first_field < 0)] = field
        if part.normal_qty is not None and found.normal_qty is not None:  # nq differs only where both have one
            mine, theirs = part.normal_qty, found.normal_qty
            known = (mine != NO_NORMAL_QTY) & (theirs != NO_NORMAL_QTY)
            first_field[known & (mine != theirs) & (first_field < 0)] = BASE_COLUMNS
        differences += [
            (int(positions[i]), _another_kind(bool(found.voids()[i])) if kind[i] else _differs_in(int(first_field[i])))
            for i in np.flatnonzero(kind | (first_field >= 0))
        ]
    return sorted(differences)


def _differs_in(field: int) -> str:
    name = _FIELD_NAMES[field]
    return "with another trade time" if name in ("agg id", "time") else f"with another {name}"


def _another_kind(stored_void: bool) -> str:
    return f"as another kind ({'a void' if stored_void else 'a trade'})"
