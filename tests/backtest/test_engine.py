"""The single-asset engine: accounting, timing, no look-ahead, costs, ruin and pinned statistics."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.backtest import (
    AccountState,
    BacktestResult,
    CostModel,
    buy_and_hold,
    execute_bar,
    periods_per_year_for,
    run_backtest,
)
from alphaloom.core.exceptions import ConfigError, DataFormatError, EmptyRangeError
from alphaloom.core.types import AssetClass

COSTS = CostModel(commission_bps=1.0, slippage_bps=2.0)
FREE = CostModel(commission_bps=0.0, slippage_bps=0.0)
MakeBars = Callable[..., pd.DataFrame]


def random_targets(seed: int, n: int) -> np.ndarray:
    """Targets from a few levels, changed on about one bar in five and held in between."""
    rng = np.random.default_rng(seed)
    levels = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5], size=n)
    changes = rng.random(n) < 0.2
    changes[0] = True
    return pd.Series(np.where(changes, levels, np.nan)).ffill().to_numpy()


def sma_cross(bars: pd.DataFrame, n: int = 20) -> np.ndarray:
    close = bars["close"]
    return (close > close.rolling(n).mean()).astype(float).to_numpy()


def test_accounting_invariants_on_real_bars(spy: pd.DataFrame) -> None:
    targets = random_targets(1, len(spy))
    res = run_backtest(spy, targets, costs=COSTS, name="random", initial_cash=50_000.0)
    closes = spy["close"].to_numpy()[1:]
    assert len(res.ts) == len(spy) - 1
    assert res.ts.equals(pd.DatetimeIndex(spy["ts"].iloc[1:], name="ts"))
    assert res.final_equity == pytest.approx(50_000.0 * np.prod(1.0 + res.returns), rel=1e-9)
    np.testing.assert_allclose(res.equity, 50_000.0 * np.cumprod(1.0 + res.returns), rtol=1e-9)
    np.testing.assert_allclose(res.equity, res.cash + res.units * closes, rtol=1e-12)
    np.testing.assert_allclose(res.units, np.cumsum(res.traded_units), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.weights, res.units * closes / res.equity, rtol=1e-12)
    np.testing.assert_array_equal(res.targets, targets[:-1])
    assert (res.costs >= 0.0).all()
    assert ((res.costs > 0.0) == (res.traded_units != 0.0)).all()
    traded = res.traded_units != 0.0
    np.testing.assert_allclose(res.open_weights[traded], res.targets[traded], rtol=1e-9, atol=1e-12)


def test_engine_is_the_shared_execution_rule(spy: pd.DataFrame) -> None:
    targets = random_targets(2, len(spy))
    res = run_backtest(spy, targets, costs=COSTS, min_trade_weight=0.0)
    state = AccountState(cash=100_000.0, units=0.0)
    equity = []
    for t in range(1, len(spy)):
        outcome = execute_bar(state, targets[t - 1], spy["open"].iloc[t], spy["close"].iloc[t], COSTS)
        state = outcome.state
        equity.append(outcome.equity_close)
    np.testing.assert_array_equal(res.equity, equity)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 118), factor=st.floats(0.3, 3.0))
def test_results_up_to_a_bar_ignore_later_targets_and_prices(
    synthetic: MakeBars, seed: int, k: int, factor: float
) -> None:
    """Result row j (bar j + 1) depends only on targets[: j + 1] and bars[: j + 2]."""
    bars = synthetic(seed, 120)
    targets = random_targets(seed, 120)
    altered_bars = bars.copy()
    altered_bars.loc[altered_bars.index > k, ["open", "close"]] *= factor
    altered_targets = targets.copy()
    altered_targets[k:] = -targets[k:] + 0.25
    a = run_backtest(bars, targets, costs=COSTS)
    b = run_backtest(altered_bars, altered_targets, costs=COSTS)
    for name in ("returns", "equity", "weights", "units", "cash", "traded_units", "costs"):
        np.testing.assert_array_equal(getattr(a, name)[:k], getattr(b, name)[:k], err_msg=name)


@pytest.mark.parametrize("band", [0.0, 1e-4])
def test_zero_costs_full_investment_earns_the_asset_return(spy: pd.DataFrame, band: float) -> None:
    res = run_backtest(spy, np.ones(len(spy)), costs=FREE, min_trade_weight=band)
    opens, closes = spy["open"].to_numpy(), spy["close"].to_numpy()
    expected = np.concatenate([[closes[1] / opens[1] - 1.0], closes[2:] / closes[1:-1] - 1.0])
    np.testing.assert_allclose(res.returns, expected, rtol=1e-9, atol=1e-12)
    assert res.final_equity == pytest.approx(100_000.0 * closes[-1] / opens[1], rel=1e-9)
    np.testing.assert_allclose(res.weights, 1.0, rtol=1e-9)
    assert res.stats()["total_costs"] == 0.0


def test_higher_costs_mean_lower_final_equity(spy: pd.DataFrame) -> None:
    targets = random_targets(3, len(spy))
    finals = [
        run_backtest(spy, targets, costs=CostModel(commission_bps=bps, slippage_bps=bps / 2)).final_equity
        for bps in (0.0, 1.0, 5.0, 20.0, 50.0)
    ]
    assert all(a > b for a, b in itertools.pairwise(finals))
    with_minimum = run_backtest(spy, targets, costs=COSTS.replace(min_commission=5.0)).final_equity
    assert with_minimum < run_backtest(spy, targets, costs=COSTS).final_equity


def test_buy_and_hold_buys_once_at_the_first_open(spy: pd.DataFrame) -> None:
    res = buy_and_hold(spy, COSTS)
    assert res.name == "buy_and_hold"
    assert res.symbol == "SPY"
    assert res.n_trades == 1
    assert res.traded_units[0] > 0
    # 2 bp slippage on the notional plus 1 bp commission on the notional at the fill price.
    assert res.costs.sum() == pytest.approx(100_000.0 * (2e-4 + 1e-4 * 1.0002), rel=1e-9)
    assert res.stats()["exposure"] == 1.0


def test_ruin_closes_the_account_at_zero(synthetic: MakeBars) -> None:
    bars = synthetic(4, 60)
    price = 10.0 * 1.5 ** np.arange(60)  # up 50 % a bar: a 3x short loses everything on one gap
    bars = bars.assign(open=price, close=price)
    res = run_backtest(bars, np.full(60, -3.0), costs=COSTS)
    ruined = int(np.flatnonzero(res.equity == 0.0)[0])
    assert (res.equity[ruined:] == 0.0).all()
    assert res.returns[ruined] == -1.0
    assert (res.returns[ruined + 1 :] == 0.0).all()
    assert (res.units[ruined:] == 0.0).all()
    np.testing.assert_allclose(res.units, np.cumsum(res.traded_units), atol=1e-9)
    assert res.stats()["total_return"] == -1.0
    assert res.stats()["max_drawdown"] == 1.0


def test_flat_strategy_has_no_trades_and_undefined_ratios(spy: pd.DataFrame) -> None:
    stats = run_backtest(spy, np.zeros(len(spy)), costs=COSTS).stats()
    assert stats["n_trades"] == 0.0
    assert stats["total_return"] == 0.0
    assert stats["exposure"] == 0.0
    assert np.isnan(stats["sharpe"])
    assert np.isnan(stats["hit_rate"])


def test_alternating_targets_turn_over_the_whole_book(synthetic: MakeBars) -> None:
    bars = synthetic(5, 101)
    stats = run_backtest(bars, np.tile([1.0, 0.0], 51)[:101], costs=FREE).stats()
    assert stats["turnover"] == pytest.approx(1.0, rel=1e-12)
    assert stats["n_trades"] == 100.0


def test_pinned_statistics_spy_2010_2014(spy: pd.DataFrame) -> None:
    """Golden numbers: a change here changes every backtest; update only with a reason."""
    strategy = run_backtest(spy, sma_cross(spy), costs=COSTS, name="sma20").stats()
    benchmark = buy_and_hold(spy, COSTS).stats()
    # Shipped sample: SPY adjusted for splits and dividends (Lean factor files), 2010-2014.
    expected_strategy = {
        "total_return": 0.33942081401966107,
        "sharpe": 0.6272263059178949,
        "sortino": 0.8542744364312486,
        "max_drawdown": 0.20954313064050767,
        "max_drawdown_duration": 559.0,
        "turnover": 0.11537143649930882,
        "exposure": 0.6738265712012729,
        "hit_rate": 0.5758241758241758,
        "n_trades": 199.0,
        "total_costs": 5023.812288475584,
    }
    expected_benchmark = {"total_return": 1.0077317100738927, "sharpe": 0.9576084678287087, "n_trades": 1.0}
    for key, value in expected_strategy.items():
        assert strategy[key] == pytest.approx(value, rel=1e-9), key
    for key, value in expected_benchmark.items():
        assert benchmark[key] == pytest.approx(value, rel=1e-9), key


def test_stats_keys_and_types(iwm: pd.DataFrame) -> None:
    stats = buy_and_hold(iwm, COSTS).stats()
    assert list(stats) == [
        "total_return",
        "cagr",
        "volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "max_drawdown_duration",
        "calmar",
        "turnover",
        "exposure",
        "hit_rate",
        "n_trades",
        "total_costs",
        "final_equity",
    ]
    assert all(isinstance(v, float) for v in stats.values())


def test_annualisation_follows_periods_per_year(iwm: pd.DataFrame) -> None:
    daily = buy_and_hold(iwm, COSTS, periods_per_year=252).stats()
    crypto = buy_and_hold(iwm, COSTS, periods_per_year=365).stats()
    assert crypto["volatility"] == pytest.approx(daily["volatility"] * np.sqrt(365 / 252), rel=1e-12)


def test_targets_may_be_a_series_on_the_bars_ts(spy: pd.DataFrame) -> None:
    targets = pd.Series(sma_cross(spy), index=pd.DatetimeIndex(spy["ts"]))
    a = run_backtest(spy, targets, costs=COSTS)
    b = run_backtest(spy, targets.to_numpy(), costs=COSTS)
    np.testing.assert_array_equal(a.equity, b.equity)
    with pytest.raises(DataFormatError, match="reindex"):
        run_backtest(spy, targets.iloc[1:], costs=COSTS)


def test_result_is_immutable_and_exports_a_frame(iwm: pd.DataFrame) -> None:
    res = buy_and_hold(iwm, COSTS)
    with pytest.raises(ValueError, match="read-only"):
        res.returns[0] = 1.0
    with pytest.raises(AttributeError):
        res.name = "other"  # type: ignore[misc]
    frame = res.to_frame()
    assert frame.index.equals(res.ts)
    assert {"returns", "equity", "weights", "targets", "units", "cash", "costs"} <= set(frame.columns)
    assert "buy_and_hold" in repr(res)
    with pytest.raises(DataFormatError, match="shape"):
        BacktestResult(**{**res.__dict__, "returns": res.returns[:-1]})


@pytest.mark.parametrize(
    ("mutate", "targets", "error", "fragment"),
    [
        (lambda b: b.head(1), None, EmptyRangeError, "at least 2 bars"),
        (lambda b: b.drop(columns="open"), None, DataFormatError, "'open'"),
        (lambda b: b.iloc[::-1], None, DataFormatError, "strictly increasing"),
        (lambda b: b.assign(ts=b["ts"].dt.tz_localize(None)), None, DataFormatError, "timezone-aware"),
        (
            lambda b: b.assign(close=np.where(b.index == 5, -1.0, b["close"])),
            None,
            DataFormatError,
            "'close'",
        ),
        (lambda b: b.assign(symbol=np.where(b.index < 5, "A", "B")), None, DataFormatError, "symbols"),
        (lambda b: b, np.ones(9), DataFormatError, "one value per bar"),
        (lambda b: b, np.r_[1.0, np.nan, np.ones(8)], DataFormatError, "finite.*forward-fill"),
    ],
)
def test_bad_input_is_refused(
    synthetic: MakeBars,
    mutate: Callable[[pd.DataFrame], pd.DataFrame],
    targets: np.ndarray | None,
    error: type,
    fragment: str,
) -> None:
    bars = mutate(synthetic(6, 10))
    with pytest.raises(error, match=fragment):
        run_backtest(bars, np.ones(len(bars)) if targets is None else targets, costs=COSTS)


def test_the_last_target_is_never_executed(synthetic: MakeBars) -> None:
    bars = synthetic(7, 10)
    res = run_backtest(bars, np.r_[np.ones(9), np.nan], costs=COSTS)
    assert len(res.returns) == 9


def test_bad_parameters_are_refused(synthetic: MakeBars) -> None:
    bars = synthetic(8, 10)
    with pytest.raises(ConfigError, match="initial_cash"):
        run_backtest(bars, np.ones(10), costs=COSTS, initial_cash=0.0)
    with pytest.raises(ConfigError, match="min_trade_weight"):
        run_backtest(bars, np.ones(10), costs=COSTS, min_trade_weight=-1.0)


@pytest.mark.parametrize(
    ("calendar", "bars_per_day", "expected"),
    [
        ("stock", 1, 252),
        ("XNYS", 1, 252),
        ("24/5", 1, 260),
        ("24/7", 1, 365),
        ("ETF", 1, 252),
        (AssetClass.FOREX, 1, 260),
        ("fx", 24, 6240),
        ("crypto", 1, 365),
        (AssetClass.CRYPTO, 24, 8760),
        ("stock", 6.5, 1638),
    ],
)
def test_periods_per_year_for_calendars(calendar: str, bars_per_day: float, expected: int) -> None:
    assert periods_per_year_for(calendar, bars_per_day=bars_per_day) == expected


def test_periods_per_year_for_unknown_calendar_suggests_one() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'crypto'"):
        periods_per_year_for("crytpo")
    with pytest.raises(ConfigError, match="bars_per_day"):
        periods_per_year_for("stock", bars_per_day=0)
