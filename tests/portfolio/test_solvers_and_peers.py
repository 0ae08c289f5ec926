"""The active-set QP on hard Black-Litterman problems, and constrained / BL / factor optima against peers.

The 500-asset problems are the benchmark's (bench/portfolio_opt.py): the same real-data panel and views.
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.portfolio import (
    BlackLitterman,
    BlackLittermanConfig,
    Constraints,
    FactorModelConfig,
    FactorOptimizer,
    MeanVariance,
    MeanVarianceConfig,
    black_litterman_posterior,
    constraint_violations,
    estimate_covariance,
    estimate_expected_returns,
    fit_factor_model,
    implied_returns,
    views_from_forecasts,
)
from alphaloom.portfolio._solvers import ConicProblem, box_qp, solve_conic

ANN = 252.0
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def sig5(a: float, b: float) -> bool:
    return f"{a:.5g}" == f"{b:.5g}"


@pytest.fixture(scope="module")
def moments_500(panel_500: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    return estimate_expected_returns(panel_500), estimate_covariance(panel_500)


def random_views(assets: pd.Index, seed: int, k: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The benchmark's views for seed 1 (k=20); otherwise the stress generator's views and settings."""
    rng = np.random.default_rng(seed)
    if k is None:
        k = int(rng.integers(5, 60))
    picks = assets[rng.choice(len(assets), size=k, replace=False)]
    frame = pd.DataFrame(
        {
            "p_up": rng.uniform(0.2, 0.6, k),
            "p_down": rng.uniform(0.1, 0.35, k),
            "pred_return": rng.normal(0, 0.002, k),
        },
        index=picks,
    )
    if seed == 1 and k == 20:
        return frame, {"tau": 0.05, "risk_aversion": 2.5, "prior": "implied"}
    settings_ = {
        "tau": float(rng.choice([0.01, 0.05, 0.1])),
        "risk_aversion": float(rng.choice([1.0, 2.5, 10.0])),
        "prior": str(rng.choice(["implied", "historical"])),
    }
    return frame, settings_


def pypfopt_bl_weights(bl: BlackLitterman, cov: pd.DataFrame, cfg: BlackLittermanConfig) -> np.ndarray:
    from pypfopt import BlackLittermanModel, EfficientFrontier

    v = bl.views_
    model = BlackLittermanModel(cov, pi=bl.prior_, P=v.P, Q=v.Q, omega=v.omega, tau=cfg.tau)
    ef = EfficientFrontier(model.bl_returns() * ANN, model.bl_cov() * ANN, weight_bounds=(0, 1))
    w = ef.max_quadratic_utility(risk_aversion=cfg.risk_aversion)
    return np.array([w[a] for a in cov.index])


# ----------------------------------------------------------------------------- Black-Litterman, 500 assets
@pytest.mark.parametrize(
    ("seed", "k", "method"),
    [
        (1, 20, "pdas"),  # the benchmark's BL-500 problem
        (12, None, "pdas"),  # optimum at a vertex (one asset at 100 %): used to cycle on rounding
        (32, None, "primal"),  # PDAS cycles for real: the primal active-set method finishes
    ],
    ids=["bench", "vertex", "pdas-cycle"],
)
def test_black_litterman_500_is_solved_by_the_active_set(
    seed: int, k: int | None, method: str, panel_500: pd.DataFrame, moments_500
) -> None:
    _, cov = moments_500
    forecasts, kw = random_views(panel_500.columns, seed, k)
    cfg = BlackLittermanConfig(**kw)
    bl = BlackLitterman(cfg, forecasts=forecasts).fit(panel_500)
    assert bl.solver_ == "active_set"  # not the Clarabel fallback
    assert bl.solver_info_["method"] == method
    ours = bl.weights_.to_numpy()
    peer = pypfopt_bl_weights(bl, cov, cfg)
    m, c = bl.expected_returns_.to_numpy(), bl.covariance_.to_numpy()

    def utility(w: np.ndarray) -> float:
        return float(w @ m - 0.5 * cfg.risk_aversion * w @ c @ w)

    assert sig5(utility(ours), utility(peer)) or utility(ours) > utility(peer)
    assert np.abs(ours - peer).max() < 1e-4


def test_black_litterman_matches_pypfopt_on_real_stocks(stock_returns: pd.DataFrame) -> None:
    cov = estimate_covariance(stock_returns)
    forecasts, _ = random_views(stock_returns.columns, 1, 20)
    cfg = BlackLittermanConfig()
    bl = BlackLitterman(cfg, forecasts=forecasts).fit(stock_returns)
    ours, peer = bl.weights_.to_numpy(), pypfopt_bl_weights(bl, cov, cfg)
    m, c = bl.expected_returns_.to_numpy(), bl.covariance_.to_numpy()
    u = [float(w @ m - 0.5 * cfg.risk_aversion * w @ c @ w) for w in (ours, peer)]
    assert sig5(*u)
    assert np.abs(ours - peer).max() < 1e-6


