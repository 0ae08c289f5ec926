"""The vectorised engine: equal to run_backtest and execute_bar, panels, signal rules, no look-ahead, inputs.

Tolerances: 1e-9 relative wherever two implementations of the same rule are compared (in practice the
single-asset results are bit for bit those of run_backtest, which the first test asserts).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.backtest import AccountState, CostModel, execute_bar, run_backtest
from alphaloom.backtest.vectorized import (
    SimulationResult,
    check_causal,
    from_positions,
    from_signals,
    from_target_weights,
)
from alphaloom.core.exceptions import ConfigError, DataFormatError, DataValidationError
from alphaloom.data.sample import load_sample

RTOL = 1e-9
COSTS = CostModel(commission_bps=1.0, slippage_bps=2.0)
WITH_MINIMUM = CostModel(commission_bps=1.0, slippage_bps=2.0, min_commission=5.0, spread_bps=1.0)
FREE = CostModel(commission_bps=0.0, slippage_bps=0.0)
MakeBars = Callable[..., pd.DataFrame]
RESULT_ARRAYS = (
    "returns",
    "equity",
    "weights",
    "targets",
    "open_weights",
    "trade_weights",
    "traded_units",
    "units",
    "cash",
    "costs",
)


def random_targets(
    seed: int, n: int, levels: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
) -> np.ndarray:
    """Targets from a few levels, changed on about one bar in five and held in between."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(levels, size=n)
    changes = rng.random(n) < 0.2
    changes[0] = True
    return pd.Series(np.where(changes, picks, np.nan)).ffill().to_numpy()


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    """Bitstamp BTCUSD daily bars, 2014-2020 (real)."""
    bars = load_sample("crypto_daily")
    return bars[bars["symbol"] == "BTCUSD"].reset_index(drop=True)


