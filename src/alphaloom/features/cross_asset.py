"""Cross-asset features: a reference asset aligned as of each bar, rolling correlation and beta to it, and
cross-sectional percentile ranks across a panel of symbols.

Alignment
---------
:func:`align_reference` is a backward as-of join: bar ``t`` gets the last reference close stamped at or
before ``ts[t]`` (NaN before the first), never a later one. A reference bar missing where the asset traded
repeats the previous reference close, so the reference return over that bar is 0.

Correlation and beta
--------------------
:func:`rolling_correlation` and :func:`rolling_beta` take two aligned return series (log returns from
:func:`log_returns`) and use the last ``window`` pairs, ending at and including ``t``::

    corr = cov(a, r) / (std(a) * std(r))        beta = cov(a, r) / var(r)

with ``a`` the asset's and ``r`` the reference's returns. Both are ratios of moments of the same order, so
the population/sample choice cancels: they are computed from the centred sums ``sum((a - mean a) * (r -
mean r))`` etc. of the window, with no divisor at all. The result is NaN for
``t < window - 1``, when any value in the window is NaN or infinite, and where a variance in the denominator
is zero (an exactly constant window): for the correlation either series', for the beta the reference's.

The window moments are aggregated without running sums. The series is cut into blocks of ``window`` bars;
a window covers a suffix of one block and a prefix of the next, whose (count, means, centred co-moments)
are built by Welford's recurrences (suffixes once per block, backwards; the prefix incrementally) and
merged with Chan's pairwise formula. Every window is therefore computed from its own values only: nothing
is added and later subtracted, so there is no drift however long the series (the tests check 1e-9 against
a direct per-window computation on 1,000,000 bars); it costs O(1) per bar amortised (about 60 ms per
1,000,000 bars, ``bench/spectral_fractal.py``); and an exactly constant window gives exactly zero
variance. :class:`CrossAssetStream` runs the same compiled step bar by bar, so streaming equals batch.

Cross-sectional ranks
---------------------
:func:`cross_sectional_rank` ranks, at each timestamp, the symbols holding a finite value: the percentile
rank is ``(r - 1) / (m - 1)`` for average rank ``r`` (ties share the mean of their ranks) among ``m`` such
symbols, so it lies in [0, 1]; a lone symbol gets 0.5, and a NaN or infinite value stays NaN.
:class:`CrossSectionalRanker` does the same one timestamp at a time, for live use.

Bad shapes, lengths and timestamps raise :class:`~alphaloom.core.exceptions.DataFormatError`; bad windows
and column choices raise :class:`~alphaloom.core.exceptions.ConfigError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean

__all__ = [
    "FEATURE_NAMES",
    "CrossAssetStream",
    "CrossSectionalRanker",
    "align_reference",
    "cross_asset_features",
    "cross_sectional_rank",
    "log_returns",
    "rolling_beta",
    "rolling_correlation",
]

FloatArray = npt.NDArray[np.float64]

#: Column names of :func:`cross_asset_features` and :meth:`CrossAssetStream.update`, in order.
FEATURE_NAMES: tuple[str, str] = ("correlation", "beta")


# ---------------------------------------------------------------------------------------------- validation


def _window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ConfigError(
            f"window must be an integer >= 2 (a correlation needs at least two pairs); got {window!r}."
        )
    return int(window)


def _series(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{name} must be numeric; could not convert it to float64 ({exc}).") from exc
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional with shape (n,); got shape {arr.shape}.")
    return arr


def _same_length(a: FloatArray, b: FloatArray, name_a: str, name_b: str) -> None:
    if a.size != b.size:
        raise DataFormatError(
            f"{name_a} and {name_b} must be aligned bar by bar, but have lengths {a.size} and {b.size}; "
            "align the reference first (align_reference)."
        )


def _prices(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = _series(values, name)
    bad = np.isinf(arr) | (arr <= 0.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{name} must be positive prices or NaN where unknown (log returns are taken); element {i} is "
            f"{arr[i]!r}. Drop or repair such bars first."
        )
    return arr


def _timestamps(ts: object, name: str) -> npt.NDArray[np.int64]:
    """Nanoseconds since the epoch (UTC) of a timezone-aware, strictly increasing index."""
    try:
        index = pd.DatetimeIndex(ts)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{name} must be datetimes convertible to a DatetimeIndex ({exc}).") from exc
    if index.tz is None:
        raise DataFormatError(
            f"{name} has no timezone; alphaloom times are timezone-aware UTC. Localise it first, e.g. "
            f"{name}.tz_localize('UTC')."
        )
    if index.hasnans:
        raise DataFormatError(f"{name} has {int(index.isna().sum())} missing timestamps (NaT).")
    ns = index.as_unit("ns").asi8  # one unit for both sides: pandas indexes may hold s, ms, us or ns
    steps = np.diff(ns)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        problem = "a duplicate" if steps[i - 1] == 0 else "an out-of-order"
        raise DataFormatError(
            f"{name} must be strictly increasing, but element {i} is {problem} timestamp "
            f"{index[i].isoformat()} (previous {index[i - 1].isoformat()}); sort and de-duplicate first."
        )
    return ns


# ----------------------------------------------------------------------------------------------- alignment


def align_reference(ts: pd.DatetimeIndex, ref_ts: pd.DatetimeIndex, ref_close: npt.ArrayLike) -> FloatArray:
    """The reference close as of each bar: the last one stamped at or before it (backward as-of join).

    Parameters
    ----------
    ts : pandas.DatetimeIndex, shape (n,)
        The asset's bar timestamps; timezone-aware, strictly increasing.
    ref_ts : pandas.DatetimeIndex, shape (m,)
        The reference's bar timestamps; timezone-aware, strictly increasing. Time zones may differ from
        ``ts`` (instants are compared).
    ref_close : array_like, shape (m,)
        Reference closes (NaN where unknown; passed through unchanged).

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        ``ref_close[j]`` for the largest ``j`` with ``ref_ts[j] <= ts[t]``; NaN where no reference bar is at
        or before ``ts[t]``. A later reference bar is never used.

    Raises
    ------
    DataFormatError
        Naive, missing, unsorted or duplicate timestamps, or ``ref_close`` not of length ``m``.
    """
    ts_ns = _timestamps(ts, "ts")
    ref_ns = _timestamps(ref_ts, "ref_ts")
    close = _series(ref_close, "ref_close")
    if close.size != ref_ns.size:
        raise DataFormatError(
            f"ref_close must hold one close per reference timestamp; got {close.size} closes for "
            f"{ref_ns.size} timestamps."
        )
    j = np.searchsorted(ref_ns, ts_ns, side="right") - 1
    out = np.full(ts_ns.size, np.nan)
    known = j >= 0
    out[known] = close[j[known]]
    return out


def log_returns(close: npt.ArrayLike) -> FloatArray:
    """Log returns of closes, aligned with them.

    Parameters
    ----------
    close : array_like, shape (n,)
        Positive prices; NaN where unknown.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        ``log(close[t] / close[t - 1])``; element 0 is NaN, and so is every return touching a NaN close.
    """
    logp = np.log(_prices(close, "close"))
    out = np.full(logp.size, np.nan)
    out[1:] = logp[1:] - logp[:-1]
    return out


# ------------------------------------------------------------------------------------------------- kernels
#
# State of the block recurrence (see the module notes), shared by the batch loop and the stream:
#   ring (2, w): this block's (x, y) pairs by position i % w; it still holds the previous block when the
#                new block starts, which is when that block's suffix aggregates are built.
#   suf (5, w):  aggregate of the previous block's positions p .. w - 1: mean x, mean y, Sxx, Syy, Sxy.
#   pre (5,):    aggregate of this block's positions 0 .. i % w, same layout.
#   counters (2,): pairs seen, current run of consecutive finite pairs.


@njit(cache=True)
def _welford_add(agg: FloatArray, k: int, x: float, y: float) -> None:
    # Add one pair to an aggregate of k - 1 pairs (agg becomes an aggregate of k pairs).
    dx = x - agg[0]
    agg[0] += dx / k
    dy = y - agg[1]
    agg[1] += dy / k
    agg[2] += dx * (x - agg[0])
    agg[3] += dy * (y - agg[1])
    agg[4] += dx * (y - agg[1])


@njit(cache=True)
def _corr_beta(sxx: float, syy: float, sxy: float) -> tuple[float, float]:
    beta = sxy / syy if syy > 0.0 else np.nan
    if sxx > 0.0 and syy > 0.0:
        corr = sxy / (math.sqrt(sxx) * math.sqrt(syy))
        corr = min(1.0, max(-1.0, corr))
    else:
        corr = np.nan
    return corr, beta


@njit(cache=True)
def _step(
    x: float,
    y: float,
    window: int,
    ring: FloatArray,
    suf: FloatArray,
    pre: FloatArray,
    counters: npt.NDArray[np.int64],
) -> tuple[float, float]:
    i = counters[0]
    j = i % window
    if j == 0:
        if i > 0:
            agg = np.zeros(5)
            for p in range(window - 1, -1, -1):
                _welford_add(agg, window - p, ring[0, p], ring[1, p])
                suf[:, p] = agg
        pre[:] = 0.0
    ring[0, j] = x
    ring[1, j] = y
    _welford_add(pre, j + 1, x, y)
    finite = math.isfinite(x) and math.isfinite(y)
    counters[1] = counters[1] + 1 if finite else 0
    counters[0] = i + 1
    if counters[1] < window:
        return np.nan, np.nan
    if j == window - 1:
        return _corr_beta(pre[2], pre[3], pre[4])
    # Merge the previous block's suffix from position j + 1 with this block's prefix (Chan et al.).
    p = j + 1
    n_a = window - p
    n_b = j + 1
    f = n_a * n_b / window
    dx = pre[0] - suf[0, p]
    dy = pre[1] - suf[1, p]
    sxx = suf[2, p] + pre[2] + dx * dx * f
    syy = suf[3, p] + pre[3] + dy * dy * f
    sxy = suf[4, p] + pre[4] + dx * dy * f
    return _corr_beta(sxx, syy, sxy)


@njit(cache=True)
def _corr_beta_many(x: FloatArray, y: FloatArray, window: int) -> FloatArray:
    out = np.empty((x.size, 2))
    ring = np.zeros((2, window))
    suf = np.zeros((5, window))
    pre = np.zeros(5)
    counters = np.zeros(2, dtype=np.int64)
    for t in range(x.size):
        out[t, 0], out[t, 1] = _step(x[t], y[t], window, ring, suf, pre, counters)
    return out


def _pairs(x: npt.ArrayLike, y: npt.ArrayLike, name_x: str, name_y: str) -> tuple[FloatArray, FloatArray]:
    a = np.ascontiguousarray(_series(x, name_x))
    b = np.ascontiguousarray(_series(y, name_y))
    _same_length(a, b, name_x, name_y)
    return a, b


# --------------------------------------------------------------------------------------------------- batch


def rolling_correlation(x: npt.ArrayLike, y: npt.ArrayLike, window: int = 60) -> FloatArray:
    """Pearson correlation of the last ``window`` pairs of two aligned return series.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Returns (e.g. :func:`log_returns`), aligned bar by bar; NaN where unknown.
    window : int, default 60
        Pairs per window, at least 2.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unitless, in [-1, 1]. NaN for ``t < window - 1``, for windows holding a NaN or infinite value and
        where either series is constant over the window.
    """
    a, b = _pairs(x, y, "x", "y")
    return _corr_beta_many(a, b, _window(window))[:, 0]


def rolling_beta(
    asset_returns: npt.ArrayLike, reference_returns: npt.ArrayLike, window: int = 60
) -> FloatArray:
    """Beta of an asset to a reference: ``cov(asset, ref) / var(ref)`` over the last ``window`` pairs.

    Parameters
    ----------
    asset_returns, reference_returns : array_like, shape (n,)
        Returns (e.g. :func:`log_returns`), aligned bar by bar; NaN where unknown.
    window : int, default 60
        Pairs per window, at least 2.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unitless (asset return per unit of reference return). NaN for ``t < window - 1``, for windows holding
        a NaN or infinite value and where the reference is constant over the window; 0 where only the asset
        is. The ``ddof`` of the moments cancels in the ratio.
    """
    a, b = _pairs(asset_returns, reference_returns, "asset_returns", "reference_returns")
    return _corr_beta_many(a, b, _window(window))[:, 1]


def cross_asset_features(
    close: npt.ArrayLike, reference_close: npt.ArrayLike, window: int = 60
) -> FloatArray:
    """Rolling correlation and beta of an asset's log returns to a reference's; the batch twin of the stream.

    Parameters
    ----------
    close : array_like, shape (n,)
        The asset's closes; positive, NaN where unknown.
    reference_close : array_like, shape (n,)
        The reference's closes aligned with ``close`` (see :func:`align_reference`); positive, NaN where
        unknown.
    window : int, default 60
        Returns per window, at least 2; the first defined row is ``t = window`` (a window of returns needs
        ``window + 1`` closes).

    Returns
    -------
    numpy.ndarray, shape (n, 2), float64
        Columns :data:`FEATURE_NAMES`: correlation and beta, as :func:`rolling_correlation` and
        :func:`rolling_beta` of the two :func:`log_returns`.
    """
    window = _window(window)
    a = _prices(close, "close")
    b = _prices(reference_close, "reference_close")
    _same_length(a, b, "close", "reference_close")
    return _corr_beta_many(log_returns(a), log_returns(b), window)


# ----------------------------------------------------------------------------------------------- streaming


def _check_stream_price(value: float, name: str) -> float:
    v = float(value)
    if math.isinf(v) or v <= 0.0:
        raise DataFormatError(f"{name} must be a positive price or NaN when unknown; got {value!r}.")
    return v


class CrossAssetStream:
    """Incremental :func:`cross_asset_features`: correlation and beta to a reference, one bar at a time.

    Parameters
    ----------
    window : int, default 60
        Returns per window, at least 2.

    Notes
    -----
    :meth:`update` costs O(1) amortised (O(window) once every ``window`` bars) and runs the same compiled
    step as the batch function, so row ``t`` equals ``cross_asset_features(...)[t]`` (tested to 1e-9).
    """

    names: tuple[str, str] = FEATURE_NAMES

    def __init__(self, window: int = 60) -> None:
        self.window = _window(window)
        self._ring = np.zeros((2, self.window))
        self._suf = np.zeros((5, self.window))
        self._pre = np.zeros(5)
        self._counters = np.zeros(2, dtype=np.int64)
        self._prev_log = (math.nan, math.nan)

    @property
    def lookback(self) -> int:
        """Bars before the first defined update (``window``: the returns need one extra close)."""
        return self.window

    def update(self, close: float, reference_close: float) -> FloatArray:
        """Add one bar; return ``[correlation, beta]`` at it, shape (2,), NaN until ``window`` returns exist.

        ``close`` and ``reference_close`` are positive prices, or NaN when unknown (the returns touching an
        unknown close are unknown, and so are the windows holding them).
        """
        log_c = _log_or_nan(_check_stream_price(close, "close"))
        log_r = _log_or_nan(_check_stream_price(reference_close, "reference_close"))
        x = log_c - self._prev_log[0]
        y = log_r - self._prev_log[1]
        self._prev_log = (log_c, log_r)
        corr, beta = _step(x, y, self.window, self._ring, self._suf, self._pre, self._counters)
        return np.array([corr, beta])


def _log_or_nan(v: float) -> float:
    return math.log(v) if v == v else math.nan


# ------------------------------------------------------------------------------------ cross-sectional rank


def _pct_rank_columns(values: FloatArray) -> FloatArray:
    """Percentile ranks down each column of ``values`` (symbols x features), NaN for non-finite entries."""
    out = np.full(values.shape, np.nan)
    for c in range(values.shape[1]):
        col = values[:, c]
        ok = np.flatnonzero(np.isfinite(col))
        m = ok.size
        if m == 0:
            continue
        if m == 1:
            out[ok, c] = 0.5
            continue
        v = col[ok]
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        below = np.concatenate(([0], np.cumsum(counts)[:-1]))
        avg_rank = below + (counts + 1) / 2.0  # 1-based mean rank of each distinct value
        out[ok, c] = (avg_rank[inverse] - 1.0) / (m - 1.0)
    return out


def _rank_columns(panel: pd.DataFrame, columns: Sequence[str] | None) -> list[str]:
    reserved = ("symbol", "ts")
    if columns is None:
        chosen = [
            str(c)
            for c in panel.columns
            if c not in reserved and pd.api.types.is_numeric_dtype(panel[c].dtype)
        ]
        if not chosen:
            raise ConfigError(
                "panel has no numeric feature columns to rank besides symbol and ts; pass columns=[...]."
            )
        return chosen
    if isinstance(columns, str):
        columns = [columns]
    chosen = list(columns)
    if not chosen:
        raise ConfigError("columns must name at least one feature column to rank; got none.")
    for c in chosen:
        if c in reserved:
            raise ConfigError(f"columns must be feature columns; {c!r} is the panel's key.")
        if c not in panel.columns:
            raise DataFormatError(
                f"panel has no column {c!r}.{did_you_mean(str(c), map(str, panel.columns))} "
                f"Columns are {', '.join(map(str, panel.columns))}."
            )
    return chosen


def cross_sectional_rank(panel: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Percentile rank of each symbol's value among all symbols at the same timestamp.

    Parameters
    ----------
    panel : pandas.DataFrame
        Long format: columns ``symbol``, ``ts`` and the feature columns, one row per (symbol, ts).
    columns : sequence of str, optional
        Feature columns to rank; by default every numeric column other than ``symbol`` and ``ts``.

    Returns
    -------
    pandas.DataFrame
        Same index and row order as ``panel``; columns ``symbol``, ``ts`` and ``<column>_rank`` per ranked
        column, each in [0, 1]: ``(r - 1) / (m - 1)`` for the average rank ``r`` among the ``m`` symbols
        with a finite value at that ``ts`` (ties share their mean rank), 0.5 for a lone symbol, NaN where the
        value is NaN or infinite. Uses only rows at the same ``ts``, so nothing looks ahead.

    Raises
    ------
    DataFormatError
        A missing column, or a (symbol, ts) pair that occurs twice.
    ConfigError
        ``columns`` empty or naming ``symbol``/``ts``.
    """
    if not isinstance(panel, pd.DataFrame):
        raise DataFormatError(f"panel must be a pandas DataFrame, got {type(panel).__name__}.")
    missing = [c for c in ("symbol", "ts") if c not in panel.columns]
    if missing:
        raise DataFormatError(
            f"panel is missing column(s) {', '.join(map(repr, missing))}; expected long format with columns "
            f"symbol, ts and the features (got {', '.join(map(str, panel.columns))})."
        )
    chosen = _rank_columns(panel, columns)
    dup = panel.duplicated(subset=["symbol", "ts"])
    if dup.any():
        row = panel.loc[dup].iloc[0]
        raise DataFormatError(
            f"panel has {int(dup.sum())} duplicate (symbol, ts) row(s), first {row['symbol']!r} at "
            f"{row['ts']}; keep one row per symbol and timestamp, e.g. "
            "panel.drop_duplicates(['symbol', 'ts'], keep='last')."
        )
    try:
        values = panel[chosen].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"columns {chosen!r} must be numeric ({exc}).") from exc
    values[~np.isfinite(values)] = np.nan
    stamp_codes, _ = pd.factorize(panel["ts"])
    if (stamp_codes < 0).any():
        raise DataFormatError(
            f"panel has {int((stamp_codes < 0).sum())} row(s) with a missing ts (NaT); drop them first."
        )
    frame = pd.DataFrame(values, columns=chosen)
    groups = frame.groupby(stamp_codes, sort=False)
    rank = groups.rank(method="average").to_numpy(dtype=np.float64)
    count = groups.transform("count").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(count > 1.0, (rank - 1.0) / (count - 1.0), 0.5)
    pct[np.isnan(values)] = np.nan
    out = panel[["symbol", "ts"]].copy()
    for c, name in enumerate(chosen):
        out[f"{name}_rank"] = pct[:, c]
    return out


