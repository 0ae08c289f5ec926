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

Inference on the Sharpe ratio
-----------------------------
A backtest's Sharpe ratio is an estimate, and the best of many backtests is a biased one. Four tools say how
much of it to believe:

* :func:`probabilistic_sharpe_ratio` (PSR): the probability that the true Sharpe ratio beats a benchmark,
  allowing for the sample length, skewness and fat tails (Bailey & López de Prado, 2012).
* :func:`deflated_sharpe_ratio` (DSR): the PSR against the Sharpe ratio the best of ``n_trials`` worthless
  strategies would show by luck (Bailey & López de Prado, 2014).
* :func:`probability_of_backtest_overfitting` (PBO): how often the in-sample winner of a set of strategies
  falls to the bottom half out of sample, by combinatorially symmetric cross-validation (Bailey, Borwein,
  López de Prado & Zhu, 2015).
* :func:`bootstrap_confidence_interval`: a block-bootstrap interval for any measure of serially dependent
  returns (Politis & Romano, 1994; Künsch, 1989).

These work on the **per-bar** Sharpe ratio, ``sharpe_ratio(returns, periods_per_year=1)``, not the
annualised one; :func:`per_period_sharpe` converts an annual benchmark. The PSR and DSR follow the NaN policy
above; the PBO refuses NaN in its matrix (a ranking has no place for a missing value); the bootstrap gives a
NaN interval for a series with NaN.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Mapping
from statistics import NormalDist
from types import MappingProxyType
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean

__all__ = [
    "SUMMARY_UNITS",
    "ConfidenceInterval",
    "DeflatedSharpe",
    "DieboldMariano",
    "PBOResult",
    "annualised_volatility",
    "bootstrap_confidence_interval",
    "cagr",
    "calmar_ratio",
    "deflated_sharpe_ratio",
    "deflated_sharpe_ratio_from_trials",
    "diebold_mariano",
    "drawdown_series",
    "equity_curve",
    "expected_max_sharpe",
    "exposure",
    "hit_rate",
    "max_drawdown",
    "max_drawdown_duration",
    "per_period_sharpe",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "sharpe_ratio",
    "sortino_ratio",
    "summary_statistics",
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
        Simple returns per bar, shape ``(n,)``. Pass the return of each closed trade instead for the
        share of winning trades.

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


# ----------------------------------------------------------------------------------------------------------
# Inference on the Sharpe ratio: PSR, DSR, PBO and bootstrap intervals.
# ----------------------------------------------------------------------------------------------------------

_EULER_GAMMA = 0.5772156649015329
_STANDARD_NORMAL = NormalDist()
# Bounds the memory of one vectorised step (resample indices, combination sums) to about 32 MB of float64.
_CHUNK_ELEMENTS = 1 << 22
# The sum-based Sharpe of the PBO's default metric cannot tell a standard deviation below about 1e-8 of the
# column's scale from rounding noise; anything under this floor is treated as zero volatility (NaN Sharpe).
_RELATIVE_STD_FLOOR = 1e-7


def _real(value: object, name: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number ({hint}), got {value!r}.")
    return float(value)


def _positive_int(value: object, name: str, hint: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum} ({hint}), got {value!r}.")
    return int(value)


def _normal_cdf(z: float) -> float:
    # erfc keeps precision far into the lower tail, where 0.5 * (1 + erf) rounds to 0.
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _skewness_kurtosis(r: np.ndarray) -> tuple[float, float]:
    # Moment (biased) estimators, as in Bailey & López de Prado; kurtosis is not excess (3 for a normal).
    centred = r - np.mean(r)
    m2 = float(np.mean(centred**2))
    if not m2 > 0.0:
        return math.nan, math.nan
    return float(np.mean(centred**3)) / m2**1.5, float(np.mean(centred**4)) / m2**2


def _psr(r: np.ndarray, benchmark: float) -> float:
    sr = sharpe_ratio(r, periods_per_year=1)
    if math.isnan(sr) or math.isnan(benchmark):
        return math.nan
    skew, kurt = _skewness_kurtosis(r)
    # Variance of the Sharpe estimate times n (Mertens, 2002); never negative since kurt >= 1 + skew ** 2.
    variance = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not variance > 0.0:
        return math.nan
    return _normal_cdf((sr - benchmark) * math.sqrt(r.size - 1) / math.sqrt(variance))


def per_period_sharpe(sharpe_annual: float, periods_per_year: float = 252) -> float:
    """Convert an annualised Sharpe ratio to a per-bar one, ``sharpe_annual / sqrt(periods_per_year)``.

    Use it to state a benchmark for :func:`probabilistic_sharpe_ratio`, which works per bar. A variance of
    annualised Sharpe ratios converts by dividing by ``periods_per_year``.

    Parameters
    ----------
    sharpe_annual
        Annualised Sharpe ratio (1.0 is one unit of annual volatility per year).
    periods_per_year
        Bars per year.
    """
    ppy = _ppy(periods_per_year)
    return _real(sharpe_annual, "sharpe_annual", "an annualised Sharpe ratio such as 1.0") / math.sqrt(ppy)


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (Bailey & López de Prado, 2012).

    ``PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR ** 2))``, with ``SR`` the
    per-bar Sharpe ratio (:func:`sharpe_ratio` with ``periods_per_year=1``), ``skew`` and ``kurt`` the
    sample skewness and (non-excess) kurtosis of the returns, ``n`` their number and ``Phi`` the standard
    normal CDF. Short samples, negative skew and fat tails all widen the uncertainty and pull the PSR
    towards 0.5.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    benchmark_sharpe
        The Sharpe ratio to beat, **per bar** (not annualised); convert an annual one with
        :func:`per_period_sharpe`, e.g. ``per_period_sharpe(1.0, 252)``.

    Returns
    -------
    float
        In [0, 1]; 0.5 when the estimate equals the benchmark. NaN for fewer than two returns, zero
        volatility or a NaN in the returns.
    """
    r = _vector(returns, "returns")
    benchmark = _real(benchmark_sharpe, "benchmark_sharpe", "a per-bar Sharpe ratio; 0.0 by default")
    return _psr(r, benchmark)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected largest Sharpe ratio among ``n_trials`` independent strategies whose true Sharpe is zero.

    The false-strategy theorem of Bailey & López de Prado (2014):
    ``sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))``, with ``g`` the Euler–Mascheroni
    constant, ``V`` the variance of the trials' Sharpe ratios and ``N`` the number of trials. It is the bar
    a selected strategy must clear to be more than the luck of the draw.

    Parameters
    ----------
    n_trials
        Number of independent strategies tried (configurations, models, parameter sets), at least 1.
        Correlated trials count for fewer; use an effective number if you have one.
    sharpe_variance
        Variance of the trials' Sharpe ratios across trials, in the units of the result: per-bar Sharpe
        ratios for :func:`deflated_sharpe_ratio` (divide a variance of annualised ones by
        ``periods_per_year``).

    Returns
    -------
    float
        In the units of ``sqrt(sharpe_variance)``; 0.0 for a single trial or zero variance, NaN for a NaN
        variance. Grows with ``n_trials``, roughly as ``sqrt(2 * log(n_trials))``.
    """
    n = _positive_int(n_trials, "n_trials", "the number of strategies tried, 1 when only one was")
    var = _real(sharpe_variance, "sharpe_variance", "the variance of the trials' Sharpe ratios")
    if math.isnan(var):
        return math.nan
    if not 0.0 <= var < math.inf:
        raise ConfigError(
            f"sharpe_variance must be a finite variance >= 0 of the trials' Sharpe ratios, got {var!r}."
        )
    if n == 1:
        return 0.0
    # Phi^-1(1 - q) written as -Phi^-1(q), which stays exact for very many trials.
    z_n = -_STANDARD_NORMAL.inv_cdf(1.0 / n)
    z_ne = -_STANDARD_NORMAL.inv_cdf(1.0 / (n * math.e))
    return math.sqrt(var) * ((1.0 - _EULER_GAMMA) * z_n + _EULER_GAMMA * z_ne)


