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
