"""Performance and risk measures as pure functions, each defined once.

The backtest statistics, the HTML report, RL rewards and the registry's promotion gates all call these, so a
Sharpe ratio means the same thing everywhere.

Conventions
-----------
Inputs
    ``returns`` are simple (not log) returns per bar, shape ``(n,)``, as fractions (0.01 is 1 %); ``weights``
    are exposures as fractions of equity, shape ``(n,)``. Anything :func:`numpy.asarray` accepts is taken.
Annualisation
    ``periods_per_year`` is the number of bars in a year: 252 for daily stock bars, 260 for daily forex,
    365 for daily crypto (see :func:`alphaloom.backtest.periods_per_year_for`).
NaN policy
    NaN is not skipped: a NaN in the input gives a NaN result, so missing data is never silently read as a
    flat bar. A measure that is undefined for its input (a ratio over zero volatility, a standard deviation
    of fewer than two returns, any ratio of an empty series) is NaN, never an error or a warning. The one
    exception is :func:`max_drawdown_duration`, a count of bars, which refuses NaN.
Drawdowns
    Positive fractions of the running peak of equity, the peak including the starting equity, so a loss on
    the first bar is already a drawdown. They lie in [0, 1] while every return is at least -1.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt

from alphaloom.core.exceptions import ConfigError, DataFormatError

__all__ = [
    "annualised_volatility",
    "cagr",
    "calmar_ratio",
    "drawdown_series",
    "equity_curve",
    "exposure",
    "hit_rate",
    "max_drawdown",
    "max_drawdown_duration",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "turnover",
]


def _vector(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional with shape (n,), got shape {arr.shape}.")
    return arr


def _ppy(periods_per_year: float) -> float:
    if not (isinstance(periods_per_year, numbers.Real) and 0.0 < float(periods_per_year) < math.inf):
        raise ConfigError(
            f"periods_per_year must be a positive number of bars per year (252 for daily stocks), "
            f"got {periods_per_year!r}."
        )
    return float(periods_per_year)


def equity_curve(returns: npt.ArrayLike, initial: float = 1.0) -> np.ndarray:
    """Equity after each bar, ``initial * cumprod(1 + returns)``.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    initial
        Equity before the first bar.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``; the starting equity itself is not included. NaN from the first NaN return on.
    """
    r = _vector(returns, "returns")
    return float(initial) * np.cumprod(1.0 + r)


def total_return(returns: npt.ArrayLike) -> float:
    """Compounded return over the whole series, ``prod(1 + returns) - 1``; 0.0 for an empty series.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    """
    r = _vector(returns, "returns")
    return float(np.prod(1.0 + r) - 1.0)


def cagr(returns: npt.ArrayLike, periods_per_year: float = 252) -> float:
    """Compound annual growth rate, ``prod(1 + returns) ** (periods_per_year / n) - 1``.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    periods_per_year
        Bars per year.

    Returns
    -------
    float
        NaN for an empty series; -1.0 when the equity was wiped out (growth factor at or below 0).
    """
    r = _vector(returns, "returns")
    ppy = _ppy(periods_per_year)
    if r.size == 0:
        return math.nan
    growth = float(np.prod(1.0 + r))
    if math.isnan(growth):
        return math.nan
    if growth <= 0.0:
        return -1.0
    return growth ** (ppy / r.size) - 1.0


def annualised_volatility(returns: npt.ArrayLike, periods_per_year: float = 252) -> float:
    """Sample standard deviation of returns (``ddof=1``) times ``sqrt(periods_per_year)``.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    periods_per_year
        Bars per year.

    Returns
    -------
    float
        NaN for fewer than two returns.
    """
    r = _vector(returns, "returns")
    ppy = _ppy(periods_per_year)
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(ppy))


def sharpe_ratio(returns: npt.ArrayLike, periods_per_year: float = 252, risk_free_rate: float = 0.0) -> float:
    """Annualised Sharpe ratio: mean excess return over its sample standard deviation, times sqrt(ppy).

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    periods_per_year
        Bars per year.
    risk_free_rate
        Annual risk-free rate as a fraction; ``risk_free_rate / periods_per_year`` is taken off each bar.

    Returns
    -------
    float
        NaN for fewer than two returns or zero volatility.
    """
    r = _vector(returns, "returns")
    ppy = _ppy(periods_per_year)
    if r.size < 2:
        return math.nan
    excess = r - risk_free_rate / ppy
    std = float(np.std(excess, ddof=1))
    if not std > 0.0:
        return math.nan
    return float(np.mean(excess)) / std * math.sqrt(ppy)


def sortino_ratio(returns: npt.ArrayLike, periods_per_year: float = 252, target_return: float = 0.0) -> float:
    """Annualised Sortino ratio: mean return above ``target_return`` over the downside deviation.

    The downside deviation is ``sqrt(mean(min(returns - target_return, 0) ** 2))`` over all bars (bars above
    the target count as zero), as Sortino and Price define it.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    periods_per_year
        Bars per year.
    target_return
        Minimum acceptable return per bar.

    Returns
    -------
    float
        NaN for fewer than two returns or when no bar fell below the target.
    """
    r = _vector(returns, "returns")
    ppy = _ppy(periods_per_year)
    if r.size < 2:
        return math.nan
    excess = r - target_return
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    if not downside > 0.0:
        return math.nan
    return float(np.mean(excess)) / downside * math.sqrt(ppy)


def drawdown_series(returns: npt.ArrayLike) -> np.ndarray:
    """Drawdown after each bar: ``1 - equity / running peak``, the peak including the starting equity.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, positive fractions (0 at a new peak, 1 when equity is gone).
    """
    equity = equity_curve(returns, 1.0)
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    return 1.0 - equity / peak


def max_drawdown(returns: npt.ArrayLike) -> float:
    """Largest drawdown as a positive fraction (0.25 is a 25 % fall from the peak); 0.0 for an empty series.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    """
    dd = drawdown_series(returns)
    if dd.size == 0:
        return 0.0
    return float(np.max(dd))


def max_drawdown_duration(returns: npt.ArrayLike) -> int:
    """Longest run of consecutive bars spent below the previous equity peak, in bars.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``; must not contain NaN.

    Returns
    -------
    int
        0 when equity never fell below its peak.
    """
    r = _vector(returns, "returns")
    if np.isnan(r).any():
        raise DataFormatError("max_drawdown_duration needs returns without NaN; drop or fill them first.")
    underwater = drawdown_series(r) > 0.0
    if not underwater.any():
        return 0
    # Lengths of the True runs: positions where runs start and end, from the edges of the padded mask.
    edges = np.diff(np.concatenate(([0], underwater.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return int(np.max(ends - starts))


def calmar_ratio(returns: npt.ArrayLike, periods_per_year: float = 252) -> float:
    """CAGR over maximum drawdown.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    periods_per_year
        Bars per year.

    Returns
    -------
    float
        NaN when there was no drawdown or the series is empty.
    """
    mdd = max_drawdown(returns)
    if not mdd > 0.0:
        return math.nan
    return cagr(returns, periods_per_year) / mdd


def hit_rate(returns: npt.ArrayLike) -> float:
    """Share of winning bars among bars with a non-zero return.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.

    Returns
    -------
    float
        In [0, 1]; NaN when no bar had a non-zero return (the strategy never had a position).
    """
    r = _vector(returns, "returns")
    if np.isnan(r).any():
        return math.nan
    active = r[r != 0.0]
    if active.size == 0:
        return math.nan
    return float(np.count_nonzero(active > 0.0) / active.size)


def turnover(
    weights: npt.ArrayLike, *, before: npt.ArrayLike | None = None, initial_weight: float = 0.0
) -> float:
    """Mean absolute weight change per bar.

    Parameters
    ----------
    weights
        Weights after each rebalance, shape ``(n,)``.
    before
        Weights just before each rebalance, shape ``(n,)``: pass these when weights drift between
        rebalances (with the price), so only traded changes count. By default the previous element of
        ``weights`` is used, with ``initial_weight`` before the first.
    initial_weight
        Weight before the first bar when ``before`` is not given.

    Returns
    -------
    float
        Average of ``|weights - before|``, a fraction of equity traded per bar (0.5 means half the equity
        changes hands every bar on average); NaN for an empty series.
    """
    w = _vector(weights, "weights")
    if before is None:
        prior = np.concatenate(([float(initial_weight)], w[:-1]))
    else:
        prior = _vector(before, "before")
        if prior.shape != w.shape:
            raise DataFormatError(f"before has shape {prior.shape} but weights has shape {w.shape}.")
    if w.size == 0:
        return math.nan
    return float(np.mean(np.abs(w - prior)))


def exposure(weights: npt.ArrayLike, *, tolerance: float = 0.0) -> float:
    """Share of bars holding a position, ``mean(|weights| > tolerance)``.

    Parameters
    ----------
    weights
        Exposure at each bar, shape ``(n,)``.
    tolerance
        Weights this small or smaller count as flat.

    Returns
    -------
    float
        In [0, 1]; NaN for an empty series or when a weight is NaN.
    """
    w = _vector(weights, "weights")
    if w.size == 0 or np.isnan(w).any():
        return math.nan
    return float(np.mean(np.abs(w) > tolerance))
