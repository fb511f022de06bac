"""A slow, obviously-correct volume profile: the docs/design.md rules one trade at a time in Decimal."""

from __future__ import annotations

from decimal import Decimal, localcontext


def reference_profile(trades: list[tuple[str, str, bool]], row_size: str, value_area: str) -> dict[str, object]:
    """The docs/design.md rules spelled out one trade at a time in Decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 60
        size = Decimal(row_size)
        rows: dict[int, list[Decimal]] = {}  # k -> [volume, buy, sell, count]
        for p, q, maker in trades:
            k = int((Decimal(p) / size).to_integral_value(rounding="ROUND_FLOOR"))
            row = rows.setdefault(k, [Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
            row[0] += Decimal(q)
            row[2 if maker else 1] += Decimal(q)
            row[3] += 1
        lo, hi = min(rows), max(rows)
        ks = list(range(lo, hi + 1))
        vol = {k: rows.get(k, [Decimal(0)] * 4)[0] for k in ks}
        middle = Decimal(lo + hi) / 2
        best = max(vol.values())
        poc = sorted((abs(k - middle), k) for k in ks if vol[k] == best)[0][1]
        target = Decimal(value_area) * sum(vol.values())
        a = b = poc
        in_area = vol[poc]
        while in_area < target:
            up = vol[b + 1] if b < hi else None
            down = vol[a - 1] if a > lo else None
            if down is None or (up is not None and up >= down):
                b += 1
                in_area += vol[b]
            else:
                a -= 1
                in_area += vol[a]
        return {
            "rows": [(k, k * size, (k + 1) * size, *rows.get(k, [Decimal(0)] * 4)) for k in ks],
            "poc": poc * size + size / 2,
            "val": a * size,
            "vah": (b + 1) * size,
        }


def reference_vacuums(
    rows: list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]], min_rows: int, threshold: str
) -> list[tuple[Decimal, Decimal, int, Decimal]]:
    """Runs of at least `min_rows` thin interior rows, as (low, high, rows, volume), widest then lowest first."""
    volumes = [row[3] for row in rows]
    limit = Decimal(threshold) * sum(volumes) / len(volumes)
    runs: list[tuple[Decimal, Decimal, int, Decimal]] = []
    start = None
    for i in range(1, len(rows)):
        thin = i < len(rows) - 1 and volumes[i] < limit
        if thin and start is None:
            start = i
        elif not thin and start is not None:
            if i - start >= min_rows:
                runs.append((rows[start][1], rows[i - 1][2], i - start, sum(volumes[start:i], Decimal(0))))
            start = None
    return sorted(runs, key=lambda run: (-run[2], run[0]))
