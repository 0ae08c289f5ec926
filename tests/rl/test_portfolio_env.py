"""Portfolio environments: parity with the vectorised backtester, weight mappings, checkers, no look-ahead,
seeding and SB3 training. Tolerance for parity with from_target_weights: 1e-9 relative."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.vectorized import from_target_weights
from alphaloom.core.exceptions import DataFormatError
from alphaloom.data.sample import load_sample
from alphaloom.features import FeatureEngineer
from alphaloom.rl.portfolio_env import PortfolioEnv, PortfolioEnvConfig, VecPortfolioEnv

REWARDS = ["log_return_dd", "differential_sharpe", "seed_risk_adjusted"]
COSTS = CostModel(commission_bps=5.0, slippage_bps=3.0, min_commission=1.0)
SYMBOLS = ("AAPL", "AIG", "IBM", "SPY")


@pytest.fixture(scope="module")
def panel() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four shipped daily US equities aligned by date: obs (T, 4, 20), open and close (T, 4)."""
    bars = load_sample("us_equities_daily")
    frames = [bars[bars["symbol"] == s].reset_index(drop=True) for s in SYMBOLS]
    assert all((f["ts"].to_numpy() == frames[0]["ts"].to_numpy()).all() for f in frames)
    engineer = FeatureEngineer()
    feats = np.stack([engineer.fit_transform(f).to_numpy() for f in frames], axis=1)
    keep = slice(engineer.lookback, None)
    opn = np.column_stack([f["open"].to_numpy() for f in frames])[keep]
    cls = np.column_stack([f["close"].to_numpy() for f in frames])[keep]
    return feats[keep].astype(np.float32), opn, cls


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n, k = 300, 5
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (n, k)), axis=0))
    opn = close * np.exp(rng.normal(0.0, 0.003, (n, k)))
    return rng.normal(size=(n, k, 3)).astype(np.float32), opn, close


@pytest.mark.parametrize("weighting", ["softmax", "signed"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equity_matches_the_vectorised_backtester(panel: tuple, weighting: str, seed: int) -> None:
    obs, opn, cls = panel
    a, b = 2000, 2600
    cfg = PortfolioEnvConfig(
        episode_len=None, weighting=weighting, costs=COSTS, min_trade_weight=1e-3, max_leverage=1.5
    )
    env = PortfolioEnv(obs[a:b], opn[a:b], cls[a:b], cfg)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n = b - a
    weights = np.full((n, len(SYMBOLS)), np.nan)
    equity = [cfg.initial_cash]
    costs = [0.0]
    for t in range(n - 1):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1.0, 1.0, len(SYMBOLS) + 1))
        weights[t] = info["target_weights"]
        equity.append(info["equity"])
        costs.append(info["cost"])
        assert not terminated
    assert truncated
    res = from_target_weights(opn[a:b], cls[a:b], weights, costs=COSTS, min_trade_weight=1e-3)
    np.testing.assert_allclose(np.array(equity), np.asarray(res.equity).ravel(), rtol=1e-9)
    assert sum(costs) > 0.0
    assert np.std(np.diff(equity)) > 0.0


def test_weight_mappings(toy: tuple) -> None:
    obs, opn, cls = toy
    k = opn.shape[1]
    action = np.array([[0.9, -0.2, 0.1, -1.0, 0.5, 0.3]])
    soft = VecPortfolioEnv(obs, opn, cls, PortfolioEnvConfig(n_envs=1, softmax_scale=2.0))
    soft.reset()
    soft.step(action)
    z = np.exp(2.0 * action[0])
    np.testing.assert_allclose(soft.target_weights[0], (z / z.sum())[:k], rtol=1e-12)
    signed = VecPortfolioEnv(
        obs, opn, cls, PortfolioEnvConfig(n_envs=1, weighting="signed", max_leverage=2.0)
    )
    signed.reset()
    signed.step(action)
    np.testing.assert_allclose(signed.target_weights[0], action[0, :k] * 2.0 / 2.7, rtol=1e-12)
    signed.step(np.array([[0.1, -0.2, 0.0, 0.3, 0.1, 0.0]]))  # gross 0.7 <= 1: not scaled up
    np.testing.assert_allclose(signed.target_weights[0], [0.2, -0.4, 0.0, 0.6, 0.2], rtol=1e-12)


