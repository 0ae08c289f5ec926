"""Factor-based construction: a factor-model prior and factor exposure limits.

Asset returns are regressed on factor returns by ordinary least squares with an intercept,
``r_t = alpha + B f_t + e_t``, giving loadings ``B`` ``(N, K)``. The factor model's moments are

``Sigma = B Sigma_f B' + D`` with ``Sigma_f`` the factors' sample covariance and ``D`` the diagonal of the
residual variances (unbiased, ``T - K - 1`` degrees of freedom), and ``mu = B mu_f`` (plus ``alpha`` with
``include_alpha``). The structure cuts the free parameters of the covariance from ``N(N+1)/2`` to
``NK + K(K+1)/2 + N`` and is positive definite whenever every residual variance is positive.

Factors are either given (for instance SPY, IWM, QQQ returns, or Fama-French series) or, when none are
given, the first ``n_factors`` principal components of the asset correlation matrix (statistical factors),
each as the return of its eigen-portfolio with unit gross exposure, so ``pc1`` is market-like and betas to
it are near 1.

Exposure limits bound the portfolio's loading on each factor, ``lo_k <= (B'w)_k <= hi_k`` (e.g. a market
beta between 0.8 and 1.0); they are linear constraints added to the mean-variance problem, which is then
solved by the conic solver.
"""

from __future__ import annotations

from typing import NamedTuple, Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.core.exceptions import ConfigError, DataFormatError, did_you_mean
from alphaloom.portfolio._solvers import ConicProblem
from alphaloom.portfolio.estimators import validate_returns
from alphaloom.portfolio.optimizers import MeanVariance, MeanVarianceConfig

__all__ = ["FactorModel", "FactorModelConfig", "FactorOptimizer", "fit_factor_model"]


class FactorModel(NamedTuple):
    """A fitted linear factor model (per-period units).

    Attributes
    ----------
    loadings
        ``(N, K)`` exposures ``B``, assets x factors.
    alpha
        ``(N,)`` intercepts.
    factor_covariance
        ``(K, K)``.
    factor_mean
        ``(K,)``.
    residual_variance
        ``(N,)`` idiosyncratic variances.
    """

    loadings: pd.DataFrame
    alpha: pd.Series
    factor_covariance: pd.DataFrame
    factor_mean: pd.Series
    residual_variance: pd.Series

    def covariance(self) -> pd.DataFrame:
        """``B Sigma_f B' + D``, ``(N, N)``."""
        b = self.loadings.to_numpy()
        cov = b @ self.factor_covariance.to_numpy() @ b.T + np.diag(self.residual_variance.to_numpy())
        return pd.DataFrame(0.5 * (cov + cov.T), index=self.loadings.index, columns=self.loadings.index)

    def expected_returns(self, include_alpha: bool = False) -> pd.Series:
        """``B mu_f`` (plus ``alpha`` when asked), ``(N,)``."""
        mu = self.loadings.to_numpy() @ self.factor_mean.to_numpy()
        if include_alpha:
            mu = mu + self.alpha.to_numpy()
        return pd.Series(mu, index=self.loadings.index)


def _pca_factors(returns: pd.DataFrame, k: int) -> pd.DataFrame:
    x = returns.to_numpy()
    sd = x.std(axis=0, ddof=1)
    z = (x - x.mean(axis=0)) / sd
    # right singular vectors of the standardised panel = eigenvectors of the correlation matrix
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    # each factor is the return of the eigen-portfolio (weights v_k / sd, unit gross exposure), so
    # factors are in return units and pc1, the market-like portfolio, gives betas near 1
    port = vt[:k] / sd
    port /= np.abs(port).sum(axis=1, keepdims=True)
    port *= np.where(port.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
    return pd.DataFrame(x @ port.T, index=returns.index, columns=[f"pc{i + 1}" for i in range(k)])


def fit_factor_model(
    returns: pd.DataFrame, factor_returns: pd.DataFrame | None = None, *, n_factors: int = 3
) -> FactorModel:
    """Fit ``r = alpha + B f + e`` by OLS.

    Parameters
    ----------
    returns
        ``(T, N)`` per-period asset returns.
    factor_returns
        ``(T', K)`` factor returns whose index covers every row of ``returns``; None = the first
        ``n_factors`` principal components of the standardised returns.
    n_factors
        Number of statistical factors when ``factor_returns`` is None.

    Raises
    ------
    DataFormatError
        Factor returns missing some dates of ``returns``, or non-finite.
    ConfigError
        Too many factors for the number of rows.
    """
    returns = validate_returns(returns)
    if factor_returns is None:
        if not 1 <= n_factors < min(returns.shape):
            raise ConfigError(
                f"n_factors must be between 1 and min(T, N) - 1 = {min(returns.shape) - 1}, got {n_factors}."
            )
        factors = _pca_factors(returns, n_factors)
    else:
        if not isinstance(factor_returns, pd.DataFrame):
            raise DataFormatError(f"factor_returns must be a DataFrame, got {type(factor_returns).__name__}.")
        missing = returns.index.difference(factor_returns.index)
        if len(missing):
            raise DataFormatError(
                f"factor_returns lack {len(missing)} dates of the asset returns (first {list(missing[:3])}); "
                "pass factor returns on the same dates."
            )
        factors = validate_returns(factor_returns.loc[returns.index], name="factor_returns")
        factors.columns = factors.columns.map(str)
    t, k = factors.shape
    if t <= k + 1:
        raise ConfigError(f"{t} rows cannot fit {k} factors plus an intercept; pass a longer history.")
    x = np.column_stack([np.ones(t), factors.to_numpy()])
    y = returns.to_numpy()
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)  # (K+1, N)
    resid = y - x @ coef
    res_var = (resid * resid).sum(axis=0) / (t - k - 1)
    assets = returns.columns.map(str)
    names = list(factors.columns)
    return FactorModel(
        loadings=pd.DataFrame(coef[1:].T, index=assets, columns=names),
        alpha=pd.Series(coef[0], index=assets),
        factor_covariance=pd.DataFrame(
            np.atleast_2d(np.cov(factors.to_numpy(), rowvar=False, ddof=1)), index=names, columns=names
        ),
        factor_mean=factors.mean(axis=0),
        residual_variance=pd.Series(res_var, index=assets),
    )


