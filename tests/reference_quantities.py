"""Slow, obviously-correct volume figures in Decimal, one trade at a time, over whichever quantity a trade weighs.

A trade is `(agg_id, time_ms, price, qty, buyer_maker)` with decimal strings, `qty` being what the answer sums
(`q`, or USD-M's `nq` for quantity "normal"); prices, sides and counts are every trade's whatever the quantity.
"""

from __future__ import annotations

from decimal import Decimal

Trade = tuple[int, int, str, str, bool]


def reference_bars(trades: list[Trade], interval_ms: int) -> list[dict[str, object]]:
    """Per epoch-aligned interval holding trades: OHLC by agg id, volumes, count, VWAP (None where volume is 0)."""
    by_start: dict[int, list[Trade]] = {}
    for trade in sorted(trades):
        by_start.setdefault(trade[1] - trade[1] % interval_ms, []).append(trade)
    bars = []
    for start, held in sorted(by_start.items()):
        prices = [Decimal(p) for _, _, p, _, _ in held]
        volume = sum((Decimal(q) for _, _, _, q, _ in held), Decimal(0))
        buy = sum((Decimal(q) for _, _, _, q, maker in held if not maker), Decimal(0))
        quote = sum((Decimal(p) * Decimal(q) for _, _, p, q, _ in held), Decimal(0))
        bars.append({
            "time": start, "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
            "volume": volume, "buy_volume": buy, "sell_volume": volume - buy, "trade_count": len(held),
            "vwap": quote / volume if volume else None,
        })  # fmt: skip
    return bars


def reference_vwap(trades: list[Trade]) -> Decimal:
    volume = sum((Decimal(q) for _, _, _, q, _ in trades), Decimal(0))
    return sum((Decimal(p) * Decimal(q) for _, _, p, q, _ in trades), Decimal(0)) / volume


def reference_large(trades: list[Trade], top: int) -> list[tuple[int, Decimal]]:
    """The `top` largest by quantity, then the lower agg id: (agg id, quantity)."""
    ranked = sorted(trades, key=lambda t: (-Decimal(t[3]), t[0]))[:top]
    return [(agg_id, Decimal(qty)) for agg_id, _, _, qty, _ in ranked]