# ----------------------------------------------------------------------------- the QP solver itself
@st.composite
def bl_problems(draw: st.DrawFn) -> tuple[int, int, float, float, float, str, float]:
    return (
        draw(st.integers(0, 10_000)),  # view seed
        draw(st.integers(2, 40)),  # views
        draw(st.sampled_from([0.01, 0.05, 0.1])),  # tau
        draw(st.sampled_from([0.5, 1.0, 2.5, 10.0])),  # risk aversion
        draw(st.sampled_from([0.0, -0.05])),  # min weight
        draw(st.sampled_from(["implied", "historical"])),
        draw(st.sampled_from([1.0, 0.5, 0.2, 0.05])),  # max weight
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=bl_problems())
def test_active_set_never_falls_back_and_matches_clarabel(problem, stock_returns: pd.DataFrame) -> None:
    seed, k, tau, ra, lo, prior_kind, hi = problem
    cov = estimate_covariance(stock_returns)
    n = len(cov)
    rng = np.random.default_rng(seed)
    picks = cov.index[rng.choice(n, size=k, replace=False)]
    fc = pd.DataFrame(
        {
            "p_up": rng.uniform(0.2, 0.9, k),
            "p_down": rng.uniform(0.0, 0.1, k),
            "pred_return": rng.normal(0, 0.004, k),
        },
        index=picks,
    )
    prior = (
        implied_returns(cov, pd.Series(1 / n, index=cov.index), 2.5)
        if prior_kind == "implied"
        else estimate_expected_returns(stock_returns)
    )
    mu, post = black_litterman_posterior(prior, cov, views_from_forecasts(fc, cov, tau=tau), tau=tau)
    P, q = ra * post.to_numpy(), -mu.to_numpy()
    lo_v, hi_v = np.full(n, lo), np.full(n, hi)
    info: dict = {}
    x = box_qp(P, q, np.ones((1, n)), np.array([1.0]), lo_v, hi_v, info=info)
    assert x is not None, info
    ref = solve_conic(
        ConicProblem("max_utility", mu.to_numpy(), post.to_numpy(), 1.0, lo_v, hi_v, risk_aversion=ra)
    )

    def f(w: np.ndarray) -> float:
        return float(0.5 * w @ P @ w + q @ w)

    # Clarabel's answer may sit ~1e-10 outside the bounds, which can buy it a few 1e-9 of objective
    assert f(x) <= f(ref) + 1e-7 * abs(f(ref))
    assert abs(x.sum() - 1.0) < 1e-12
    assert (x >= lo_v).all()
    assert (x <= hi_v).all()


def test_vertex_optimum_with_a_tied_multiplier() -> None:
    # two assets, the first dominates: the optimum is all in asset 0, where the free variable's value is
    # exactly its bound; the equality multiplier is then not unique and must be chosen inside its interval
    P = np.array([[1e-4, 0.0], [0.0, 1e-4]])
    q = -np.array([1e-2, 0.0])
    info: dict = {}
    x = box_qp(P, q, np.ones((1, 2)), np.array([1.0]), np.zeros(2), np.ones(2), info=info)
    np.testing.assert_allclose(x, [1.0, 0.0])
    assert info["method"] == "pdas"


# ----------------------------------------------------------------------------- constrained mean-variance
def constrained_problem(assets: pd.Index) -> tuple[Constraints, pd.Series, dict[str, str]]:
    n = len(assets)
    groups = {a: f"g{i % 5}" for i, a in enumerate(assets)}
    prev = pd.Series(1.0 / n, index=assets)
    cons = Constraints(
        min_weight=-0.05,
        max_weight=max(0.10, 1.6 / n),
        groups=groups,
        group_limits={f"g{k}": (0.1, 0.3) for k in range(5)},
        max_leverage=1.5,
        max_turnover=1.0,
    )
    return cons, prev, groups


def pypfopt_constrained(cov: pd.DataFrame, cons: Constraints, prev: pd.Series, groups: dict) -> np.ndarray:
    from pypfopt import EfficientFrontier

    pv = prev.to_numpy()
    # its default QP solver (OSQP) stops near 1e-4 relative; Clarabel at tight tolerances is the reference
    ef = EfficientFrontier(
        None,
        cov * ANN,
        weight_bounds=(cons.min_weight, cons.max_weight),
        solver="CLARABEL",
        solver_options=TIGHT,
    )
    lo = {g: v[0] for g, v in cons.group_limits.items()}
    hi = {g: v[1] for g, v in cons.group_limits.items()}
    ef.add_sector_constraints(groups, lo, hi)
    ef.add_constraint(lambda w: cp.norm1(w) <= cons.max_leverage)
    ef.add_constraint(lambda w: cp.norm1(w - pv) <= cons.max_turnover)
    w = ef.min_volatility()
    return np.array([w[a] for a in cov.index])


