"""Portfolio constraints: one frozen config, the checks every optimiser's output must pass.

:class:`Constraints` describes what a weight vector ``w`` (fractions of equity, negative = short) must
satisfy:

- budget: ``sum(w) == budget``;
- bounds: ``min_weight <= w_i <= max_weight``, overridden per asset by ``asset_bounds``;
- group (asset-class) limits: ``lo_g <= sum(w_i for i in g) <= hi_g``;
- leverage: ``sum(|w_i|) <= max_leverage``;
- turnover: ``sum(|w_i - w_prev_i|) <= max_turnover`` (needs previous weights);
- tracking error: ``sqrt((w - w_b)' Sigma (w - w_b)) <= max_tracking_error`` (per period, same units as the
  covariance's returns; needs ``benchmark_weights``).

:func:`constraint_violations` lists what a weight vector breaks; optimisers run it on their own output, the
fallback chain runs it on the previous weights, and the tests run it on every optimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, did_you_mean

__all__ = ["WEIGHT_TOLERANCE", "Constraints", "constraint_violations"]

#: Absolute tolerance (fraction of equity) within which a constraint counts as satisfied.
WEIGHT_TOLERANCE = 1e-6


class Constraints(ComponentConfig):
    """What a weight vector must satisfy (all weights are fractions of equity).

    Parameters
    ----------
    budget
        Sum of the weights (1.0 = fully invested).
    min_weight, max_weight
        Default bounds of every asset; ``min_weight < 0`` allows shorts.
    asset_bounds
        Per-asset ``(min, max)`` overriding the defaults, by asset name.
    groups
        Asset name -> group (asset class, sector). Assets not listed belong to no group.
    group_limits
        Group -> ``(min, max)`` of the group's summed weight.
    max_leverage
        Upper limit of gross exposure ``sum(|w|)``; None = no limit.
    max_turnover
        Upper limit of ``sum(|w - w_prev|)`` against the previous weights passed to ``fit``; None = no limit.
    max_tracking_error
        Upper limit of the per-period tracking-error volatility against ``benchmark_weights``; None = no
        limit.
    benchmark_weights
        Benchmark weights by asset (assets not listed weigh 0), for ``max_tracking_error``.
    """

    budget: float = Field(default=1.0, gt=0.0, le=100.0)
    min_weight: float = Field(default=0.0, ge=-100.0, le=100.0)
    max_weight: float = Field(default=1.0, ge=-100.0, le=100.0)
    asset_bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    groups: dict[str, str] = Field(default_factory=dict)
    group_limits: dict[str, tuple[float, float]] = Field(default_factory=dict)
    max_leverage: float | None = Field(default=None, gt=0.0)
    max_turnover: float | None = Field(default=None, ge=0.0)
    max_tracking_error: float | None = Field(default=None, gt=0.0)
    benchmark_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_weight > self.max_weight:
            raise ValueError(
                f"min_weight {self.min_weight} is above max_weight {self.max_weight}; swap or widen them"
            )
        for asset, (lo, hi) in self.asset_bounds.items():
            if lo > hi:
                raise ValueError(f"asset_bounds[{asset!r}] = ({lo}, {hi}) has min above max")
        for group, (lo, hi) in self.group_limits.items():
            if lo > hi:
                raise ValueError(f"group_limits[{group!r}] = ({lo}, {hi}) has min above max")
        named = set(self.groups.values())
        for group in self.group_limits:
            if group not in named:
                raise ValueError(
                    f"group_limits names group {group!r} but no asset is mapped to it in groups"
                    f"{did_you_mean(group, sorted(named))}"
                )
        if self.max_tracking_error is not None and not self.benchmark_weights:
            raise ValueError("max_tracking_error needs benchmark_weights (asset -> weight)")
        return self

    # ------------------------------------------------------------------ derived arrays
    def bounds_for(self, assets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bound of each asset, shape ``(N,)`` each, in the order of ``assets``.

        Raises
        ------
        ConfigError
            ``asset_bounds`` names an asset not in ``assets``.
        """
        _known(self.asset_bounds, assets, "asset_bounds")
        lo = np.full(len(assets), self.min_weight)
        hi = np.full(len(assets), self.max_weight)
        pos = {a: i for i, a in enumerate(assets)}
        for asset, (a_lo, a_hi) in self.asset_bounds.items():
            lo[pos[asset]], hi[pos[asset]] = a_lo, a_hi
        return lo, hi

    def group_matrix(self, assets: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Group membership: names ``(G,)``, 0/1 matrix ``(G, N)``, lower ``(G,)`` and upper ``(G,)`` limits.

        Only groups with limits are returned. Raises :class:`ConfigError` if ``groups`` names an asset not in
        ``assets``.
        """
        _known(self.groups, assets, "groups")
        names = sorted(self.group_limits)
        pos = {a: i for i, a in enumerate(assets)}
        mat = np.zeros((len(names), len(assets)))
        for g_idx, group in enumerate(names):
            for asset, g in self.groups.items():
                if g == group:
                    mat[g_idx, pos[asset]] = 1.0
        lo = np.array([self.group_limits[g][0] for g in names])
        hi = np.array([self.group_limits[g][1] for g in names])
        return names, mat, lo, hi

    def benchmark_for(self, assets: Sequence[str]) -> np.ndarray:
        """Benchmark weights in the order of ``assets`` (0 for assets the benchmark does not hold)."""
        _known(self.benchmark_weights, assets, "benchmark_weights")
        return np.array([self.benchmark_weights.get(a, 0.0) for a in assets])

    @property
    def is_box_only(self) -> bool:
        """True when only the budget and per-asset bounds constrain (the fast solvers' domain)."""
        return (
            not self.group_limits
            and self.max_leverage is None
            and self.max_turnover is None
            and self.max_tracking_error is None
        )

    def check_feasible_box(self, assets: Sequence[str]) -> None:
        """Raise :class:`ConfigError` when the bounds alone cannot meet the budget."""
        lo, hi = self.bounds_for(assets)
        if lo.sum() > self.budget + WEIGHT_TOLERANCE or hi.sum() < self.budget - WEIGHT_TOLERANCE:
            raise ConfigError(
                f"infeasible constraints: the weight bounds allow a total between {lo.sum():.6g} and "
                f"{hi.sum():.6g} over {len(assets)} assets, but the budget is {self.budget:.6g}; raise "
                "max_weight (or lower min_weight) so that N * min_weight <= budget <= N * max_weight."
            )
        if self.max_leverage is not None and self.budget > self.max_leverage + WEIGHT_TOLERANCE:
            raise ConfigError(
                f"infeasible constraints: budget {self.budget:.6g} exceeds max_leverage "
                f"{self.max_leverage:.6g}; gross exposure is at least the budget."
            )


def _known(mapping: Mapping[str, object], assets: Sequence[str], what: str) -> None:
    universe = set(assets)
    unknown = [a for a in mapping if a not in universe]
    if unknown:
        raise ConfigError(
            f"{what} names asset(s) {unknown[:5]} that are not in the returns columns."
            f"{did_you_mean(unknown[0], list(assets))} Assets: {list(assets)[:10]}"
            f"{' ...' if len(assets) > 10 else ''}."
        )


def constraint_violations(
    weights: pd.Series,
    constraints: Constraints,
    *,
    previous_weights: pd.Series | None = None,
    covariance: pd.DataFrame | None = None,
    tolerance: float = WEIGHT_TOLERANCE,
) -> list[str]:
    """What ``weights`` break, one readable line each; empty when every constraint holds.

    Parameters
    ----------
    weights
        Weights by asset, fractions of equity.
    constraints
        The constraints to check.
    previous_weights
        Weights before this rebalance (for ``max_turnover``); assets missing count as 0.
    covariance
        Per-period covariance labelled by asset (for ``max_tracking_error``).
    tolerance
        Slack allowed on every constraint, in weight units (the tracking error's slack is relative).
    """
    assets = [str(a) for a in weights.index]
    w = weights.to_numpy(dtype=np.float64)
    out: list[str] = []
    if not np.isfinite(w).all():
        return ["weights are not all finite"]
    total = w.sum()
    if abs(total - constraints.budget) > tolerance * max(1.0, len(w) ** 0.5):
        out.append(f"weights sum to {total:.8g}, not the budget {constraints.budget:.8g}")
    lo, hi = constraints.bounds_for(assets)
    below = np.flatnonzero(w < lo - tolerance)
    above = np.flatnonzero(w > hi + tolerance)
    for i in below[:5]:
        out.append(f"{assets[i]}: weight {w[i]:.6g} below its minimum {lo[i]:.6g}")
    for i in above[:5]:
        out.append(f"{assets[i]}: weight {w[i]:.6g} above its maximum {hi[i]:.6g}")
    names, mat, g_lo, g_hi = constraints.group_matrix(assets)
    for name, row, a, b in zip(names, mat, g_lo, g_hi, strict=True):
        s = float(row @ w)
        if s < a - tolerance or s > b + tolerance:
            out.append(f"group {name!r}: weight {s:.6g} outside [{a:.6g}, {b:.6g}]")
    if constraints.max_leverage is not None:
        gross = float(np.abs(w).sum())
        if gross > constraints.max_leverage + tolerance:
            out.append(f"gross exposure {gross:.6g} above max_leverage {constraints.max_leverage:.6g}")
    if constraints.max_turnover is not None and previous_weights is not None:
        prev = previous_weights.reindex(weights.index).fillna(0.0).to_numpy(dtype=np.float64)
        turn = float(np.abs(w - prev).sum())
        if turn > constraints.max_turnover + tolerance:
            out.append(f"turnover {turn:.6g} above max_turnover {constraints.max_turnover:.6g}")
    if constraints.max_tracking_error is not None and covariance is not None:
        active = w - constraints.benchmark_for(assets)
        cov = covariance.loc[weights.index, weights.index].to_numpy()
        te = float(np.sqrt(max(active @ cov @ active, 0.0)))
        if te > constraints.max_tracking_error * (1 + 1e-4) + 1e-12:
            out.append(
                f"tracking error {te:.6g} above max_tracking_error {constraints.max_tracking_error:.6g}"
            )
    return out