def deflated_sharpe_ratio(returns: npt.ArrayLike, n_trials: int, trials_sharpe_variance: float) -> float:
    """Probability that the Sharpe ratio is real after trying ``n_trials`` strategies (Bailey & López de
    Prado, 2014).

    The :func:`probabilistic_sharpe_ratio` of ``returns`` against :func:`expected_max_sharpe` of the trials,
    so a strategy picked as the best of many is judged against the best that luck alone would give. With one
    trial it is the PSR against zero.

    Parameters
    ----------
    returns
        Simple returns per bar of the selected strategy, shape ``(n,)``.
    n_trials
        Number of independent strategies tried, the selected one included.
    trials_sharpe_variance
        Variance across the trials of their **per-bar** Sharpe ratios; estimate it with
        :func:`deflated_sharpe_ratio_from_trials` when the trials' returns are at hand.

    Returns
    -------
    float
        In [0, 1]; lower than the PSR whenever ``n_trials > 1`` and the variance is positive. NaN as for
        :func:`probabilistic_sharpe_ratio`, or for a NaN variance.
    """
    r = _vector(returns, "returns")
    return _psr(r, expected_max_sharpe(n_trials, trials_sharpe_variance))


class DeflatedSharpe(NamedTuple):
    """The deflated Sharpe ratio of the strategy chosen from a set of trials, and what went into it."""

    dsr: float
    """Probability that the chosen strategy's true Sharpe ratio beats ``expected_max_sharpe``."""
    chosen: int
    """Column of the chosen strategy."""
    sharpe_per_bar: float
    """Per-bar Sharpe ratio of the chosen strategy."""
    expected_max_sharpe: float
    """Per-bar Sharpe ratio the best of ``n_trials`` worthless strategies would show."""
    n_trials: int
    """Number of trials (columns)."""
    sharpe_variance: float
    """Sample variance (``ddof=1``) of the trials' per-bar Sharpe ratios; 0.0 for a single trial."""


def deflated_sharpe_ratio_from_trials(
    trial_returns: npt.ArrayLike, chosen: int | None = None
) -> DeflatedSharpe:
    """Deflated Sharpe ratio of one of several backtested strategies, the trial statistics estimated from all.

    Parameters
    ----------
    trial_returns
        Simple returns per bar of every strategy tried, shape ``(n, n_trials)``: one column per trial, rows
        aligned in time. Every trial counts, failures included; leaving them out flatters the survivor.
    chosen
        Column of the strategy to judge; by default the one with the highest per-bar Sharpe ratio, which is
        what a selection by Sharpe would have kept.

    Returns
    -------
    DeflatedSharpe
        ``dsr`` is NaN when a trial's Sharpe ratio is undefined (a NaN return, fewer than two rows, a
        constant column such as a strategy that never traded): drop such trials only if they were never
        candidates.
    """
    m = np.asarray(trial_returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] == 0:
        raise DataFormatError(
            f"trial_returns must have shape (n, n_trials), one column per trial, got shape {m.shape}; "
            "stack per-trial return vectors with np.column_stack."
        )
    k = m.shape[1]
    sharpes = np.array([sharpe_ratio(m[:, j], periods_per_year=1) for j in range(k)])
    if chosen is None:
        chosen_col = 0 if np.isnan(sharpes).all() else int(np.nanargmax(sharpes))
    else:
        if isinstance(chosen, bool) or not isinstance(chosen, numbers.Integral) or not -k <= chosen < k:
            raise ConfigError(
                f"chosen must be a column index of trial_returns in [0, {k}), got {chosen!r}; leave it "
                "None to take the trial with the highest Sharpe ratio."
            )
        chosen_col = int(chosen) % k
    variance = float(np.var(sharpes, ddof=1)) if k > 1 else 0.0
    benchmark = expected_max_sharpe(k, variance)
    return DeflatedSharpe(
        dsr=_psr(m[:, chosen_col], benchmark),
        chosen=chosen_col,
        sharpe_per_bar=float(sharpes[chosen_col]),
        expected_max_sharpe=benchmark,
        n_trials=k,
        sharpe_variance=variance,
    )


class PBOResult(NamedTuple):
    """Outcome of combinatorially symmetric cross-validation, one entry per train/test combination."""

    pbo: float
    """Probability of backtest overfitting: the share of combinations with ``logits <= 0``."""
    logits: np.ndarray
    """Shape ``(n_combinations,)``: ``log(w / (1 - w))`` of the in-sample winner's out-of-sample relative
    rank ``w = rank / (n_strategies + 1)``; positive when it stays in the top half."""
    is_performance: np.ndarray
    """Shape ``(n_combinations,)``: the in-sample winner's metric on the training half."""
    oos_performance: np.ndarray
    """Shape ``(n_combinations,)``: the same strategy's metric on the testing half."""
    selected: np.ndarray
    """Shape ``(n_combinations,)``: column of the in-sample winner."""
    n_combinations_total: int
    """``C(n_splits, n_splits / 2)``; more than ``len(logits)`` when the combinations were sampled."""


