"""Portfolio optimisers: one base class that owns validation and the fallback chain, small solver hooks.

Library choice. The general constrained problems (group limits, leverage, turnover, tracking error, factor
exposure limits, efficient-risk) are modelled with **cvxpy** and solved by **Clarabel** (an interior-point
conic solver in Rust): both are well kept, permissively licensed, and are the stack skfolio itself is built
on. skfolio, PyPortfolioOpt and riskfolio-lib are *not* runtime dependencies: each re-canonicalises a cvxpy
model on every call, which dominates the time of the common problems, so the common problems are solved
directly here and the three libraries are the peers the tests and ``bench/portfolio_opt.py`` check optima
against (same optimum to 5 significant figures, measured in the same run):

- budget + box bounds (long-only included) for min-variance, max-utility, efficient-return and max-Sharpe
  (long-only, via the homogeneous transform) go to a primal-dual active-set QP solver (one Cholesky solve
  of the free block per iteration); if it cycles, a primal active-set method finishes (the conic solver is
  the last resort, for a free block that is not positive definite);
- equal risk contribution / risk budgeting: Newton's method on the convex log-barrier form;
- hierarchical risk parity: closed form on the cluster tree (:mod:`alphaloom.portfolio.hrp`).

The contract (scikit-learn): ``__init__`` stores the config, :meth:`PortfolioOptimizer.fit` estimates the
moments, solves and sets ``weights_`` (a Series by asset), ``covariance_``, ``expected_returns_`` and
``fallback_`` and returns ``self``. Subclasses fill :meth:`PortfolioOptimizer._solve` (and optionally
:meth:`PortfolioOptimizer._estimate`); they cannot skip the input checks or the output check against the
constraints.

Failure policy (``on_failure``):

- ``"raise"`` (research, default): infeasible constraints raise :class:`ConfigError` with what to relax;
  a solver failure raises :class:`ModelError`.
- ``"fallback"`` (live loop): the failure is recorded in ``fallback_`` (:class:`FallbackRecord`: what failed,
  why, and which step was used) and the weights fall back to the previous weights passed to ``fit`` (if
  they cover the same assets and satisfy the constraints), else to equal weight (budget / N each).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal, NamedTuple, Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import AlphaloomError, ConfigError, DataFormatError, NotFittedError
from alphaloom.portfolio._solvers import ConicProblem, box_qp, risk_budget_newton, solve_conic
from alphaloom.portfolio.constraints import Constraints, constraint_violations
from alphaloom.portfolio.estimators import (
    CovarianceMethod,
    ExpectedReturnMethod,
    covariance_values,
    expected_return_values,
    validate_returns,
)

__all__ = [
    "EqualWeight",
    "EqualWeightConfig",
    "FallbackRecord",
    "MeanVariance",
    "MeanVarianceConfig",
    "OptimizerConfig",
    "PortfolioOptimizer",
    "RiskParity",
    "RiskParityConfig",
]

Objective = Literal["min_variance", "max_sharpe", "max_utility", "efficient_return", "efficient_risk"]


class FallbackRecord(NamedTuple):
    """Why an optimisation did not produce the weights in ``weights_``.

    Attributes
    ----------
    failed
        The optimiser that failed (class name).
    error
        The exception type's name.
    reason
        The error message.
    used
        The step whose weights were used: ``"previous_weights"`` or ``"equal_weight"``.
    skipped
        Steps tried before ``used`` and why each was not usable.
    violations
        Constraints the used weights break (can be non-empty only for the last resort, equal weight).
    """

    failed: str
    error: str
    reason: str
    used: Literal["previous_weights", "equal_weight"]
    skipped: tuple[str, ...] = ()
    violations: tuple[str, ...] = ()


class OptimizerConfig(ComponentConfig):
    """Settings every optimiser shares.

    Parameters
    ----------
    covariance
        Covariance estimator (:func:`~alphaloom.portfolio.estimators.estimate_covariance`).
    expected_returns
        Expected-return estimator (``"mean"`` or ``"ema"``), per period.
    ema_span
        Span in rows for ``expected_returns="ema"``.
    constraints
        What the weights must satisfy (:class:`~alphaloom.portfolio.constraints.Constraints`).
    on_failure
        ``"raise"`` (research) or ``"fallback"`` (live: previous weights, then equal weight, recorded).
    min_observations
        Fewest return rows accepted.
    """

    covariance: CovarianceMethod = "ledoit_wolf"
    expected_returns: ExpectedReturnMethod = "mean"
    ema_span: int = Field(default=180, ge=1)
    constraints: Constraints = Constraints()
    on_failure: Literal["raise", "fallback"] = "raise"
    min_observations: int = Field(default=20, ge=2)


class PortfolioOptimizer(ABC):
    """Base of every optimiser: validates, estimates, calls :meth:`_solve`, checks, falls back.

    Attributes (after :meth:`fit`)
    ------------------------------
    weights_ : pandas.Series
        Weights by asset (fractions of equity).
    covariance_ : pandas.DataFrame
        The per-period covariance used.
    expected_returns_ : pandas.Series
        The per-period expected returns used.
    fallback_ : FallbackRecord or None
        None when the optimiser's own solution was used.
    """

    #: Constraint fields (of :class:`Constraints`) the subclass honours beyond ``budget``.
    supported_constraints: ClassVar[frozenset[str]] = frozenset()
    config_class: ClassVar[type[OptimizerConfig]] = OptimizerConfig

    def __init__(self, config: OptimizerConfig | None = None) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}."
            )
        defaults = Constraints()
        used = {
            f
            for f in Constraints.model_fields
            if f != "budget" and getattr(config.constraints, f) != getattr(defaults, f)
        }
        unsupported = sorted(used - self.supported_constraints)
        if unsupported:
            raise ConfigError(
                f"{type(self).__name__} does not support the constraint(s) {unsupported}; it honours "
                f"{sorted(self.supported_constraints) or 'only the budget'}. Use MeanVariance for general "
                "constraints."
            )
        self.config = config

    # ------------------------------------------------------------------ public loop
    def fit(self, returns: pd.DataFrame, *, previous_weights: pd.Series | None = None) -> Self:
        """Estimate the moments on ``returns`` and solve for the weights.

        Parameters
        ----------
        returns
            Per-period simple returns, rows = time (oldest first), columns = assets; no NaN.
        previous_weights
            Weights held before this rebalance, by asset: the turnover constraint's reference and the
            first fallback step.

        Returns
        -------
        Self
            With ``weights_``, ``covariance_``, ``expected_returns_`` and ``fallback_`` set.
        """
        if not isinstance(returns, pd.DataFrame):
            raise DataFormatError(
                f"returns must be a pandas DataFrame (rows = time, columns = assets), got "
                f"{type(returns).__name__}."
            )
        if previous_weights is not None and not isinstance(previous_weights, pd.Series):
            raise DataFormatError(
                f"previous_weights must be a pandas Series by asset, got {type(previous_weights).__name__}."
            )
        assets = [str(c) for c in returns.columns]

        def moments() -> tuple[pd.Series, pd.DataFrame]:
            frame = validate_returns(returns, min_observations=self.config.min_observations)
            frame.columns = pd.Index(assets)
            return self._estimate(frame)

        return self._run(moments, assets, previous_weights)

    def fit_moments(
        self,
        expected_returns: pd.Series,
        covariance: pd.DataFrame,
        *,
        previous_weights: pd.Series | None = None,
    ) -> Self:
        """Solve on given moments (for instance a Black-Litterman posterior) instead of estimating them.

        Parameters
        ----------
        expected_returns
            Per-period expected returns by asset, shape ``(N,)``.
        covariance
            Per-period covariance, ``(N, N)``, labelled like ``expected_returns``; symmetric, finite.
        previous_weights
            As in :meth:`fit`.
        """
        if not isinstance(expected_returns, pd.Series) or not isinstance(covariance, pd.DataFrame):
            raise DataFormatError(
                "fit_moments needs expected_returns as a Series and covariance as a DataFrame, got "
                f"{type(expected_returns).__name__} and {type(covariance).__name__}."
            )
        assets = [str(a) for a in expected_returns.index]

        def moments() -> tuple[pd.Series, pd.DataFrame]:
            return _check_moments(expected_returns, covariance, assets)

        return self._run(moments, assets, previous_weights)

    def _run(self, moments, assets: list[str], previous_weights: pd.Series | None) -> Self:
        if previous_weights is not None and not isinstance(previous_weights, pd.Series):
            raise DataFormatError(
                f"previous_weights must be a pandas Series by asset, got {type(previous_weights).__name__}."
            )
        self.fallback_: FallbackRecord | None = None
        self.covariance_ = pd.DataFrame(dtype=np.float64)
        self.expected_returns_ = pd.Series(dtype=np.float64)
        try:
            prev = _align_previous(previous_weights, assets)
            if self.config.constraints.max_turnover is not None and prev is None:
                raise ConfigError(
                    "max_turnover needs the weights held before this rebalance: pass previous_weights= to "
                    "fit."
                )
            self.config.constraints.check_feasible_box(assets)
            mu, cov = moments()
            self.expected_returns_, self.covariance_ = mu, cov
            raw = np.asarray(self._solve(mu, cov, prev), dtype=np.float64)
            weights = pd.Series(raw, index=pd.Index(assets), name="weight")
            problems = constraint_violations(
                weights, self.config.constraints, previous_weights=previous_weights, covariance=cov
            )
            if problems:
                raise ConfigError(
                    f"{type(self).__name__} produced weights that break the constraints: "
                    f"{'; '.join(problems[:5])}. The constraints are probably infeasible together; relax one."
                )
        except AlphaloomError as exc:
            if self.config.on_failure == "raise":
                raise
            weights = self._fall_back(exc, previous_weights, assets)
        self.weights_ = weights
        self.n_features_in_ = len(assets)
        self.feature_names_in_ = np.asarray(assets, dtype=object)
        return self

    # ------------------------------------------------------------------ hooks
    def _estimate(self, returns: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
        """Expected returns ``(N,)`` and covariance ``(N, N)``, per period. Override for other priors."""
        # ``returns`` is already validated by fit: estimate on the arrays without checking them again
        cov = pd.DataFrame(
            covariance_values(returns.to_numpy(dtype=np.float64), self.config.covariance),
            index=returns.columns,
            columns=returns.columns,
        )
        mu = expected_return_values(returns, self.config.expected_returns, span=self.config.ema_span)
        return mu, cov

    @abstractmethod
    def _solve(self, mu: pd.Series, cov: pd.DataFrame, previous: np.ndarray | None) -> np.ndarray:
        """Weights ``(N,)`` in the order of ``mu``'s index; raise ConfigError/ModelError on failure."""

    # ------------------------------------------------------------------ helpers
    def _fall_back(self, exc: AlphaloomError, previous: pd.Series | None, assets: list[str]) -> pd.Series:
        skipped: list[str] = []
        c = self.config.constraints
        if previous is None:
            skipped.append("previous_weights: none were passed to fit")
        else:
            prev = previous.copy()
            prev.index = prev.index.map(str)
            missing = [a for a in assets if a not in prev.index]
            extra = [a for a in prev.index if a not in set(assets)]
            values = prev.reindex(assets).to_numpy(dtype=np.float64) if not missing else None
            if missing or extra:
                skipped.append(
                    f"previous_weights: assets differ from the returns columns (missing {missing[:5]}, "
                    f"extra {extra[:5]})"
                )
            elif not np.isfinite(values).all():
                skipped.append("previous_weights: not all finite")
            else:
                w_prev = pd.Series(values, index=pd.Index(assets), name="weight")
                problems = constraint_violations(w_prev, c)
                if problems:
                    skipped.append(f"previous_weights: break the constraints ({'; '.join(problems[:3])})")
                else:
                    self.fallback_ = FallbackRecord(
                        type(self).__name__, type(exc).__name__, str(exc), "previous_weights", tuple(skipped)
                    )
                    return w_prev
        eq = pd.Series(np.full(len(assets), c.budget / len(assets)), index=pd.Index(assets), name="weight")
        violations = tuple(constraint_violations(eq, c))
        self.fallback_ = FallbackRecord(
            type(self).__name__, type(exc).__name__, str(exc), "equal_weight", tuple(skipped), violations
        )
        return eq

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(returns) first.")

    def portfolio_returns(self, returns: pd.DataFrame) -> pd.Series:
        """Per-period returns of the fitted weights held constant (rebalanced every period).

        Parameters
        ----------
        returns
            Per-period simple returns with the fitted assets as columns.
        """
        self._check_fitted()
        missing = [a for a in self.weights_.index if a not in returns.columns]
        if missing:
            raise DataFormatError(f"returns lack the fitted assets {missing[:5]}.")
        frame = validate_returns(returns[self.weights_.index], min_observations=1)
        return frame @ self.weights_

    def risk_contributions(self) -> pd.Series:
        """Each asset's share of the portfolio variance, ``w_i (S w)_i / (w'Sw)``; sums to 1."""
        self._check_fitted()
        w = self.weights_.to_numpy()
        cov = self.covariance_.loc[self.weights_.index, self.weights_.index].to_numpy()
        sw = cov @ w
        return pd.Series(w * sw / (w @ sw), index=self.weights_.index, name="risk_contribution")