def test_observation_holds_market_row_weights_and_cash(toy: tuple) -> None:
    obs, opn, cls = toy
    k = opn.shape[1]
    vec = VecPortfolioEnv(obs, opn, cls, PortfolioEnvConfig(n_envs=2, episode_len=None))
    o = vec.reset()
    assert o.shape == (2, obs.shape[1] * obs.shape[2] + k + 2)
    o, *_ = vec.step(np.tile(np.linspace(-1, 1, k + 1), (2, 1)))
    bar = vec.current_bars[0]
    d = obs.shape[1] * obs.shape[2]
    np.testing.assert_array_equal(o[0, :d], obs[bar].ravel())
    units = vec._units[0]
    eq = vec.equity[0]
    np.testing.assert_allclose(o[0, d : d + k], units * cls[bar] / eq, rtol=1e-6)
    assert o[0, d : d + k + 1].sum() == pytest.approx(1.0, rel=1e-6)  # assets plus cash
    assert o[0, -1] == pytest.approx(eq / 100_000.0 - 1.0, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("weighting", ["softmax", "signed"])
def test_passes_check_env(toy: tuple, reward: str, weighting: str) -> None:
    env = PortfolioEnv(*toy, PortfolioEnvConfig(reward=reward, weighting=weighting, episode_len=50))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []
    env.reset(seed=0)
    for bad in (np.full(6, np.nan), np.zeros(3)):
        with pytest.raises(DataFormatError):
            env.step(bad)


@settings(max_examples=20, deadline=None)
@given(
    probe=st.integers(min_value=1, max_value=280),
    seed=st.integers(min_value=0, max_value=2**16),
    reward=st.sampled_from(REWARDS),
)
def test_no_look_ahead(toy: tuple, probe: int, seed: int, reward: str) -> None:
    obs, opn, cls = toy
    rng = np.random.default_rng(seed)
    obs2, opn2, cls2 = obs.copy(), opn.copy(), cls.copy()
    obs2[probe + 1 :] = rng.normal(size=obs2[probe + 1 :].shape).astype(np.float32)
    opn2[probe + 1 :] *= rng.uniform(0.5, 1.5, size=opn2[probe + 1 :].shape)
    cls2[probe + 1 :] *= rng.uniform(0.5, 1.5, size=cls2[probe + 1 :].shape)
    cfg = PortfolioEnvConfig(n_envs=3, episode_len=None, reward=reward, costs=COSTS)
    base = VecPortfolioEnv(obs, opn, cls, cfg, seed=seed)
    moved = VecPortfolioEnv(obs2, opn2, cls2, cfg, seed=seed)
    o1, o2 = base.reset(), moved.reset()
    actions = rng.uniform(-1.0, 1.0, (probe + 1, 3, opn.shape[1] + 1))
    for t in range(probe):
        np.testing.assert_array_equal(o1, o2)
        o1, r1, _, _ = base.step(actions[t])
        o2, r2, _, _ = moved.step(actions[t])
        if (base.current_bars <= probe).all():
            np.testing.assert_array_equal(r1, r2)


def test_seeding_and_auto_reset(toy: tuple) -> None:
    cfg = PortfolioEnvConfig(n_envs=4, episode_len=10)
    runs = []
    for seed in (5, 5, 6):
        vec = VecPortfolioEnv(*toy, cfg, windows=[(0, 150), (200, 300)], seed=seed)
        trace = [vec.reset()]
        n_done = 0
        for t in range(40):
            obs, _, dones, infos = vec.step(np.full((4, 6), np.sin(t), dtype=np.float32))
            trace.append(obs)
            for i in np.flatnonzero(dones):
                assert infos[i]["TimeLimit.truncated"]
                assert infos[i]["terminal_observation"].shape == obs.shape[1:]
                n_done += 1
        assert n_done == 16  # every environment finished four 10-bar episodes
        runs.append(np.stack(trace))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_rejects_misaligned_data(toy: tuple) -> None:
    obs, opn, cls = toy
    with pytest.raises(DataFormatError, match="open_prices"):
        VecPortfolioEnv(obs, opn[:, :3], cls)
    with pytest.raises(DataFormatError, match="obs"):
        VecPortfolioEnv(obs[:-1], opn, cls)


def test_ppo_learns_on_the_vec_portfolio_env(toy: tuple) -> None:
    torch.set_num_threads(1)
    vec = VecPortfolioEnv(*toy, PortfolioEnvConfig(n_envs=8, episode_len=32), seed=0)
    model = PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=512)
    assert model.num_timesteps >= 512
