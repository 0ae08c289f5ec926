"""The vectorised backtest engine: one numba core for weight-, position- and signal-based strategies.

Strategies are arrays decided in advance (target weights, target positions or entry/exit signals) over one
asset, shape ``(T,)``, or a panel, shape ``(T, N)``. Inputs are checked once in Python, then one compiled
kernel walks the bars with preallocated outputs. Every fill is priced by the shared cost kernels of
:mod:`alphaloom.backtest.costs` (:func:`~alphaloom.backtest.costs.fill_price_nb`,
:func:`~alphaloom.backtest.costs.commission_nb`, :func:`~alphaloom.backtest.costs.clip_units_nb`,
:func:`~alphaloom.backtest.costs.carry_cost_nb`), so this engine charges what the event-driven engine, the RL
environments and :func:`~alphaloom.backtest.execution.execute_bar` charge.

Entry points
------------
:func:`from_target_weights`
    Target exposure as a fraction of account equity (negative = short); with the default conventions it
    reproduces :func:`~alphaloom.backtest.engine.run_backtest` to rounding, every array of its result
    included (:meth:`SimulationResult.to_backtest_result`).
:func:`from_positions`
    Target positions in units, or position states (-1, 0, 1, ...) sized as a fraction of equity when they
    change.
:func:`from_signals`
    Entry and exit signals with vectorbt's semantics (see its docstring for the exact rules).

Fill conventions
----------------
``fill="next_open"`` (the default, the realistic one)
    The decision in row ``t`` uses data up to the close of bar ``t`` and fills at the **open of bar
    t + 1**; the bar is then marked at its close. Row 0 only supplies the first decision, and the last row's
    decision is never filled. This is :func:`~alphaloom.backtest.execution.execute_bar`'s rule.
``fill="close"``
    The decision in row ``t`` fills at the **close of bar t**, the bar its signal was computed on.
    This is vectorbt's default (``price=close``). It is optimistic: a strategy cannot trade at the very price
    it needs to see to decide. It exists for comparisons with peers.

Either way a result row ``t`` depends only on prices up to bar ``t`` and on decisions up to row ``t - 1``
(``next_open``) or ``t`` (``close``): the kernel never reads ahead. Whether the *decisions* themselves peek is
the strategy's business; :func:`check_causal` catches a strategy whose past output changes when the future
is cut off.

Sizing and accounts
-------------------
A target weight ``w`` of an account with equity ``E`` (cash plus positions marked at the fill reference
price, before any trade of that bar) trades to ``w * E / price`` units. With ``cash_sharing=True`` (the
default) a panel is one account: weights are fractions of the total equity, and the weights of a row may sum
to anything (leverage and shorts are not limited). With ``cash_sharing=False`` each asset is its own account
starting with ``initial_cash`` (vectorbt's convention for ungrouped columns). Fills are at the reference
price moved by the cost model; cash pays ``units * fill_price + commission``.

Accounting
----------
Equity at each close is ``cash + sum(units * close)``; a bar's return is the change of its account's
equity from the previous close (from ``initial_cash`` for row 0). If an account's equity at a close falls to
zero or below it is ruined: its positions are closed at that close, its equity and cash are set to 0 and it
never trades again (as in :func:`~alphaloom.backtest.engine.run_backtest`).

NaN policy
----------
Prices must be positive or NaN; infinities and values ``<= 0`` are refused. A NaN reference price (the
open for ``next_open``, the close for ``close``) means the asset does not trade that bar: its order is
dropped, not carried to the next bar. Positions are valued at the last known price, so a NaN close keeps the
previous mark. A NaN target weight or target position means "no order" (hold what you have). Signals must
be boolean (NaN is not a signal: use ``fillna(False)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from alphaloom.backtest.costs import (
    CostModel,
    carry_cost_nb,
    clip_units_nb,
    commission_nb,
    fill_price_nb,
)
from alphaloom.backtest.engine import BacktestResult
from alphaloom.core.exceptions import ConfigError, DataFormatError, DataValidationError, did_you_mean

__all__ = [
    "FillConvention",
    "Fills",
    "SimulationResult",
    "check_causal",
    "from_positions",
    "from_signals",
    "from_target_weights",
]

FillConvention = Literal["next_open", "close"]
SizeType = Literal["percent", "value", "units"]
PositionSizing = Literal["units", "fraction"]
StrategyKind = Literal["weights", "positions", "signals"]

_FILLS: tuple[str, ...] = ("next_open", "close")
_SIZE_TYPES: dict[str, int] = {"percent": 0, "value": 1, "units": 2}
_POSITION_SIZINGS: tuple[str, ...] = ("units", "fraction")

_MODE_WEIGHTS = 0
_MODE_UNITS = 1
_MODE_SIGNALS = 2
_SIZE_PERCENT = 0
_SIZE_VALUE = 1
_NAN = math.nan


# ---------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------


@njit(cache=True)
def _spend_nb(params: np.ndarray, units: float, ref: float, volatility: float, volume: float) -> float:
    px = fill_price_nb(params, units, ref, volatility, volume, _NAN)
    return units * px + commission_nb(params, units, px)


@njit(cache=True)
def _affordable_nb(params: np.ndarray, budget: float, ref: float, volatility: float, volume: float) -> float:
    # Units a buy can take for `budget` cash, costs included: the root of spend(u) = budget, found by the
    # secant method on the shared cost kernels (spend is affine in u for the proportional and minimum
    # commission models, where this is exact after two steps). 0 when the budget cannot cover the fees.
    if not budget > 0.0:
        return 0.0
    u0 = budget / ref
    s0 = _spend_nb(params, u0, ref, volatility, volume)
    if not s0 > 0.0:
        return 0.0
    u1 = u0 * (budget / s0)
    for _ in range(60):
        s1 = _spend_nb(params, u1, ref, volatility, volume)
        g1 = s1 - budget
        if abs(g1) <= 1e-12 * budget:
            break
        g0 = s0 - budget
        if g1 == g0:
            break
        u2 = u1 - g1 * (u1 - u0) / (g1 - g0)
        u0, s0, u1 = u1, s1, u2
        if not u1 > 0.0:
            return 0.0
    # Never spend more than the budget: shave rounding overshoot.
    for _ in range(60):
        if _spend_nb(params, u1, ref, volatility, volume) <= budget * (1.0 + 1e-12):
            return u1
        u1 *= 1.0 - 1e-12
    return 0.0


@njit(cache=True)
def _entry_units_nb(
    params: np.ndarray,
    size: float,
    size_type: int,
    budget: float,
    ref: float,
    volatility: float,
    volume: float,
) -> float:
    if size_type == _SIZE_PERCENT:
        return _affordable_nb(params, size * budget, ref, volatility, volume)
    if size_type == _SIZE_VALUE:
        return size / ref
    return size


@njit(cache=True)
def _reduce_units_nb(size: float, size_type: int, held: float, ref: float) -> float:
    if size_type == _SIZE_PERCENT:
        amount = size * held
    elif size_type == _SIZE_VALUE:
        amount = size / ref
    else:
        amount = size
    return amount if amount < held else held


@njit(cache=True)
def _signal_delta_nb(
    params: np.ndarray,
    position: float,
    cash: float,
    long_entry: bool,
    long_exit: bool,
    short_entry: bool,
    short_exit: bool,
    size: float,
    size_type: int,
    accumulate: bool,
    ref: float,
    volatility: float,
    volume: float,
) -> float:
    # Conflicts cancel (vectorbt's "ignore" for entry+exit of one side and for long+short entries).
    if long_entry and long_exit:
        long_entry = False
        long_exit = False
    if short_entry and short_exit:
        short_entry = False
        short_exit = False
    if long_entry and short_entry:
        long_entry = False
        short_entry = False
    if position > 0.0:
        if short_entry:
            if accumulate:
                return -_reduce_units_nb(size, size_type, position, ref)
            px = fill_price_nb(params, -position, ref, volatility, volume, _NAN)
            proceeds = position * px - commission_nb(params, -position, px)
            return -(
                position + _entry_units_nb(params, size, size_type, cash + proceeds, ref, volatility, volume)
            )
        if long_exit:
            if accumulate:
                return -_reduce_units_nb(size, size_type, position, ref)
            return -position
        if long_entry and accumulate:
            return _entry_units_nb(params, size, size_type, cash, ref, volatility, volume)
        return 0.0
    if position < 0.0:
        held = -position
        if long_entry:
            if accumulate:
                return _reduce_units_nb(size, size_type, held, ref)
            cover = _spend_nb(params, held, ref, volatility, volume)
            return held + _entry_units_nb(params, size, size_type, cash - cover, ref, volatility, volume)
        if short_exit:
            if accumulate:
                return _reduce_units_nb(size, size_type, held, ref)
            return held
        if short_entry and accumulate:
            return -_entry_units_nb(params, size, size_type, cash, ref, volatility, volume)
        return 0.0
    if long_entry:
        return _entry_units_nb(params, size, size_type, cash, ref, volatility, volume)
    if short_entry:
        return -_entry_units_nb(params, size, size_type, cash, ref, volatility, volume)
    return 0.0


@njit(cache=True)
def _simulate_nb(
    mode: int,
    open_: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    long_entries: np.ndarray,
    long_exits: np.ndarray,
    short_entries: np.ndarray,
    short_exits: np.ndarray,
    volume: np.ndarray,
    volatility: np.ndarray,
    carry_days: np.ndarray,
    params: np.ndarray,
    size: float,
    size_type: int,
    accumulate: bool,
    initial_cash: float,
    next_open: bool,
    min_trade_weight: float,
    cash_sharing: bool,
    equity_out: np.ndarray,
    cash_out: np.ndarray,
    returns_out: np.ndarray,
    units_out: np.ndarray,
    carry_out: np.ndarray,
    fill_bar: np.ndarray,
    fill_asset: np.ndarray,
    fill_units: np.ndarray,
    fill_price: np.ndarray,
    fill_fees: np.ndarray,
    fill_cost: np.ndarray,
) -> int:
    n_bars, n_assets = close.shape
    n_accounts = 1 if cash_sharing else n_assets
    ref_prices = open_ if next_open else close
    has_short = short_entries.shape[0] > 0
    has_volume = volume.shape[0] > 0
    has_volatility = volatility.shape[0] > 0
    has_carry = carry_days.shape[0] > 0
    cash = np.full(n_accounts, initial_cash)
    equity = np.empty(n_accounts)
    equity_prev = np.full(n_accounts, initial_cash)
    equity_ref = np.empty(n_accounts)
    units = np.zeros(n_assets)
    mark = np.full(n_assets, np.nan)
    n_fills = 0
    for t in range(n_bars):
        # Carry on what was held overnight, valued at the previous close, paid before this bar trades.
        if has_carry and t > 0:
            days = carry_days[t]
            for n in range(n_assets):
                if units[n] != 0.0:
                    carry = carry_cost_nb(params, units[n] * mark[n], days)
                    cash[0 if cash_sharing else n] -= carry
                    carry_out[t, n] = carry
        for g in range(n_accounts):
            equity_ref[g] = cash[g]
        for n in range(n_assets):
            px = ref_prices[t, n]
            if px > 0.0:
                mark[n] = px
            if units[n] != 0.0:
                equity_ref[0 if cash_sharing else n] += units[n] * mark[n]
        row = t - 1 if next_open else t
        if row >= 0:
            for n in range(n_assets):
                px = ref_prices[t, n]
                if not px > 0.0:
                    continue
                g = 0 if cash_sharing else n
                e = equity_ref[g]
                if not e > 0.0:
                    continue
                held = units[n]
                vol_n = volatility[t, n] if has_volatility else _NAN
                volume_n = volume[t, n] if has_volume else _NAN
                if mode == _MODE_SIGNALS:
                    long_entry = long_entries[row, n]
                    long_exit = long_exits[row, n]
                    short_entry = short_entries[row, n] if has_short else False
                    short_exit = short_exits[row, n] if has_short else False
                    if not (long_entry or long_exit or short_entry or short_exit):
                        continue
                    delta = _signal_delta_nb(
                        params,
                        held,
                        cash[g],
                        long_entry,
                        long_exit,
                        short_entry,
                        short_exit,
                        size,
                        size_type,
                        accumulate,
                        px,
                        vol_n,
                        volume_n,
                    )
                    if delta > 0.0 and _spend_nb(params, delta, px, vol_n, volume_n) > cash[g]:
                        # Buys (covers included) are limited to the cash there is, as in vectorbt.
                        delta = _affordable_nb(params, cash[g], px, vol_n, volume_n)
                    if delta == 0.0:
                        continue
                else:
                    target = targets[row, n]
                    if target != target:
                        continue
                    delta = target * e / px - held if mode == _MODE_WEIGHTS else target - held
                    if not (abs(delta) * px > min_trade_weight * e and delta != 0.0):
                        continue
                if has_volume:
                    delta = clip_units_nb(params, delta, volume_n)
                    if delta == 0.0:
                        continue
                fill_px = fill_price_nb(params, delta, px, vol_n, volume_n, _NAN)
                fee = commission_nb(params, delta, fill_px)
                cash[g] -= delta * fill_px + fee
                if mode == _MODE_SIGNALS and abs(cash[g]) <= 1e-9 * abs(delta * fill_px):
                    # A buy of all the cash leaves rounding dust, not cash to buy more with (vectorbt too).
                    cash[g] = 0.0
                units[n] = held + delta
                fill_bar[n_fills] = t
                fill_asset[n_fills] = n
                fill_units[n_fills] = delta
                fill_price[n_fills] = fill_px
                fill_fees[n_fills] = fee
                fill_cost[n_fills] = abs(delta) * abs(fill_px - px) + fee
                n_fills += 1
        for g in range(n_accounts):
            equity[g] = cash[g]
        for n in range(n_assets):
            px = close[t, n]
            if px > 0.0:
                mark[n] = px
            if units[n] != 0.0:
                equity[0 if cash_sharing else n] += units[n] * mark[n]
            units_out[t, n] = units[n]
        for g in range(n_accounts):
            if equity[g] <= 0.0:
                # Ruin: close everything at this close and keep the account flat at zero from here on.
                if cash_sharing:
                    units[:] = 0.0
                    units_out[t, :] = 0.0
                else:
                    units[g] = 0.0
                    units_out[t, g] = 0.0
                cash[g] = 0.0
                equity[g] = 0.0
            returns_out[t, g] = equity[g] / equity_prev[g] - 1.0 if equity_prev[g] > 0.0 else 0.0
            equity_out[t, g] = equity[g]
            cash_out[t, g] = cash[g]
            equity_prev[g] = equity[g]
    return n_fills


@njit(cache=True)
def _first_bad_price_nb(a: np.ndarray) -> int:
    flat = a.ravel()
    for i in range(flat.size):
        x = flat[i]
        if not (x != x or (x > 0.0 and x < np.inf)):
            return i
    return -1


@njit(cache=True)
def _first_infinite_nb(a: np.ndarray) -> int:
    flat = a.ravel()
    for i in range(flat.size):
        x = flat[i]
        if x == np.inf or x == -np.inf:
            return i
    return -1


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


class Fills(NamedTuple):
    """Every fill of a simulation, in time order (arrays of shape ``(n_fills,)``).

    Attributes
    ----------
    bar
        Row index of the bar the fill happened on (int64).
    asset
        Column index of the asset (int64; 0 for a single asset).
    units
        Signed units traded (positive bought).
    price
        Fill price per unit, after spread, slippage and impact.
    fees
        Commission in account currency.
    cost
        Price slippage against the reference price plus commission, in account currency.
    """

    bar: np.ndarray
    asset: np.ndarray
    units: np.ndarray
    price: np.ndarray
    fees: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What a vectorised simulation did, bar by bar.

    Shapes follow the input: one asset given as ``(T,)`` gives ``(T,)`` arrays; a panel ``(T, N)`` gives
    ``units`` of shape ``(T, N)`` and account arrays of shape ``(T, G)``, with ``G = 1`` under cash sharing
    and ``G = N`` without. Row ``t`` is bar ``t`` (all ``T`` bars; under ``next_open`` row 0 never trades).

    Attributes
    ----------
    equity
        Account equity at each close (cash plus positions marked at their last known price).
    cash
        Account cash after each bar.
    returns
        Simple return of each account's equity over each bar, close to close (row 0 from ``initial_cash``).
    units
        Signed position of each asset after each bar.
    carry
        Carry (borrow and financing) paid per asset at each bar, ``(T, N)`` like ``units``; zeros unless
        ``carry_days`` was given.
    fills
        Every fill (:class:`Fills`).
    open, close
        The prices simulated on, shape ``(T, N)``; ``open`` is ``close`` when none was given.
    targets
        The target weights (``kind="weights"``) or positions (``"positions"``) simulated, ``(T, N)``, or
        None for signals.
    initial_cash
        Starting cash of each account.
    fill
        The fill convention, ``"next_open"`` or ``"close"``.
    cash_sharing
        Whether a panel was one account.
    kind
        Which entry point made it: ``"weights"``, ``"positions"`` or ``"signals"``.
    index, columns
        Row and column labels taken from pandas inputs, or None.
    """

    equity: np.ndarray
    cash: np.ndarray
    returns: np.ndarray
    units: np.ndarray
    carry: np.ndarray
    fills: Fills
    open: np.ndarray = field(repr=False)
    close: np.ndarray = field(repr=False)
    targets: np.ndarray | None = field(repr=False)
    initial_cash: float
    fill: FillConvention
    cash_sharing: bool
    kind: StrategyKind
    index: pd.Index | None = field(default=None, repr=False)
    columns: pd.Index | None = field(default=None, repr=False)

    @property
    def final_equity(self) -> float:
        """Total equity of all accounts at the last close."""
        last = self.equity[-1] if len(self.equity) else np.full(1, self.initial_cash)
        return float(np.sum(last))

    @property
    def n_fills(self) -> int:
        """Number of fills."""
        return len(self.fills.bar)

    def to_backtest_result(
        self,
        *,
        name: str = "strategy",
        symbol: str = "",
        ts: pd.DatetimeIndex | None = None,
        periods_per_year: float = 252,
    ) -> BacktestResult:
        """The single-asset result as a :class:`~alphaloom.backtest.engine.BacktestResult`.

        Under ``next_open`` the rows are bars ``1 .. T - 1`` exactly as
        :func:`~alphaloom.backtest.engine.run_backtest` reports them (row 0 only decides); under ``close``
        all ``T`` bars, with ``open_weights`` and ``trade_weights`` measured at the close the trade filled at.

        Parameters
        ----------
        name, symbol
            Strategy name and traded symbol.
        ts
            UTC bar times, shape ``(T,)``; defaults to the index of pandas inputs.
        periods_per_year
            Bars per year for annualised statistics.

        Returns
        -------
        BacktestResult
            ``targets`` are the executed target weights for :func:`from_target_weights` and, for positions
            and signals, the exposure the fills produced (``open_weights``).
        """
        if self.units.ndim != 1:
            raise ConfigError(
                f"to_backtest_result needs a single-asset simulation, this one has {self.units.shape[1]} "
                "assets; simulate one column at a time, or use the panel arrays directly."
            )
        if ts is None:
            if not isinstance(self.index, pd.DatetimeIndex):
                raise ConfigError(
                    "to_backtest_result needs bar times: pass ts=bars['ts'], or simulate on pandas inputs "
                    "indexed by UTC times."
                )
            ts = self.index
        ts = pd.DatetimeIndex(ts)
        n_bars = len(self.equity)
        if len(ts) != n_bars:
            raise DataFormatError(f"ts has {len(ts)} times but the simulation has {n_bars} bars.")
        ref = (self.open if self.fill == "next_open" else self.close)[:, 0]
        close = self.close[:, 0]
        start = 1 if self.fill == "next_open" else 0
        traded = np.zeros(n_bars)
        costs = np.zeros(n_bars)
        # One asset fills at most once per bar, so plain fancy indexing places every fill.
        traded[self.fills.bar] = self.fills.units
        costs[self.fills.bar] = self.fills.cost
        units_prev = np.concatenate(([0.0], self.units[:-1]))
        cash_prev = np.concatenate(([self.initial_cash], self.cash[:-1]))
        equity_ref = cash_prev + units_prev * ref
        held_open = units_prev + traded
        positive = equity_ref > 0.0
        safe = np.where(positive, equity_ref, 1.0)
        open_weights = np.where(positive, held_open * ref / safe, 0.0)
        trade_weights = np.where(positive, traded * ref / safe, 0.0)
        ruined = self.equity <= 0.0
        traded_all = np.where(ruined, traded - held_open, traded)
        alive = self.equity > 0.0
        weights = np.where(alive, self.units * close / np.where(alive, self.equity, 1.0), 0.0)
        if self.kind == "weights" and self.targets is not None:
            targets = self.targets[: n_bars - 1, 0] if start == 1 else self.targets[:, 0]
        else:
            targets = open_weights[start:]
        return BacktestResult(
            name=name,
            symbol=symbol,
            ts=ts[start:],
            returns=self.returns[start:],
            equity=self.equity[start:],
            weights=weights[start:],
            targets=targets,
            open_weights=open_weights[start:],
            trade_weights=trade_weights[start:],
            traded_units=traded_all[start:],
            units=self.units[start:],
            cash=self.cash[start:],
            costs=costs[start:],
            initial_cash=self.initial_cash,
            periods_per_year=float(periods_per_year),
        )