def _check_moments(mu: pd.Series, cov: pd.DataFrame, assets: list[str]) -> tuple[pd.Series, pd.DataFrame]:
    if len(assets) == 0 or len(set(assets)) != len(assets):
        raise DataFormatError("expected_returns must be indexed by unique asset names, at least one.")
    cov_assets = [str(a) for a in cov.index]
    if sorted(cov_assets) != sorted(assets) or sorted(map(str, cov.columns)) != sorted(assets):
        raise DataFormatError(
            "covariance must be labelled (index and columns) by exactly the assets of expected_returns; "
            f"got {cov_assets[:5]} vs {assets[:5]}."
        )
    c = cov.copy()
    c.index, c.columns = c.index.map(str), c.columns.map(str)
    c = c.loc[assets, assets].astype(np.float64)
    m = pd.Series(mu.to_numpy(dtype=np.float64), index=pd.Index(assets))
    values = c.to_numpy()
    if not (np.isfinite(values).all() and np.isfinite(m.to_numpy()).all()):
        raise DataFormatError("expected_returns and covariance must be finite (no NaN or inf).")
    if not np.allclose(values, values.T, rtol=1e-10, atol=1e-14):
        raise DataFormatError(
            "covariance must be symmetric; pass (C + C.T) / 2 if it is only numerically off."
        )
    return m, c