def _sharpe_from_sums(
    sums: np.ndarray, sumsq: np.ndarray, count: int, centre: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    if count < 2:
        return np.full(sums.shape, np.nan)
    mean_c = sums / count
    std = np.sqrt(np.maximum(sumsq - sums * mean_c, 0.0) / (count - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (mean_c + centre) / std
    out[std <= _RELATIVE_STD_FLOOR * scale] = np.nan
    return out


def _metric_scores(metric: Callable[[np.ndarray], npt.ArrayLike], block: np.ndarray) -> np.ndarray:
    scores = np.asarray(metric(block), dtype=np.float64)
    if scores.shape != (block.shape[1],):
        raise ConfigError(
            f"metric must map a (rows, n_strategies) block to one score per strategy, shape "
            f"({block.shape[1]},), but it returned shape {scores.shape}; wrap a per-series measure as "
            "metric=lambda block: np.apply_along_axis(sortino_ratio, 0, block)."
        )
    return scores


def _sample_combinations(n_splits: int, k: int, rng: np.random.Generator) -> np.ndarray:
    half = n_splits // 2
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < k:
        draw = np.sort(np.argsort(rng.random((k, n_splits)), axis=1)[:, :half], axis=1)
        for row in map(tuple, draw.tolist()):
            seen.setdefault(row, None)
            if len(seen) == k:
                break
    return np.array(list(seen), dtype=np.intp)


def probability_of_backtest_overfitting(
    performance_matrix: npt.ArrayLike,
    n_splits: int = 16,
    metric: Callable[[np.ndarray], npt.ArrayLike] | None = None,
    *,
    max_combinations: int = 20_000,
    seed: int = 0,
) -> PBOResult:
    """Probability that selecting the in-sample best strategy overfits, by CSCV (Bailey et al., 2015).

    The rows are cut into ``n_splits`` equal blocks in time order. For every way of taking half of the
    blocks as the training set (the rest is the testing set), the strategy with the best ``metric`` on the
    training set is found and its relative rank ``w`` among all strategies on the testing set recorded as a
    logit ``log(w / (1 - w))``. The PBO is the share of combinations where the winner ranks at or below the
    out-of-sample median (logit <= 0): about 0.5 when the strategies are indistinguishable noise, near 0
    when one is truly better, near 1 when in-sample success predicts out-of-sample failure.

    Parameters
    ----------
    performance_matrix
        Shape ``(n_bars, n_strategies)``: the return of each strategy (column) at each bar (row), rows in
        time order, at least two strategies. When ``n_bars`` is not a multiple of ``n_splits`` the oldest
        ``n_bars % n_splits`` rows are dropped so the blocks are equal.
    n_splits
        Number of blocks ``S``, even, at least 2 and at most ``n_bars``. There are ``C(S, S/2)``
        combinations, 12,870 for the default 16.
    metric
        Scores a block of rows: called with an array of shape ``(rows, n_strategies)`` (the rows of the
        training or testing set, in time order) it returns shape ``(n_strategies,)``, higher is better. By
        default the per-bar Sharpe ratio of each column, as :func:`sharpe_ratio` with
        ``periods_per_year=1`` but computed for all combinations at once; a custom metric is called twice per
        combination. A strategy whose score is NaN (e.g. no volatility) ranks below every other.
    max_combinations
        Cap on the combinations evaluated. When ``C(S, S/2)`` exceeds it, that many distinct combinations
        are drawn at random with ``seed``; otherwise all are taken in lexicographic order.
    seed
        Seed of that draw, so the result is reproducible.

    Returns
    -------
    PBOResult
        ``pbo`` in [0, 1], the logits and the winner's in-sample and out-of-sample scores per combination.
        Ties in the training set go to the first column; tied testing scores share their average rank.

    Raises
    ------
    DataFormatError
        For a matrix that is not 2-D, has fewer than two columns or holds NaN or infinite values.
    ConfigError
        For an invalid ``n_splits``, ``max_combinations`` or ``metric``.
    """
    x = np.asarray(performance_matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise DataFormatError(
            f"performance_matrix must have shape (n_bars, n_strategies) with at least two strategies, got "
            f"shape {x.shape}; put one strategy's returns per column."
        )
    if not np.isfinite(x).all():
        raise DataFormatError(
            f"performance_matrix holds {int(np.count_nonzero(~np.isfinite(x)))} NaN or infinite value(s); "
            "drop those rows or fill them (0.0 for a bar a strategy was flat) first."
        )
    n_bars, n_strategies = x.shape
    s = _positive_int(n_splits, "n_splits", "an even number of time blocks such as 16", minimum=2)
    if s % 2 or s > n_bars:
        raise ConfigError(
            f"n_splits must be even and at most the {n_bars} rows of performance_matrix, got {n_splits!r}; "
            "16 is the usual choice for a few years of daily bars."
        )
    cap = _positive_int(max_combinations, "max_combinations", "how many train/test combinations to use")
    if metric is not None and not callable(metric):
        raise ConfigError(f"metric must be a callable or None, got {metric!r}.")

    block = n_bars // s
    x = x[n_bars - block * s :]
    half = s // 2
    total = math.comb(s, half)
    if total <= cap:
        combos = np.array(list(itertools.combinations(range(s), half)), dtype=np.intp)
    else:
        combos = _sample_combinations(s, cap, np.random.default_rng(seed))
    n_comb = combos.shape[0]
    train = np.zeros((n_comb, s), dtype=bool)
    train[np.arange(n_comb)[:, None], combos] = True

    is_scores = np.empty((n_comb, n_strategies))
    oos_scores = np.empty((n_comb, n_strategies))
    if metric is None:
        # Per-block sums of the centred returns give every combination's mean and variance with one matmul.
        centre = x.mean(axis=0)
        xc = (x - centre).reshape(s, block, n_strategies)
        sums, sumsq = xc.sum(axis=1), (xc**2).sum(axis=1)
        scale = np.abs(xc).max(axis=(0, 1))
        rows = half * block
        step = max(1, _CHUNK_ELEMENTS // n_strategies)
        for lo in range(0, n_comb, step):
            w = train[lo : lo + step].astype(np.float64)
            s_in, q_in = w @ sums, w @ sumsq
            is_scores[lo : lo + step] = _sharpe_from_sums(s_in, q_in, rows, centre, scale)
            oos_scores[lo : lo + step] = _sharpe_from_sums(
                sums.sum(axis=0) - s_in, sumsq.sum(axis=0) - q_in, rows, centre, scale
            )
    else:
        block_rows = np.arange(s * block).reshape(s, block)
        for c in range(n_comb):
            is_scores[c] = _metric_scores(metric, x[block_rows[train[c]].ravel()])
            oos_scores[c] = _metric_scores(metric, x[block_rows[~train[c]].ravel()])

    # NaN scores rank below everything, in the training set and in the testing set.
    selected = np.argmax(np.where(np.isnan(is_scores), -np.inf, is_scores), axis=1)
    picked = np.arange(n_comb)
    oos_ranked = np.where(np.isnan(oos_scores), -np.inf, oos_scores)
    winner = oos_ranked[picked, selected][:, None]
    rank = np.sum(oos_ranked < winner, axis=1) + (np.sum(oos_ranked == winner, axis=1) + 1) / 2.0
    omega = rank / (n_strategies + 1.0)
    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        is_performance=is_scores[picked, selected],
        oos_performance=oos_scores[picked, selected],
        selected=selected,
        n_combinations_total=total,
    )


class ConfidenceInterval(NamedTuple):
    """A bootstrap percentile interval for a measure of a return series."""

    low: float
    """Lower bound, the ``(1 - confidence) / 2`` quantile of the resampled values."""
    high: float
    """Upper bound, the ``(1 + confidence) / 2`` quantile of the resampled values."""
    estimate: float
    """The measure on the original series."""
    confidence: float
    """Nominal coverage, e.g. 0.95."""
    samples: np.ndarray
    """Shape ``(n_resamples,)``: the measure on each resample (NaN where it was undefined)."""


_BOOTSTRAP_METHODS = ("stationary", "moving_block")


def _stationary_indices(rng: np.random.Generator, k: int, n: int, block_length: int) -> np.ndarray:
    # Each position starts a new block with probability 1 / block_length (geometric block lengths), at a
    # uniform random start; otherwise it continues the current block, wrapping around the end.
    new_block = rng.random((k, n)) < 1.0 / block_length
    new_block[:, 0] = True
    starts = rng.integers(0, n, size=(k, n))
    positions = np.arange(n)
    last_start = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    return (np.take_along_axis(starts, last_start, axis=1) + positions - last_start) % n


def _moving_block_indices(rng: np.random.Generator, k: int, n: int, block_length: int) -> np.ndarray:
    n_blocks = -(-n // block_length)
    starts = rng.integers(0, n - block_length + 1, size=(k, n_blocks))
    return (starts[:, :, None] + np.arange(block_length)).reshape(k, n_blocks * block_length)[:, :n]


def bootstrap_confidence_interval(
    returns: npt.ArrayLike,
    statistic: Callable[[np.ndarray], float] = sharpe_ratio,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    block_length: int | None = None,
    seed: int | np.random.Generator | None = 0,
    *,
    method: Literal["stationary", "moving_block"] = "stationary",
) -> ConfidenceInterval:
    """Block-bootstrap percentile confidence interval of a measure of serially dependent returns.

    Resamples of the series are built from blocks of consecutive bars, which keeps the autocorrelation and
    volatility clustering within a block that an iid bootstrap would destroy (and so understate the
    uncertainty). ``statistic`` is computed on each resample and the interval is the central ``confidence``
    share of those values.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    statistic
        Any measure of a return series, called as ``statistic(resample)`` with shape ``(n,)``; by default the
        annualised :func:`sharpe_ratio` for 252 bars a year. Bind other arguments with
        :func:`functools.partial`, e.g. ``partial(sharpe_ratio, periods_per_year=365)``.
    n_resamples
        Number of bootstrap resamples.
    confidence
        Nominal coverage, strictly between 0 and 1.
    block_length
        Mean block length in bars (``stationary``) or the fixed block length (``moving_block``); 1 gives the
        iid bootstrap. By default ``round(n ** (1/3))``, the order that is rate-optimal for variance
        estimation (Hall, Horowitz & Jing, 1995); choose longer blocks for strongly persistent series.
        Capped at ``n``.
    seed
        Seed or generator of the resampling; the default 0 makes the result reproducible.
    method
        ``"stationary"``: the stationary bootstrap of Politis & Romano (1994), geometric block lengths and
        wrap-around, so every resample is itself stationary; ``"moving_block"``: Künsch's (1989) moving block
        bootstrap with fixed-length blocks that do not wrap.

    Returns
    -------
    ConfidenceInterval
        ``low``, ``high``, the ``estimate`` on the original series and the resampled values. Resamples on
        which the statistic is NaN are left out of the quantiles; the bounds are NaN when all of them are,
        and everything is NaN (with no samples) for fewer than two returns or a NaN in the returns.
    """
    r = _vector(returns, "returns")
    if not callable(statistic):
        raise ConfigError(f"statistic must be a callable taking a returns vector, got {statistic!r}.")
    b = _positive_int(n_resamples, "n_resamples", "how many bootstrap resamples to draw, e.g. 2000")
    conf = _real(confidence, "confidence", "the nominal coverage, e.g. 0.95")
    if not 0.0 < conf < 1.0:
        raise ConfigError(
            f"confidence must lie strictly between 0 and 1 (0.95 for 95 %), got {confidence!r}."
        )
    if method not in _BOOTSTRAP_METHODS:
        raise ConfigError(
            f"unknown bootstrap method {method!r}.{did_you_mean(str(method), _BOOTSTRAP_METHODS)} "
            f"Choose one of {', '.join(map(repr, _BOOTSTRAP_METHODS))}."
        )
    if block_length is not None:
        _positive_int(block_length, "block_length", "the mean block length in bars, or None for n ** (1/3)")
    n = r.size
    if n < 2 or np.isnan(r).any():
        return ConfidenceInterval(math.nan, math.nan, math.nan, conf, np.empty(0))
    length = max(1, round(n ** (1.0 / 3.0))) if block_length is None else min(int(block_length), n)
    rng = np.random.default_rng(seed)
    draw = _stationary_indices if method == "stationary" else _moving_block_indices
    samples = np.empty(b)
    step = max(1, _CHUNK_ELEMENTS // n)
    for lo in range(0, b, step):
        k = min(step, b - lo)
        for i, resample in enumerate(r[draw(rng, k, n, length)]):
            samples[lo + i] = float(statistic(resample))
    finite = samples[~np.isnan(samples)]
    alpha = (1.0 - conf) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha]) if finite.size else (math.nan, math.nan)
    return ConfidenceInterval(float(low), float(high), float(statistic(r)), conf, samples)


SUMMARY_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "n_bars": "bars",
        "total_return": "fraction",
        "cagr": "fraction per year",
        "volatility_annual": "fraction, annualised",
        "sharpe_annual": "ratio, annualised",
        "sortino_annual": "ratio, annualised",
        "calmar": "ratio of CAGR to max drawdown",
        "max_drawdown": "fraction of peak equity",
        "max_drawdown_duration_bars": "bars",
        "hit_rate": "fraction of bars with a non-zero return",
        "turnover_per_bar": "fraction of equity traded per bar",
        "exposure": "fraction of bars with a position",
        "sharpe_per_bar": "ratio, per bar",
        "skewness": "dimensionless",
        "kurtosis": "dimensionless, non-excess (3 for a normal)",
        "probabilistic_sharpe": "probability that the true Sharpe ratio > 0",
        "deflated_sharpe": "probability that the true Sharpe ratio beats the best of n_trials by luck",
    }
)
"""The keys of :func:`summary_statistics`, in order, with the unit of each value (for reports and gates)."""


def summary_statistics(
    returns: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    *,
    periods_per_year: float = 252,
    n_trials: int = 1,
    trials_sharpe_variance: float | None = None,
) -> dict[str, float]:
    """Every measure of this module for one return series, keyed as in :data:`SUMMARY_UNITS`.

    One dictionary that reports, the registry's promotion gates and the RL evaluation share, so they cannot
    disagree on a definition.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    weights
        Exposure at each bar as a fraction of equity, shape ``(n,)``; without it ``turnover_per_bar`` and
        ``exposure`` are NaN. Turnover is taken from the change of these weights, starting flat; call
        :func:`turnover` with ``before`` for weights that drift between rebalances.
    periods_per_year
        Bars per year, for the annualised values.
    n_trials
        Number of strategies tried before this one was chosen, for ``deflated_sharpe``.
    trials_sharpe_variance
        Variance of the trials' per-bar Sharpe ratios; required when ``n_trials > 1``.

    Returns
    -------
    dict[str, float]
        Keys and units as in :data:`SUMMARY_UNITS`. Undefined values are NaN, and a NaN in ``returns``
        makes every return-based value NaN (``n_bars`` excepted).
    """
    r = _vector(returns, "returns")
    ppy = _ppy(periods_per_year)
    trials = _positive_int(n_trials, "n_trials", "the number of strategies tried, 1 when only one was")
    if trials > 1 and trials_sharpe_variance is None:
        raise ConfigError(
            f"n_trials={trials} needs trials_sharpe_variance, the variance of the per-bar Sharpe ratios of "
            f"the {trials} trials; deflated_sharpe_ratio_from_trials estimates it from their returns."
        )
    if weights is None:
        turnover_per_bar = exposure_share = math.nan
    else:
        w = _vector(weights, "weights")
        if w.shape != r.shape:
            raise DataFormatError(
                f"weights has shape {w.shape} but returns has shape {r.shape}; pass one weight per bar."
            )
        turnover_per_bar, exposure_share = turnover(w), exposure(w)
    has_nan = bool(np.isnan(r).any())
    skew, kurt = _skewness_kurtosis(r) if r.size and not has_nan else (math.nan, math.nan)
    variance = 0.0 if trials_sharpe_variance is None else trials_sharpe_variance
    return {
        "n_bars": float(r.size),
        "total_return": total_return(r),
        "cagr": cagr(r, ppy),
        "volatility_annual": annualised_volatility(r, ppy),
        "sharpe_annual": sharpe_ratio(r, ppy),
        "sortino_annual": sortino_ratio(r, ppy),
        "calmar": math.nan if has_nan else calmar_ratio(r, ppy),
        "max_drawdown": max_drawdown(r),
        "max_drawdown_duration_bars": math.nan if has_nan else float(max_drawdown_duration(r)),
        "hit_rate": hit_rate(r),
        "turnover_per_bar": turnover_per_bar,
        "exposure": exposure_share,
        "sharpe_per_bar": sharpe_ratio(r, periods_per_year=1),
        "skewness": skew,
        "kurtosis": kurt,
        "probabilistic_sharpe": _psr(r, 0.0),
        "deflated_sharpe": _psr(r, expected_max_sharpe(trials, variance)),
    }


# ------------------------------------------------------------------------------------- forecast comparison


class DieboldMariano(NamedTuple):
    """The Diebold-Mariano test of equal predictive accuracy of two forecasts, as returned by
    :func:`diebold_mariano`."""

    statistic: float
    """Small-sample corrected statistic; negative when ``loss_a`` is lower on average (forecast a better)."""
    p_value: float
    """Two-sided p-value under Student's t with ``n - 1`` degrees of freedom."""
    mean_difference: float
    """Mean loss differential ``mean(loss_a - loss_b)``, in the units of the losses."""
    n: int
    """Number of paired losses."""


def _continued_fraction_beta(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function, evaluated with the modified Lentz method; it
    # converges fast for x < (a + 1) / (a + b + 2), in O(sqrt(max(a, b))) terms.
    tiny, eps = 1e-300, 1e-16
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            result *= step
        if abs(step - 1.0) < eps:
            break
    return result


def _log_gamma_ratio(big: float, small: float) -> float:
    # log(Gamma(big + small) / Gamma(big)). For large arguments the difference of two lgamma values loses
    # their magnitude's worth of digits (1e-10 at big = 1e5), so it is taken from Stirling's series instead,
    # truncated where the next term is below 1e-14.
    if big < 30.0:
        return math.lgamma(big + small) - math.lgamma(big)

    def series(x: float) -> float:
        return 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3) + 1.0 / (1260.0 * x**5)

    total = big + small
    return (
        (big - 0.5) * math.log1p(small / big) + small * math.log(total) - small + series(total) - series(big)
    )


def _regularized_beta(
    a: float, b: float, x: float, one_minus_x: float, log_x: float, log_1mx: float
) -> float:
    # I_x(a, b). 1 - x and the logarithms are passed in so the caller can compute them without the rounding
    # of x, which a large a or b would multiply.
    if x <= 0.0:
        return 0.0
    if one_minus_x <= 0.0:
        return 1.0
    big, small = max(a, b), min(a, b)
    log_front = _log_gamma_ratio(big, small) - math.lgamma(small) + a * log_x + b * log_1mx
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction_beta(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction_beta(b, a, one_minus_x) / b


def _student_t_two_sided(t: float, df: float) -> float:
    # P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df / (df + t^2)}(df / 2, 1 / 2). Relative
    # error against 40-digit arithmetic: below 1e-13 up to df = 1e3, 2e-12 at 1e5, growing about as
    # df * 1e-16 beyond (the continued fraction's first terms cancel when x is close to 1).
    t2 = t * t
    if t2 == 0.0:
        return 1.0
    log_x = -math.log1p(t2 / df)
    return _regularized_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2), log_x, math.log(t2 / (df + t2)))


def diebold_mariano(loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, horizon: int = 1) -> DieboldMariano:
    """Test whether two forecasts are equally accurate (Diebold & Mariano, 1995; Harvey, Leybourne &
    Newbold, 1997).

    With the loss differential ``d_t = loss_a[t] - loss_b[t]``, ``n`` pairs and ``h = horizon``::

        gamma_k = sum_{t>k} (d_t - mean(d)) (d_{t-k} - mean(d)) / n          (autocovariance at lag k)
        DM      = mean(d) / sqrt((gamma_0 + 2 * sum_{k=1}^{h-1} gamma_k) / n)
        DM*     = DM * sqrt((n + 1 - 2h + h (h - 1) / n) / n)                  (HLN correction)

    and the p-value is two-sided under Student's t with ``n - 1`` degrees of freedom. Optimal ``h``-step
    forecasts have MA(``h - 1``) errors, so the long-run variance of ``d`` is estimated from the
    autocovariances up to lag ``h - 1``, weighted uniformly as in the original test; if that estimate is
    not positive (it can be, for ``h > 1``), the Newey-West (Bartlett) weights ``1 - k / h`` are used
    instead, which never give a negative variance. For ``h = 1`` the statistic equals the one-sample t
    statistic of ``d``.

    Parameters
    ----------
    loss_a, loss_b
        Per-period losses of forecasts a and b over the same periods, shape ``(n,)`` each, in time order
        (squared errors, log losses, ...).
    horizon
        Forecast horizon ``h`` in periods, at least 1; losses of overlapping ``h``-period forecasts are
        serially correlated up to lag ``h - 1``.

    Returns
    -------
    DieboldMariano
        ``statistic`` and ``p_value`` are NaN when the test is undefined: fewer than two pairs, a NaN loss,
        ``h >= n``, a loss differential with zero variance (identical forecasts, or one that is always
        better by the same amount) or a sample too short for the correction (``n + 1 - 2h + h (h - 1) / n
        <= 0``).

    Raises
    ------
    DataFormatError
        If the losses are not one-dimensional arrays of the same length.
    ConfigError
        If ``horizon`` is not a positive integer.
    """
    a = _vector(loss_a, "loss_a")
    b = _vector(loss_b, "loss_b")
    if a.shape != b.shape:
        raise DataFormatError(
            f"loss_a has shape {a.shape} but loss_b has shape {b.shape}; pass the two forecasts' losses over "
            "the same periods, one value per period."
        )
    h = _positive_int(horizon, "horizon", "the forecast horizon in periods, 1 for one-step forecasts")
    d = a - b
    n = int(d.size)
    mean_d = float(np.mean(d)) if n else math.nan
    undefined = DieboldMariano(math.nan, math.nan, mean_d, n)
    if n < 2 or h >= n or math.isnan(mean_d):
        return undefined
    centred = d - mean_d
    gamma = [float(np.dot(centred[k:], centred[: n - k])) / n for k in range(h)]
    long_run = gamma[0] + 2.0 * sum(gamma[1:])
    if not long_run > 0.0:
        long_run = gamma[0] + 2.0 * sum((1.0 - k / h) * g for k, g in enumerate(gamma) if k)
    correction = (n + 1.0 - 2.0 * h + h * (h - 1.0) / n) / n
    # A variance at rounding level of the losses is zero: the forecasts differ by a constant, if at all.
    scale = float(np.mean(d * d))
    if not (long_run > 1e-24 * scale and correction > 0.0):
        return undefined
    statistic = mean_d / math.sqrt(long_run / n) * math.sqrt(correction)
    return DieboldMariano(statistic, _student_t_two_sided(statistic, n - 1.0), mean_d, n)


# ------------------------------------------------------------------------------- paired Sharpe comparisons
#
# Comparing two strategies on the same bars (a champion and a challenger, two arms of an A/B test) needs a
# paired test: their returns are correlated, and ignoring that overstates the uncertainty of the difference.
# Three tests of H0: SR_a == SR_b on per-bar Sharpe ratios, and the sample size the comparison needs:
#
# * sharpe_difference_test(method="jkm"): Jobson & Korkie (1981) with Memmel's (2003) correction; exact
#   for iid normal returns, too narrow for fat tails or serial dependence.
# * sharpe_difference_test(method="ledoit_wolf"): Ledoit & Wolf (2008), the delta method on the first two
#   moments with a HAC (Newey-West) covariance; robust to fat tails, skew and autocorrelation.
# * paired_bootstrap_sharpe_difference: a stationary block bootstrap of the pairs (rows resampled together).
# * sharpe_difference_sample_size: bars needed to detect a given difference with a given power.

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")
_SHARPE_TESTS = ("ledoit_wolf", "jkm")


class SharpeDifference(NamedTuple):
    """A test of equal Sharpe ratios of two strategies on the same bars (:func:`sharpe_difference_test`)."""

    difference: float
    """``sharpe_a - sharpe_b``, per bar."""
    sharpe_a: float
    """Per-bar Sharpe ratio of ``returns_a``."""
    sharpe_b: float
    """Per-bar Sharpe ratio of ``returns_b``."""
    statistic: float
    """``difference / standard_error``, asymptotically standard normal under H0."""
    p_value: float
    """P-value for ``alternative`` (``"greater"``: H1 is ``sharpe_a > sharpe_b``)."""
    standard_error: float
    """Standard error of ``difference``, per bar."""
    correlation: float
    """Pearson correlation of the two return series."""
    n: int
    """Number of paired bars."""
    method: str
    """``"jkm"`` or ``"ledoit_wolf"``."""
    alternative: str
    """``"two-sided"``, ``"greater"`` or ``"less"``."""


class BootstrapSharpeDifference(NamedTuple):
    """The paired block bootstrap of a Sharpe-ratio difference, from
    :func:`paired_bootstrap_sharpe_difference`."""

    difference: float
    """``sharpe_a - sharpe_b``, per bar, on the original series."""
    low: float
    """Lower bound of the percentile interval of the difference."""
    high: float
    """Upper bound of the percentile interval of the difference."""
    p_value: float
    """P-value for ``alternative``, from the bootstrap distribution centred on the estimate."""
    confidence: float
    """Nominal coverage of ``(low, high)``."""
    block_length: int
    """Mean block length in bars."""
    alternative: str
    """``"two-sided"``, ``"greater"`` (H1: ``sharpe_a > sharpe_b``) or ``"less"``."""
    samples: np.ndarray
    """Shape ``(n_resamples,)``: the difference on each resample (NaN where undefined)."""


def _pair(returns_a: npt.ArrayLike, returns_b: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = _vector(returns_a, "returns_a")
    b = _vector(returns_b, "returns_b")
    if a.shape != b.shape:
        raise DataFormatError(
            f"returns_a has shape {a.shape} but returns_b has shape {b.shape}; a paired test needs both "
            "strategies' returns over the same bars, one value per bar (align them on time first)."
        )
    return a, b


def _alternative(value: object) -> str:
    if value not in _ALTERNATIVES:
        raise ConfigError(
            f"unknown alternative {value!r}.{did_you_mean(str(value), _ALTERNATIVES)} Choose one of "
            f"{', '.join(map(repr, _ALTERNATIVES))} ('greater': H1 is that a's Sharpe ratio is higher)."
        )
    return str(value)


def _p_from_z(z: float, alternative: str) -> float:
    if math.isnan(z):
        return math.nan
    if alternative == "greater":
        return _normal_cdf(-z)
    if alternative == "less":
        return _normal_cdf(z)
    return min(1.0, 2.0 * _normal_cdf(-abs(z)))


def _newey_west_lags(n: int) -> int:
    # The usual plug-in bandwidth floor(4 (n / 100) ** (2 / 9)) of Newey & West (1994).
    return int(4.0 * (n / 100.0) ** (2.0 / 9.0))


def sharpe_difference_test(
    returns_a: npt.ArrayLike,
    returns_b: npt.ArrayLike,
    *,
    method: Literal["ledoit_wolf", "jkm"] = "ledoit_wolf",
    alternative: Alternative = "two-sided",
    lags: int | None = None,
) -> SharpeDifference:
    """Test whether two strategies traded over the same bars have equal Sharpe ratios.

    With per-bar Sharpe ratios ``SR_a``, ``SR_b``, return correlation ``rho`` and ``n`` paired bars:

    ``"jkm"`` (Jobson & Korkie, 1981, corrected by Memmel, 2003), for iid normal returns::

        Var(SR_a - SR_b) = (2 (1 - rho) + (SR_a^2 + SR_b^2 - 2 SR_a SR_b rho^2) / 2) / n

    ``"ledoit_wolf"`` (Ledoit & Wolf, 2008): the difference is a smooth function of
    ``v = (mean_a, mean_b, E[r_a^2], E[r_b^2])``; its variance is ``grad' Psi grad / n`` with ``Psi`` the
    Newey-West (Bartlett kernel) long-run covariance of the moment series, times ``n / (n - 4)`` for the four
    estimated moments. It stays valid under fat tails, skew, volatility clustering and autocorrelation,
    where the JKM test rejects too often.

    Parameters
    ----------
    returns_a, returns_b
        Simple returns per bar of the two strategies over the same bars, shape ``(n,)`` each.
    method
        ``"ledoit_wolf"`` (default) or ``"jkm"``.
    alternative
        ``"two-sided"`` (H1: the Sharpe ratios differ), ``"greater"`` (H1: ``SR_a > SR_b``) or ``"less"``.
    lags
        Lags of the HAC covariance (``"ledoit_wolf"`` only); by default ``floor(4 (n / 100) ** (2 / 9))``.

    Returns
    -------
    SharpeDifference
        ``statistic`` and ``p_value`` are NaN when a Sharpe ratio is undefined (fewer than five bars, zero
        volatility, a NaN return) or the variance estimate is not positive (identical series).
    """
    a, b = _pair(returns_a, returns_b)
    alt = _alternative(alternative)
    if method not in _SHARPE_TESTS:
        raise ConfigError(
            f"unknown Sharpe difference test {method!r}.{did_you_mean(str(method), _SHARPE_TESTS)} Choose "
            f"one of {', '.join(map(repr, _SHARPE_TESTS))}."
        )
    if lags is not None:
        _positive_int(lags, "lags", "HAC lags for the Ledoit-Wolf test, or None for the plug-in", minimum=0)
    n = int(a.size)
    sr_a, sr_b = sharpe_ratio(a, periods_per_year=1), sharpe_ratio(b, periods_per_year=1)
    diff = sr_a - sr_b
    rho = math.nan
    if n >= 2 and not (math.isnan(sr_a) or math.isnan(sr_b)):
        rho = float(np.corrcoef(a, b)[0, 1])
    variance = math.nan
    if n >= 5 and not math.isnan(rho):
        if method == "jkm":
            variance = (2.0 * (1.0 - rho) + 0.5 * (sr_a**2 + sr_b**2 - 2.0 * sr_a * sr_b * rho**2)) / n
        else:
            variance = _ledoit_wolf_variance(a, b, _newey_west_lags(n) if lags is None else int(lags))
    # A difference of identical series has a variance at rounding level; call it undefined, not infinite.
    defined = variance > 1e-20 * max(1.0, sr_a * sr_a + sr_b * sr_b)
    se = math.sqrt(variance) if defined else math.nan
    z = diff / se if defined else math.nan
    return SharpeDifference(diff, sr_a, sr_b, z, _p_from_z(z, alt), se, rho, n, method, alt)


def _ledoit_wolf_variance(a: np.ndarray, b: np.ndarray, lags: int) -> float:
    n = a.size
    mu_a, mu_b = float(np.mean(a)), float(np.mean(b))
    g_a, g_b = float(np.mean(a * a)), float(np.mean(b * b))
    var_a, var_b = g_a - mu_a * mu_a, g_b - mu_b * mu_b
    if not (var_a > 0.0 and var_b > 0.0):
        return math.nan
    grad = np.array([g_a / var_a**1.5, -g_b / var_b**1.5, -0.5 * mu_a / var_a**1.5, 0.5 * mu_b / var_b**1.5])
    y = np.column_stack([a - mu_a, b - mu_b, a * a - g_a, b * b - g_b])
    psi = y.T @ y / n
    for k in range(1, min(lags, n - 1) + 1):
        gamma = y[k:].T @ y[:-k] / n
        psi += (1.0 - k / (lags + 1.0)) * (gamma + gamma.T)
    psi *= n / (n - 4.0)
    return float(grad @ psi @ grad) / n


def _row_sharpes(m: np.ndarray) -> np.ndarray:
    std = np.std(m, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.mean(m, axis=1) / std
    out[~(std > 0.0)] = np.nan
    return out


def paired_bootstrap_sharpe_difference(
    returns_a: npt.ArrayLike,
    returns_b: npt.ArrayLike,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    block_length: int | None = None,
    alternative: Alternative = "two-sided",
    seed: int | np.random.Generator | None = 0,
) -> BootstrapSharpeDifference:
    """Stationary block bootstrap of the difference of two strategies' per-bar Sharpe ratios.

    Each resample draws the same blocks of bars for both series (the pairs stay together, so their
    correlation is kept) with the stationary bootstrap of Politis & Romano (1994), as
    :func:`bootstrap_confidence_interval` does for one series. The interval is the percentile interval of
    the resampled differences ``d*``; the p-value compares the estimate ``d`` with the bootstrap
    distribution of ``d* - d``, which stands in for the distribution of the estimate's error under H0:
    two-sided ``(1 + #{|d* - d| >= |d|}) / (B + 1)``, ``"greater"`` (H1: ``SR_a > SR_b``)
    ``(1 + #{d* - d >= d}) / (B + 1)``, ``"less"`` ``(1 + #{d* - d <= d}) / (B + 1)``.

    Parameters
    ----------
    returns_a, returns_b
        Simple returns per bar over the same bars, shape ``(n,)`` each.
    n_resamples
        Number of resamples ``B``.
    confidence
        Nominal coverage of the interval, strictly between 0 and 1.
    block_length
        Mean block length in bars; by default ``round(n ** (1/3))``. Capped at ``n``.
    alternative
        ``"two-sided"``, ``"greater"`` or ``"less"``.
    seed
        Seed or generator of the resampling; the default 0 makes the result reproducible.

    Returns
    -------
    BootstrapSharpeDifference
        Everything NaN (no samples) for fewer than five bars, a NaN return or an undefined Sharpe ratio.
    """
    a, b = _pair(returns_a, returns_b)
    alt = _alternative(alternative)
    k_total = _positive_int(n_resamples, "n_resamples", "how many bootstrap resamples to draw, e.g. 2000")
    conf = _real(confidence, "confidence", "the nominal coverage, e.g. 0.95")
    if not 0.0 < conf < 1.0:
        raise ConfigError(
            f"confidence must lie strictly between 0 and 1 (0.95 for 95 %), got {confidence!r}."
        )
    if block_length is not None:
        _positive_int(block_length, "block_length", "the mean block length in bars, or None for n ** (1/3)")
    n = int(a.size)
    length = max(1, round(n ** (1.0 / 3.0))) if block_length is None else min(int(block_length), max(n, 1))
    diff = sharpe_ratio(a, periods_per_year=1) - sharpe_ratio(b, periods_per_year=1) if n >= 2 else math.nan
    if n < 5 or math.isnan(diff):
        return BootstrapSharpeDifference(
            math.nan, math.nan, math.nan, math.nan, conf, length, alt, np.empty(0)
        )
    rng = np.random.default_rng(seed)
    samples = np.empty(k_total)
    step = max(1, _CHUNK_ELEMENTS // (2 * n))
    for lo in range(0, k_total, step):
        k = min(step, k_total - lo)
        idx = _stationary_indices(rng, k, n, length)
        samples[lo : lo + k] = _row_sharpes(a[idx]) - _row_sharpes(b[idx])
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return BootstrapSharpeDifference(diff, math.nan, math.nan, math.nan, conf, length, alt, samples)
    alpha = (1.0 - conf) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    centred = finite - diff
    if alt == "greater":
        hits = int(np.count_nonzero(centred >= diff))
    elif alt == "less":
        hits = int(np.count_nonzero(centred <= diff))
    else:
        hits = int(np.count_nonzero(np.abs(centred) >= abs(diff)))
    p = (1.0 + hits) / (finite.size + 1.0)
    return BootstrapSharpeDifference(diff, float(low), float(high), p, conf, length, alt, samples)


def sharpe_difference_sample_size(
    returns_a: npt.ArrayLike,
    returns_b: npt.ArrayLike,
    *,
    difference: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
) -> float:
    """Paired bars needed to detect a per-bar Sharpe-ratio difference with the given power.

    ``n = V * (z_{1 - alpha'} + z_{power}) ** 2 / difference ** 2``, with ``alpha' = alpha / 2`` for a
    two-sided test (``alpha`` otherwise) and ``V = 2 (1 - rho) + (SR_a^2 + SR_b^2 - 2 SR_a SR_b rho^2) / 2``
    the per-bar variance of the difference under iid normal returns (Memmel, 2003), at the Sharpe ratios and
    correlation estimated from the two series. Fat tails and autocorrelation raise the true figure; read it
    as a lower bound.

    Parameters
    ----------
    returns_a, returns_b
        Simple returns per bar over the same bars, shape ``(n,)`` each (the pilot sample).
    difference
        The per-bar Sharpe difference to detect; by default the observed one, ``SR_a - SR_b``.
    alpha
        Significance level of the test, in (0, 1).
    power
        Probability of detecting ``difference`` when it is real, in (0, 1).
    alternative
        ``"two-sided"``, ``"greater"`` or ``"less"``.

    Returns
    -------
    float
        Bars, rounded up; ``inf`` for a zero difference, NaN when a Sharpe ratio is undefined.
    """
    a, b = _pair(returns_a, returns_b)
    alt = _alternative(alternative)
    lvl = _real(alpha, "alpha", "the significance level, e.g. 0.05")
    pw = _real(power, "power", "the probability of detecting the difference, e.g. 0.8")
    if not (0.0 < lvl < 1.0 and 0.0 < pw < 1.0):
        raise ConfigError(
            f"alpha and power must lie strictly between 0 and 1, got alpha={alpha!r}, power={power!r}."
        )
    sr_a, sr_b = sharpe_ratio(a, periods_per_year=1), sharpe_ratio(b, periods_per_year=1)
    if math.isnan(sr_a) or math.isnan(sr_b):
        return math.nan
    rho = float(np.corrcoef(a, b)[0, 1])
    d = sr_a - sr_b if difference is None else _real(difference, "difference", "a per-bar Sharpe difference")
    if math.isnan(d) or math.isnan(rho):
        return math.nan
    if d == 0.0:
        return math.inf
    v = 2.0 * (1.0 - rho) + 0.5 * (sr_a**2 + sr_b**2 - 2.0 * sr_a * sr_b * rho**2)
    z_alpha = _STANDARD_NORMAL.inv_cdf(1.0 - (lvl / 2.0 if alt == "two-sided" else lvl))
    z_power = _STANDARD_NORMAL.inv_cdf(pw)
    return float(math.ceil(v * (z_alpha + z_power) ** 2 / (d * d)))


def minimum_track_record_length(
    returns: npt.ArrayLike, benchmark_sharpe: float = 0.0, confidence: float = 0.95
) -> float:
    """Bars of track record needed before the Sharpe ratio beats ``benchmark_sharpe`` at ``confidence``.

    The MinTRL of Bailey & López de Prado (2012):
    ``1 + (1 - skew SR + (kurt - 1) / 4 SR^2) (z_confidence / (SR - SR*)) ^ 2`` with the per-bar ``SR``,
    its skewness and (non-excess) kurtosis: the length at which the :func:`probabilistic_sharpe_ratio`
    would reach ``confidence`` if the moments stayed as observed.

    Parameters
    ----------
    returns
        Simple returns per bar, shape ``(n,)``.
    benchmark_sharpe
        Per-bar Sharpe ratio to beat (see :func:`per_period_sharpe`).
    confidence
        Required probability, in (0, 1).

    Returns
    -------
    float
        Bars; ``inf`` when the Sharpe ratio does not exceed the benchmark, NaN as for the PSR.
    """
    r = _vector(returns, "returns")
    bench = _real(benchmark_sharpe, "benchmark_sharpe", "a per-bar Sharpe ratio; 0.0 by default")
    conf = _real(confidence, "confidence", "the required probability, e.g. 0.95")
    if not 0.0 < conf < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}.")
    sr = sharpe_ratio(r, periods_per_year=1)
    if math.isnan(sr) or math.isnan(bench):
        return math.nan
    skew, kurt = _skewness_kurtosis(r)
    if math.isnan(skew):
        return math.nan
    if sr <= bench:
        return math.inf
    z = _STANDARD_NORMAL.inv_cdf(conf)
    return 1.0 + (1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr) * (z / (sr - bench)) ** 2


# --------------------------------------------------------------------------------------- distribution drift


class KolmogorovSmirnov(NamedTuple):
    """The two-sample Kolmogorov-Smirnov test, from :func:`ks_two_sample`."""

    statistic: float
    """``D = sup_x |F_a(x) - F_b(x)|`` of the two empirical CDFs, in [0, 1]."""
    p_value: float
    """Asymptotic two-sided p-value, ``Q_KS(sqrt(n_a n_b / (n_a + n_b)) D)``."""
    n_a: int
    """Size of the first sample."""
    n_b: int
    """Size of the second sample."""


def _kolmogorov_sf(x: float) -> float:
    # P(K > x) of the Kolmogorov distribution. The alternating series converges fast for large x; for small x
    # use the Jacobi theta form, which converges fast there (both to 1e-16 with a handful of terms).
    if x <= 0.0:
        return 1.0
    if x < 1.18:
        w = math.pi * math.pi / (8.0 * x * x)
        cdf = math.sqrt(2.0 * math.pi) / x * sum(math.exp(-((2 * k - 1) ** 2) * w) for k in range(1, 9))
        return min(1.0, max(0.0, 1.0 - cdf))
    total = sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 101))
    return min(1.0, max(0.0, 2.0 * total))


def ks_two_sample(sample_a: npt.ArrayLike, sample_b: npt.ArrayLike) -> KolmogorovSmirnov:
    """Two-sample Kolmogorov-Smirnov test that two samples come from the same continuous distribution.

    ``D`` is the largest gap between the empirical CDFs, taken over every value of the pooled sample; the
    p-value is the asymptotic one, ``P(K > sqrt(n_a n_b / (n_a + n_b)) D)`` with ``K`` the Kolmogorov
    distribution (as ``scipy.stats.kstwobign``), accurate to about 0.01 from a few dozen values per sample.

    Parameters
    ----------
    sample_a, sample_b
        The two samples, shapes ``(n_a,)`` and ``(n_b,)`` (they need not be the same length).

    Returns
    -------
    KolmogorovSmirnov
        ``statistic`` and ``p_value`` are NaN for an empty sample or a NaN value (drop non-finite values
        first and report how many there were).
    """
    a = np.sort(_vector(sample_a, "sample_a"))
    b = np.sort(_vector(sample_b, "sample_b"))
    n_a, n_b = int(a.size), int(b.size)
    if n_a == 0 or n_b == 0 or np.isnan(a).any() or np.isnan(b).any():
        return KolmogorovSmirnov(math.nan, math.nan, n_a, n_b)
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / n_a
    cdf_b = np.searchsorted(b, pooled, side="right") / n_b
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    en = math.sqrt(n_a * n_b / (n_a + n_b))
    return KolmogorovSmirnov(d, _kolmogorov_sf(en * d), n_a, n_b)


def psi_bin_edges(reference: npt.ArrayLike, n_bins: int = 10) -> np.ndarray:
    """Bin edges for :func:`population_stability_index`: quantiles of the reference sample.

    Parameters
    ----------
    reference
        The reference (training window) sample, shape ``(n,)``, finite.
    n_bins
        Number of equal-frequency bins wanted; ties in the reference merge bins, so a feature with few
        distinct values gets fewer.

    Returns
    -------
    ndarray
        Shape ``(k + 1,)`` with ``k <= n_bins``: ``-inf``, the unique inner quantiles, ``+inf``.
    """
    r = _vector(reference, "reference")
    bins = _positive_int(n_bins, "n_bins", "the number of equal-frequency bins, e.g. 10", minimum=2)
    if r.size == 0 or not np.isfinite(r).all():
        raise DataFormatError(
            f"psi_bin_edges needs a non-empty finite reference sample, got {r.size} values of which "
            f"{int(np.count_nonzero(~np.isfinite(r)))} are not finite; drop them first."
        )
    inner = np.unique(np.quantile(r, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return np.concatenate([[-np.inf], inner, [np.inf]])


def population_stability_index(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    bins: int | npt.ArrayLike = 10,
    epsilon: float = 1e-4,
) -> float:
    """Population stability index of ``current`` against ``reference``.

    ``PSI = sum_i (c_i - r_i) * log(c_i / r_i)`` over bins, with ``r_i`` and ``c_i`` the shares of the
    reference and current samples in bin ``i``; a share of zero is floored at ``epsilon`` so an empty bin
    gives a large finite term. Rules of thumb: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a
    significant shift.

    Parameters
    ----------
    reference
        The reference sample (the training window), shape ``(n_ref,)``.
    current
        The sample to check (the live window), shape ``(n_cur,)``.
    bins
        The number of equal-frequency bins, cut at the reference's quantiles (:func:`psi_bin_edges`), or
        the bin edges themselves (increasing; values outside the outer edges are counted in the outer
        bins).
    epsilon
        Floor of a bin's share, > 0.

    Returns
    -------
    float
        ``>= 0``; NaN for an empty sample or a NaN value in either sample.
    """
    r = _vector(reference, "reference")
    c = _vector(current, "current")
    eps = _real(epsilon, "epsilon", "the floor of a bin's share, e.g. 1e-4")
    if not 0.0 < eps < 1.0:
        raise ConfigError(f"epsilon must lie strictly between 0 and 1, got {epsilon!r}.")
    if r.size == 0 or c.size == 0 or np.isnan(r).any() or np.isnan(c).any():
        return math.nan
    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        edges = psi_bin_edges(r, int(bins))
    else:
        edges = _vector(bins, "bins")
        if edges.size < 2 or np.isnan(edges).any() or not np.all(np.diff(edges) > 0):
            raise ConfigError(
                f"bins must be an integer >= 2 or at least two strictly increasing edges, got {bins!r}."
            )
    # Inner edges only: values beyond the outer edges fall into the outer bins.
    inner = edges[1:-1]
    n_bins = inner.size + 1
    ref_share = np.bincount(np.searchsorted(inner, r, side="right"), minlength=n_bins) / r.size
    cur_share = np.bincount(np.searchsorted(inner, c, side="right"), minlength=n_bins) / c.size
    ref_share = np.maximum(ref_share, eps)
    cur_share = np.maximum(cur_share, eps)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


__all__ += [
    "Alternative",
    "BootstrapSharpeDifference",
    "KolmogorovSmirnov",
    "SharpeDifference",
    "ks_two_sample",
    "minimum_track_record_length",
    "paired_bootstrap_sharpe_difference",
    "population_stability_index",
    "psi_bin_edges",
    "sharpe_difference_sample_size",
    "sharpe_difference_test",
]
