"""Per-bar reward functions of the trading environment.

A reward object is reset at the start of an episode and then fed each bar's equity, in order; it keeps
whatever running state it needs (peak equity, moment estimates, a window of past returns), so a reward at
bar ``t`` can only depend on equity up to the close of bar ``t``.

The seed design's reward, ``returns * sharpe_ratio - max_drawdown * 0.1``, had three bugs, fixed in
``seed_risk_adjusted``: a loss times a negative Sharpe gave a positive reward; the running *maximum*
drawdown was charged on every step, a constant the agent cannot change once it is hit; and the Sharpe ratio
was of nothing in particular. Here the return keeps its sign, the charge is on the *current* drawdown
(time spent under water), and the Sharpe is the strategy's own over its recent bars.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque

import numpy as np

from alphaloom.risk.measures import sharpe_ratio

__all__ = ["RewardFunction", "bar_sharpe", "make_reward"]

# A prior variance for the differential Sharpe ratio's moment estimates (1% per bar): without it the first
# few bars divide by a variance close to zero and produce rewards in the thousands.
_DSR_PRIOR_VAR = 1e-4
_DSR_CLIP = 10.0
_MIN_EQUITY = 1e-12


def bar_sharpe(returns: np.ndarray) -> float:
    """Per-bar Sharpe ratio (:func:`alphaloom.risk.measures.sharpe_ratio` with ``periods_per_year=1``).

    Parameters
    ----------
    returns
        Shape (n,), simple returns per bar.

    Returns
    -------
    float
        0.0 where the Sharpe ratio is undefined (fewer than two returns, zero volatility): a neutral score
        for rewards and ensemble weights rather than a NaN that would poison them.
    """
    s = sharpe_ratio(returns, periods_per_year=1)
    return 0.0 if math.isnan(s) else s


class RewardFunction(ABC):
    """Base of the per-bar rewards: ``reset`` at the episode start, then ``bar`` once per executed bar."""

    def __init__(self, *, scale: float, drawdown_penalty: float) -> None:
        self.scale = scale
        self.drawdown_penalty = drawdown_penalty
        self._peak = 1.0

    def reset(self, initial_equity: float) -> None:
        self._peak = initial_equity

    def _drawdown(self, equity: float) -> float:
        self._peak = max(self._peak, equity)
        return 1.0 - equity / self._peak if self._peak > 0 else 0.0

    @abstractmethod
    def bar(self, prev_equity: float, equity: float) -> float:
        """Reward for one bar whose equity went from ``prev_equity`` to ``equity`` (account currency)."""


class _LogReturnDrawdown(RewardFunction):
    # Log return of equity, minus a charge on every deepening of the drawdown (recoveries are not paid).
    def reset(self, initial_equity: float) -> None:
        super().reset(initial_equity)
        self._dd = 0.0

    def bar(self, prev_equity: float, equity: float) -> float:
        log_ret = math.log(max(equity, _MIN_EQUITY) / prev_equity)
        dd = self._drawdown(equity)
        deepening = max(dd - self._dd, 0.0)
        self._dd = dd
        return self.scale * (log_ret - self.drawdown_penalty * deepening)


class _DifferentialSharpe(RewardFunction):
    # Moody and Saffell (1998): the first-order change of an exponentially weighted Sharpe ratio when one
    # more return arrives. Unit-free, so it is not multiplied by ``scale``.
    def __init__(self, *, scale: float, drawdown_penalty: float, eta: float) -> None:
        super().__init__(scale=scale, drawdown_penalty=drawdown_penalty)
        self.eta = eta

    def reset(self, initial_equity: float) -> None:
        super().reset(initial_equity)
        self._a = 0.0
        self._b = _DSR_PRIOR_VAR

    def bar(self, prev_equity: float, equity: float) -> float:
        r = equity / prev_equity - 1.0
        da, db = r - self._a, r * r - self._b
        var = self._b - self._a * self._a
        d = (self._b * da - 0.5 * self._a * db) / var**1.5 if var > 1e-12 else 0.0
        self._a += self.eta * da
        self._b += self.eta * db
        return float(np.clip(d, -_DSR_CLIP, _DSR_CLIP))


class _SeedRiskAdjusted(RewardFunction):
    # The seed design's intent with its bugs fixed (see the module docstring):
    # r_t * (1 + max(S_t, 0)) - penalty * drawdown_t, S_t the Sharpe of the last ``window`` bar returns.
    def __init__(self, *, scale: float, drawdown_penalty: float, window: int) -> None:
        super().__init__(scale=scale, drawdown_penalty=drawdown_penalty)
        self._window: deque[float] = deque(maxlen=window)

    def reset(self, initial_equity: float) -> None:
        super().reset(initial_equity)
        self._window.clear()

    def bar(self, prev_equity: float, equity: float) -> float:
        r = equity / prev_equity - 1.0
        self._window.append(r)
        s = bar_sharpe(np.fromiter(self._window, dtype=np.float64, count=len(self._window)))
        dd = self._drawdown(equity)
        return self.scale * (r * (1.0 + max(s, 0.0)) - self.drawdown_penalty * dd)


def make_reward(
    kind: str, *, scale: float, drawdown_penalty: float, sharpe_window: int, dsr_eta: float
) -> RewardFunction:
    """Build the reward named ``kind`` (one of the values ``TradingEnvConfig.reward`` accepts)."""
    if kind == "log_return_dd":
        return _LogReturnDrawdown(scale=scale, drawdown_penalty=drawdown_penalty)
    if kind == "differential_sharpe":
        return _DifferentialSharpe(scale=scale, drawdown_penalty=drawdown_penalty, eta=dsr_eta)
    if kind == "seed_risk_adjusted":
        return _SeedRiskAdjusted(scale=scale, drawdown_penalty=drawdown_penalty, window=sharpe_window)
    raise ValueError(
        f"unknown reward {kind!r}; expected 'log_return_dd', 'differential_sharpe' or 'seed_risk_adjusted'."
    )
