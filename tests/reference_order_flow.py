"""Slow, obviously-correct footprint and market profile (TPO): the documented rules, one trade at a time in Decimal.

Trades are `(time_ms, price, qty, buyer_maker)` with Decimal price and quantity, in agg-id order.
The answers have the shape of the replies' JSON with Decimal where the reply has a decimal
string, so a test compares a whole reply with `decimals_of(reply)`.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

Trade = tuple[int, Decimal, Decimal, bool]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TEXT_FIELDS = {"symbol", "interval", "period", "letters", "letter", "side", "label"}


def decimals_of(value: Any, key: str = "") -> Any:
    """A reply's JSON with every decimal string as a Decimal (names and letters stay text)."""
    if isinstance(value, dict):
        return {k: decimals_of(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [decimals_of(v, key) for v in value]
    if isinstance(value, str) and key not in TEXT_FIELDS:
        return Decimal(value)
    return value


def row_of(price: Decimal, size: Decimal) -> int:
    return int((price / size).to_integral_value(rounding=ROUND_FLOOR))


def poc_and_value_area(values: dict[int, Decimal], share: Decimal) -> tuple[int, int, int]:
    """(poc, lowest, highest) row of the value area over `values` by row, by the volume profile rules."""
    lo, hi = min(values), max(values)
    best = max(values.values())
    middle = Decimal(lo + hi) / 2
    poc = sorted((abs(k - middle), k) for k in values if values[k] == best)[0][1]
    target = share * sum(values.values())
    a = b = poc
    taken = values[poc]
    while taken < target:
        up = values[b + 1] if b < hi else None
        down = values[a - 1] if a > lo else None
        if down is None or (up is not None and up >= down):
            b += 1
            taken += values[b]
        else:
            a -= 1
            taken += values[a]
    return poc, a, b


def runs(flags: dict[int, bool], at_least: int) -> list[tuple[int, int]]:
    """Maximal runs `(first, last)` of consecutive keys whose flag is set, at least `at_least` long."""
    found, first = [], None
    keys = sorted(flags)
    for k in [*keys, keys[-1] + 1]:
        if flags.get(k, False):
            first = k if first is None else first
        elif first is not None:
            if k - first >= at_least:
                found.append((first, k - 1))
            first = None
    return found


def reference_footprint(
    trades: list[Trade], interval_ms: int, row_size: str, ratio: str, stacked: int, value_area: str
) -> list[dict[str, Any]]:
    with localcontext() as ctx:
        ctx.prec = 80
        size, factor, share = Decimal(row_size), Decimal(ratio), Decimal(value_area)
        groups: dict[int, list[Trade]] = defaultdict(list)
        for trade in trades:
            groups[trade[0] // interval_ms * interval_ms].append(trade)
        bars = []
        for start in sorted(groups):
            group = groups[start]
            prices = [t[1] for t in group]
            low_row, high_row = row_of(min(prices), size), row_of(max(prices), size)
            buy = {k: Decimal(0) for k in range(low_row, high_row + 1)}
            sell = dict(buy)
            count = dict.fromkeys(buy, 0)
            for _, price, qty, maker in group:
                k = row_of(price, size)
                (sell if maker else buy)[k] += qty
                count[k] += 1
            buy_imb = {k: k > low_row and buy[k] > 0 and buy[k] >= factor * sell[k - 1] for k in buy}
            sell_imb = {k: k < high_row and sell[k] > 0 and sell[k] >= factor * buy[k + 1] for k in buy}
            poc, va_low, va_high = poc_and_value_area({k: buy[k] + sell[k] for k in buy}, share)
            stacks = [("buy", run) for run in runs(buy_imb, stacked)]
            stacks += [("sell", run) for run in runs(sell_imb, stacked)]
            stacks.sort(key=lambda s: (s[1][0], s[0] != "buy"))
            buy_total = sum(q for _, _, q, m in group if not m)
            sell_total = sum(q for _, _, q, m in group if m)
            bars.append({
                "time": start, "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
                "volume": buy_total + sell_total, "buy_volume": buy_total, "sell_volume": sell_total,
                "delta": buy_total - sell_total, "trade_count": len(group),
                "poc": poc * size + size / 2, "vah": (va_high + 1) * size, "val": va_low * size,
                "rows": [
                    {"price_low": k * size, "price_high": (k + 1) * size, "buy_volume": buy[k],
                     "sell_volume": sell[k], "trade_count": count[k], "buy_imbalance": buy_imb[k],
                     "sell_imbalance": sell_imb[k]}
                    for k in sorted(buy)
                ],
                "stacked_imbalances": [
                    {"side": side, "price_low": first * size, "price_high": (last + 1) * size, "rows": last - first + 1}
                    for side, (first, last) in stacks
                ],
            })
        return bars


def reference_tpo(
    trades: list[Trade], period_ms: int, range_start: int, row_size: str, value_area: str
) -> dict[str, Any]:
    with localcontext() as ctx:
        ctx.prec = 80
        size, share = Decimal(row_size), Decimal(value_area)
        groups: dict[int, list[Decimal]] = defaultdict(list)
        for time_ms, price, _, _ in trades:
            groups[time_ms // period_ms * period_ms].append(price)
        first = range_start // period_ms * period_ms
        periods = []
        for start in sorted(groups):
            letter = LETTERS[((start - first) // period_ms) % 52]
            periods.append({"letter": letter, "start": start, "high": max(groups[start]), "low": min(groups[start])})
        lo = min(row_of(p["low"], size) for p in periods)
        hi = max(row_of(p["high"], size) for p in periods)
        letters = {k: "" for k in range(lo, hi + 1)}
        for p in periods:
            for k in range(row_of(p["low"], size), row_of(p["high"], size) + 1):
                letters[k] += p["letter"]
        counts = {k: Decimal(len(v)) for k, v in letters.items()}
        poc, va_low, va_high = poc_and_value_area(counts, share)
        opening = [p for p in periods if p["start"] < first + 2 * period_ms]
        singles = [run for run in runs({k: len(v) == 1 for k, v in letters.items()}, 1) if run[0] > lo and run[1] < hi]
        return {
            "row_size": size,
            "poc": poc * size + size / 2,
            "poc_low": poc * size,
            "poc_high": (poc + 1) * size,
            "vah": (va_high + 1) * size,
            "val": va_low * size,
            "initial_balance": {"high": max(p["high"] for p in opening), "low": min(p["low"] for p in opening)}
            if opening
            else None,
            "single_prints": [
                {"price_low": a * size, "price_high": (b + 1) * size, "rows": b - a + 1} for a, b in singles
            ],
            "poor_high": len(letters[hi]) >= 2,
            "poor_low": len(letters[lo]) >= 2,
            "periods": periods,
            "rows": [
                {"price_low": k * size, "price_high": (k + 1) * size, "tpo_count": len(v), "letters": v}
                for k, v in sorted(letters.items())
            ],
        }
