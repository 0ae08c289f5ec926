"""Optimisers on real returns: peers' optima to 5 significant figures, constraints, fallbacks, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.covariance import ledoit_wolf

from alphaloom.core.exceptions import ConfigError, DataFormatError, EmptyRangeError, NotFittedError
from alphaloom.portfolio import (
    BlackLitterman,
    Constraints,
    EqualWeight,
    FactorModelConfig,
    FactorOptimizer,
    HierarchicalRiskParity,
    MeanVariance,
    MeanVarianceConfig,
    RiskParity,
    RiskParityConfig,
    constraint_violations,
    estimate_covariance,
    estimate_expected_returns,
)

ANN = 252.0


def sig5(a: float, b: float) -> bool:
    return f"{a:.5g}" == f"{b:.5g}"


@pytest.fixture(scope="module")
def moments(stock_returns: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    return estimate_expected_returns(stock_returns), estimate_covariance(stock_returns)


# ------------------------------------------------------------------------------------------- estimators
def test_ledoit_wolf_equals_scikit_learn(stock_returns: pd.DataFrame) -> None:
    ours = estimate_covariance(stock_returns).to_numpy()
    theirs = ledoit_wolf(stock_returns.to_numpy())[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-16)


def test_sample_covariance_is_pandas_cov(equity_returns: pd.DataFrame) -> None:
    np.testing.assert_allclose(
        estimate_covariance(equity_returns, "sample"), equity_returns.cov(), rtol=1e-12
    )


def test_unknown_covariance_method_suggests_the_closest(equity_returns: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="ledoit_wolf"):
        estimate_covariance(equity_returns, "ledoit_wolff")  # type: ignore[arg-type]


def test_nan_returns_are_rejected_with_the_columns(equity_returns: pd.DataFrame) -> None:
    bad = equity_returns.copy()
    bad.iloc[5, 2] = np.nan
    with pytest.raises(DataFormatError, match=str(bad.columns[2])):
        MeanVariance().fit(bad)


def test_too_few_rows_and_wrong_type(equity_returns: pd.DataFrame) -> None:
    with pytest.raises(EmptyRangeError, match="at least 20"):
        MeanVariance().fit(equity_returns.iloc[:5])
    with pytest.raises(DataFormatError, match="DataFrame"):
        MeanVariance().fit(equity_returns.to_numpy())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- peers
@pytest.mark.parametrize("objective", ["min_variance", "max_sharpe"])
def test_mean_variance_matches_pypfopt(objective: str, moments) -> None:
    from pypfopt import EfficientFrontier

    mu, cov = moments
    ours = MeanVariance(MeanVarianceConfig(objective=objective)).fit_moments(mu, cov).weights_
    ef = EfficientFrontier(mu * ANN, cov * ANN, weight_bounds=(0, 1))
    peer = ef.min_volatility() if objective == "min_variance" else ef.max_sharpe(risk_free_rate=0.0)
    peer = pd.Series(peer).reindex(ours.index)
    c, m = cov.to_numpy(), mu.to_numpy()
    if objective == "min_variance":
        assert sig5(ours @ c @ ours, peer @ c @ peer)
    else:
        assert sig5((ours @ m) / np.sqrt(ours @ c @ ours), (peer @ m) / np.sqrt(peer @ c @ peer))
    assert np.abs(ours - peer).max() < 1e-4


@pytest.mark.parametrize(
    "config",
    [
        MeanVarianceConfig(objective="min_variance"),
        MeanVarianceConfig(objective="max_sharpe"),
        MeanVarianceConfig(objective="max_utility", risk_aversion=4.0),
        MeanVarianceConfig(objective="efficient_return", target_return=8e-4),
        MeanVarianceConfig(
            objective="min_variance", constraints=Constraints(min_weight=-0.1, max_weight=0.2)
        ),
    ],
    ids=["minvar", "maxsharpe", "utility", "effret", "minvar-short"],
)
def test_active_set_equals_the_conic_solver(config: MeanVarianceConfig, moments) -> None:
    mu, cov = moments
    fast = MeanVariance(config).fit_moments(mu, cov)
    conic = MeanVariance(config.replace(solver="conic")).fit_moments(mu, cov)
    assert fast.solver_ == "active_set"
    assert conic.solver_ == "clarabel"
    c = cov.to_numpy()
    w1, w2 = fast.weights_.to_numpy(), conic.weights_.to_numpy()
    assert sig5(w1 @ c @ w1, w2 @ c @ w2)
    assert np.abs(w1 - w2).max() < 1e-4


def test_erc_has_equal_risk_contributions_and_matches_riskfolio(stock_returns, moments) -> None:
    import riskfolio as rf

    mu, cov = moments
    opt = RiskParity().fit_moments(mu, cov)
    rc = opt.risk_contributions().to_numpy()
    np.testing.assert_allclose(rc, 1.0 / len(rc), rtol=1e-9)
    port = rf.Portfolio(returns=stock_returns)
    port.mu, port.cov = (mu * ANN).to_frame().T, cov * ANN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = port.rp_optimization(model="Classic", rm="MV", rf=0, b=None, hist=False)["weights"]
    np.testing.assert_allclose(
        opt.weights_.to_numpy(), peer.reindex(opt.weights_.index).to_numpy(), rtol=1e-4
    )


def test_risk_budgets_are_honoured(equity_returns: pd.DataFrame) -> None:
    assets = list(equity_returns.columns)
    budgets = {a: (2.0 if a == "SPY" else 1.0) for a in assets}
    opt = RiskParity(RiskParityConfig(risk_budgets=budgets)).fit(equity_returns)
    rc = opt.risk_contributions()
    expected = pd.Series(budgets) / sum(budgets.values())
    np.testing.assert_allclose(rc.to_numpy(), expected.reindex(rc.index).to_numpy(), rtol=1e-8)


def test_hrp_matches_pypfopt(moments) -> None:
    from pypfopt import HRPOpt

    mu, cov = moments
    ours = HierarchicalRiskParity().fit_moments(mu, cov)
    peer = pd.Series(HRPOpt(cov_matrix=cov).optimize()).reindex(ours.weights_.index)
    np.testing.assert_allclose(ours.weights_.to_numpy(), peer.to_numpy(), rtol=1e-9, atol=1e-12)
    assert sorted(ours.order_) == sorted(cov.index)


# ------------------------------------------------------------------------------------------- factor
def test_factor_model_with_given_factors_and_exposure_limits(equity_returns: pd.DataFrame) -> None:
    factors = equity_returns[["SPY", "IWM"]].rename(columns={"SPY": "market", "IWM": "small"})
    assets = equity_returns.drop(columns=["SPY", "IWM", "QQQ", "GOOGL"])
    cfg = FactorModelConfig(objective="min_variance", factor_limits={"market": (0.95, 1.0)})
    opt = FactorOptimizer(cfg, factor_returns=factors).fit(assets)
    model = opt.factor_model_
    b = model.loadings.to_numpy()
    expected = b @ model.factor_covariance.to_numpy() @ b.T + np.diag(model.residual_variance.to_numpy())
    np.testing.assert_allclose(opt.covariance_.to_numpy(), expected, rtol=1e-12)
    assert np.linalg.eigvalsh(opt.covariance_.to_numpy()).min() > 0
    assert 0.95 - 1e-6 <= opt.exposures_["market"] <= 1.0 + 1e-6
    free = FactorOptimizer(cfg.replace(factor_limits={}), factor_returns=factors).fit(assets)
    assert free.exposures_["market"] < 0.95  # the limit binds: min-variance prefers low beta
    # loadings are the OLS betas
    beta_bac = np.polyfit(factors["market"], assets["BAC"], 1)[0]
    assert model.loadings.loc["BAC", "market"] != 0
    single = FactorOptimizer(FactorModelConfig(), factor_returns=factors[["market"]]).fit(assets)
    assert single.factor_model_.loadings.loc["BAC", "market"] == pytest.approx(beta_bac, rel=1e-9)


def test_statistical_factors_and_unknown_factor_name(stock_returns: pd.DataFrame) -> None:
    opt = FactorOptimizer(FactorModelConfig(objective="min_variance", factor_limits={"pc1": (0.9, 1.0)}))
    opt.fit(stock_returns)
    assert 0.9 - 1e-6 <= opt.exposures_["pc1"] <= 1.0 + 1e-6
    with pytest.raises(ConfigError, match="pc1"):
        FactorOptimizer(FactorModelConfig(factor_limits={"pc_1": (0.0, 1.0)})).fit(stock_returns)


# ------------------------------------------------------------------------------ constraints (hypothesis)
@st.composite
def constraint_sets(draw: st.DrawFn) -> tuple[Constraints, pd.Series]:
    assets = ["AAPL", "AIG", "BAC", "BNO", "EEM", "FB", "GOOG", "IBM", "IWM", "QQQ", "SPY", "USO", "WM"]
    lo = draw(st.sampled_from([0.0, -0.1, -0.3]))
    hi = draw(st.floats(0.12, 0.6))
    groups = {a: ("equity" if i % 3 else "other") for i, a in enumerate(assets)}
    g_hi = draw(st.floats(0.3, 1.0))
    lev = draw(st.one_of(st.none(), st.floats(1.0, 2.0)))
    turn = draw(st.one_of(st.none(), st.floats(0.05, 1.5)))
    raw = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=len(assets), max_size=len(assets)))) + 1e-3
    prev = pd.Series(raw / raw.sum(), index=assets)
    c = Constraints(
        min_weight=lo,
        max_weight=hi,
        groups=groups,
        group_limits={"other": (0.0, g_hi)},
        max_leverage=lev,
        max_turnover=turn,
    )
    return c, prev


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=constraint_sets(), objective=st.sampled_from(["min_variance", "max_utility", "max_sharpe"]))
def test_weights_satisfy_every_constraint_or_raise(
    data, objective: str, equity_returns: pd.DataFrame
) -> None:
    constraints, prev = data
    returns = equity_returns[prev.index]
    cfg = MeanVarianceConfig(objective=objective, risk_aversion=5.0, constraints=constraints)
    try:
        opt = MeanVariance(cfg).fit(returns, previous_weights=prev)
    except ConfigError as exc:
        message = str(exc)
        if not any(k in message for k in ("infeasible", "break the constraints", "max_sharpe")):
            raise
        return
    w = opt.weights_
    assert constraint_violations(w, constraints, previous_weights=prev) == []
    assert w.sum() == pytest.approx(constraints.budget, abs=1e-6)
    # and in live mode the same problem never raises
    live = MeanVariance(cfg.replace(on_failure="fallback")).fit(returns, previous_weights=prev)
    assert live.fallback_ is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_te=st.floats(0.0005, 0.01), budget=st.floats(0.5, 1.0))
def test_tracking_error_and_budget(max_te: float, budget: float, equity_returns: pd.DataFrame) -> None:
    bench = {"SPY": budget}
    c = Constraints(budget=budget, max_tracking_error=max_te, benchmark_weights=bench)
    opt = MeanVariance(MeanVarianceConfig(objective="max_utility", risk_aversion=2.0, constraints=c))
    opt.fit(equity_returns)
    w = opt.weights_.to_numpy()
    active = w - c.benchmark_for(list(opt.weights_.index))
    te = np.sqrt(active @ opt.covariance_.to_numpy() @ active)
    assert te <= max_te * (1 + 1e-4)
    assert w.sum() == pytest.approx(budget, abs=1e-6)


# ------------------------------------------------------------------------------------------- failure policy
def test_infeasible_bounds_raise_a_teaching_config_error(equity_returns: pd.DataFrame) -> None:
    c = Constraints(max_weight=0.05)  # 14 assets x 5 % < 100 %
    with pytest.raises(ConfigError, match=r"infeasible constraints.*max_weight"):
        MeanVariance(MeanVarianceConfig(constraints=c)).fit(equity_returns)


def test_infeasible_group_limits_raise_in_research_mode(equity_returns: pd.DataFrame) -> None:
    c = Constraints(max_weight=0.2, groups={"SPY": "etf", "QQQ": "etf"}, group_limits={"etf": (0.5, 1.0)})
    with pytest.raises(ConfigError, match="infeasible"):
        MeanVariance(MeanVarianceConfig(constraints=c)).fit(equity_returns)


def test_fallback_uses_previous_weights_then_equal_weight(equity_returns: pd.DataFrame) -> None:
    # feasible box, infeasible group limits: the previous weights satisfy the box and the (impossible)
    # group limit is what fails, so the chain must record the failure and use what was held
    c = Constraints(max_weight=0.3, groups={"SPY": "etf", "QQQ": "etf"}, group_limits={"etf": (0.7, 1.0)})
    cfg = MeanVarianceConfig(constraints=c, on_failure="fallback")
    prev = pd.Series(1.0 / 14, index=equity_returns.columns)
    opt = MeanVariance(cfg).fit(equity_returns, previous_weights=prev)
    rec = opt.fallback_
    assert rec is not None
    assert rec.failed == "MeanVariance"
    assert rec.error == "ConfigError"
    assert "infeasible" in rec.reason
    # the previous weights break the group limit too, so the chain goes on to equal weight and says why
    assert rec.used == "equal_weight"
    assert any("previous_weights" in s for s in rec.skipped)
    assert rec.violations  # equal weight breaks the impossible group limit, and that is recorded
    np.testing.assert_allclose(opt.weights_.to_numpy(), 1.0 / 14)


def test_fallback_keeps_previous_weights_when_they_are_feasible(equity_returns: pd.DataFrame) -> None:
    # the solver cannot succeed: max_sharpe with every expected return below the risk-free rate
    cfg = MeanVarianceConfig(objective="max_sharpe", risk_free_rate=0.05, on_failure="fallback")
    prev = pd.Series(0.0, index=equity_returns.columns)
    prev["SPY"], prev["IWM"] = 0.6, 0.4
    opt = MeanVariance(cfg).fit(equity_returns, previous_weights=prev)
    assert opt.fallback_ is not None
    assert opt.fallback_.used == "previous_weights"
    assert "risk-free" in opt.fallback_.reason
    pd.testing.assert_series_equal(opt.weights_, prev.astype(float).rename("weight"), check_names=False)
    with pytest.raises(ConfigError, match="risk-free"):
        MeanVariance(cfg.replace(on_failure="raise")).fit(equity_returns)
    none_given = MeanVariance(cfg).fit(equity_returns)
    assert none_given.fallback_.used == "equal_weight"
    assert none_given.fallback_.skipped == ("previous_weights: none were passed to fit",)


def test_turnover_without_previous_weights_is_explained(equity_returns: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="previous_weights"):
        MeanVariance(MeanVarianceConfig(constraints=Constraints(max_turnover=0.2))).fit(equity_returns)


def test_unsupported_constraints_are_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="does not support"):
        RiskParity(RiskParityConfig(constraints=Constraints(max_weight=0.2)))
    with pytest.raises(ConfigError, match="max_tracking_error needs benchmark_weights"):
        Constraints.from_dict({"max_tracking_error": 0.01})
    with pytest.raises(ConfigError, match=r"Did you mean .equity."):
        Constraints.from_dict({"groups": {"SPY": "equity"}, "group_limits": {"equty": (0, 1)}})


def test_unknown_asset_in_bounds_is_named(equity_returns: pd.DataFrame) -> None:
    c = Constraints(asset_bounds={"SPX": (0.0, 0.5)})
    with pytest.raises(ConfigError, match=r"SPX.*Did you mean .SPY."):
        MeanVariance(MeanVarianceConfig(constraints=c)).fit(equity_returns)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MeanVariance(),
        lambda: MeanVariance(MeanVarianceConfig(objective="max_sharpe")),
        lambda: RiskParity(),
        lambda: HierarchicalRiskParity(),
        lambda: BlackLitterman(),
        lambda: FactorOptimizer(),
        lambda: EqualWeight(),
    ],
    ids=["minvar", "maxsharpe", "erc", "hrp", "bl", "factor", "equal"],
)
def test_every_optimiser_follows_the_contract(make, equity_returns: pd.DataFrame) -> None:
    opt = make()
    with pytest.raises(NotFittedError):
        opt.risk_contributions()
    assert opt.fit(equity_returns) is opt
    w = opt.weights_
    assert list(w.index) == list(equity_returns.columns)
    assert w.sum() == pytest.approx(1.0, abs=1e-8)
    assert (w >= -1e-9).all()
    assert opt.fallback_ is None
    assert opt.risk_contributions().sum() == pytest.approx(1.0)
    port = opt.portfolio_returns(equity_returns)
    np.testing.assert_allclose(port.to_numpy(), equity_returns.to_numpy() @ w.to_numpy())