def _align_previous(previous: pd.Series | None, assets: list[str]) -> np.ndarray | None:
    if previous is None:
        return None
    prev = previous.copy()
    prev.index = prev.index.map(str)
    unknown = [a for a in prev.index if a not in set(assets)]
    if unknown:
        raise DataFormatError(
            f"previous_weights hold assets {unknown[:5]} that are not in the returns columns; sell them "
            "outside the optimiser or include their returns."
        )
    values = prev.reindex(assets).fillna(0.0).to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataFormatError("previous_weights must be finite.")
    return values


# ---------------------------------------------------------------------------------------------------------
# Mean-variance
# ---------------------------------------------------------------------------------------------------------


class MeanVarianceConfig(OptimizerConfig):
    """Mean-variance settings.

    Parameters
    ----------
    objective
        ``"min_variance"``; ``"max_sharpe"`` (excess return over ``risk_free_rate`` per unit volatility);
        ``"max_utility"`` (``mu'w - risk_aversion / 2 * w'Sw``); ``"efficient_return"`` (least variance
        with ``mu'w >= target_return``); ``"efficient_risk"`` (most return with volatility
        ``<= target_risk``).
    risk_aversion
        ``lambda`` of ``max_utility`` (per-period units: utility = return - lambda/2 variance).
    target_return
        Per-period expected return for ``efficient_return``.
    target_risk
        Per-period volatility for ``efficient_risk``.
    risk_free_rate
        Per-period risk-free return for ``max_sharpe``.
    solver
        ``"auto"`` (fast active-set solver where the problem allows, else conic) or ``"conic"`` (always
        cvxpy + Clarabel).
    """

    objective: Objective = "min_variance"
    risk_aversion: float = Field(default=1.0, gt=0.0)
    target_return: float | None = None
    target_risk: float | None = Field(default=None, gt=0.0)
    risk_free_rate: float = 0.0
    solver: Literal["auto", "conic"] = "auto"

    @model_validator(mode="after")
    def _targets(self) -> Self:
        if self.objective == "efficient_return" and self.target_return is None:
            raise ValueError("objective 'efficient_return' needs target_return (per-period return)")
        if self.objective == "efficient_risk" and self.target_risk is None:
            raise ValueError("objective 'efficient_risk' needs target_risk (per-period volatility)")
        return self


