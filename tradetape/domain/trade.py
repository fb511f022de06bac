"""The trade row: one aggregate trade as exact integers, and the void row that holds an id but no trade.

Rows come from the exchange's own rules (`tradetape.binance.aggtrade` validates its
aggTrade objects into them); here is only what the tape holds, whatever the source.

Voids. An id of the sequence can be real yet carry no trade (Binance invalidates
duplicate aggTrades so). Such an id is held as a void row: price and quantity 0, first
and last trade id `VOID_TRADE_ID`; `is_void` says which rows are voids, over one row or
whole columns, and the store keeps them apart from the trades.

Normal quantity. USD-M trades carry `nq` (since 2025-12-31): the quantity without RPI
(retail price improvement) orders, from 0 to `q`. A row keeps it as `normal_qty`, or
`NO_NORMAL_QTY` where the trade came without one (spot, COIN-M, a USD-M trade from a
dump, which has no such column).
"""

from __future__ import annotations

from typing import Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt


class TradeRow(NamedTuple):
    """One aggTrade with price and quantity in units of 1e-8."""

    agg_id: int
    price: int
    qty: int
    first_id: int
    last_id: int
    time: int
    buyer_maker: bool
    normal_qty: int = -1
    """USD-M's `nq` in units of 1e-8; `NO_NORMAL_QTY` (-1) where the trade carries none."""


VOID_TRADE_ID = -1
"""The first and last trade id of a void row."""
NO_NORMAL_QTY = -1
"""The normal quantity of a trade that came without `nq` (never a quantity: those are at least 0)."""

_Ints = npt.NDArray[np.int64]


@overload
def is_void(price: int, qty: int, first_id: int, last_id: int) -> bool: ...
@overload
def is_void(price: _Ints, qty: _Ints, first_id: _Ints, last_id: _Ints) -> npt.NDArray[np.bool_]: ...
def is_void(price: Any, qty: Any, first_id: Any, last_id: Any) -> Any:
    """A void row: price and quantity 0 (units of 1e-8), first and last trade id -1.

    The one definition of the pattern, for one row (a bool) or whole columns (a boolean array).
    """
    return (price == 0) & (qty == 0) & (first_id == VOID_TRADE_ID) & (last_id == VOID_TRADE_ID)
