"""A/B routing (shadow and split), the paired comparison's decision and attribution, on real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.data.sample import load_sample
from alphaloom.registry import (
    ABConfig,
    ABRouter,
    ABTestConfig,
    attribute_returns,
    compare_arms,
    regime_labels,
)

SYMBOLS = ["SPY", "QQQ", "IWM", "EEM", "IBM", "AIG", "WM", "USO"]


def momentum(symbol: str, ts, closes: np.ndarray) -> float:
    """Long when the last 20 bars rose, short otherwise."""
    return 1.0 if closes[-1] > closes[-21] else -1.0


def trend(symbol: str, ts, closes: np.ndarray) -> float:
    """Long while the close is above its 100-bar mean, flat otherwise."""
    return 1.0 if closes[-1] > closes[-100:].mean() else 0.0


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    bars = load_sample("us_equities_daily")
    wide = bars[bars["symbol"].isin(SYMBOLS)].pivot(index="ts", columns="symbol", values="close")
    return wide.loc["2012-01-01":].dropna()


def _run(router: ABRouter, closes: pd.DataFrame, n_days: int = 40) -> list:
    out = []
    for i in range(len(closes) - n_days, len(closes)):
        ts = closes.index[i].to_pydatetime()
        for sym in closes.columns:
            out.append(router.decide(sym, ts, closes[sym].to_numpy()[i - 120 : i + 1]))
    return out


def test_shadow_mode_records_both_arms_on_the_same_inputs_and_acts_as_the_champion(closes) -> None:
    seen: list[tuple[str, int]] = []

    def champion(symbol, ts, x):
        seen.append(("champion", id(x)))
        return momentum(symbol, ts, x)

    def challenger(symbol, ts, x):
        seen.append(("challenger", id(x)))
        with pytest.raises(ValueError, match="read-only"):
            x[0] = 0.0  # an arm cannot change what the other sees
        return trend(symbol, ts, x)

    sunk = []
    router = ABRouter(
        champion, challenger, champion_name="momentum/1", challenger_name="trend/2", sink=sunk.append
    )
    decisions = _run(router, closes)
    assert all(d.target == d.champion_signal for d in decisions)
    assert all(d.challenger_weight == 0.0 for d in decisions)
    records = router.frame()
    assert len(records) == 2 * len(decisions) == len(sunk)
    assert set(records["model"]) == {"momentum/1", "trend/2"}
    assert records.groupby("arm")["weight"].sum().to_dict() == {"champion": len(decisions), "challenger": 0.0}
    # Both arms were called with the very same input array for every decision.
    assert [s[1] for s in seen[0::2]] == [s[1] for s in seen[1::2]]
    by_arm = records.pivot_table(index=["ts", "symbol"], columns="arm", values="signal")
    assert (by_arm["challenger"] != by_arm["champion"]).any()  # the arms really disagree sometimes


def test_split_by_symbol_respects_the_share_and_is_stable() -> None:
    names = [f"SYM{i:04d}" for i in range(4000)] + SYMBOLS
    for share in (0.1, 0.3, 0.5):
        router = ABRouter(momentum, trend, ABConfig(mode="split", split_by="symbol", challenger_share=share))
        assigned = np.array([router.assigned_to_challenger(s) for s in names])
        # Binomial: 4008 draws, standard error below 0.8 points; allow 3 of them.
        assert abs(assigned.mean() - share) < 0.024, (share, assigned.mean())
        again = ABRouter(momentum, trend, ABConfig(mode="split", challenger_share=share))
        assert [again.assigned_to_challenger(s) for s in names] == assigned.tolist()
    other_salt = ABRouter(momentum, trend, ABConfig(mode="split", salt="round-2"))
    base = ABRouter(momentum, trend, ABConfig(mode="split"))
    assert [other_salt.assigned_to_challenger(s) for s in names] != [
        base.assigned_to_challenger(s) for s in names
    ]


def test_split_mode_acts_with_the_assigned_arm_and_records_both(closes) -> None:
    router = ABRouter(momentum, trend, ABConfig(mode="split", split_by="symbol", challenger_share=0.5))
    decisions = _run(router, closes, n_days=10)
    for d in decisions:
        expected = d.challenger_signal if router.assigned_to_challenger(d.symbol) else d.champion_signal
        assert d.target == expected
    assert len(router.records_) == 2 * len(decisions)
    capital = ABRouter(momentum, trend, ABConfig(mode="split", split_by="capital", challenger_share=0.25))
    for d in _run(capital, closes, n_days=5):
        assert math.isclose(d.target, 0.75 * d.champion_signal + 0.25 * d.challenger_signal)
    weights = capital.frame().groupby("arm")["weight"].unique()
    assert list(weights["challenger"]) == [0.25]
    assert list(weights["champion"]) == [0.75]


def test_a_failing_challenger_is_recorded_and_never_stops_the_loop(closes) -> None:
    def broken(symbol, ts, x):
        raise RuntimeError("model file missing")

    router = ABRouter(momentum, broken, ABConfig(mode="split", split_by="capital", challenger_share=0.5))
    decisions = _run(router, closes, n_days=2)
    assert all(d.target == d.champion_signal for d in decisions)
    failed = router.frame().query("arm == 'challenger'")
    assert failed["error"].str.contains("model file missing").all()
    assert failed["signal"].isna().all()
    assert (failed["weight"] == 0.0).all()
    with pytest.raises(DataFormatError, match="non-finite"):
        ABRouter(lambda s, t, x: float("nan"), trend).decide(
            "SPY", closes.index[-1].to_pydatetime(), np.ones(5)
        )
    with pytest.raises(ConfigError):
        ABConfig.from_dict({"mode": "split", "challenger_share": 1.5})


@pytest.fixture(scope="module")
def arm_returns(closes) -> pd.DataFrame:
    """Per-bar next-day returns of the momentum (champion) and trend (challenger) rules, per symbol."""
    frames = []
    for sym in SYMBOLS:
        c = closes[sym]
        ret = c.pct_change().shift(-1)
        mom = np.where(c > c.shift(20), 1.0, -1.0)
        tr = np.where(c > c.rolling(100).mean(), 1.0, 0.0)
        f = pd.DataFrame(
            {
                "symbol": sym,
                "champion": mom * ret,
                "challenger": tr * ret,
                "regime": regime_labels(c.to_numpy()),
            }
        )
        frames.append(f.iloc[120:-1])
    return pd.concat(frames, ignore_index=True)


def test_compare_arms_decides_with_the_statistics(arm_returns) -> None:
    spy = arm_returns[arm_returns["symbol"] == "SPY"]
    full = compare_arms(spy["champion"], spy["challenger"], config=ABTestConfig(n_resamples=1000))
    print(f"\nA/B SPY momentum (champion) vs trend (challenger): {full.decision}: {full.reason}")
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in full.statistics().items()})
    assert full.decision == "promote"
    assert full.p_gain < 0.05
    assert full.challenger_sharpe_annual > full.champion_sharpe_annual
    # The first 60 bars of the same comparison cannot tell yet.
    short = compare_arms(spy["champion"][:60], spy["challenger"][:60], config=ABTestConfig(n_resamples=500))
    print(f"first 60 bars: {short.decision}: {short.reason}")
    assert short.decision == "need_more_data"
    assert short.min_sample_bars > 60
    # Reversed roles: the challenger is now significantly worse, so the champion stays.
    rev = compare_arms(spy["challenger"], spy["champion"], config=ABTestConfig(n_resamples=1000))
    assert rev.decision == "keep"
    assert rev.p_loss < 0.05


def test_diebold_mariano_is_reported_with_forecast_losses(arm_returns) -> None:
    spy = arm_returns[arm_returns["symbol"] == "SPY"].iloc[:500]
    realised = spy["challenger"].abs().to_numpy()  # a loss series per arm: squared error of each arm's call
    loss_a, loss_b = (
        (spy["champion"].to_numpy() - realised) ** 2,
        (spy["challenger"].to_numpy() - realised) ** 2,
    )
    res = compare_arms(spy["champion"], spy["challenger"], champion_losses=loss_a, challenger_losses=loss_b)
    assert res.diebold_mariano is not None
    assert res.diebold_mariano.n == 500
    assert "diebold_mariano_p" in res.statistics()
    with pytest.raises(DataFormatError, match="both"):
        compare_arms(spy["champion"], spy["challenger"], champion_losses=loss_a)


def test_attribution_by_asset_and_regime_adds_up(arm_returns) -> None:
    by_symbol = attribute_returns(arm_returns, "symbol")
    assert set(by_symbol["symbol"]) == set(SYMBOLS)
    assert math.isclose(by_symbol["contribution"].sum(), 1.0, rel_tol=1e-9)
    assert by_symbol["n_bars"].sum() == len(arm_returns)
    by_regime = attribute_returns(arm_returns, "regime")
    assert set(by_regime["regime"]) <= {"bull/calm", "bull/volatile", "bear/calm", "bear/volatile", "warm-up"}
    assert math.isclose(by_regime["contribution"].sum(), 1.0, rel_tol=1e-9)
    spy = arm_returns[arm_returns["symbol"] == "SPY"]
    row = by_symbol.set_index("symbol").loc["SPY"]
    assert math.isclose(row["challenger_return"], float(np.prod(1 + spy["challenger"]) - 1), rel_tol=1e-12)


def test_regime_labels_never_peek(closes) -> None:
    c = closes["SPY"].to_numpy()
    labels = regime_labels(c)
    changed = c.copy()
    changed[1500:] *= 0.5  # a crash after bar 1500 must not relabel the bars before it
    assert (regime_labels(changed)[:1500] == labels[:1500]).all()
    assert (labels[:63] == "warm-up").all()
    with pytest.raises(DataFormatError):
        regime_labels(np.array([1.0, -1.0] * 40))