class MeanVariance(PortfolioOptimizer):
    """Markowitz mean-variance optimisation with every constraint of :class:`Constraints`.

    Attributes (after :meth:`fit`, besides the base class's)
    --------------------------------------------------------
    solver_ : str
        ``"active_set"`` (the QP solver of :mod:`alphaloom.portfolio._solvers`) or ``"clarabel"``.
    solver_info_ : dict
        ``method`` (``"pdas"``, ``"primal"`` after a PDAS cycle, or ``"clarabel"``) and iteration counts.

    Examples
    --------
    >>> opt = MeanVariance(MeanVarianceConfig(objective="max_sharpe")).fit(returns)  # doctest: +SKIP
    >>> opt.weights_                                                                   # doctest: +SKIP
    """

    supported_constraints = frozenset(Constraints.model_fields) - {"budget"}
    config_class = MeanVarianceConfig
    config: MeanVarianceConfig

    def _problem(self, mu: np.ndarray, cov: np.ndarray, assets: list[str], prev: np.ndarray | None):
        c = self.config.constraints
        cfg = self.config
        lo, hi = c.bounds_for(assets)
        names, gmat, glo, ghi = c.group_matrix(assets)
        return ConicProblem(
            objective=cfg.objective,
            mu=mu,
            cov=cov,
            budget=c.budget,
            lo=lo,
            hi=hi,
            risk_aversion=cfg.risk_aversion,
            target_return=cfg.target_return,
            target_risk=cfg.target_risk,
            risk_free_rate=cfg.risk_free_rate,
            group_mat=gmat if names else None,
            group_lo=glo,
            group_hi=ghi,
            max_leverage=c.max_leverage,
            previous=prev,
            max_turnover=c.max_turnover,
            benchmark=c.benchmark_for(assets) if c.max_tracking_error is not None else None,
            max_tracking_error=c.max_tracking_error,
        )

    def _solve(self, mu: pd.Series, cov: pd.DataFrame, previous: np.ndarray | None) -> np.ndarray:
        assets = list(mu.index)
        problem = self._problem(mu.to_numpy(), cov.to_numpy(), assets, previous)
        self._extend_problem(problem, assets)
        info: dict = {}
        fast = self._fast(problem, info) if self.config.solver == "auto" else None
        self.solver_ = "active_set" if fast is not None else "clarabel"
        self.solver_info_ = info if fast is not None else {"method": "clarabel"}
        return fast if fast is not None else solve_conic(problem)

    def _extend_problem(self, problem: ConicProblem, assets: list[str]) -> None:
        """Hook: add limits to the problem (the factor optimiser adds exposure limits)."""

    @staticmethod
    def _fast(p: ConicProblem, info: dict) -> np.ndarray | None:
        box_only = (
            p.group_mat is None
            and p.max_leverage is None
            and p.max_turnover is None
            and p.max_tracking_error is None
            and p.ineq_mat is None
        )
        if not box_only:
            return None
        n = p.mu.shape[0]
        ones = np.ones((1, n))
        if p.objective == "min_variance":
            return box_qp(p.cov, np.zeros(n), ones, np.array([p.budget]), p.lo, p.hi, info=info)
        if p.objective == "max_utility":
            return box_qp(p.risk_aversion * p.cov, -p.mu, ones, np.array([p.budget]), p.lo, p.hi, info=info)
        if p.objective == "efficient_return":
            # mu'w >= target: solve with equality; if the min-variance portfolio already beats the target
            # the inequality is slack and the min-variance solution is the answer.
            w0 = box_qp(p.cov, np.zeros(n), ones, np.array([p.budget]), p.lo, p.hi, info=info)
            if w0 is None:
                return None
            if p.mu @ w0 >= p.target_return - 1e-15:
                return w0
            a = np.vstack([ones, p.mu[None, :]])
            return box_qp(p.cov, np.zeros(n), a, np.array([p.budget, p.target_return]), p.lo, p.hi, info=info)
        if p.objective == "max_sharpe":
            # Long-only with non-binding upper bounds: min y'Sy s.t. (mu - rf)'y = 1, y >= 0; w = y / sum(y).
            if not (np.all(p.lo == 0.0) and np.all(p.hi >= p.budget)):
                return None
            excess = p.mu - p.risk_free_rate
            if (excess <= 0).all():
                return None  # the conic path raises the explanatory error
            y = box_qp(
                p.cov, np.zeros(n), excess[None, :], np.array([1.0]), p.lo, np.full(n, np.inf), info=info
            )
            if y is None or y.sum() <= 0:
                return None
            return p.budget * y / y.sum()
        return None