@pytest.fixture(scope="module")
def etfs(stock_panel: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Opens and closes of SPY, IWM, EEM on their common days 2012-2016, shape (T, 3) (real)."""
    rows = stock_panel[
        stock_panel["symbol"].isin(["SPY", "IWM", "EEM"])
        & stock_panel["ts"].between("2012-01-01", "2016-12-31")
    ]
    opens = rows.pivot(index="ts", columns="symbol", values="open").dropna()
    closes = rows.pivot(index="ts", columns="symbol", values="close").loc[opens.index]
    return opens.to_numpy(), closes.to_numpy()


def assert_same_backtest(ours: object, reference: object) -> None:
    for name in RESULT_ARRAYS:
        np.testing.assert_allclose(
            getattr(ours, name), getattr(reference, name), rtol=RTOL, atol=1e-9, err_msg=name
        )
    assert ours.ts.equals(reference.ts)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ equal to run_backtest


@pytest.mark.parametrize("costs", [COSTS, WITH_MINIMUM, FREE], ids=["proportional", "minimum", "free"])
@pytest.mark.parametrize("band", [0.0, 1e-4, 0.05])
@pytest.mark.parametrize("market", ["spy", "btc"])
def test_target_weights_equal_run_backtest_on_real_bars(
    request: pytest.FixtureRequest, market: str, costs: CostModel, band: float
) -> None:
    bars = request.getfixturevalue(market)
    targets = random_targets(11, len(bars))
    reference = run_backtest(bars, targets, costs=costs, min_trade_weight=band, initial_cash=50_000.0)
    sim = from_target_weights(
        bars["open"].to_numpy(),
        bars["close"].to_numpy(),
        targets,
        costs=costs,
        min_trade_weight=band,
        initial_cash=50_000.0,
    )
    ours = sim.to_backtest_result(ts=bars["ts"], symbol=reference.symbol)
    assert_same_backtest(ours, reference)
    # Not only within tolerance: the same operations in the same order give the same bits.
    for name in RESULT_ARRAYS:
        np.testing.assert_array_equal(getattr(ours, name), getattr(reference, name), err_msg=name)
    assert ours.stats() == reference.stats()


def test_target_weights_equal_the_scalar_execute_bar_loop(btc: pd.DataFrame) -> None:
    targets = random_targets(12, len(btc))
    opens, closes = btc["open"].to_numpy(), btc["close"].to_numpy()
    sim = from_target_weights(opens, closes, targets, costs=WITH_MINIMUM, min_trade_weight=1e-3)
    state = AccountState(cash=100_000.0, units=0.0)
    equity, units, cash = [100_000.0], [0.0], [100_000.0]
    for t in range(1, len(btc)):
        out = execute_bar(state, targets[t - 1], opens[t], closes[t], WITH_MINIMUM, min_trade_weight=1e-3)
        state = out.state
        equity.append(out.equity_close)
        units.append(state.units)
        cash.append(state.cash)
    np.testing.assert_allclose(sim.equity, equity, rtol=RTOL)
    np.testing.assert_allclose(sim.units, units, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(sim.cash, cash, rtol=RTOL)


def test_ruin_matches_run_backtest(btc: pd.DataFrame) -> None:
    targets = np.full(len(btc), -8.0)  # an 8x short on bitcoin 2014-2020 is wiped out
    reference = run_backtest(btc, targets, costs=COSTS)
    sim = from_target_weights(btc["open"].to_numpy(), btc["close"].to_numpy(), targets, costs=COSTS)
    ours = sim.to_backtest_result(ts=btc["ts"], symbol="BTCUSD")
    assert reference.final_equity == 0.0
    assert_same_backtest(ours, reference)
    ruined = int(np.flatnonzero(sim.equity == 0.0)[0])
    assert (sim.units[ruined:] == 0.0).all()
    assert (sim.cash[ruined:] == 0.0).all()
    assert not (sim.fills.bar > ruined).any()


def test_pandas_inputs_carry_their_index(spy: pd.DataFrame) -> None:
    frame = spy.set_index("ts")
    targets = pd.Series(random_targets(13, len(spy)), index=frame.index)
    sim = from_target_weights(frame["open"], frame["close"], targets, costs=COSTS)
    assert sim.index.equals(frame.index)  # type: ignore[union-attr]
    ours = sim.to_backtest_result(name="random", symbol="SPY")
    assert_same_backtest(ours, run_backtest(spy, targets.to_numpy(), costs=COSTS))
    with pytest.raises(DataFormatError, match="reindex"):
        from_target_weights(frame["open"], frame["close"], targets.shift(1, freq="D"), costs=COSTS)


def test_close_fill_converts_with_all_bars(spy: pd.DataFrame) -> None:
    targets = random_targets(14, len(spy))
    sim = from_target_weights(None, spy["close"].to_numpy(), targets, costs=COSTS, fill="close")
    res = sim.to_backtest_result(ts=spy["ts"])
    assert len(res.ts) == len(spy)
    np.testing.assert_array_equal(res.targets, targets)
    closes = spy["close"].to_numpy()
    np.testing.assert_allclose(res.equity, res.cash + res.units * closes, rtol=1e-12)
    traded = res.traded_units != 0.0
    np.testing.assert_allclose(res.open_weights[traded], targets[traded], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------ panels


def test_panel_without_cash_sharing_is_each_asset_alone(etfs: tuple[np.ndarray, np.ndarray]) -> None:
    opens, closes = etfs
    weights = np.column_stack([random_targets(20 + j, len(closes)) for j in range(3)])
    panel = from_target_weights(opens, closes, weights, costs=WITH_MINIMUM, cash_sharing=False)
    assert panel.equity.shape == (len(closes), 3)
    for j in range(3):
        alone = from_target_weights(opens[:, j], closes[:, j], weights[:, j], costs=WITH_MINIMUM)
        np.testing.assert_array_equal(panel.equity[:, j], alone.equity)
        np.testing.assert_array_equal(panel.units[:, j], alone.units)
    assert panel.final_equity == pytest.approx(panel.equity[-1].sum(), rel=1e-15)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_shared_cash_with_unit_targets_is_the_sum_of_sub_accounts(
    etfs: tuple[np.ndarray, np.ndarray], fill: str
) -> None:
    opens, closes = etfs
    positions = np.column_stack(
        [random_targets(30 + j, len(closes), (-300.0, 0.0, 200.0, 500.0)) for j in range(3)]
    )
    shared = from_positions(opens, closes, positions, costs=WITH_MINIMUM, initial_cash=3e5, fill=fill)
    split = from_positions(
        opens, closes, positions, costs=WITH_MINIMUM, initial_cash=1e5, fill=fill, cash_sharing=False
    )
    assert shared.equity.shape == (len(closes), 1)
    np.testing.assert_allclose(shared.equity[:, 0], split.equity.sum(axis=1), rtol=RTOL)
    np.testing.assert_allclose(shared.cash[:, 0], split.cash.sum(axis=1), rtol=RTOL)
    np.testing.assert_array_equal(shared.units, split.units)
    np.testing.assert_allclose(shared.fills.fees, split.fills.fees, rtol=RTOL)
    # Signals sized in units, none of them cash-limited, split the same way.
    rng = np.random.default_rng(3)
    entries, exits = rng.random((2, *closes.shape)) < 0.05
    kw = {"size": 100.0, "size_type": "units", "costs": WITH_MINIMUM, "fill": fill}
    shared_sig = from_signals(opens, closes, entries, exits, initial_cash=3e5, **kw)
    split_sig = from_signals(opens, closes, entries, exits, initial_cash=1e5, cash_sharing=False, **kw)
    np.testing.assert_allclose(shared_sig.equity[:, 0], split_sig.equity.sum(axis=1), rtol=RTOL)


def reference_shared_weights(
    opens: np.ndarray, closes: np.ndarray, weights: np.ndarray, costs: CostModel, cash: float, band: float
) -> np.ndarray:
    """An independent plain-Python loop: one account, weights of its equity at the open, next-open fills."""
    n_bars, n_assets = closes.shape
    units = np.zeros(n_assets)
    equity = [cash]
    for t in range(1, n_bars):
        equity_open = cash + float(np.dot(units, opens[t]))
        for j in range(n_assets):
            delta = weights[t - 1, j] * equity_open / opens[t, j] - units[j]
            if delta != 0.0 and abs(delta) * opens[t, j] > band * equity_open:
                px = costs.fill_price(delta, opens[t, j])
                cash -= delta * px + costs.commission(delta, px)
                units[j] += delta
        equity.append(cash + float(np.dot(units, closes[t])))
    return np.array(equity)


def test_shared_cash_weights_equal_a_plain_python_loop(etfs: tuple[np.ndarray, np.ndarray]) -> None:
    opens, closes = etfs
    weights = np.column_stack([random_targets(40 + j, len(closes), (0.0, 0.2, 0.4, 0.6)) for j in range(3)])
    sim = from_target_weights(opens, closes, weights, costs=WITH_MINIMUM, min_trade_weight=1e-3)
    expected = reference_shared_weights(opens, closes, weights, WITH_MINIMUM, 100_000.0, 1e-3)
    np.testing.assert_allclose(sim.equity[:, 0], expected, rtol=RTOL)


def test_nan_prices_skip_trading_and_keep_the_last_mark(etfs: tuple[np.ndarray, np.ndarray]) -> None:
    opens, closes = (a[:200].copy() for a in etfs)
    opens[50:60, 1] = np.nan
    closes[55:65, 1] = np.nan
    weights = np.full(closes.shape, 1.0 / 3.0)
    sim = from_target_weights(opens, closes, weights, costs=COSTS, min_trade_weight=0.0)
    assert not ((sim.fills.asset == 1) & (sim.fills.bar >= 50) & (sim.fills.bar < 60)).any()
    assert np.isfinite(sim.equity).all()
    # Marked at its last close while the close is missing: column 1 contributes units * closes[54].
    t = 57
    expected = sim.cash[t, 0] + sim.units[t, 0] * closes[t, 0] + sim.units[t, 1] * closes[54, 1]
    expected += sim.units[t, 2] * closes[t, 2]
    assert sim.equity[t, 0] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------------------------ signals


def tiny(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    close = 100.0 + np.arange(n, dtype=float)
    return close - 0.5, close


def flags(n: int, *rows: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(rows)] = True
    return out


def test_signal_entry_opens_with_all_cash_and_exit_closes() -> None:
    opens, closes = tiny()
    sim = from_signals(opens, closes, flags(8, 1), flags(8, 4), fees=0.001, slippage=0.002)
    assert sim.fills.bar.tolist() == [2, 5]  # next open after the signal rows
    bought = sim.fills.units[0]
    assert bought * opens[2] * (1 + 0.002) * (1 + 0.001) == pytest.approx(100_000.0, rel=1e-12)
    assert sim.cash[2] == pytest.approx(0.0, abs=1e-6)
    assert sim.fills.units[1] == -bought
    assert sim.units[5] == 0.0
    close_fill = from_signals(None, closes, flags(8, 1), flags(8, 4), fill="close")
    assert close_fill.fills.bar.tolist() == [1, 4]
    assert close_fill.fills.price.tolist() == [closes[1], closes[4]]


def test_signal_conflicts_are_ignored_and_repeats_do_nothing() -> None:
    opens, closes = tiny()
    sim = from_signals(opens, closes, flags(8, 1, 2, 3), flags(8, 1, 5))
    # Row 1: entry and exit together, ignored. Row 2 opens; row 3's repeated entry adds nothing.
    assert sim.fills.bar.tolist() == [3, 6]
    shorts = from_signals(opens, closes, flags(8, 1), flags(8), flags(8, 1), flags(8))
    assert shorts.n_fills == 0  # long and short entry together: ignored


def test_signal_reversal_and_short_round_trip() -> None:
    opens, closes = tiny(10)
    kw = {"size": 10.0, "size_type": "units"}
    sim = from_signals(opens, closes, flags(10, 1), flags(10), flags(10, 3), flags(10, 6), **kw)
    assert sim.fills.units.tolist() == [10.0, -20.0, 10.0]
    assert sim.units[[2, 4, 7]].tolist() == [10.0, -10.0, 0.0]
    back = from_signals(opens, closes, flags(10, 3), flags(10), flags(10, 1), flags(10), **kw)
    assert back.fills.units.tolist() == [-10.0, 20.0]


def test_signal_accumulate_adds_and_reduces_but_never_flips() -> None:
    opens, closes = tiny(10)
    kw = {"size": 10.0, "size_type": "units", "accumulate": True}
    sim = from_signals(opens, closes, flags(10, 1, 2), flags(10, 4, 5, 6), flags(10), flags(10), **kw)
    assert sim.fills.units.tolist() == [10.0, 10.0, -10.0, -10.0]
    # An entry the other way reduces to flat, not beyond; from flat the next one opens the other side.
    opposite = from_signals(opens, closes, flags(10, 1), flags(10), flags(10, 3, 5), flags(10), **kw)
    assert opposite.fills.units.tolist() == [10.0, -10.0, -10.0]
    assert opposite.units[[4, 5, 6]].tolist() == [0.0, 0.0, -10.0]
    value = from_signals(opens, closes, flags(10, 1), flags(10), size=1_000.0, size_type="value")
    assert value.fills.units[0] == pytest.approx(1_000.0 / opens[2], rel=1e-15)


def test_signal_buys_are_limited_to_cash() -> None:
    opens, closes = tiny()
    sim = from_signals(opens, closes, flags(8, 1), flags(8), size=1e9, size_type="value", fees=0.001)
    assert sim.cash[2] == pytest.approx(0.0, abs=1e-6)
    assert sim.fills.units[0] == pytest.approx(100_000.0 / (opens[2] * 1.001), rel=1e-12)
    minimum = CostModel(commission_bps=0.0, slippage_bps=0.0, min_commission=10.0)
    capped = from_signals(opens, closes, flags(8, 1), flags(8), costs=minimum, initial_cash=1_000.0)
    assert capped.fills.units[0] * opens[2] + 10.0 == pytest.approx(1_000.0, rel=1e-12)
    broke = from_signals(opens, closes, flags(8, 1), flags(8), costs=minimum, initial_cash=5.0)
    assert broke.n_fills == 0


def test_nan_open_drops_the_signal() -> None:
    opens, closes = tiny()
    opens[2] = np.nan
    sim = from_signals(opens, closes, flags(8, 1), flags(8))
    assert sim.n_fills == 0


# --------------------------------------------------------------------------- positions, volume, carry


def test_fraction_positions_hold_units_between_changes(spy: pd.DataFrame) -> None:
    states = np.zeros(len(spy))
    states[100:300] = 1.0
    states[300:400] = -1.0
    sim = from_positions(spy["open"], spy["close"], states, costs=COSTS, size_type="fraction", size=0.5)
    assert sim.fills.bar.tolist() == [101, 301, 401]
    assert (np.diff(sim.units[102:301]) == 0.0).all()
    assert sim.fills.units[0] * spy["open"].iloc[101] == pytest.approx(50_000.0, rel=1e-12)
    as_units = from_positions(spy["open"], spy["close"], states, costs=COSTS, size=7.0)
    assert sorted(set(as_units.units.tolist())) == [-7.0, 0.0, 7.0]


def test_volume_caps_participation_and_prices_impact(btc: pd.DataFrame) -> None:
    costs = CostModel(commission_bps=10.0, slippage_bps=2.0, impact_coef=0.5, max_participation=0.01)
    volume = btc["volume"].to_numpy()
    sigma = np.full(len(btc), 0.04)
    weights = np.full(len(btc), 1.0)
    sim = from_target_weights(
        btc["open"], btc["close"], weights, costs=costs, volume=volume, volatility=sigma
    )
    assert (np.abs(sim.fills.units) <= 0.01 * volume[sim.fills.bar] * (1 + 1e-12)).all()
    assert sim.n_fills > 1  # the first buy is spread over several bars
    for bar, units, price in zip(sim.fills.bar[:5], sim.fills.units[:5], sim.fills.price[:5], strict=True):
        expected = costs.fill_price(units, btc["open"].iloc[bar], volatility=0.04, volume=volume[bar])
        assert price == expected


def test_carry_is_charged_on_positions_held_overnight(spy: pd.DataFrame) -> None:
    costs = CostModel(commission_bps=0.0, slippage_bps=0.0, financing_long_bps_per_year=500.0)
    days = spy["ts"].diff().dt.days.fillna(0.0).to_numpy()
    weights = np.ones(len(spy))
    sim = from_target_weights(spy["open"], spy["close"], weights, costs=costs, carry_days=days)
    closes = spy["close"].to_numpy()
    t = 200
    expected = costs.carry_cost(sim.units[t - 1] * closes[t - 1], days[t])
    assert sim.carry[t] == pytest.approx(expected, rel=1e-12)
    assert sim.carry[:2].tolist() == [0.0, 0.0]  # nothing held over the first night
    free = from_target_weights(spy["open"], spy["close"], weights, costs=costs)
    assert sim.final_equity < free.final_equity


# ------------------------------------------------------------------------------------ no look-ahead


def signals_for(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.random((4, n)) < 0.15)  # type: ignore[return-value]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(0, 78),
    factor=st.floats(0.3, 3.0),
    fill=st.sampled_from(["next_open", "close"]),
    kind=st.sampled_from(["weights", "positions", "signals"]),
)
def test_results_up_to_a_bar_ignore_later_prices_and_decisions(
    synthetic: MakeBars, seed: int, k: int, factor: float, fill: str, kind: str
) -> None:
    """Row t depends only on prices up to bar t and decisions up to row t - 1 (next_open) or t (close)."""
    bars = synthetic(seed % 10_000, 80)
    opens, closes = bars["open"].to_numpy(), bars["close"].to_numpy()
    later_opens, later_closes = opens.copy(), closes.copy()
    later_opens[k + 1 :] *= factor
    later_closes[k + 1 :] *= factor
    first_changed = k if fill == "next_open" else k + 1  # decision rows from here on may not show by row k

    def run(o: np.ndarray, c: np.ndarray, alter: bool) -> SimulationResult:
        if kind == "signals":
            sig = signals_for(seed, 80)
            if alter:
                sig = tuple(np.r_[s[:first_changed], ~s[first_changed:]] for s in sig)  # type: ignore[assignment]
            return from_signals(o, c, *sig, costs=COSTS, fill=fill)  # type: ignore[arg-type]
        targets = random_targets(seed % 10_000, 80).copy()
        if alter:
            targets[first_changed:] = 0.25 - targets[first_changed:]
        if kind == "weights":
            return from_target_weights(o, c, targets, costs=COSTS, fill=fill)  # type: ignore[arg-type]
        return from_positions(o, c, targets * 100, costs=COSTS, fill=fill)  # type: ignore[arg-type]

    a = run(opens, closes, alter=False)
    b = run(later_opens, later_closes, alter=True)
    for name in ("equity", "cash", "returns", "units"):
        np.testing.assert_array_equal(getattr(a, name)[: k + 1], getattr(b, name)[: k + 1], err_msg=name)
    early_a, early_b = a.fills.bar <= k, b.fills.bar <= k
    np.testing.assert_array_equal(a.fills.units[early_a], b.fills.units[early_b])


@pytest.mark.parametrize("k", [0, 5, 38])
def test_a_weight_decided_at_t_first_moves_equity_at_t_plus_one(synthetic: MakeBars, k: int) -> None:
    bars = synthetic(9, 40)
    weights = np.zeros(40)
    weights[k] = 1.0
    sim = from_target_weights(bars["open"], bars["close"], weights, costs=FREE, min_trade_weight=0.0)
    assert (sim.equity[: k + 1] == 100_000.0).all()
    assert (sim.units[: k + 1] == 0.0).all()
    assert sim.fills.bar[0] == k + 1
    if k + 1 < 40:
        expected = 100_000.0 * bars["close"].iloc[k + 1] / bars["open"].iloc[k + 1]
        assert sim.equity[k + 1] == pytest.approx(expected, rel=1e-12)


def test_check_causal_catches_a_peeking_strategy(spy: pd.DataFrame) -> None:
    def peeking(bars: pd.DataFrame) -> pd.Series:
        return bars["close"].shift(-1) > bars["close"]  # tomorrow's close: not knowable today

    def causal(bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        fast, slow = bars["close"].rolling(10).mean(), bars["close"].rolling(50).mean()
        return fast > slow, fast < slow

    def normalised(bars: pd.DataFrame) -> pd.Series:
        return (bars["close"] - bars["close"].mean()) / bars["close"].std()  # full-sample statistics

    check_causal(causal, spy)
    with pytest.raises(DataValidationError, match="looks ahead"):
        check_causal(peeking, spy)
    with pytest.raises(DataValidationError, match="looks ahead"):
        check_causal(normalised, spy, cuts=[100, 700])
    # The peeking strategy would have been impossibly good: every long bar closes higher.
    entries = peeking(spy).to_numpy()
    sim = from_signals(None, spy["close"], entries, ~entries, fill="close")
    assert sim.final_equity > 100 * 100_000.0


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda o, c, w: from_target_weights(o, c, w[:-1], costs=COSTS), DataFormatError, "shape"),
        (lambda o, c, w: from_target_weights(o[:-1], c, w, costs=COSTS), DataFormatError, "shape"),
        (lambda o, c, w: from_target_weights(o, c[None], w, costs=COSTS), DataFormatError, "shape"),
        (lambda o, c, w: from_target_weights(o, np.r_[c[:-1], -1.0], w, costs=COSTS), DataFormatError, "> 0"),
        (
            lambda o, c, w: from_target_weights(np.r_[np.inf, o[1:]], c, w, costs=COSTS),
            DataFormatError,
            "open",
        ),
        (
            lambda o, c, w: from_target_weights(o, c, np.r_[np.inf, w[1:]], costs=COSTS),
            DataFormatError,
            "finite",
        ),
        (
            lambda o, c, w: from_target_weights(o, c, w, costs=COSTS, fill="nextopen"),
            ConfigError,
            "next_open",
        ),
        (lambda o, c, w: from_target_weights(None, c, w, costs=COSTS), ConfigError, "open prices"),
        (lambda o, c, w: from_target_weights(o, c, w, costs=None), ConfigError, "CostModel"),
        (
            lambda o, c, w: from_target_weights(o, c, w, costs=COSTS, initial_cash=0),
            ConfigError,
            "initial_cash",
        ),
        (
            lambda o, c, w: from_target_weights(o, c, w, costs=COSTS, min_trade_weight=-1),
            ConfigError,
            "band|>= 0",
        ),
        (lambda o, c, w: from_target_weights(o, c[:0], w[:0], costs=COSTS), DataFormatError, "no bars"),
        (
            lambda o, c, w: from_target_weights(o, c, w, costs=COSTS, carry_days=w[:-1]),
            DataFormatError,
            "carry",
        ),
        (lambda o, c, w: from_signals(o, c, w, w > 0), DataFormatError, "boolean"),
        (lambda o, c, w: from_signals(o, c, w > 0, w > 0, size=2.0), ConfigError, "percent"),
        (lambda o, c, w: from_signals(o, c, w > 0, w > 0, size_type="unit"), ConfigError, "units"),
        (lambda o, c, w: from_signals(o, c, w > 0, w > 0, costs=COSTS, fees=0.001), ConfigError, "not both"),
        (lambda o, c, w: from_signals(o, c, w > 0, w > 0, w > 0), ConfigError, "short_exits"),
        (lambda o, c, w: from_signals(o, c, w > 0, w > 0, fees=0.5), ConfigError, "fees"),
        (lambda o, c, w: from_positions(o, c, w, costs=COSTS, size_type="weight"), ConfigError, "fraction"),
        (lambda o, c, w: from_positions(o, c, w, costs=COSTS, size=0.0), ConfigError, "size"),
    ],
)
def test_bad_input_is_refused(call: Callable[..., object], error: type, fragment: str) -> None:
    opens, closes = tiny(10)
    with pytest.raises(error, match=fragment):
        call(opens, closes, np.linspace(-1.0, 1.0, 10))


def test_signals_with_missing_values_are_refused() -> None:
    opens, closes = tiny()
    entries = pd.Series([True, None, False, False, False, False, False, False], dtype=object)
    with pytest.raises(DataFormatError, match="fillna"):
        from_signals(opens, closes, entries, flags(8))


def test_to_backtest_result_needs_one_asset_and_times(etfs: tuple[np.ndarray, np.ndarray]) -> None:
    opens, closes = etfs
    panel = from_target_weights(opens, closes, np.full(closes.shape, 0.3), costs=COSTS)
    with pytest.raises(ConfigError, match="single-asset"):
        panel.to_backtest_result(ts=pd.date_range("2012-01-01", periods=len(closes), tz="UTC"))
    single = from_target_weights(opens[:, 0], closes[:, 0], np.ones(len(closes)), costs=COSTS)
    with pytest.raises(ConfigError, match="ts="):
        single.to_backtest_result()