class CrossSectionalRanker:
    """Cross-sectional percentile ranks one timestamp at a time, equal to :func:`cross_sectional_rank`.

    Parameters
    ----------
    columns : sequence of str
        Names of the features, in the order each symbol's values are given.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        if isinstance(columns, str):
            columns = [columns]
        self.columns = tuple(str(c) for c in columns)
        if not self.columns:
            raise ConfigError("columns must name at least one feature; got none.")

    def update(self, values: Mapping[str, npt.ArrayLike]) -> dict[str, FloatArray]:
        """Rank one timestamp's values.

        Parameters
        ----------
        values : mapping of str to array_like, each shape (len(columns),)
            Each symbol's feature values at this timestamp (a scalar is accepted for one column); NaN where
            unknown.

        Returns
        -------
        dict of str to numpy.ndarray, each shape (len(columns),), float64
            Each symbol's percentile ranks in [0, 1] (NaN where its value is not finite), as
            :func:`cross_sectional_rank` computes them.
        """
        symbols = list(values)
        k = len(self.columns)
        matrix = np.empty((len(symbols), k))
        for i, sym in enumerate(symbols):
            row = np.asarray(values[sym], dtype=np.float64).reshape(-1)
            if row.size != k:
                raise DataFormatError(
                    f"symbol {sym!r} has {row.size} value(s) but the ranker ranks {k} column(s) "
                    f"({', '.join(self.columns)}); pass one value per column, in that order."
                )
            matrix[i] = row
        ranks = _pct_rank_columns(matrix)
        return {sym: ranks[i] for i, sym in enumerate(symbols)}