# ---------------------------------------------------------------------------------------------------------
# Risk parity / equal weight
# ---------------------------------------------------------------------------------------------------------


class RiskParityConfig(OptimizerConfig):
    """Risk budgeting settings.

    Parameters
    ----------
    risk_budgets
        Asset -> share of the portfolio variance it should carry (normalised to sum to 1); None (default)
        = equal risk contribution. Every asset must be listed and positive.
    tolerance
        Largest accepted error of a risk contribution (in units of the normalised budget).
    max_iter
        Most Newton iterations.
    """

    risk_budgets: dict[str, float] | None = None
    tolerance: float = Field(default=1e-10, gt=0.0, lt=1e-2)
    max_iter: int = Field(default=100, ge=1)


class RiskParity(PortfolioOptimizer):
    """Equal risk contribution (or given risk budgets), long-only, fully invested to the budget."""

    config_class = RiskParityConfig
    config: RiskParityConfig

    def _solve(self, mu: pd.Series, cov: pd.DataFrame, previous: np.ndarray | None) -> np.ndarray:
        assets = list(mu.index)
        if self.config.risk_budgets is None:
            budgets = np.ones(len(assets))
        else:
            rb = self.config.risk_budgets
            missing = [a for a in assets if a not in rb]
            unknown = [a for a in rb if a not in set(assets)]
            if missing or unknown:
                raise ConfigError(
                    f"risk_budgets must list exactly the assets: missing {missing[:5]}, "
                    f"unknown {unknown[:5]}."
                )
            budgets = np.array([rb[a] for a in assets], dtype=np.float64)
            if not (np.isfinite(budgets).all() and (budgets > 0).all()):
                raise ConfigError("risk_budgets must all be positive and finite.")
        y = risk_budget_newton(
            cov.to_numpy(), budgets, tol=self.config.tolerance, max_iter=self.config.max_iter
        )
        return self.config.constraints.budget * y / y.sum()


class EqualWeightConfig(OptimizerConfig):
    """Equal weight (1/N of the budget): the naive benchmark every optimiser should beat."""


class EqualWeight(PortfolioOptimizer):
    """Budget / N in every asset."""

    config_class = EqualWeightConfig

    def _solve(self, mu: pd.Series, cov: pd.DataFrame, previous: np.ndarray | None) -> np.ndarray:
        n = len(mu)
        return np.full(n, self.config.constraints.budget / n)
