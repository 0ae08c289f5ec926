"""Collapse detection: hand-made sequences with known answers, and real rollouts on shipped data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alphaloom.core.exceptions import DataFormatError
from alphaloom.data.sample import SAMPLE_SETS, load_sample
from alphaloom.risk import measures
from alphaloom.rl import SingleAssetTradingEnv, TradingEnvConfig
from alphaloom.rl.diagnostics import (
    action_entropy,
    collapse_report,
    n_trades,
    time_in_market,
    turnover,
)


def test_entropy_of_a_constant_action_is_zero_and_of_two_bins_is_log_two() -> None:
    assert action_entropy(np.full(50, 0.3)) == 0.0
    two = np.array([-1.0, 1.0] * 20)
    assert action_entropy(two) == pytest.approx(math.log(2), abs=1e-12)
    assert action_entropy(two, bins=4, normalise=True) == pytest.approx(0.5, abs=1e-12)


def test_entropy_of_uniform_bins_normalises_to_one_and_uses_column_zero() -> None:
    centres = np.linspace(-1, 1, 11)[:-1] + 0.1  # one value in each of 10 bins
    assert action_entropy(centres, bins=10, normalise=True) == pytest.approx(1.0, abs=1e-12)
    full = np.column_stack([centres, np.zeros(10)])
    assert action_entropy(full, bins=10) == pytest.approx(math.log(10), abs=1e-12)
    assert math.isnan(action_entropy(np.array([])))
    with pytest.raises(DataFormatError, match="bins"):
        action_entropy(centres, bins=1)


def test_turnover_and_time_in_market_are_the_risk_measures() -> None:
    p = np.array([0.0, 1.0, 1.0, -1.0, 0.0])
    assert turnover(p) == measures.turnover(p) == pytest.approx((0 + 1 + 0 + 2 + 1) / 5)
    assert time_in_market(p) == measures.exposure(p, tolerance=1e-3) == pytest.approx(0.6)
    assert n_trades(p) == 3


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        (np.zeros(40), ("never_trades", "always_flat", "constant_action")),
        (np.ones(40), ("never_trades", "buy_and_hold", "constant_action")),
        (np.full(40, -0.5), ("never_trades", "constant_action")),
        (np.where(np.arange(40) % 4 < 2, 1.0, -1.0), ()),
    ],
    ids=["flat", "buy_and_hold", "constant_short", "alternating"],
)
def test_collapse_flags_on_hand_made_sequences(positions: np.ndarray, expected: tuple[str, ...]) -> None:
    report = collapse_report(positions)
    assert report.flags == expected
    assert report.collapsed is bool(expected)


def test_actions_decide_the_entropy_flag_and_thresholds_apply() -> None:
    positions = np.r_[np.zeros(10), np.ones(30)]
    varied = np.linspace(-1, 1, 40)
    assert collapse_report(positions, varied).flags == ()
    assert "constant_action" in collapse_report(positions, np.ones(40)).flags
    assert "never_trades" in collapse_report(positions, varied, min_trades=2).flags
    with pytest.raises(DataFormatError, match="empty"):
        collapse_report(np.array([]))


def _shipped_env() -> SingleAssetTradingEnv:
    bars = load_sample(next(iter(SAMPLE_SETS)))
    one = bars[bars["symbol"] == bars["symbol"].iloc[0]].head(200)
    close = one["close"].to_numpy(dtype=np.float64)
    obs = np.log(close / np.r_[close[0], close[:-1]])[:, None].astype(np.float32)
    return SingleAssetTradingEnv(obs, one["open"].to_numpy(dtype=np.float64), close, TradingEnvConfig())


def test_real_rollouts_of_trivial_policies_are_flagged_and_an_active_one_is_not() -> None:
    env = _shipped_env()
    hold = env.rollout(lambda obs: np.array([1.0, 0.0], dtype=np.float32))
    report = collapse_report(hold.targets)
    assert report.flags == ("never_trades", "buy_and_hold", "constant_action")
    assert report.time_in_market == 1.0

    flat = env.rollout(lambda obs: np.array([0.0, 0.0], dtype=np.float32))
    assert "always_flat" in collapse_report(flat.targets).flags

    actions: list[float] = []

    def follow(obs: np.ndarray) -> np.ndarray:  # long after an up bar, short after a down bar
        actions.append(float(np.sign(obs[0])))
        return np.array([actions[-1], 0.0], dtype=np.float32)

    active = env.rollout(follow)
    report = collapse_report(active.targets, np.array(actions))
    assert report.flags == ()
    assert report.n_trades > 10
    assert 0.0 < report.turnover <= 2.0
