"""Black-Litterman with views generated from the CNN+LSTM forecasts.

The prior is the market-implied equilibrium ``pi = delta * Sigma * w_mkt + r_f`` (He and Litterman 1999)
with market weights from the config (equal weight when none are given), or the historical mean. Each
forecast row gives one absolute view on its asset:

- ``Q_i = expm1(pred_return_i / horizon)``: the forecaster's expected forward *log* return over ``horizon``
  bars, turned into a per-period simple return (the prior's units);
- confidence ``c_i = |p_up_i - p_down_i|``, from the *calibrated* class probabilities: 0 when the model
  puts as much mass on a fall as on a rise, 1 when all mass is on one side. It is clipped to
  ``[min_confidence, max_confidence]`` so every view keeps a finite, positive uncertainty;
- uncertainty ``Omega_ii = tau * (P Sigma P')_ii * (1 - c_i) / c_i``: at ``c = 0.5`` the view is as
  uncertain as the prior, as ``c -> 1`` the posterior goes to the view, as ``c -> 0`` it stays at the prior
  (the closed form used by Walters 2014 for Idzorek-style confidence, which needs no inner optimisation).

Posterior (He-Litterman form, identical to PyPortfolioOpt's ``BlackLittermanModel``, which the tests check):

``mu_BL = pi + tau Sigma P' (tau P Sigma P' + Omega)^-1 (Q - P pi)``

``Sigma_BL = Sigma + tau Sigma - tau Sigma P' (tau P Sigma P' + Omega)^-1 P tau Sigma``

With no views the posterior mean is the prior exactly. The posterior moments then go to a mean-variance
objective (:class:`~alphaloom.portfolio.optimizers.MeanVariance`, ``max_utility`` with ``delta`` by default).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.portfolio.optimizers import MeanVariance, MeanVarianceConfig, Objective

__all__ = [
    "FORECAST_VIEW_COLUMNS",
    "BlackLitterman",
    "BlackLittermanConfig",
    "Views",
    "black_litterman_posterior",
    "implied_returns",
    "views_from_forecasts",
]

#: Columns a forecasts frame must have (one row per asset, indexed by asset, or with a ``symbol`` column).
FORECAST_VIEW_COLUMNS: tuple[str, ...] = ("p_up", "p_down", "pred_return")


class Views(NamedTuple):
    """Black-Litterman views: ``P w`` is expected to return ``Q`` with uncertainty ``Omega``.

    Attributes
    ----------
    P
        ``(K, N)`` pick matrix (one row per view).
    Q
        ``(K,)`` per-period expected returns of the views.
    omega
        ``(K, K)`` diagonal covariance of the views' errors.
    confidence
        ``(K,)`` confidence of each view in ``(0, 1)``.
    assets
        ``(K,)`` the asset each view is about.
    """

    P: np.ndarray
    Q: np.ndarray
    omega: np.ndarray
    confidence: np.ndarray
    assets: tuple[str, ...]


def implied_returns(
    covariance: pd.DataFrame, market_weights: pd.Series, risk_aversion: float, risk_free_rate: float = 0.0
) -> pd.Series:
    """Market-implied per-period excess returns ``delta * Sigma * w_mkt`` plus ``risk_free_rate``.

    Parameters
    ----------
    covariance
        ``(N, N)`` per-period covariance.
    market_weights
        Market (capitalisation) weights by asset; missing assets weigh 0.
    risk_aversion
        ``delta``, per-period units.
    risk_free_rate
        Per-period risk-free return.
    """
    w = market_weights.reindex(covariance.index).fillna(0.0).to_numpy(dtype=np.float64)
    return pd.Series(risk_aversion * covariance.to_numpy() @ w + risk_free_rate, index=covariance.index)


def views_from_forecasts(
    forecasts: pd.DataFrame,
    covariance: pd.DataFrame,
    *,
    tau: float = 0.05,
    horizon: int = 1,
    min_confidence: float = 1e-3,
    max_confidence: float = 0.999,
) -> Views:
    """One absolute view per forecast row (see the module docstring for the mapping).

    Parameters
    ----------
    forecasts
        Indexed by asset (or with a ``symbol`` column), columns ``p_up``, ``p_down`` (calibrated
        probabilities in [0, 1]) and ``pred_return`` (forward log return over ``horizon`` bars).
    covariance
        ``(N, N)`` per-period covariance labelled by asset.
    tau
        Scale of the prior's uncertainty.
    horizon
        Bars the forecast's ``pred_return`` spans.
    min_confidence, max_confidence
        Clip of the confidence, so that ``Omega`` stays finite and positive.

    Raises
    ------
    DataFormatError
        Missing columns, an asset not in the covariance, a duplicate asset, probabilities outside [0, 1] or
        non-finite values.
    """
    frame = forecasts
    if "symbol" in frame.columns:
        frame = frame.set_index("symbol")
    missing = [c for c in FORECAST_VIEW_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"forecasts lack columns {missing}; they need {list(FORECAST_VIEW_COLUMNS)} (the CNN+LSTM's "
            "`forecasts` table has them)."
        )
    frame = frame.copy()
    frame.index = frame.index.map(str)
    if frame.index.has_duplicates:
        dup = sorted(set(frame.index[frame.index.duplicated()]))
        raise DataFormatError(f"forecasts have several rows for {dup[:5]}; pass one (the latest) per asset.")
    universe = [str(a) for a in covariance.index]
    unknown = [a for a in frame.index if a not in set(universe)]
    if unknown:
        raise DataFormatError(f"forecasts name assets {unknown[:5]} that are not in the returns columns.")
    vals = frame[list(FORECAST_VIEW_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(vals).all():
        raise DataFormatError(
            "forecasts hold NaN or infinite p_up/p_down/pred_return; drop those rows first."
        )
    p_up, p_down, pred = vals[:, 0], vals[:, 1], vals[:, 2]
    if ((vals[:, :2] < 0) | (vals[:, :2] > 1)).any() or (p_up + p_down > 1 + 1e-6).any():
        raise DataFormatError(
            "forecast probabilities p_up and p_down must lie in [0, 1] and sum to at most 1."
        )
    if not 0.0 < min_confidence <= max_confidence < 1.0:
        raise ConfigError(
            f"need 0 < min_confidence <= max_confidence < 1, got {min_confidence}, {max_confidence}."
        )
    k, n = len(frame), len(universe)
    pos = {a: i for i, a in enumerate(universe)}
    P = np.zeros((k, n))
    for row, asset in enumerate(frame.index):
        P[row, pos[asset]] = 1.0
    Q = np.expm1(pred / horizon)
    conf = np.clip(np.abs(p_up - p_down), min_confidence, max_confidence)
    prior_var = tau * np.einsum("kn,nm,km->k", P, covariance.to_numpy(), P)
    omega = np.diag(prior_var * (1.0 - conf) / conf)
    return Views(P, Q, omega, conf, tuple(frame.index))


def black_litterman_posterior(
    prior: pd.Series, covariance: pd.DataFrame, views: Views | None, *, tau: float = 0.05
) -> tuple[pd.Series, pd.DataFrame]:
    """Posterior mean and covariance (He-Litterman form; see the module docstring).

    Parameters
    ----------
    prior
        ``(N,)`` prior per-period expected returns.
    covariance
        ``(N, N)`` per-period covariance.
    views
        The views, or None / zero views: the posterior mean is then the prior and the covariance
        ``(1 + tau) Sigma``.
    tau
        Scale of the prior's uncertainty.
    """
    sigma = covariance.to_numpy(dtype=np.float64)
    pi = prior.reindex(covariance.index).to_numpy(dtype=np.float64)
    if views is None or len(views.Q) == 0:
        return (
            pd.Series(pi, index=covariance.index),
            pd.DataFrame((1.0 + tau) * sigma, index=covariance.index, columns=covariance.columns),
        )
    ts = tau * sigma
    tsp = ts @ views.P.T  # (N, K)
    middle = views.P @ tsp + views.omega  # (K, K)
    gain = np.linalg.solve(middle, np.column_stack([views.Q - views.P @ pi, tsp.T]))
    mu = pi + tsp @ gain[:, 0]
    post_cov = sigma + ts - tsp @ gain[:, 1:]
    post_cov = 0.5 * (post_cov + post_cov.T)
    return (
        pd.Series(mu, index=covariance.index),
        pd.DataFrame(post_cov, index=covariance.index, columns=covariance.columns),
    )


class BlackLittermanConfig(MeanVarianceConfig):
    """Black-Litterman settings (the mean-variance settings apply to the posterior).

    Parameters
    ----------
    prior
        ``"implied"`` (market-implied equilibrium from ``market_weights``) or ``"historical"`` (mean).
    market_weights
        Market weights by asset for the implied prior; None = equal weight.
    delta
        Market risk aversion ``delta`` of the implied prior (per-period units).
    tau
        Scale of the prior's uncertainty (0.01 - 0.1 is usual).
    horizon
        Bars the forecasts' ``pred_return`` spans.
    min_confidence, max_confidence
        Clip of the view confidence.
    """

    objective: Objective = "max_utility"
    risk_aversion: float = Field(default=2.5, gt=0.0)
    prior: Literal["implied", "historical"] = "implied"
    market_weights: dict[str, float] | None = None
    delta: float = Field(default=2.5, gt=0.0)
    tau: float = Field(default=0.05, gt=0.0, le=1.0)
    horizon: int = Field(default=1, ge=1)
    min_confidence: float = Field(default=1e-3, gt=0.0, lt=1.0)
    max_confidence: float = Field(default=0.999, gt=0.0, lt=1.0)


class BlackLitterman(MeanVariance):
    """Mean-variance on the Black-Litterman posterior, views from forecasts.

    Parameters
    ----------
    config
        The settings.
    forecasts
        Latest forecast per asset (columns ``p_up``, ``p_down``, ``pred_return``; indexed by asset or with a
        ``symbol`` column); None or empty = no views (the posterior is the prior).

    After :meth:`fit`: ``prior_`` (the prior mean), ``views_`` (:class:`Views`) and the posterior in
    ``expected_returns_`` / ``covariance_``.
    """

    config_class = BlackLittermanConfig
    config: BlackLittermanConfig

    def __init__(
        self, config: BlackLittermanConfig | None = None, forecasts: pd.DataFrame | None = None
    ) -> None:
        super().__init__(config)
        if forecasts is not None and not isinstance(forecasts, pd.DataFrame):
            raise DataFormatError(f"forecasts must be a DataFrame, got {type(forecasts).__name__}.")
        self.forecasts = forecasts

    def _estimate(self, returns: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
        mu_hist, cov = super()._estimate(returns)
        cfg = self.config
        if cfg.prior == "implied":
            mw = cfg.market_weights
            if mw is None:
                market = pd.Series(1.0 / len(cov), index=cov.index)
            else:
                unknown = [a for a in mw if a not in set(cov.index)]
                if unknown:
                    raise ConfigError(f"market_weights name assets {unknown[:5]} not in the returns columns.")
                market = pd.Series(mw, dtype=np.float64)
            prior = implied_returns(cov, market, cfg.delta, cfg.risk_free_rate)
        else:
            prior = mu_hist
        views = None
        if self.forecasts is not None and len(self.forecasts):
            views = views_from_forecasts(
                self.forecasts,
                cov,
                tau=cfg.tau,
                horizon=cfg.horizon,
                min_confidence=cfg.min_confidence,
                max_confidence=cfg.max_confidence,
            )
        self.prior_ = prior
        self.views_ = views
        return black_litterman_posterior(prior, cov, views, tau=cfg.tau)
