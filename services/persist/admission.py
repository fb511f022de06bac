"""What persist believes of a consumed batch before it stores it: a trade is checked against what is known.

Only ingest may publish trades (`deploy/nats/auth.conf`), yet persist believes nothing it
can check:

- **conflict**: an agg id the store holds, or an earlier message of the same batch carries,
  with other contents (price, quantity, trade ids, time, side; USD-M's `nq` where both copies
  carry one). The first one stays; the copy is refused. The same contents again is an
  ordinary redelivery, dropped by the writer.
- **implausible_id**: a new agg id more than `max_jump` beyond the newest known one, the
  newest stored or, once asked (`vet` says which symbols need it), the highest id ingest's
  ledger knows of (its last confirmed id or the end of an open gap it is filling). Ids are
  taken in ascending order, each believed one moving the reference, so a real burst of
  consecutive ids passes whatever its length; the first unbelievable id and all above it
  are refused. A symbol with neither a stored trade nor a ledger entry has nothing to be
  measured against: its first batch is believed as it comes and becomes the reference.

Pure over the store's index and stored trades; runs in the same turn of the store's
changes as the write that follows it (`StoreThread`), so what it reads is what that write
changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import NO_NORMAL_QTY, TradeRow
from tradetape.store import ShardWriter

_NORMAL = TradeRow._fields.index("normal_qty")

CONFLICT = "conflict"
IMPLAUSIBLE_ID = "implausible_id"


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int
    """The trade's position in the batch."""
    kind: str
    reason: str


@dataclass(slots=True)
class Vetting:
    refusals: list[Refusal] = field(default_factory=list)
    unsure: set[str] = field(default_factory=set)
    """Symbols with ids found implausible (or no reference at all) before ingest's ledger was asked."""

    def refused(self) -> set[int]:
        return {refusal.index for refusal in self.refusals}


def vet(
    store: ShardWriter,
    rows: Sequence[tuple[str, TradeRow]],
    max_jump: int,
    ledger: Mapping[str, int | None] | None = None,
) -> Vetting:
    """The conflicts and implausible ids of a batch; `ledger` is per symbol the highest id ingest knows (once asked)."""
    vetting = Vetting()
    positions: defaultdict[str, list[int]] = defaultdict(list)
    for index, (symbol, _) in enumerate(rows):
        positions[symbol].append(index)
    for symbol, indices in positions.items():
        table = np.array([rows[i][1] for i in indices], dtype=np.int64).reshape(-1, len(TradeRow._fields))
        where = np.array(indices, dtype=np.int64)
        order = np.lexsort((where, table[:, 0]))  # by agg id, then arrival
        table, where = table[order], where[order]
        held = store.index(symbol).contains(table[:, 0])
        if bool(held.any()):
            _against_stored(store, symbol, table[held], where[held], vetting)
        table, where = table[~held], where[~held]
        first = np.ones(len(table), dtype=np.bool_)
        first[1:] = table[1:, 0] != table[:-1, 0]
        _repeats(table, where, first, vetting)
        _plausible(store, symbol, table[first, 0], where[first], max_jump, ledger, vetting)
    vetting.refusals.sort(key=lambda refusal: refusal.index)
    return vetting


def _repeats(table: np.ndarray, where: np.ndarray, first: np.ndarray, vetting: Vetting) -> None:
    """A second message of an agg id in one batch with other contents than the first."""
    original = np.maximum.accumulate(np.where(first, np.arange(len(table)), 0))
    normal, normal_first = table[:, _NORMAL], table[original, _NORMAL]
    normal_differs = (normal != normal_first) & (normal != NO_NORMAL_QTY) & (normal_first != NO_NORMAL_QTY)
    differs = ~first & ((table[:, :_NORMAL] != table[original, :_NORMAL]).any(axis=1) | normal_differs)
    for i in np.flatnonzero(differs):
        reason = f"{CONFLICT}: agg id {table[i, 0]} arrived twice in one batch with other contents; the first is kept"
        vetting.refusals.append(Refusal(int(where[i]), CONFLICT, reason))


def _against_stored(store: ShardWriter, symbol: str, table: np.ndarray, where: np.ndarray, vetting: Vetting) -> None:
    """Trades whose agg id the store holds: each copy is compared with the stored trade."""
    normal = table[:, _NORMAL]
    columns = TradeColumns.of_arrays(
        [*(table[:, column] for column in range(6)), table[:, 6].astype(np.bool_)]
        + ([normal] if bool((normal != NO_NORMAL_QTY).any()) else [])
    )
    for index, what in store.differences(symbol, columns):
        reason = f"{CONFLICT}: agg id {table[index, 0]} is stored {what}; the stored trade is kept"
        vetting.refusals.append(Refusal(int(where[index]), CONFLICT, reason))


def _plausible(
    store: ShardWriter,
    symbol: str,
    new_ids: np.ndarray,
    new_where: np.ndarray,
    max_jump: int,
    ledger: Mapping[str, int | None] | None,
    vetting: Vetting,
) -> None:
    """New agg ids (ascending, each once) against the newest known one."""
    if len(new_ids) == 0:
        return
    candidates = (store.newest(symbol), None if ledger is None else ledger.get(symbol))
    known = [value for value in candidates if value is not None]
    if not known:
        if ledger is None:
            vetting.unsure.add(symbol)
        return
    reach = np.maximum.accumulate(np.r_[max(known), new_ids])[:-1]
    beyond = np.flatnonzero(new_ids - reach > max_jump)
    if len(beyond) == 0:
        return
    if ledger is None:
        vetting.unsure.add(symbol)
        return
    start = int(beyond[0])
    newest = int(reach[start])
    for agg_id, index in zip(new_ids[start:].tolist(), new_where[start:].tolist(), strict=True):
        reason = (
            f"{IMPLAUSIBLE_ID}: agg id {agg_id} is {agg_id - newest} beyond {newest}, the newest stored or known "
            f"to ingest's ledger (at most {max_jump})"
        )
        vetting.refusals.append(Refusal(index, IMPLAUSIBLE_ID, reason))
