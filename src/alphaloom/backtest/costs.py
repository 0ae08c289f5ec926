"""Transaction cost models as pure functions.

A :class:`CostModel` turns a trade (signed units at a reference price) into an execution price (slippage:
the price moves against us) and a commission. The same model prices every trade in the backtester and in the
RL environments, so what an agent learns to pay is what the backtest charges.

All rates are in basis points of traded notional; costs are never negative and are monotone in trade size.
"""

from __future__ import annotations

from pydantic import Field

from alphaloom.core.config import ComponentConfig

__all__ = ["CostModel"]


class CostModel(ComponentConfig):
    """Proportional commission and slippage, with an optional minimum commission per trade.

    Parameters
    ----------
    commission_bps
        Commission in basis points of traded notional.
    slippage_bps
        Half-spread plus slippage in basis points: buys fill this much above the reference price, sells
        this much below.
    min_commission
        Minimum commission per non-zero trade, in account currency.
    """

    commission_bps: float = Field(default=1.0, ge=0.0, le=1000.0)
    slippage_bps: float = Field(default=2.0, ge=0.0, le=1000.0)
    min_commission: float = Field(default=0.0, ge=0.0)

    def fill_price(self, units: float, ref_price: float) -> float:
        """Execution price for a trade of ``units`` (signed) at ``ref_price``."""
        if units == 0.0:
            return ref_price
        direction = 1.0 if units > 0 else -1.0
        return ref_price * (1.0 + direction * self.slippage_bps * 1e-4)

    def commission(self, units: float, fill_price: float) -> float:
        """Commission in account currency for ``units`` (signed) filled at ``fill_price``."""
        if units == 0.0:
            return 0.0
        return max(abs(units) * fill_price * self.commission_bps * 1e-4, self.min_commission)

    def total_cost(self, units: float, ref_price: float) -> float:
        """Slippage plus commission, in account currency, relative to trading at ``ref_price``."""
        px = self.fill_price(units, ref_price)
        return abs(units) * abs(px - ref_price) + self.commission(units, px)
