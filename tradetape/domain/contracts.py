"""COIN-M contracts: a volume in contracts as quote volume (USD) and base volume (the coin), exactly.

COIN-M quantities are contracts of a fixed USD value, the contract size (exchangeInfo's
`contractSize`: 100 USD for BTCUSD, 10 for other coins), so its `volume` is not comparable
with spot's or USD-M's (base asset). Per distinct price `p` traded `v` contracts:

- quote volume = v × size, in USD: exact;
- base volume = v × size / p, in the coin: a rational, rounded half-even to 8 decimal places
  (1e-8 of the coin) per distinct price of the group (a bar, a profile row), then summed. So
  every answer is an exact decimal string a Decimal reference reproduces, within half a unit
  of 1e-8 a distinct price of the true sum.

Volumes and prices are in units of 1e-8, as everywhere; so are the results.
"""

from __future__ import annotations

from tradetape.domain.columns import Int64Array
from tradetape.domain.decimals import SCALE


def quote_units(volume: int, contract_size: int) -> int:
    """Quote volume (USD, units of 1e-8) of `volume` contracts (units of 1e-8)."""
    return volume * contract_size


def base_units(price: Int64Array, volume: Int64Array, group: Int64Array, groups: int, contract_size: int) -> list[int]:
    """Base volume (units of 1e-8) per group `0 .. groups - 1` of price levels (price and volume in units of 1e-8,
    a price may repeat): per distinct price of a group, v × size / p rounded half-even to 1e-8; summed per group."""
    volumes: dict[tuple[int, int], int] = {}
    for key, v in zip(zip(group.tolist(), price.tolist(), strict=True), volume.tolist(), strict=True):
        volumes[key] = volumes.get(key, 0) + v
    sums = [0] * groups
    for (g, p), v in volumes.items():
        whole, rest = divmod(v * contract_size * SCALE, p)
        if 2 * rest > p or (2 * rest == p and whole % 2):
            whole += 1
        sums[g] += whole
    return sums
