"""Transaction and holding cost models as pure functions, shared by every engine that charges a trade.

A :class:`CostModel` is a frozen config. It turns a trade (signed ``units`` at a reference price) into an
execution price and a commission, and a held position into a carry cost. The formulas live once, in the
module-level ``*_nb`` kernels below, compiled with numba (``@njit(cache=True)``, no fastmath, so the
arithmetic is plain IEEE and gives the same numbers as Python). Every caller charges through them: the
vectorised and event-driven backtest engines call the kernels inside their numba loops, and ``execute_bar``,
the RL environments and the paper exchange's matching engine call the Python methods, which are thin wrappers
around the same kernels. So what an agent learns to pay, what a backtest charges and what paper trading
charges cannot drift apart. That is why we keep our own models instead of a library's: the cost code has to be
callable from numba loops and from plain Python with one implementation, and no cost library offers both.

Conventions
-----------
- ``units`` is signed: positive buys, negative sells. ``ref_price`` is the price the trade is measured
  against (the bar's open for a market order at the open, a quote's mid). Prices are per unit.
- Rates named ``*_bps`` are basis points (1 bp = 1e-4) of traded notional ``|units| * price``; rates named
  ``*_bps_per_year`` are basis points of position value per year. Money amounts are in account currency.
- A zero trade costs nothing and fills at ``ref_price``. Trading costs are never negative, are the same for a
  buy and a sell of the same size, and are non-decreasing in ``|units|``.

Models
------
Execution price (spread, slippage, impact), for ``d = sign(units)``::

    move       = (half_spread_bps + slippage_bps) * 1e-4 + impact
    fill_price = ref_price * (1 + d * min(move, 1))

- **Spread.** ``half_spread_bps`` comes from quotes when the caller has them
  (``(ask - bid) / 2 / mid * 1e4``; a crossed quote counts as zero), else half the configured full spread
  ``spread_bps``: a round trip pays one full spread.
- **Slippage** (fixed model): ``slippage_bps`` against us on every fill.
- **Square-root market impact**: ``impact = impact_coef * volatility * sqrt(|units| / volume)``, where
  ``volatility`` is the standard deviation of one bar's returns (a fraction, 0.02 = 2 %) and ``volume`` the
  bar's traded volume in units, so ``|units| / volume`` is the participation rate. In basis points this is
  ``impact_coef * sigma * sqrt(participation) * 1e4``. Measured per bar or per day it is the same number
  (per-bar sigma shrinks by ``sqrt(n)`` while per-bar participation grows by ``n``), so with daily bars it is
  the classic square-root law with daily volatility and average daily volume. A NaN or non-positive
  ``volatility`` or ``volume`` means "unknown" and gives no impact. ``move`` is capped at 1 so a sell never
  fills below zero; reaching the cap means the trade is far beyond any realistic participation.
- **Participation cap.** ``max_participation`` (0 = no cap) limits ``|units|`` per bar to
  ``max_participation * volume``. Pricing does not clip; the engines clip with :func:`clip_units_nb` (or
  :meth:`CostModel.max_units`) before they price, like the matching engine's partial fills. A missing (NaN)
  volume means no cap; a zero volume allows no trade.

Commission, on ``notional = |units| * fill_price``::

    fee = notional * commission_bps * 1e-4 + |units| * commission_per_share
    fee = max(fee, min_commission)
    fee = min(fee, notional * max_commission_bps * 1e-4)    # only when max_commission_bps > 0

The cap wins over the minimum (a broker's "maximum per order: 1 % of trade value" applies even when the
minimum would be larger, as Interactive Brokers' fixed pricing does). A cap below the proportional rate
(``0 < max_commission_bps < commission_bps``) is rejected as a contradiction.

Carry, for a position worth ``position_value`` (signed, account currency) held for ``days`` calendar days::

    long : position_value * financing_long_bps_per_year * 1e-4 * days / days_per_year
    short: |position_value| * (borrow_bps_per_year + financing_short_bps_per_year) * 1e-4
           * days / days_per_year

Borrow (the stock-loan fee) is charged on short notional only; financing is the overnight swap of forex and
CFD brokers, positive when you pay. Borrow cannot be negative, so carry is never negative unless a negative
financing rate is configured (a long in the higher-yielding currency of a pair earns carry: a negative cost).

Kernel parameter vector
-----------------------
:meth:`CostModel.kernel_params` packs the model into a float64 vector that the ``*_nb`` kernels take as their
first argument; engines pass it through and never read it. Layout (raw config values; 0 means "off" where the
field says so)::

    [0] commission_bps           [6]  impact_coef
    [1] slippage_bps             [7]  max_participation
    [2] min_commission           [8]  borrow_bps_per_year
    [3] commission_per_share     [9]  financing_long_bps_per_year
    [4] max_commission_bps       [10] financing_short_bps_per_year
    [5] spread_bps               [11] days_per_year

Examples
--------
>>> costs = CostModel(commission_bps=1.0, slippage_bps=2.0, min_commission=1.0)
>>> costs.fill_price(10.0, 100.0)
100.02
>>> params = costs.kernel_params()  # pass to fill_price_nb / commission_nb inside a numba loop
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any, Self

import numpy as np
from numba import njit
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, did_you_mean

__all__ = [
    "ASSET_CLASS_PRESETS",
    "N_KERNEL_PARAMS",
    "CostModel",
    "carry_cost_nb",
    "clip_units_nb",
    "commission_nb",
    "fill_price_nb",
    "impact_fraction_nb",
    "max_units_nb",
    "total_cost_nb",
]

# Positions in the kernel parameter vector (see the module docstring).
_COMMISSION_BPS = 0
_SLIPPAGE_BPS = 1
_MIN_COMMISSION = 2
_COMMISSION_PER_SHARE = 3
_MAX_COMMISSION_BPS = 4
_SPREAD_BPS = 5
_IMPACT_COEF = 6
_MAX_PARTICIPATION = 7
_BORROW_BPS_PER_YEAR = 8
_FINANCING_LONG_BPS_PER_YEAR = 9
_FINANCING_SHORT_BPS_PER_YEAR = 10
_DAYS_PER_YEAR = 11
N_KERNEL_PARAMS = 12
"""Length of the vector returned by :meth:`CostModel.kernel_params`."""

_NAN = float("nan")


# ---------------------------------------------------------------------------------------------------------
# Kernels: the one implementation. Plain float arithmetic, no fastmath, so results match Python bit for bit.
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True)
def impact_fraction_nb(params: np.ndarray, units: float, volatility: float, volume: float) -> float:
    """Square-root market impact as a price fraction: ``impact_coef * volatility * sqrt(|units| / volume)``.

    Parameters
    ----------
    params
        :meth:`CostModel.kernel_params`.
    units
        Signed trade size; only ``|units|`` matters.
    volatility
        Standard deviation of one bar's returns, as a fraction. NaN or ``<= 0`` gives no impact.
    volume
        The bar's traded volume in units. NaN or ``<= 0`` gives no impact.

    Returns
    -------
    float
        Non-negative price move as a fraction (1e-4 = 1 bp).
    """
    coef = params[_IMPACT_COEF]
    # Comparisons with NaN are false, so a missing volatility or volume falls through to "no impact".
    if coef == 0.0 or units == 0.0 or not (volatility > 0.0) or not (volume > 0.0):
        return 0.0
    return coef * volatility * math.sqrt(abs(units) / volume)


@njit(cache=True)
def fill_price_nb(
    params: np.ndarray,
    units: float,
    ref_price: float,
    volatility: float,
    volume: float,
    half_spread_bps_quote: float,
) -> float:
    """Execution price of ``units`` (signed) against ``ref_price``: half-spread, slippage and impact.

    Parameters
    ----------
    params
        :meth:`CostModel.kernel_params`.
    units
        Signed trade size (positive buys).
    ref_price
        Reference price per unit (strictly positive).
    volatility
        Per-bar return standard deviation (fraction) for the impact term; NaN for none.
    volume
        Bar volume in units for the participation rate; NaN for none.
    half_spread_bps_quote
        Half the quoted spread in bps of mid, when quotes are known; NaN (or inf) uses half the configured
        ``spread_bps``. Negative (crossed quotes) counts as zero.

    Returns
    -------
    float
        Fill price per unit: above ``ref_price`` for buys, below for sells, ``ref_price`` for zero units.
    """
    if units == 0.0:
        return ref_price
    direction = 1.0 if units > 0.0 else -1.0
    if math.isfinite(half_spread_bps_quote):
        half_spread_bps = half_spread_bps_quote if half_spread_bps_quote > 0.0 else 0.0
    else:
        half_spread_bps = 0.5 * params[_SPREAD_BPS]
    # Summed in this order so a model without spread or impact gives ref * (1 + d * slippage) bit for bit.
    move = (
        params[_SLIPPAGE_BPS] * 1e-4
        + half_spread_bps * 1e-4
        + impact_fraction_nb(params, units, volatility, volume)
    )
    if move > 1.0:
        move = 1.0
    return ref_price * (1.0 + direction * move)


@njit(cache=True)
def commission_nb(params: np.ndarray, units: float, fill_price: float) -> float:
    """Commission in account currency for ``units`` (signed) filled at ``fill_price``.

    Parameters
    ----------
    params
        :meth:`CostModel.kernel_params`.
    units
        Signed trade size.
    fill_price
        Execution price per unit.

    Returns
    -------
    float
        ``max(bps + per-unit fee, min_commission)``, capped at ``max_commission_bps`` of notional when a cap
        is set; 0 for zero units.
    """
    if units == 0.0:
        return 0.0
    size = abs(units)
    notional = size * fill_price
    fee = notional * params[_COMMISSION_BPS] * 1e-4 + size * params[_COMMISSION_PER_SHARE]
    if fee < params[_MIN_COMMISSION]:
        fee = params[_MIN_COMMISSION]
    cap_bps = params[_MAX_COMMISSION_BPS]
    if cap_bps > 0.0:
        cap = notional * cap_bps * 1e-4
        if fee > cap:
            fee = cap
    return fee


@njit(cache=True)
def total_cost_nb(
    params: np.ndarray,
    units: float,
    ref_price: float,
    volatility: float,
    volume: float,
    half_spread_bps_quote: float,
) -> float:
    """Price slippage (spread, slippage, impact) plus commission, in account currency, against ``ref_price``.

    Arguments as :func:`fill_price_nb`. Returns ``|units| * |fill_price - ref_price| + commission``.
    """
    px = fill_price_nb(params, units, ref_price, volatility, volume, half_spread_bps_quote)
    return abs(units) * abs(px - ref_price) + commission_nb(params, units, px)


@njit(cache=True)
def carry_cost_nb(params: np.ndarray, position_value: float, days: float) -> float:
    """Cost of holding a position for ``days`` calendar days: short borrow plus overnight financing.

    Parameters
    ----------
    params
        :meth:`CostModel.kernel_params`.
    position_value
        Signed position value in account currency (``units * price``; negative when short).
    days
        Calendar days held (fractions allowed). NaN or ``<= 0`` costs nothing.

    Returns
    -------
    float
        Account currency to pay; negative (a credit) only when a negative financing rate is configured.
    """
    if position_value == 0.0 or not (days > 0.0):
        return 0.0
    if position_value > 0.0:
        rate_bps = params[_FINANCING_LONG_BPS_PER_YEAR]
    else:
        rate_bps = params[_BORROW_BPS_PER_YEAR] + params[_FINANCING_SHORT_BPS_PER_YEAR]
    return abs(position_value) * rate_bps * 1e-4 * (days / params[_DAYS_PER_YEAR])


@njit(cache=True)
def max_units_nb(params: np.ndarray, volume: float) -> float:
    """Largest ``|units|`` one bar may trade: ``max_participation * volume``.

    ``inf`` when no cap is configured or the volume is unknown (NaN); 0 for a zero or negative volume.
    """
    cap = params[_MAX_PARTICIPATION]
    if cap <= 0.0 or math.isnan(volume):
        return math.inf
    if volume <= 0.0:
        return 0.0
    return cap * volume


@njit(cache=True)
def clip_units_nb(params: np.ndarray, units: float, volume: float) -> float:
    """``units`` clipped to the participation cap :func:`max_units_nb`, keeping its sign."""
    limit = max_units_nb(params, volume)
    if abs(units) <= limit:
        return units
    return limit if units > 0.0 else -limit


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------

ASSET_CLASS_PRESETS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        # US equities, broker fixed pricing (IB-style): $0.005 per share, $1 minimum, capped at 1 % of
        # trade value; a 2 bp quoted spread and 1 bp slippage for liquid large caps; square-root impact at
        # the low end of published estimates (Y ~ 0.5-1); at most 10 % of a bar's volume; general-collateral
        # borrow of 0.5 %/yr for shorts.
        "equity": {
            "commission_bps": 0.0,
            "commission_per_share": 0.005,
            "min_commission": 1.0,
            "max_commission_bps": 100.0,
            "spread_bps": 2.0,
            "slippage_bps": 1.0,
            "impact_coef": 0.5,
            "max_participation": 0.1,
            "borrow_bps_per_year": 50.0,
        },
        # Spot FX majors: 0.2 bp commission with a $2 minimum (IB-style), a 1 bp spread (about 1 pip on
        # EUR/USD), 0.5 bp slippage, no impact (OTC, no reliable volume). Financing is the broker's markup of
        # about 1 %/yr each side over the pair's interest differential; add the differential for your pair
        # (a negative rate means you earn it).
        "forex": {
            "commission_bps": 0.2,
            "min_commission": 2.0,
            "spread_bps": 1.0,
            "slippage_bps": 0.5,
            "financing_long_bps_per_year": 100.0,
            "financing_short_bps_per_year": 100.0,
        },
        # Crypto spot on a major exchange: 10 bp taker fee, a 2 bp spread and 2 bp slippage on BTC/ETH,
        # square-root impact, at most 5 % of a bar's volume, and 5 %/yr margin borrow for shorts.
        "crypto": {
            "commission_bps": 10.0,
            "spread_bps": 2.0,
            "slippage_bps": 2.0,
            "impact_coef": 0.5,
            "max_participation": 0.05,
            "borrow_bps_per_year": 500.0,
        },
        # Liquid index futures (ES-like): about $2.50 per contract all-in on ~$250k notional is 0.1 bp (units
        # in our engines are underlying units, not contracts, so the fee is set in bps); one tick of spread
        # (~0.5 bp), 0.5 bp slippage, square-root impact, at most 10 % of a bar's volume. No borrow or
        # financing: the cost of carry is in the futures price.
        "futures": {
            "commission_bps": 0.1,
            "spread_bps": 0.5,
            "slippage_bps": 0.5,
            "impact_coef": 0.5,
            "max_participation": 0.1,
        },
    }
)
"""Realistic defaults per asset class for :meth:`CostModel.for_asset_class`; unlisted fields stay 0/off."""


# ---------------------------------------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------------------------------------


class CostModel(ComponentConfig):
    """Commission, spread, slippage, market impact and carry for one instrument; every cost is opt-in.

    With only the first three fields set it is the proportional model of earlier versions and prices
    identically. All rates are non-negative except the financing rates.

    Parameters
    ----------
    commission_bps
        Commission in basis points of traded notional.
    slippage_bps
        Fixed slippage in basis points: buys fill this much above the reference price, sells this much below.
        (Older configs put the half-spread here too; they keep pricing the same.)
    min_commission
        Minimum commission per non-zero trade, in account currency.
    commission_per_share
        Commission per unit traded, in account currency (per share, per contract, per coin).
    max_commission_bps
        Cap on the commission, in basis points of traded notional; 0 = no cap. The cap wins over
        ``min_commission``. Must not be below ``commission_bps``.
    spread_bps
        Full bid-ask spread in basis points of mid, used when the caller has no quotes; half is charged per
        side.
    impact_coef
        Coefficient ``Y`` of the square-root impact law ``Y * sigma * sqrt(participation)``; 0 = off.
        Published estimates for equities are about 0.5-1.
    max_participation
        Cap on ``|units| / bar volume`` that engines clip trades to; 0 = no cap.
    borrow_bps_per_year
        Stock-loan fee on short notional, basis points per year.
    financing_long_bps_per_year, financing_short_bps_per_year
        Overnight financing (forex swap, CFD funding) on long and short position value, basis points per
        year; positive = you pay, negative = you earn.
    days_per_year
        Day-count basis for carry: 365 (ACT/365) or 360 (ACT/360, most money-market conventions).

    Examples
    --------
    >>> CostModel.for_asset_class("equity").commission(100.0, 50.0)  # $0.50 per-share fee, $1 minimum
    1.0
    """

    commission_bps: float = Field(default=1.0, ge=0.0, le=1000.0)
    slippage_bps: float = Field(default=2.0, ge=0.0, le=1000.0)
    min_commission: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    commission_per_share: float = Field(default=0.0, ge=0.0, le=1000.0)
    max_commission_bps: float = Field(default=0.0, ge=0.0, le=1000.0)
    spread_bps: float = Field(default=0.0, ge=0.0, le=2000.0)
    impact_coef: float = Field(default=0.0, ge=0.0, le=10.0)
    max_participation: float = Field(default=0.0, ge=0.0, le=1.0)
    borrow_bps_per_year: float = Field(default=0.0, ge=0.0, le=100_000.0)
    financing_long_bps_per_year: float = Field(default=0.0, ge=-10_000.0, le=10_000.0)
    financing_short_bps_per_year: float = Field(default=0.0, ge=-10_000.0, le=10_000.0)
    days_per_year: float = Field(default=365.0, ge=360.0, le=366.0)

    @model_validator(mode="after")
    def _cap_not_below_rate(self) -> CostModel:
        if 0.0 < self.max_commission_bps < self.commission_bps:
            raise ValueError(
                f"max_commission_bps={self.max_commission_bps} caps the commission below its own rate "
                f"commission_bps={self.commission_bps}; set max_commission_bps >= commission_bps, or 0 for "
                "no cap"
            )
        return self

    @classmethod
    def for_asset_class(cls, asset_class: str, **overrides: Any) -> Self:
        """A model with realistic defaults for ``asset_class``, optionally adjusted.

        Parameters
        ----------
        asset_class
            One of ``"equity"``, ``"forex"``, ``"crypto"``, ``"futures"`` (see :data:`ASSET_CLASS_PRESETS`
            for the numbers and their sources).
        **overrides
            Fields to change from the preset, e.g. ``borrow_bps_per_year=300.0`` for a hard-to-borrow name.

        Raises
        ------
        ConfigError
            For an unknown asset class or an invalid override.
        """
        preset = ASSET_CLASS_PRESETS.get(asset_class)
        if preset is None:
            raise ConfigError(
                f"unknown asset class {asset_class!r} for CostModel.for_asset_class."
                f"{did_you_mean(asset_class, ASSET_CLASS_PRESETS)} "
                f"Valid asset classes: {', '.join(sorted(ASSET_CLASS_PRESETS))}."
            )
        data = {name: 0.0 for name in cls.model_fields if name != "days_per_year"}
        data.update(preset)
        data.update(overrides)
        return cls.from_dict(data, source=f"CostModel.for_asset_class({asset_class!r})")

    def kernel_params(self) -> np.ndarray:
        """The model as the float64 vector of shape ``(N_KERNEL_PARAMS,)`` that the ``*_nb`` kernels take.

        A fresh array on each call (layout in the module docstring); engines pass it through unread.
        """
        return self._params.copy()

    @cached_property
    def _params(self) -> np.ndarray:
        # Built once per (frozen) model: the Python methods below run in per-bar loops.
        return np.array(
            [
                self.commission_bps,
                self.slippage_bps,
                self.min_commission,
                self.commission_per_share,
                self.max_commission_bps,
                self.spread_bps,
                self.impact_coef,
                self.max_participation,
                self.borrow_bps_per_year,
                self.financing_long_bps_per_year,
                self.financing_short_bps_per_year,
                self.days_per_year,
            ],
            dtype=np.float64,
        )

    def fill_price(
        self,
        units: float,
        ref_price: float,
        *,
        volatility: float = _NAN,
        volume: float = _NAN,
        half_spread_bps: float = _NAN,
    ) -> float:
        """Execution price for a trade of ``units`` (signed) at ``ref_price``; see :func:`fill_price_nb`.

        ``volatility`` (per-bar return std), ``volume`` (bar volume) and ``half_spread_bps`` (from quotes)
        are optional; without them there is no impact and the configured spread applies.
        """
        return fill_price_nb(
            self._params,
            float(units),
            float(ref_price),
            float(volatility),
            float(volume),
            float(half_spread_bps),
        )

    def commission(self, units: float, fill_price: float) -> float:
        """Commission in account currency for ``units`` (signed) filled at ``fill_price``."""
        return commission_nb(self._params, float(units), float(fill_price))

    def total_cost(
        self,
        units: float,
        ref_price: float,
        *,
        volatility: float = _NAN,
        volume: float = _NAN,
        half_spread_bps: float = _NAN,
    ) -> float:
        """Spread, slippage, impact and commission in account currency, against trading at ``ref_price``."""
        return total_cost_nb(
            self._params,
            float(units),
            float(ref_price),
            float(volatility),
            float(volume),
            float(half_spread_bps),
        )

    def carry_cost(self, position_value: float, days: float) -> float:
        """Borrow plus financing, in account currency, for holding ``position_value`` (signed) ``days`` days.

        Raises
        ------
        ValueError
            If ``days`` is negative or not finite.
        """
        if not (math.isfinite(days) and days >= 0.0):
            raise ValueError(f"days must be a finite number >= 0 (calendar days held), got {days!r}")
        return carry_cost_nb(self._params, float(position_value), float(days))

    def max_units(self, volume: float) -> float:
        """Largest ``|units|`` a bar with ``volume`` may trade under ``max_participation`` (inf: no cap)."""
        return max_units_nb(self._params, float(volume))

    def clip_units(self, units: float, volume: float) -> float:
        """``units`` clipped to :meth:`max_units` for a bar with ``volume``, keeping its sign."""
        return clip_units_nb(self._params, float(units), float(volume))
