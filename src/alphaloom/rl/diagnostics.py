"""Collapse detection for trading policies: action entropy, turnover, time in market and flags.

A policy that learned nothing useful often collapses to one action: it never trades, sits flat, or buys and
holds. These pure functions take what a rollout produced (the per-bar target positions and the per-decision
position-size actions, e.g. from :meth:`alphaloom.rl.SingleAssetTradingEnv.rollout`) and say so.

Turnover and time in market are :func:`alphaloom.risk.measures.turnover` and
:func:`alphaloom.risk.measures.exposure`, the same measures the backtest reports.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from alphaloom.core.exceptions import DataFormatError
from alphaloom.risk import measures

__all__ = [
    "COLLAPSE_FLAGS",
    "CollapseReport",
    "action_entropy",
    "collapse_report",
    "n_trades",
    "time_in_market",
    "turnover",
]

#: Every flag :func:`collapse_report` can raise.
COLLAPSE_FLAGS: tuple[str, ...] = ("never_trades", "always_flat", "buy_and_hold", "constant_action")


def _vector(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] >= 1:
        arr = arr[:, 0]  # full actions [position_size, hold_time]: keep the position size
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must have shape (n,) or (n, k), got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise DataFormatError(f"{name} contains NaN or infinite values; pass a finite rollout.")
    return arr


def action_entropy(
    actions: npt.ArrayLike, *, bins: int = 21, low: float = -1.0, high: float = 1.0, normalise: bool = False
) -> float:
    """Shannon entropy of the histogram of position-size actions.

    Parameters
    ----------
    actions
        Position-size actions, shape ``(n,)``, or full actions ``(n, k)`` whose column 0 is the position size.
    bins
        Equal-width bins over ``[low, high]``; values outside are clipped into the end bins.
    low, high
        The action range (``Box([-1, ...], [1, ...])`` for the trading env).
    normalise
        Divide by ``log(bins)`` so the result lies in ``[0, 1]`` (1 = uniform over the bins).

    Returns
    -------
    float
        Entropy in nats (or unit-free when normalised); 0 for a constant action; NaN for no actions.
    """
    if bins < 2:
        raise DataFormatError(f"bins must be at least 2, got {bins}.")
    if not high > low:
        raise DataFormatError(f"high must be above low, got low={low}, high={high}.")
    a = _vector(actions, "actions")
    if a.size == 0:
        return math.nan
    counts, _ = np.histogram(np.clip(a, low, high), bins=bins, range=(low, high))
    p = counts[counts > 0] / a.size
    h = float(-np.sum(p * np.log(p)))
    h = max(h, 0.0)
    return h / math.log(bins) if normalise else h


def turnover(positions: npt.ArrayLike, *, initial_position: float = 0.0) -> float:
    """Mean absolute change of the target position per bar (:func:`alphaloom.risk.measures.turnover`)."""
    return measures.turnover(_vector(positions, "positions"), initial_weight=initial_position)


def time_in_market(positions: npt.ArrayLike, *, tolerance: float = 1e-3) -> float:
    """Share of bars with ``|position| > tolerance`` (:func:`alphaloom.risk.measures.exposure`)."""
    return measures.exposure(_vector(positions, "positions"), tolerance=tolerance)


def n_trades(positions: npt.ArrayLike, *, tolerance: float = 1e-3) -> int:
    """Number of bars whose position differs from the previous bar's by more than ``tolerance``.

    The first bar counts only against itself, so the opening position is not a trade: a policy that goes long
    once and holds has zero trades after the first.
    """
    p = _vector(positions, "positions")
    return int(np.sum(np.abs(np.diff(p)) > tolerance))


class CollapseReport(NamedTuple):
    """Diagnostics of one policy's rollout.

    ``entropy`` is the normalised action entropy (0 .. 1), ``turnover`` the mean absolute position change per
    bar, ``time_in_market`` the share of bars holding a position, ``n_trades`` the position changes after the
    first bar, and ``flags`` the collapse flags raised (a subset of :data:`COLLAPSE_FLAGS`, in that order).
    """

    entropy: float
    turnover: float
    time_in_market: float
    n_trades: int
    flags: tuple[str, ...]

    @property
    def collapsed(self) -> bool:
        """Whether any flag was raised."""
        return bool(self.flags)


def collapse_report(
    positions: npt.ArrayLike,
    actions: npt.ArrayLike | None = None,
    *,
    min_trades: int = 1,
    min_entropy: float = 0.05,
    tolerance: float = 1e-3,
    long_level: float = 0.95,
    bins: int = 21,
) -> CollapseReport:
    """Measure a rollout and flag a collapsed policy.

    Parameters
    ----------
    positions
        Target position per bar, shape ``(n,)`` (e.g. ``RolloutResult.targets``), as a fraction of equity.
    actions
        Position-size action per decision, ``(m,)`` or ``(m, k)``; the positions are used when omitted.
    min_trades
        Fewer position changes after the first bar than this flags ``"never_trades"``.
    min_entropy
        A normalised action entropy below this flags ``"constant_action"``.
    tolerance
        Position changes and positions at or below this size count as none.
    long_level
        ``"buy_and_hold"`` means every position is at least this long.
    bins
        Histogram bins of the action entropy.

    Returns
    -------
    CollapseReport
        Flags: ``"never_trades"`` (position never changes after the first bar), ``"always_flat"`` (never in
        the market), ``"buy_and_hold"`` (long about 1 on every bar), ``"constant_action"`` (entropy below
        ``min_entropy``).
    """
    p = _vector(positions, "positions")
    if p.size == 0:
        raise DataFormatError("positions is empty; collapse_report needs at least one bar.")
    a = p if actions is None else _vector(actions, "actions")
    entropy = action_entropy(a, bins=bins, normalise=True)
    trades = n_trades(p, tolerance=tolerance)
    in_market = time_in_market(p, tolerance=tolerance)
    flags = []
    if trades < min_trades:
        flags.append("never_trades")
    if in_market == 0.0:
        flags.append("always_flat")
    if bool(np.all(p >= long_level)):
        flags.append("buy_and_hold")
    if not entropy >= min_entropy:  # NaN (no actions) counts as constant
        flags.append("constant_action")
    return CollapseReport(
        entropy=entropy,
        turnover=turnover(p),
        time_in_market=in_market,
        n_trades=trades,
        flags=tuple(flags),
    )