# ---------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------


class _Panel(NamedTuple):
    array: np.ndarray
    one_dimensional: bool
    index: pd.Index | None
    columns: pd.Index | None


def _as_panel(name: str, values: object, dtype: type, shape: tuple[int, int] | None) -> _Panel:
    index = columns = None
    if isinstance(values, pd.DataFrame):
        index, columns = values.index, values.columns
    elif isinstance(values, pd.Series):
        index = values.index
    if isinstance(values, pd.Series | pd.DataFrame):
        if dtype is np.bool_ and not all(pd.api.types.is_bool_dtype(d) for d in np.atleast_1d(values.dtypes)):
            raise DataFormatError(
                f"{name} must be boolean, got dtype {values.dtypes!r}; missing signals are not signals: use "
                f"{name}.fillna(False).astype(bool)."
            )
        values = values.to_numpy()
    arr = np.asarray(values)
    if dtype is np.bool_:
        if arr.dtype != np.bool_:
            raise DataFormatError(
                f"{name} must be a boolean array, got dtype {arr.dtype}; build it from a comparison "
                f"(close > sma) or convert with .astype(bool) after replacing missing values."
            )
    elif not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataFormatError(f"{name} must be numeric, got dtype {arr.dtype}.")
    one_dimensional = arr.ndim == 1
    if one_dimensional:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise DataFormatError(
            f"{name} must be one-dimensional (T,) for one asset or (T, N) for a panel, got shape {arr.shape}."
        )
    if shape is not None and arr.shape != shape:
        raise DataFormatError(
            f"{name} has shape {arr.shape if not one_dimensional else arr.shape[:1]}, expected "
            f"{shape if shape[1] != 1 else shape[:1]} like close (one value per bar and asset)."
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return _Panel(arr, one_dimensional, index, columns)


def _check_prices(name: str, arr: np.ndarray) -> None:
    bad = _first_bad_price_nb(arr)
    if bad >= 0:
        t, n = divmod(bad, arr.shape[1])
        raise DataFormatError(
            f"{name} prices must be > 0 (or NaN for a bar without a price), but row {t}, column {n} is "
            f"{arr[t, n]!r}; repair or drop that bar, or set it to NaN to skip trading on it."
        )


def _check_aligned(name: str, panel: _Panel, reference: _Panel) -> None:
    if panel.index is not None and reference.index is not None and not panel.index.equals(reference.index):
        raise DataFormatError(
            f"{name} is indexed differently from close; align it with {name}.reindex(close.index) and decide "
            "what missing rows mean, so no row is matched to another bar's prices."
        )
    if (
        panel.columns is not None
        and reference.columns is not None
        and not panel.columns.equals(reference.columns)
    ):
        raise DataFormatError(
            f"{name} has columns {list(panel.columns)} but close has {list(reference.columns)}; select "
            "them in the same order."
        )


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(
            f"unknown {name} {value!r}.{did_you_mean(str(value), choices)} Valid: {', '.join(choices)}."
        )
    return value


def _positive_cash(initial_cash: float) -> float:
    if not (isinstance(initial_cash, int | float) and math.isfinite(initial_cash) and initial_cash > 0):
        raise ConfigError(f"initial_cash must be a positive amount, got {initial_cash!r}.")
    return float(initial_cash)


_EMPTY_F = np.empty((0, 0))
_EMPTY_B = np.empty((0, 0), dtype=np.bool_)


class _Prices(NamedTuple):
    open: np.ndarray
    close: np.ndarray
    reference: _Panel


def _prices(open_: npt.ArrayLike | None, close: npt.ArrayLike, fill: str) -> _Prices:
    _choice("fill convention", fill, _FILLS)
    close_panel = _as_panel("close", close, np.float64, None)
    if close_panel.array.shape[0] == 0:
        raise DataFormatError("close has no bars; a simulation needs at least one.")
    _check_prices("close", close_panel.array)
    if open_ is None:
        if fill == "next_open":
            raise ConfigError(
                'fill="next_open" fills at the next bar\'s open, so open prices are required; pass open, or '
                'fill="close" to fill at the signal bar\'s close.'
            )
        open_arr = close_panel.array
    else:
        open_panel = _as_panel("open", open_, np.float64, close_panel.array.shape)
        _check_aligned("open", open_panel, close_panel)
        _check_prices("open", open_panel.array)
        open_arr = open_panel.array
    return _Prices(open_arr, close_panel.array, close_panel)


def _optional_market(name: str, values: npt.ArrayLike | None, prices: _Prices) -> np.ndarray:
    if values is None:
        return _EMPTY_F
    panel = _as_panel(name, values, np.float64, prices.close.shape)
    _check_aligned(name, panel, prices.reference)
    return panel.array


def _carry_days(carry_days: npt.ArrayLike | None, n_bars: int) -> np.ndarray:
    if carry_days is None:
        return np.empty(0)
    days = np.ascontiguousarray(np.asarray(carry_days, dtype=np.float64))
    if days.shape != (n_bars,):
        raise DataFormatError(
            f"carry_days must have one value per bar, shape ({n_bars},), got {days.shape}; row t is the "
            "number of calendar days from the close of bar t - 1 to the close of bar t."
        )
    if not np.all(np.isfinite(days[1:]) & (days[1:] >= 0.0)):
        raise DataFormatError("carry_days must be finite and >= 0 (calendar days between closes).")
    return days


def _cost_params(costs: CostModel | None, fees: float = 0.0, slippage: float = 0.0) -> np.ndarray:
    if costs is not None:
        if fees or slippage:
            raise ConfigError(
                "pass either costs=CostModel(...) or fees/slippage, not both: fees and slippage are a "
                "shorthand for CostModel(commission_bps=fees * 1e4, slippage_bps=slippage * 1e4, "
                "spread_bps=0)."
            )
        if not isinstance(costs, CostModel):
            raise ConfigError(f"costs must be a CostModel, got {type(costs).__name__}.")
        return costs.kernel_params()
    for label, value in (("fees", fees), ("slippage", slippage)):
        if not (math.isfinite(value) and 0.0 <= value <= 0.1):
            raise ConfigError(f"{label} is a fraction of traded notional in [0, 0.1], got {value!r}.")
    return CostModel(
        commission_bps=fees * 1e4, slippage_bps=slippage * 1e4, min_commission=0.0
    ).kernel_params()


def _required_costs(costs: CostModel) -> np.ndarray:
    if not isinstance(costs, CostModel):
        raise ConfigError(
            f"costs must be a CostModel, got {type(costs).__name__}; pass CostModel(commission_bps=0.0, "
            "slippage_bps=0.0) for a frictionless run."
        )
    return costs.kernel_params()


def _run(
    mode: int,
    prices: _Prices,
    targets: np.ndarray,
    signals: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    params: np.ndarray,
    size: float,
    size_type: int,
    accumulate: bool,
    initial_cash: float,
    fill: str,
    min_trade_weight: float,
    cash_sharing: bool,
    volume: npt.ArrayLike | None,
    volatility: npt.ArrayLike | None,
    carry_days: npt.ArrayLike | None,
    keep_targets: np.ndarray | None,
    kind: StrategyKind,
) -> SimulationResult:
    if not (math.isfinite(min_trade_weight) and min_trade_weight >= 0):
        raise ConfigError(f"min_trade_weight must be >= 0, got {min_trade_weight!r}.")
    cash0 = _positive_cash(initial_cash)
    close = prices.close
    n_bars, n_assets = close.shape
    vol = _optional_market("volume", volume, prices)
    sigma = _optional_market("volatility", volatility, prices)
    days = _carry_days(carry_days, n_bars)
    n_accounts = 1 if cash_sharing else n_assets
    equity = np.empty((n_bars, n_accounts))
    cash = np.empty((n_bars, n_accounts))
    returns = np.empty((n_bars, n_accounts))
    units = np.empty((n_bars, n_assets))
    carry = np.zeros((n_bars, n_assets))
    capacity = n_bars * n_assets
    fill_bar = np.empty(capacity, dtype=np.int64)
    fill_asset = np.empty(capacity, dtype=np.int64)
    fill_cols = [np.empty(capacity) for _ in range(4)]
    n_fills = _simulate_nb(
        mode,
        prices.open,
        close,
        targets,
        *signals,
        vol,
        sigma,
        days,
        params,
        float(size),
        size_type,
        bool(accumulate),
        cash0,
        fill == "next_open",
        float(min_trade_weight),
        bool(cash_sharing),
        equity,
        cash,
        returns,
        units,
        carry,
        fill_bar,
        fill_asset,
        *fill_cols,
    )
    fills = Fills(
        fill_bar[:n_fills].copy(), fill_asset[:n_fills].copy(), *(c[:n_fills].copy() for c in fill_cols)
    )
    one_dimensional = prices.reference.one_dimensional
    if one_dimensional:
        equity, cash, returns, units, carry = (a[:, 0] for a in (equity, cash, returns, units, carry))
    return SimulationResult(
        equity=equity,
        cash=cash,
        returns=returns,
        units=units,
        carry=carry,
        fills=fills,
        open=prices.open,
        close=close,
        targets=keep_targets,
        initial_cash=cash0,
        fill=fill,  # type: ignore[arg-type]
        cash_sharing=bool(cash_sharing),
        kind=kind,
        index=prices.reference.index,
        columns=prices.reference.columns,
    )


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------


def from_target_weights(
    open: npt.ArrayLike | None,
    close: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    costs: CostModel,
    initial_cash: float = 100_000.0,
    fill: FillConvention = "next_open",
    min_trade_weight: float = 1e-4,
    cash_sharing: bool = True,
    volume: npt.ArrayLike | None = None,
    volatility: npt.ArrayLike | None = None,
    carry_days: npt.ArrayLike | None = None,
) -> SimulationResult:
    """Simulate target weights: row ``t`` is the exposure (fraction of account equity) to hold.

    Parameters
    ----------
    open, close
        Bar prices, shape ``(T,)`` or ``(T, N)``, positive or NaN (see the module's NaN policy). ``open`` may
        be None under ``fill="close"``.
    weights
        Target weights, same shape; negative is short, NaN places no order. Under ``next_open`` row ``t``
        fills at the open of bar ``t + 1`` (the last row never fills); under ``close`` at the close of bar
        ``t``.
    costs
        The cost model every fill is priced with.
    initial_cash
        Starting cash of each account, in account currency.
    fill
        ``"next_open"`` (default) or ``"close"``.
    min_trade_weight
        No-trade band: a rebalance smaller than this fraction of account equity is skipped (1 bp by
        default, as :func:`~alphaloom.backtest.engine.run_backtest`).
    cash_sharing
        For a panel: one account whose equity the weights are fractions of (default), or one account per
        asset.
    volume, volatility
        Optional bar volume (units) and per-bar return volatility (fraction), same shape as ``close``, for
        the cost model's square-root impact and participation cap; NaN where unknown.
    carry_days
        Optional calendar days from each previous close to this close, shape ``(T,)``; when given, the
        cost model's borrow and financing are charged on each position held overnight, valued at the
        previous close, before the bar trades.

    Returns
    -------
    SimulationResult
        With the default conventions on one asset, ``.to_backtest_result(ts=...)`` equals
        :func:`~alphaloom.backtest.engine.run_backtest` on the same bars and weights.
    """
    prices = _prices(open, close, fill)
    panel = _as_panel("weights", weights, np.float64, prices.close.shape)
    _check_aligned("weights", panel, prices.reference)
    bad = _first_infinite_nb(panel.array)
    if bad >= 0:
        t, n = divmod(bad, panel.array.shape[1])
        raise DataFormatError(
            f"weights must be finite or NaN (no order), but row {t}, column {n} is {panel.array[t, n]!r}."
        )
    return _run(
        _MODE_WEIGHTS,
        prices,
        panel.array,
        (_EMPTY_B, _EMPTY_B, _EMPTY_B, _EMPTY_B),
        params=_required_costs(costs),
        size=1.0,
        size_type=0,
        accumulate=False,
        initial_cash=initial_cash,
        fill=fill,
        min_trade_weight=min_trade_weight,
        cash_sharing=cash_sharing,
        volume=volume,
        volatility=volatility,
        carry_days=carry_days,
        keep_targets=panel.array,
        kind="weights",
    )


def from_positions(
    open: npt.ArrayLike | None,
    close: npt.ArrayLike,
    positions: npt.ArrayLike,
    *,
    costs: CostModel,
    size_type: PositionSizing = "units",
    size: float = 1.0,
    initial_cash: float = 100_000.0,
    fill: FillConvention = "next_open",
    min_trade_weight: float = 0.0,
    cash_sharing: bool = True,
    volume: npt.ArrayLike | None = None,
    volatility: npt.ArrayLike | None = None,
    carry_days: npt.ArrayLike | None = None,
) -> SimulationResult:
    """Simulate target positions, held in units between changes.

    Parameters
    ----------
    open, close
        Bar prices, shape ``(T,)`` or ``(T, N)`` (see :func:`from_target_weights`).
    positions
        Same shape. With ``size_type="units"`` the target position is ``positions * size`` units, every row.
        With ``size_type="fraction"`` a row whose value differs from the previous row's (the first non-NaN
        row included) trades to ``positions * size`` of account equity, and the units are then held, with no
        rebalancing, until the value changes again (e.g. -1/0/+1 states with ``size=0.5``). NaN holds.
    costs, initial_cash, fill, min_trade_weight, cash_sharing, volume, volatility, carry_days
        As for :func:`from_target_weights` (``min_trade_weight`` defaults to 0: every change trades).
    size
        Units per position step (``"units"``) or fraction of equity per step (``"fraction"``).

    Returns
    -------
    SimulationResult
    """
    prices = _prices(open, close, fill)
    _choice("size_type", size_type, _POSITION_SIZINGS)
    if not (math.isfinite(size) and size > 0):
        raise ConfigError(f"size must be a positive number, got {size!r}.")
    panel = _as_panel("positions", positions, np.float64, prices.close.shape)
    _check_aligned("positions", panel, prices.reference)
    bad = _first_infinite_nb(panel.array)
    if bad >= 0:
        t, n = divmod(bad, panel.array.shape[1])
        raise DataFormatError(
            f"positions must be finite or NaN (hold), but row {t}, column {n} is {panel.array[t, n]!r}."
        )
    targets = panel.array * size
    mode = _MODE_UNITS
    if size_type == "fraction":
        mode = _MODE_WEIGHTS
        # Keep only the rows where the state changes: NaN rows hold, so units do not drift back to weight.
        state = pd.DataFrame(panel.array).ffill().to_numpy()
        previous = np.vstack([np.full((1, state.shape[1]), np.nan), state[:-1]])
        changed = ~np.isnan(state) & ((state != previous) | np.isnan(previous))
        targets = np.ascontiguousarray(np.where(changed, state * size, np.nan))
    return _run(
        mode,
        prices,
        targets,
        (_EMPTY_B, _EMPTY_B, _EMPTY_B, _EMPTY_B),
        params=_required_costs(costs),
        size=1.0,
        size_type=0,
        accumulate=False,
        initial_cash=initial_cash,
        fill=fill,
        min_trade_weight=min_trade_weight,
        cash_sharing=cash_sharing,
        volume=volume,
        volatility=volatility,
        carry_days=carry_days,
        keep_targets=panel.array,
        kind="positions",
    )


def from_signals(
    open: npt.ArrayLike | None,
    close: npt.ArrayLike,
    entries: npt.ArrayLike,
    exits: npt.ArrayLike,
    short_entries: npt.ArrayLike | None = None,
    short_exits: npt.ArrayLike | None = None,
    *,
    size: float = 1.0,
    size_type: SizeType = "percent",
    costs: CostModel | None = None,
    fees: float = 0.0,
    slippage: float = 0.0,
    initial_cash: float = 100_000.0,
    fill: FillConvention = "next_open",
    accumulate: bool = False,
    cash_sharing: bool = True,
    volume: npt.ArrayLike | None = None,
    volatility: npt.ArrayLike | None = None,
    carry_days: npt.ArrayLike | None = None,
) -> SimulationResult:
    """Simulate entry and exit signals, with vectorbt's ``Portfolio.from_signals`` semantics.

    How signals become trades, per asset and bar (the row's signals, then its position before the fill):

    1. A conflict cancels: a long entry with a long exit, a short entry with a short exit, and a long entry
       with a short entry on the same row are all ignored (vectorbt's ``upon_*_conflict="ignore"``).
    2. Flat: a long entry buys ``size``; a short entry sells ``size`` short; exits do nothing.
    3. Long: a long exit sells the whole position; a short entry reverses, selling the position plus a
       short of ``size`` (sized from the cash after closing); a long entry adds only with
       ``accumulate=True``.
    4. Short: mirror image (a short exit buys back the whole position; a long entry reverses).
    5. ``accumulate=True``: an entry in the direction held adds ``size``; an exit, or an entry the other
       way, reduces the position by ``size`` and never past flat.

    ``size`` by ``size_type``: ``"percent"`` (default, with ``size=1.0`` vectorbt's ``size=np.inf``): spend
    this fraction of the account's cash, fees included, or (reductions) sell this fraction of the position;
    ``"value"``: this much account currency at the reference price; ``"units"``: this many units. Buys,
    short covers included, are limited to the cash there is (a partial fill), as in vectorbt; shorts are
    not limited. In a shared-cash panel the assets of a row are filled in column order.

    Parameters
    ----------
    open, close
        Bar prices, shape ``(T,)`` or ``(T, N)``; ``open`` may be None under ``fill="close"``.
    entries, exits
        Long entry and exit signals, boolean, same shape.
    short_entries, short_exits
        Optional short entry and exit signals; without them the strategy is long only.
    size, size_type
        See above. ``"percent"`` needs ``0 < size <= 1``.
    costs
        The cost model; or give ``fees`` (commission as a fraction of notional, vectorbt's ``fees``) and
        ``slippage`` (price fraction against us, vectorbt's ``slippage``) instead.
    initial_cash, fill, cash_sharing, volume, volatility, carry_days
        As for :func:`from_target_weights`.
    accumulate
        Allow adding to and reducing positions (see above).

    Returns
    -------
    SimulationResult
    """
    prices = _prices(open, close, fill)
    code = _SIZE_TYPES[_choice("size_type", size_type, tuple(_SIZE_TYPES))]
    if not (math.isfinite(size) and size > 0):
        raise ConfigError(f"size must be a positive number, got {size!r}.")
    if code == _SIZE_PERCENT and size > 1.0:
        raise ConfigError(f'size_type="percent" takes a fraction in (0, 1], got size={size!r}.')
    if (short_entries is None) != (short_exits is None):
        raise ConfigError("give both short_entries and short_exits, or neither (long only).")
    shape = prices.close.shape
    arrays = []
    for name, values in (
        ("entries", entries),
        ("exits", exits),
        ("short_entries", short_entries),
        ("short_exits", short_exits),
    ):
        if values is None:
            arrays.append(_EMPTY_B)
            continue
        panel = _as_panel(name, values, np.bool_, shape)
        _check_aligned(name, panel, prices.reference)
        arrays.append(panel.array)
    return _run(
        _MODE_SIGNALS,
        prices,
        _EMPTY_F,
        (arrays[0], arrays[1], arrays[2], arrays[3]),
        params=_cost_params(costs, fees, slippage),
        size=size,
        size_type=code,
        accumulate=accumulate,
        initial_cash=initial_cash,
        fill=fill,
        min_trade_weight=0.0,
        cash_sharing=cash_sharing,
        volume=volume,
        volatility=volatility,
        carry_days=carry_days,
        keep_targets=None,
        kind="signals",
    )


# ---------------------------------------------------------------------------------------------------------
# Look-ahead check
# ---------------------------------------------------------------------------------------------------------


def _as_outputs(value: object) -> list[np.ndarray]:
    items = value if isinstance(value, tuple | list) else [value]
    return [
        np.asarray(item.to_numpy() if isinstance(item, pd.Series | pd.DataFrame) else item) for item in items
    ]


def check_causal(
    strategy: Callable[[pd.DataFrame], object],
    data: pd.DataFrame,
    *,
    cuts: int | Sequence[int] = 10,
    seed: int = 0,
) -> None:
    """Check that a strategy's decisions at a bar never change when later bars are removed.

    A vectorised strategy computes its decisions for all bars at once, so nothing stops it from reading a
    later bar (``close.shift(-1)``, a centred window, a full-sample normalisation). This runs ``strategy``
    on the whole of ``data`` and again on ``data[: k + 1]`` for several cut points ``k``; a causal strategy
    gives the same decisions up to ``k`` both times.

    Parameters
    ----------
    strategy
        Takes a frame of bars (rows in time order) and returns its decisions: an array, a Series or a frame
        with one row per bar, or a tuple of them (e.g. entries and exits).
    data
        The bars.
    cuts
        How many random cut points to try, or the cut rows themselves.
    seed
        Seed for the random cut points.

    Raises
    ------
    DataValidationError
        Naming the first cut and row where the decisions differ: the strategy looks ahead.
    """
    n_rows = len(data)
    if isinstance(cuts, int):
        rng = np.random.default_rng(seed)
        points = sorted(set(rng.integers(0, max(n_rows - 1, 1), size=cuts).tolist()))
    else:
        points = sorted(int(k) for k in cuts)
    full = _as_outputs(strategy(data))
    for k in points:
        part = _as_outputs(strategy(data.iloc[: k + 1]))
        for i, (whole, cut) in enumerate(zip(full, part, strict=True)):
            head = whole[: k + 1]
            if head.shape != cut.shape:
                raise DataValidationError(
                    f"strategy output {i} has shape {cut.shape} on the first {k + 1} bars but "
                    f"{head.shape[0]} rows of the full output cover them; it must return one row per bar."
                )
            same = (head == cut) | (pd.isna(head) & pd.isna(cut))
            if not np.all(same):
                row = int(np.flatnonzero(~np.asarray(same).reshape(len(cut), -1).all(axis=1))[0])
                raise DataValidationError(
                    f"the strategy looks ahead: its output {i} at row {row} is {cut[row]!r} when the data "
                    f"ends at row {k} but {head[row]!r} with the full data, so it used bars after row {row}. "
                    "Compute each decision from past bars only (e.g. shift(1), rolling windows, expanding "
                    "statistics)."
                )
