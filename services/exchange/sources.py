"""Where an instrument's trades come from: its history, the days invented before a first start, its generator.

Each function builds one source from the config and the instrument's `TradeHistory`; the
`Exchange` wires them together and runs them.
"""

from __future__ import annotations

import logging

from tradetape.domain.instruments import instrument_token, split_instrument
from tradetape.services.exchange.config import ExchangeConfig
from tradetape.services.exchange.generator import (
    CONTRACT_UNITS,
    FIRST_ID,
    LOT_UNITS,
    GeneratorFeed,
    IdCheckpoint,
    Resume,
    TradeGenerator,
    id_margins,
    past_trades,
    resume_after,
)
from tradetape.services.exchange.history import TradeHistory, now_ms
from tradetape.services.exchange.markets import wire_of
from tradetape.services.exchange.released import ReleasedRows

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
RESUME_WINDOW = 1000
"""Newest trades searched for the last real one (void rows carry no trade ids) when a symbol resumes."""


def trade_history(config: ExchangeConfig, name: str) -> TradeHistory:
    """Instrument `name`'s history, recording what it releases under the state directory (if any)."""
    market, symbol = split_instrument(name)
    return TradeHistory(
        symbol,
        config.max_history,
        market=market,
        void_every=config.faults.void_every,
        record=None if config.state_dir is None else ReleasedRows.of(config.state_dir, name),
    )


def invent_past(config: ExchangeConfig, history: TradeHistory, name: str, tick_size: str, before: Resume) -> None:
    """The finished days before a first start (nothing released yet), ending right below ``before``'s ids."""
    if len(history) or history.trimmed_through_ms is not None:
        return
    today = now_ms() // DAY_MS * DAY_MS
    wire = wire_of(history.market)
    trades = past_trades(
        name,
        config.seed,
        tick_size,
        today - config.history_days * DAY_MS,
        today,
        last_agg_id=before.next_agg_id - 1,
        last_trade_id=before.next_trade_id - 1,
        lot_units=CONTRACT_UNITS if wire.contracts else LOT_UNITS,
        normal_qty=wire.normal_qty,
    )
    history.append(trades)
    if trades:
        logger.info(
            "%s: %d trades invented for the %d days before the first start, ids %d..%d",
            name,
            len(trades),
            config.history_days,
            trades[0].agg_id,
            trades[-1].agg_id,
        )


def legacy_ids(config: ExchangeConfig, name: str) -> tuple[int, int] | None:
    """The next ids of a former simulator's state file, if there is one."""
    if config.state_dir is None:
        return None
    return IdCheckpoint(config.state_dir / f"{instrument_token(name)}.json").resume(*id_margins(config.rate))


def generator_feed(config: ExchangeConfig, history: TradeHistory, name: str, tick_size: str) -> GeneratorFeed:
    """An instrument's feed, right after the trades it recorded as released (else a former state file's ids)."""
    resume = resume_after(history.latest(RESUME_WINDOW))
    if resume is None:
        resume = Resume(*(legacy_ids(config, name) or (FIRST_ID, FIRST_ID)))
    wire = wire_of(history.market)
    generator = TradeGenerator(
        name,
        config.seed,
        tick_size=tick_size,
        start_price=resume.price,
        first_agg_id=resume.next_agg_id,
        first_trade_id=resume.next_trade_id,
        lot_units=CONTRACT_UNITS if wire.contracts else LOT_UNITS,
        normal_qty=wire.normal_qty,
    )
    return GeneratorFeed(generator, history, config.rate)