class FactorModelConfig(MeanVarianceConfig):
    """Factor-model settings (the mean-variance settings apply to the factor model's moments).

    Parameters
    ----------
    n_factors
        Statistical (PCA) factors when no factor returns are given.
    include_alpha
        Add the regression intercepts to the expected returns (default: factor premia only).
    factor_limits
        Factor name -> ``(min, max)`` of the portfolio's exposure ``(B'w)_k``. Statistical factors are
        named ``pc1``, ``pc2``, ...
    """

    n_factors: int = Field(default=3, ge=1)
    include_alpha: bool = False
    factor_limits: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _limits(self) -> Self:
        for name, (lo, hi) in self.factor_limits.items():
            if lo > hi:
                raise ValueError(f"factor_limits[{name!r}] = ({lo}, {hi}) has min above max")
        return self


class FactorOptimizer(MeanVariance):
    """Mean-variance on a factor-model prior, with factor exposure limits.

    Parameters
    ----------
    config
        The settings.
    factor_returns
        ``(T, K)`` factor returns covering the dates ``fit`` is given; None = statistical factors.

    After :meth:`fit`: ``factor_model_`` (:class:`FactorModel`) and ``exposures_`` (the portfolio's
    exposure to each factor, ``B'w``).
    """

    config_class = FactorModelConfig
    config: FactorModelConfig

    def __init__(
        self, config: FactorModelConfig | None = None, factor_returns: pd.DataFrame | None = None
    ) -> None:
        super().__init__(config)
        self.factor_returns = factor_returns

    def _estimate(self, returns: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
        model = fit_factor_model(returns, self.factor_returns, n_factors=self.config.n_factors)
        names = list(model.loadings.columns)
        unknown = [f for f in self.config.factor_limits if f not in names]
        if unknown:
            raise ConfigError(
                f"factor_limits name factor(s) {unknown} that the model does not have."
                f"{did_you_mean(unknown[0], names)} Factors: {names}."
            )
        self.factor_model_ = model
        return model.expected_returns(self.config.include_alpha), model.covariance()

    def _extend_problem(self, problem: ConicProblem, assets: list[str]) -> None:
        limits = self.config.factor_limits
        if not limits:
            return
        names = sorted(limits)
        problem.ineq_mat = self.factor_model_.loadings.loc[assets, names].to_numpy().T
        problem.ineq_lo = np.array([limits[f][0] for f in names])
        problem.ineq_hi = np.array([limits[f][1] for f in names])

    def _solve(self, mu: pd.Series, cov: pd.DataFrame, previous: np.ndarray | None) -> np.ndarray:
        if not hasattr(self, "factor_model_"):
            raise ConfigError("FactorOptimizer needs returns to fit its factor model; call fit(returns).")
        w = super()._solve(mu, cov, previous)
        loadings = self.factor_model_.loadings.loc[list(mu.index)]
        self.exposures_ = pd.Series(loadings.to_numpy().T @ w, index=loadings.columns, name="exposure")
        broken = [
            f"{f}: {self.exposures_[f]:.6g} outside [{lo:.6g}, {hi:.6g}]"
            for f, (lo, hi) in self.config.factor_limits.items()
            if not lo - 1e-6 <= self.exposures_[f] <= hi + 1e-6
        ]
        if broken:
            raise ConfigError(f"factor exposure limits not met: {'; '.join(broken)}; relax them.")
        return w

    def fit_moments(self, expected_returns, covariance, *, previous_weights=None):  # type: ignore[override]
        """Not available: the factor model is estimated from returns; call :meth:`fit`."""
        raise ConfigError("FactorOptimizer estimates its moments from returns; call fit(returns) instead.")
