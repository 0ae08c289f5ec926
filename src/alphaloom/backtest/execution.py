"""The one bar-execution rule shared by the backtester and the RL environments.

Convention (the realistic one): a decision made with data up to the close of bar ``t`` is executed at the
open of bar ``t + 1``. The target is a fraction of equity in [-max_leverage, max_leverage] (negative =
short). At the open, equity is marked at the open price, the position is traded to ``target * equity /
open`` units through the :class:`~alphaloom.backtest.costs.CostModel`, and the bar ends with equity marked at
the close. Units are held between decisions, so weights drift with the price and no phantom rebalancing
trades are charged; a target equal to the current weight (within ``min_trade_weight``) trades nothing.

This loop is path-dependent (cash and units carry over), so it is a plain scalar step here; the vectorised
engines of the backtesting issue must agree with it to 1e-9.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from alphaloom.backtest.costs import CostModel

__all__ = ["AccountState", "BarOutcome", "execute_bar"]


class AccountState(NamedTuple):
    """Cash and signed units of one instrument, after the close of a bar."""

    cash: float
    units: float

    def equity(self, price: float) -> float:
        return self.cash + self.units * price


class BarOutcome(NamedTuple):
    """The result of executing one bar: the new state and what happened on it."""

    state: AccountState
    equity_close: float
    traded_units: float
    fill_price: float
    cost: float
    weight: float


def execute_bar(
    state: AccountState,
    target_weight: float,
    open_price: float,
    close_price: float,
    costs: CostModel,
    *,
    min_trade_weight: float = 0.0,
) -> BarOutcome:
    """Trade to ``target_weight`` at ``open_price``, then mark to ``close_price``.

    Parameters
    ----------
    state
        Cash and units after the previous close.
    target_weight
        Desired exposure as a fraction of equity at the open (decided at the previous close).
    open_price, close_price
        This bar's open and close, strictly positive.
    costs
        Commission and slippage model.
    min_trade_weight
        Trades smaller than this fraction of equity are skipped (a no-trade band).

    Returns
    -------
    BarOutcome
        ``weight`` is the exposure at the close as a fraction of equity at the close.
    """
    if not (open_price > 0 and close_price > 0):
        raise ValueError(f"prices must be positive, got open={open_price} close={close_price}")
    if not math.isfinite(target_weight):
        raise ValueError(f"target_weight must be finite, got {target_weight}")
    equity_open = state.equity(open_price)
    desired_units = target_weight * max(equity_open, 0.0) / open_price
    delta = desired_units - state.units
    traded = 0.0
    fill_px = open_price
    cost = 0.0
    cash = state.cash
    if equity_open > 0 and abs(delta) * open_price > min_trade_weight * equity_open and delta != 0.0:
        fill_px = costs.fill_price(delta, open_price)
        fee = costs.commission(delta, fill_px)
        cash -= delta * fill_px + fee
        cost = abs(delta) * abs(fill_px - open_price) + fee
        traded = delta
    units = state.units + traded
    new_state = AccountState(cash=cash, units=units)
    equity_close = new_state.equity(close_price)
    weight = units * close_price / equity_close if equity_close > 0 else 0.0
    return BarOutcome(new_state, equity_close, traded, fill_px, cost, weight)
