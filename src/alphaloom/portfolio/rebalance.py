"""Rebalancing policies: when (and how far) to trade from the drifted weights back to the targets.

A policy sees the current weights (after the market moved them), the target weights of the optimiser and
what it knows up to now (bar index, an exponentially weighted covariance of past returns), and returns the
weights to trade to, or None for "do not trade". The base class owns the loop and the checks; policies
fill one hook, :meth:`RebalancePolicy._decide`.

- :class:`CalendarPolicy`: every ``every`` bars, back to target (time-based);
- :class:`DriftPolicy`: when any weight is more than ``threshold`` away from its target, back to target;
- :class:`VolatilityTargetPolicy`: targets scaled so the portfolio's predicted volatility is
  ``target_volatility`` (capped at ``max_leverage``), traded when they move more than ``threshold``;
- :class:`NoTradeBandPolicy` (transaction-cost-aware): an asset trades only when it is more than ``band``
  from its target, and then only back to the *edge* of the band, not to the target. Under proportional costs
  the optimal policy has exactly this shape (a no-trade region around the target; Davis and Norman 1990,
  Leland 2000): small drifts never pay the spread, and each trade is the smallest that restores the band.

:meth:`RebalancePolicy.simulate` walks a price panel and returns the order path as target weights per bar,
NaN where the policy does not trade, the shape ``alphaloom.backtest.vectorized.from_target_weights``
executes (decide at the close of bar ``t``, fill at the open of ``t + 1``). Between trades the weights drift
with close-to-close returns; cash is ``1 - sum(w)`` and earns nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError

__all__ = [
    "CalendarConfig",
    "CalendarPolicy",
    "DriftConfig",
    "DriftPolicy",
    "NoTradeBandConfig",
    "NoTradeBandPolicy",
    "RebalanceContext",
    "RebalancePath",
    "RebalancePolicy",
    "VolatilityTargetConfig",
    "VolatilityTargetPolicy",
]


class RebalanceContext(NamedTuple):
    """What a policy knows when it decides at the close of bar ``step``.

    Attributes
    ----------
    step
        Bar index (0-based).
    covariance
        ``(N, N)`` per-period covariance estimated from returns up to and including bar ``step`` (EWMA), or
        None when not yet available.
    """

    step: int
    covariance: np.ndarray | None = None


class RebalancePath(NamedTuple):
    """The outcome of :meth:`RebalancePolicy.simulate`.

    Attributes
    ----------
    orders
        ``(T, N)`` weights to trade to at each bar's close, NaN where the policy did not trade (the input
        of ``from_target_weights``).
    weights
        ``(T, N)`` weights held after each bar's decision (drifted, or traded to).
    turnover
        ``(T,)`` ``sum(|traded weight|)`` at each bar.
    n_rebalances
        Bars on which the policy traded.
    """

    orders: pd.DataFrame
    weights: pd.DataFrame
    turnover: pd.Series
    n_rebalances: int


class RebalancePolicy(ABC):
    """Base of the policies: validates inputs, owns the simulation loop; subclasses fill :meth:`_decide`."""

    config_class: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig | None = None) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}."
            )
        self.config = config

    #: EWMA decay of the covariance handed to policies in :meth:`simulate` (about a 3-month half-life).
    ewma_halflife: ClassVar[float] = 63.0

    def rebalance(self, current: pd.Series, target: pd.Series, context: RebalanceContext) -> pd.Series:
        """Trades (new weight minus current weight, by asset) at one decision; all zero = no trade.

        Parameters
        ----------
        current
            Weights held now (after the market moved them), by asset.
        target
            Target weights by asset, the same assets.
        context
            What the policy knows now.
        """
        cur, tgt = _aligned(current, target)
        new = self._decide(cur.to_numpy(), tgt.to_numpy(), context)
        if new is None:
            return pd.Series(0.0, index=cur.index, name="trade")
        new = np.asarray(new, dtype=np.float64)
        if new.shape != cur.shape or not np.isfinite(new).all():
            raise DataFormatError(f"{type(self).__name__} returned invalid weights {new!r}.")
        return pd.Series(new - cur.to_numpy(), index=cur.index, name="trade")

    @abstractmethod
    def _decide(
        self, current: np.ndarray, target: np.ndarray, context: RebalanceContext
    ) -> np.ndarray | None:
        """Weights ``(N,)`` to trade to, or None to hold."""

    def simulate(self, prices: pd.DataFrame, targets: pd.DataFrame | pd.Series) -> RebalancePath:
        """Run the policy over a price panel.

        Parameters
        ----------
        prices
            ``(T, N)`` close prices, positive and finite, rows in time order.
        targets
            Target weights: a Series (constant targets) or a ``(T, N)`` frame on the same index and columns
            (row ``t`` is the target known at the close of bar ``t``; NaN rows keep the previous target).
            Before the first target the portfolio holds cash.

        Returns
        -------
        RebalancePath
            The order path and what was held. Bar 0 always trades to the first target (the initial
            allocation).
        """
        if not isinstance(prices, pd.DataFrame):
            raise DataFormatError(
                f"prices must be a DataFrame (rows = time, columns = assets), got {type(prices).__name__}."
            )
        px = prices.to_numpy(dtype=np.float64)
        if len(px) < 2:
            raise DataFormatError("prices need at least two rows to simulate rebalancing.")
        if not (np.isfinite(px).all() and (px > 0).all()):
            raise DataFormatError(
                "prices must be positive and finite everywhere; align and fill the panel first."
            )
        if isinstance(targets, pd.Series):
            missing = [c for c in prices.columns if c not in targets.index]
            if missing:
                raise DataFormatError(f"targets lack assets {missing[:5]}.")
            tg = np.tile(targets.reindex(prices.columns).to_numpy(dtype=np.float64), (len(px), 1))
        elif isinstance(targets, pd.DataFrame):
            if not targets.index.equals(prices.index) or list(targets.columns) != list(prices.columns):
                raise DataFormatError("targets must have the same index and columns as prices.")
            tg = targets.ffill().to_numpy(dtype=np.float64)
            if np.isinf(tg).any():
                raise DataFormatError("targets must be finite or NaN.")
        else:
            raise DataFormatError(f"targets must be a Series or DataFrame, got {type(targets).__name__}.")
        t_n, n = px.shape
        rets = np.vstack([np.zeros((1, n)), px[1:] / px[:-1] - 1.0])
        decay = 0.5 ** (1.0 / self.ewma_halflife)
        cov = np.zeros((n, n))
        cov_weight = 0.0
        w = np.zeros(n)
        orders = np.full((t_n, n), np.nan)
        held = np.zeros((t_n, n))
        turnover = np.zeros(t_n)
        started = False
        for t in range(t_n):
            if t > 0:
                r = rets[t]
                growth = 1.0 + w @ r
                w = w * (1.0 + r) / growth if growth > 0 else np.zeros(n)
                cov = decay * cov + (1.0 - decay) * np.outer(r, r)
                cov_weight = decay * cov_weight + (1.0 - decay)
            target = tg[t]
            if np.isnan(target).any():
                held[t] = w
                continue
            ctx = RebalanceContext(t, cov / cov_weight if t >= 20 and cov_weight > 0 else None)
            if not started:
                new = self._initial(target, ctx)
                started = True
            else:
                new = self._decide(w.copy(), target, ctx)
            if new is not None:
                new = np.asarray(new, dtype=np.float64)
                traded = float(np.abs(new - w).sum())
                if traded > 0:
                    orders[t] = new
                    turnover[t] = traded
                    w = new
            held[t] = w
        idx, cols = prices.index, prices.columns
        return RebalancePath(
            pd.DataFrame(orders, index=idx, columns=cols),
            pd.DataFrame(held, index=idx, columns=cols),
            pd.Series(turnover, index=idx, name="turnover"),
            int((turnover > 0).sum()),
        )

    def _initial(self, target: np.ndarray, context: RebalanceContext) -> np.ndarray:
        return target


def _aligned(current: pd.Series, target: pd.Series) -> tuple[pd.Series, pd.Series]:
    if not isinstance(current, pd.Series) or not isinstance(target, pd.Series):
        raise DataFormatError("current and target weights must be pandas Series by asset.")
    if set(current.index) != set(target.index):
        raise DataFormatError(
            f"current and target weights must cover the same assets; only in current: "
            f"{sorted(set(current.index) - set(target.index))[:5]}, only in target: "
            f"{sorted(set(target.index) - set(current.index))[:5]}."
        )
    tgt = target.reindex(current.index).astype(np.float64)
    cur = current.astype(np.float64)
    if not (np.isfinite(cur.to_numpy()).all() and np.isfinite(tgt.to_numpy()).all()):
        raise DataFormatError("current and target weights must be finite.")
    return cur, tgt


# ---------------------------------------------------------------------------------------------------------


class CalendarConfig(ComponentConfig):
    """Time-based rebalancing.

    Parameters
    ----------
    every
        Bars between rebalances (21 is about monthly on daily bars).
    """

    every: int = Field(default=21, ge=1)


class CalendarPolicy(RebalancePolicy):
    """Back to target every ``every`` bars, whatever the drift."""

    config_class = CalendarConfig
    config: CalendarConfig

    def _decide(
        self, current: np.ndarray, target: np.ndarray, context: RebalanceContext
    ) -> np.ndarray | None:
        return target if context.step % self.config.every == 0 else None


class DriftConfig(ComponentConfig):
    """Drift-threshold rebalancing.

    Parameters
    ----------
    threshold
        Largest accepted ``|w_i - target_i|`` (fraction of equity) before the whole book goes back to target.
    """

    threshold: float = Field(default=0.05, gt=0.0, le=10.0)


class DriftPolicy(RebalancePolicy):
    """Back to target when any weight drifted more than ``threshold`` from its target."""

    config_class = DriftConfig
    config: DriftConfig

    def _decide(
        self, current: np.ndarray, target: np.ndarray, context: RebalanceContext
    ) -> np.ndarray | None:
        return target if np.abs(current - target).max() > self.config.threshold else None


class VolatilityTargetConfig(ComponentConfig):
    """Volatility-targeted rebalancing.

    Parameters
    ----------
    target_volatility
        Annualised volatility the scaled portfolio aims for (0.10 = 10 %).
    periods_per_year
        Bars per year, to annualise the per-bar covariance.
    max_leverage
        Largest scale applied to the targets' gross exposure.
    threshold
        Largest accepted ``|w_i - scaled_target_i|`` before trading back.
    """

    target_volatility: float = Field(default=0.10, gt=0.0, le=5.0)
    periods_per_year: float = Field(default=252.0, gt=0.0)
    max_leverage: float = Field(default=1.0, gt=0.0, le=10.0)
    threshold: float = Field(default=0.02, ge=0.0, le=10.0)


class VolatilityTargetPolicy(RebalancePolicy):
    """Targets scaled to a volatility goal with the EWMA covariance known so far."""

    config_class = VolatilityTargetConfig
    config: VolatilityTargetConfig

    def scaled(self, target: np.ndarray, covariance: np.ndarray | None) -> np.ndarray:
        """``target`` scaled to the volatility goal (unscaled while no covariance is available)."""
        if covariance is None:
            return target
        cfg = self.config
        vol = float(np.sqrt(max(target @ covariance @ target, 0.0) * cfg.periods_per_year))
        gross = float(np.abs(target).sum())
        cap = cfg.max_leverage / gross if gross > 0 else 0.0
        scale = min(cfg.target_volatility / vol, cap) if vol > 0 else cap
        return target * scale

    def _initial(self, target: np.ndarray, context: RebalanceContext) -> np.ndarray:
        return self.scaled(target, context.covariance)

    def _decide(
        self, current: np.ndarray, target: np.ndarray, context: RebalanceContext
    ) -> np.ndarray | None:
        goal = self.scaled(target, context.covariance)
        return goal if np.abs(current - goal).max() > self.config.threshold else None


class NoTradeBandConfig(ComponentConfig):
    """Transaction-cost-aware rebalancing with a no-trade band.

    Parameters
    ----------
    band
        Half-width of the no-trade band around each target weight (fraction of equity). A useful start is
        a few times the round-trip cost in weight terms; 0.02-0.05 for daily equity portfolios.
    """

    band: float = Field(default=0.03, gt=0.0, le=10.0)


class NoTradeBandPolicy(RebalancePolicy):
    """Trade only assets outside ``target +- band``, and only back to the band's edge."""

    config_class = NoTradeBandConfig
    config: NoTradeBandConfig

    def _decide(
        self, current: np.ndarray, target: np.ndarray, context: RebalanceContext
    ) -> np.ndarray | None:
        band = self.config.band
        new = np.clip(current, target - band, target + band)
        return new if np.abs(new - current).max() > 0 else None