@pytest.mark.parametrize("universe", ["stocknet_81", "panel_500"])
def test_constrained_mean_variance_matches_pypfopt(universe: str, request: pytest.FixtureRequest) -> None:
    returns = request.getfixturevalue("stock_returns" if universe == "stocknet_81" else "panel_500")
    returns = returns.copy()
    returns.columns = returns.columns.map(str)
    cons, prev, groups = constrained_problem(returns.columns)
    opt = MeanVariance(MeanVarianceConfig(objective="min_variance", constraints=cons)).fit(
        returns, previous_weights=prev
    )
    assert opt.solver_ == "clarabel"
    ours = opt.weights_.to_numpy()
    cov = opt.covariance_
    peer = pypfopt_constrained(cov, cons, prev, groups)
    c = cov.to_numpy()
    assert sig5(ours @ c @ ours, peer @ c @ peer)
    assert np.abs(ours - peer).max() < 1e-4
    assert constraint_violations(opt.weights_, cons, previous_weights=prev) == []
    # the leverage and turnover limits bind, so the test exercises them
    assert np.abs(ours).sum() == pytest.approx(1.5, abs=1e-6)
    assert np.abs(ours - prev.to_numpy()).sum() == pytest.approx(1.0, abs=1e-6)


def test_constrained_mean_variance_matches_skfolio_with_total_turnover(stock_returns: pd.DataFrame) -> None:
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import MeanRisk
    from skfolio.prior import EmpiricalPrior

    cons, prev, groups = constrained_problem(stock_returns.columns)
    opt = MeanVariance(MeanVarianceConfig(objective="min_variance", constraints=cons)).fit(
        stock_returns, previous_weights=prev
    )
    pv = prev.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = (
            MeanRisk(
                prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
                min_weights=cons.min_weight,
                max_weights=cons.max_weight,
                max_short=0.25,  # budget 1 and gross <= 1.5: long <= 1.25, short <= 0.25
                max_long=1.25,
                groups=np.array([[groups[a] for a in stock_returns.columns]]),
                linear_constraints=[f"g{k} >= 0.1" for k in range(5)] + [f"g{k} <= 0.3" for k in range(5)],
                # skfolio's max_turnover bounds each |w_i - prev_i|; ours bounds their sum
                add_constraints=lambda w: cp.norm1(w - pv) <= 1.0,
                solver_params=TIGHT,
            )
            .fit(stock_returns.to_numpy())
            .weights_
        )
    ours, c = opt.weights_.to_numpy(), opt.covariance_.to_numpy()
    assert sig5(ours @ c @ ours, peer @ c @ peer)
    assert np.abs(ours - peer).max() < 1e-4


# ----------------------------------------------------------------------------- factor model
def test_factor_model_equals_riskfolio(equity_returns: pd.DataFrame) -> None:
    import riskfolio as rf

    factors = equity_returns[["SPY", "IWM"]].rename(columns={"SPY": "market", "IWM": "small"})
    assets = equity_returns.drop(columns=["SPY", "IWM", "QQQ", "GOOGL"])
    model = fit_factor_model(assets, factors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # forward stepwise with a p-value threshold of 1 keeps every factor: plain OLS with an intercept
        mu, cov, _, loadings, *_ = rf.risk_factors(
            factors, assets, const=True, feature_selection="stepwise", threshold=1.0
        )
    loadings = loadings.loc[assets.columns]
    np.testing.assert_allclose(model.loadings.to_numpy(), loadings[["market", "small"]].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(model.alpha.to_numpy(), loadings["const"].to_numpy(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(
        model.expected_returns(include_alpha=True).to_numpy(), mu.to_numpy().ravel(), rtol=1e-9
    )
    # riskfolio divides the residual sum of squares by T - 1, ours by T - K - 1 (unbiased with K factors
    # and an intercept); the systematic part B Sigma_f B' is the same
    t, k = len(assets), 2
    ours_cov = model.covariance().to_numpy()
    res = model.residual_variance.to_numpy()
    np.testing.assert_allclose(
        ours_cov - np.diag(res) + np.diag(res * (t - k - 1) / (t - 1)), cov.to_numpy(), rtol=1e-9
    )


def test_factor_optimizer_optimum_matches_pypfopt(stock_returns: pd.DataFrame) -> None:
    from pypfopt import EfficientFrontier

    cfg = FactorModelConfig(objective="min_variance", factor_limits={"pc1": (0.9, 1.0)})
    opt = FactorOptimizer(cfg).fit(stock_returns)
    beta = opt.factor_model_.loadings["pc1"].to_numpy()
    ef = EfficientFrontier(None, opt.covariance_ * ANN, weight_bounds=(0, 1))
    ef.add_constraint(lambda w: beta @ w >= 0.9)
    ef.add_constraint(lambda w: beta @ w <= 1.0)
    peer = pd.Series(ef.min_volatility()).reindex(opt.weights_.index).to_numpy()
    ours, c = opt.weights_.to_numpy(), opt.covariance_.to_numpy()
    assert sig5(ours @ c @ ours, peer @ c @ peer)
    assert np.abs(ours - peer).max() < 1e-4
    assert 0.9 - 1e-6 <= beta @ ours <= 1.0 + 1e-6
