"""Black-Litterman: the posterior equals PyPortfolioOpt's, reduces to the prior with no views, and trusts
confident forecasts more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import DataFormatError
from alphaloom.portfolio import (
    BlackLitterman,
    BlackLittermanConfig,
    black_litterman_posterior,
    estimate_covariance,
    implied_returns,
    views_from_forecasts,
)


@pytest.fixture(scope="module")
def cov(equity_returns: pd.DataFrame) -> pd.DataFrame:
    return estimate_covariance(equity_returns)


def forecasts(p_up: float = 0.6, p_down: float = 0.2, q: float = 0.004) -> pd.DataFrame:
    return pd.DataFrame(
        {"symbol": ["SPY", "USO"], "p_up": [p_up, 0.2], "p_down": [p_down, 0.5], "pred_return": [q, -q]}
    )


def test_no_views_posterior_is_the_prior(equity_returns: pd.DataFrame, cov: pd.DataFrame) -> None:
    prior = implied_returns(cov, pd.Series(1 / len(cov), index=cov.index), 2.5)
    mu, post = black_litterman_posterior(prior, cov, None, tau=0.05)
    pd.testing.assert_series_equal(mu, prior)
    np.testing.assert_allclose(post.to_numpy(), 1.05 * cov.to_numpy())
    empty = BlackLitterman(forecasts=forecasts().iloc[:0]).fit(equity_returns)
    pd.testing.assert_series_equal(empty.expected_returns_, empty.prior_)


def test_posterior_matches_pypfopt(cov: pd.DataFrame) -> None:
    from pypfopt import BlackLittermanModel

    prior = implied_returns(cov, pd.Series(1 / len(cov), index=cov.index), 2.5)
    views = views_from_forecasts(forecasts(), cov, tau=0.05)
    mu, post = black_litterman_posterior(prior, cov, views, tau=0.05)
    peer = BlackLittermanModel(cov, pi=prior, P=views.P, Q=views.Q, omega=views.omega, tau=0.05)
    np.testing.assert_allclose(mu.to_numpy(), peer.bl_returns().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(post.to_numpy(), peer.bl_cov().to_numpy(), rtol=1e-10)


def test_confidence_comes_from_the_probabilities(cov: pd.DataFrame) -> None:
    prior = implied_returns(cov, pd.Series(1 / len(cov), index=cov.index), 2.5)
    view_q = np.expm1(0.004)
    gaps = []
    for p_up in (0.35, 0.6, 0.9):
        views = views_from_forecasts(forecasts(p_up=p_up, p_down=0.05), cov)
        mu, _ = black_litterman_posterior(prior, cov, views)
        gaps.append(abs(mu["SPY"] - view_q))
        assert views.confidence[0] == pytest.approx(p_up - 0.05)
    assert gaps[0] > gaps[1] > gaps[2]  # more confident forecasts pull the posterior closer to the view


def test_bad_forecasts_are_rejected(cov: pd.DataFrame) -> None:
    with pytest.raises(DataFormatError, match="pred_return"):
        views_from_forecasts(forecasts().drop(columns="pred_return"), cov)
    with pytest.raises(DataFormatError, match="not in the returns"):
        views_from_forecasts(forecasts().replace({"USO": "XYZ"}), cov)
    with pytest.raises(DataFormatError, match="probabilities"):
        views_from_forecasts(forecasts(p_up=0.9, p_down=0.5), cov)


def test_optimiser_tilts_towards_bullish_views(equity_returns: pd.DataFrame) -> None:
    cfg = BlackLittermanConfig(objective="max_utility")
    base = BlackLitterman(cfg).fit(equity_returns).weights_
    # a realistic view: +0.05 % a day (about 13 % a year) on SPY, -0.05 % on USO
    tilted = BlackLitterman(cfg, forecasts=forecasts(0.9, 0.05, q=0.0005)).fit(equity_returns).weights_
    assert tilted["SPY"] > base["SPY"]
    assert tilted["USO"] < base["USO"]
