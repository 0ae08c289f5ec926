"""The vectorised single-asset environment: parity with SingleAssetTradingEnv, checkers, no look-ahead, holds,
rewards by hand, seeding, SB3 training. Tolerance for parity: 1e-9 (relative for equity)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.walkforward import WalkForwardConfig, walk_forward_splits
from alphaloom.core.exceptions import AlphaloomError, DataFormatError
from alphaloom.data.sample import load_sample
from alphaloom.features import FeatureEngineer
from alphaloom.rl import SingleAssetTradingEnv, ToyMarket, TradingEnvConfig, check_trading_env
from alphaloom.rl.vec_env import FastTradingEnv, VecTradingEnv, VecTradingEnvConfig, windows_from_folds

REWARDS = ["log_return_dd", "differential_sharpe", "seed_risk_adjusted"]
TOL = 1e-9
COSTS = CostModel(commission_bps=5.0, slippage_bps=10.0, min_commission=1.0)


@pytest.fixture(scope="module")
def spy() -> ToyMarket:
    """SPY daily bars shipped with the package, 20 features, warm-up rows trimmed (about 5,800 bars)."""
    bars = load_sample("us_equities_daily")
    bars = bars[bars["symbol"] == "SPY"].reset_index(drop=True)
    engineer = FeatureEngineer()
    feats = engineer.fit_transform(bars).to_numpy()
    keep = slice(engineer.lookback, None)
    return ToyMarket(
        obs=feats[keep].astype(np.float32),
        open_prices=bars["open"].to_numpy()[keep],
        close_prices=bars["close"].to_numpy()[keep],
    )


def _actions(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-1.2, 1.2, n), rng.uniform(-0.1, 1.1, n)]).astype(np.float32)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("seed", [0, 7])
def test_fast_env_matches_single_asset_env_on_real_data(spy: ToyMarket, reward: str, seed: int) -> None:
    cfg = TradingEnvConfig(
        reward=reward, episode_len=300, costs=COSTS, max_hold_bars=7, min_trade_weight=0.01
    )
    ref = SingleAssetTradingEnv(spy.obs, spy.open_prices, spy.close_prices, cfg)
    fast = FastTradingEnv(spy.obs, spy.open_prices, spy.close_prices, cfg)
    o1, i1 = ref.reset(seed=seed)
    o2, i2 = fast.reset(seed=seed)
    assert i1 == i2
    np.testing.assert_array_equal(o1, o2)
    for step, action in enumerate(_actions(400, seed)):
        o1, r1, te1, tr1, info1 = ref.step(action)
        o2, r2, te2, tr2, info2 = fast.step(action)
        np.testing.assert_allclose(o2, o1, rtol=TOL, atol=TOL, err_msg=f"step {step}")
        assert _close(r1, r2), (step, r1, r2)
        assert (te1, tr1) == (te2, tr2)
        assert info1["bar"] == info2["bar"]
        assert info1["hold_bars"] == info2["hold_bars"]
        assert _close(info1["equity"], info2["equity"])
        assert len(info1["bars"]) == len(info2["bars"])
        for a, b in zip(info1["bars"], info2["bars"], strict=True):
            assert a.bar == b.bar
            assert all(_close(x, y) for x, y in zip(a[1:], b[1:], strict=True)), (a, b)
        if te1 or tr1:
            break
    assert tr1, "the episode should run to its end within 400 decisions"


@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("step_mode", ["decision", "bar"])
def test_vec_env_matches_single_env_per_window(spy: ToyMarket, reward: str, step_mode: str) -> None:
    # Each of 3 environments runs window [a, b) of SPY from its first bar; the reference is
    # SingleAssetTradingEnv on the slice [a, b) (or FastTradingEnv in bar mode, itself checked above).
    a, b = 1000, 1400
    cfg = VecTradingEnvConfig(
        n_envs=3, reward=reward, episode_len=None, costs=COSTS, step_mode=step_mode, max_hold_bars=4
    )
    vec = VecTradingEnv(spy.obs, spy.open_prices, spy.close_prices, cfg, windows=[(a, b)], seed=1)
    sl = slice(a, b)
    single_cfg = TradingEnvConfig(**{k: getattr(cfg, k) for k in TradingEnvConfig.model_fields})
    refs = [
        (SingleAssetTradingEnv if step_mode == "decision" else FastTradingEnv)(
            spy.obs[sl],
            spy.open_prices[sl],
            spy.close_prices[sl],
            single_cfg if step_mode == "decision" else cfg,
        )
        for _ in range(3)
    ]
    obs = vec.reset()
    for i, env in enumerate(refs):
        np.testing.assert_array_equal(obs[i], env.reset(seed=0)[0])
    actions = np.stack([_actions(500, s) for s in range(3)], axis=1)
    done_seen = np.zeros(3, dtype=bool)
    for t in range(500):
        obs, rewards, dones, infos = vec.step(actions[t])
        for i, env in enumerate(refs):
            if done_seen[i]:
                continue
            o, r, te, tr, info = env.step(actions[t, i])
            assert _close(r, rewards[i]), (t, i, r, rewards[i])
            got = infos[i]["terminal_observation"] if dones[i] else obs[i]
            np.testing.assert_allclose(got, o, rtol=TOL, atol=TOL)
            assert bool(dones[i]) == (te or tr)
            if dones[i]:
                assert infos[i]["TimeLimit.truncated"] == tr
                assert vec.current_bars[i] == a  # auto-reset restarted it at the window's first bar
                done_seen[i] = True
            else:
                assert _close(vec.equity[i], info["equity"])
        if done_seen.all():
            break
    assert done_seen.all()


# ------------------------------------------------------------------------------------------ checkers
@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("step_mode", ["decision", "bar"])
def test_fast_env_passes_checkers(random_walk: ToyMarket, reward: str, step_mode: str) -> None:
    cfg = VecTradingEnvConfig(reward=reward, episode_len=64, step_mode=step_mode)
    env = FastTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices, cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    other = [str(w.message) for w in caught if "symmetric and normalized Box" not in str(w.message)]
    assert other == []
    check_trading_env(env)


def test_fast_env_refuses_steps_after_the_end(random_walk: ToyMarket) -> None:
    env = FastTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices)
    with pytest.raises(AlphaloomError, match="reset"):
        env.step(np.array([0.0, 0.0]))


def test_vec_env_rejects_bad_actions_and_data(random_walk: ToyMarket) -> None:
    vec = VecTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices)
    vec.reset()
    bars = vec.current_bars
    bad = np.zeros((vec.num_envs, 2), dtype=np.float32)
    bad[5, 0] = np.nan
    with pytest.raises(DataFormatError, match="row 5"):
        vec.step(bad)
    np.testing.assert_array_equal(vec.current_bars, bars)  # nothing moved
    with pytest.raises(DataFormatError):
        vec.step(np.zeros((vec.num_envs, 3)))
    opn = random_walk.open_prices.copy()
    opn[10] = -1.0
    with pytest.raises(DataFormatError, match="open_prices"):
        VecTradingEnv(random_walk.obs, opn, random_walk.close_prices)
    with pytest.raises(DataFormatError, match="window"):
        VecTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices, windows=[(10, 11)])


# ------------------------------------------------------------------------------------------ look-ahead
@settings(max_examples=25, deadline=None)
@given(
    probe=st.integers(min_value=1, max_value=250),
    seed=st.integers(min_value=0, max_value=2**16),
    step_mode=st.sampled_from(["decision", "bar"]),
    reward=st.sampled_from(REWARDS),
)
def test_no_look_ahead(random_walk: ToyMarket, probe: int, seed: int, step_mode: str, reward: str) -> None:
    # Scrambling every price and feature after bar `probe` never changes an observation or a reward that
    # describes bars up to `probe`.
    rng = np.random.default_rng(seed)
    obs, opn, cls = random_walk.obs, random_walk.open_prices, random_walk.close_prices
    obs2, opn2, cls2 = obs.copy(), opn.copy(), cls.copy()
    obs2[probe + 1 :] = rng.normal(size=obs2[probe + 1 :].shape).astype(np.float32) * 3.0
    opn2[probe + 1 :] *= rng.uniform(0.5, 1.5, size=opn2[probe + 1 :].shape)
    cls2[probe + 1 :] *= rng.uniform(0.5, 1.5, size=cls2[probe + 1 :].shape)
    cfg = VecTradingEnvConfig(
        n_envs=4, episode_len=None, step_mode=step_mode, reward=reward, costs=COSTS, max_hold_bars=3
    )
    base = VecTradingEnv(obs, opn, cls, cfg, seed=seed)
    moved = VecTradingEnv(obs2, opn2, cls2, cfg, seed=seed)
    o1, o2 = base.reset(), moved.reset()
    actions = np.stack([_actions(400, seed + i) for i in range(4)], axis=1)
    live = np.ones(4, dtype=bool)
    for t in range(400):
        live &= base.current_bars <= probe
        if not live.any():
            break
        np.testing.assert_array_equal(o1[live], o2[live])
        o1, r1, d1, _ = base.step(actions[t])
        o2, r2, _, _ = moved.step(actions[t])
        ok = live & (base.current_bars <= probe) & ~d1
        np.testing.assert_array_equal(r1[ok], r2[ok])


# ------------------------------------------------------------------------------------------ holds
def test_decision_mode_executes_the_holding_period_in_one_step(random_walk: ToyMarket) -> None:
    cfg = VecTradingEnvConfig(n_envs=5, episode_len=None, max_hold_bars=9)
    vec = VecTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices, cfg)
    vec.reset()
    holds = np.array([0.0, 0.06, 0.5, 0.94, 1.0], dtype=np.float32)  # -> 1, 1, 5, 9, 9 bars (rounded)
    vec.step(np.column_stack([np.ones(5, dtype=np.float32), holds]))
    np.testing.assert_array_equal(vec.current_bars, [1, 1, 5, 9, 9])


def test_bar_mode_ignores_actions_until_the_holding_period_passes(random_walk: ToyMarket) -> None:
    h = 4
    cfg = VecTradingEnvConfig(n_envs=2, episode_len=None, max_hold_bars=h, step_mode="bar", costs=COSTS)
    vec = VecTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices, cfg)
    obs = vec.reset()
    assert obs.shape == (2, random_walk.obs.shape[1] + 5)
    # Both envs ask for long 1.0 held for H bars; afterwards env 0 keeps sending noise, env 1 zeros.
    first = np.array([[1.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    o, r, *_ = vec.step(first)
    np.testing.assert_allclose(o[:, -1], (h - 1) / h)  # bars left in the hold over H
    for k in range(h - 1):
        noise = np.array([[-1.0, 0.3], [0.0, 0.0]], dtype=np.float32)
        o, r, *_ = vec.step(noise)
        np.testing.assert_array_equal(o[0], o[1])  # the ignored actions changed nothing
        assert r[0] == r[1]
        assert o[0, -1] == pytest.approx((h - 2 - k) / h)
    # The hold has run out: the next action is read.
    o, r, *_ = vec.step(np.array([[-1.0, 0.0], [0.0, 0.0]], dtype=np.float32))
    weight = random_walk.obs.shape[1]
    assert o[0, weight] < -0.9
    assert o[1, weight] == 0.0


# ------------------------------------------------------------------------------------------ rewards
def _hand_rewards(kind: str, equity: np.ndarray, cfg: TradingEnvConfig) -> np.ndarray:
    out = []
    peak, dd_prev, a, b = equity[0], 0.0, 0.0, 1e-4
    rets: list[float] = []
    for prev, eq in itertools.pairwise(equity):
        r = eq / prev - 1.0
        peak = max(peak, eq)
        dd = 1.0 - eq / peak
        if kind == "log_return_dd":
            out.append(
                cfg.reward_scale * (math.log(eq / prev) - cfg.drawdown_penalty * max(dd - dd_prev, 0.0))
            )
            dd_prev = dd
        elif kind == "differential_sharpe":
            var = b - a * a
            d = (b * (r - a) - 0.5 * a * (r * r - b)) / var**1.5
            out.append(min(max(d, -10.0), 10.0))
            a, b = a + cfg.dsr_eta * (r - a), b + cfg.dsr_eta * (r * r - b)
        else:
            rets.append(r)
            window = np.array(rets[-cfg.sharpe_window :])
            s = window.mean() / window.std(ddof=1) if len(window) > 1 and window.std(ddof=1) > 0 else 0.0
            out.append(cfg.reward_scale * (r * (1.0 + max(s, 0.0)) - cfg.drawdown_penalty * dd))
    return np.array(out)


@pytest.mark.parametrize("reward", REWARDS)
def test_rewards_match_hand_computation(random_walk: ToyMarket, reward: str) -> None:
    # Fully long without costs: equity is initial_cash * close / open[1] * ... computed by hand below.
    cfg = VecTradingEnvConfig(
        n_envs=1,
        episode_len=None,
        reward=reward,
        step_mode="bar",
        sharpe_window=5,
        drawdown_penalty=0.5,
        costs=CostModel(commission_bps=0.0, slippage_bps=0.0),
    )
    opn, cls = random_walk.open_prices, random_walk.close_prices
    vec = VecTradingEnv(random_walk.obs, opn, cls, cfg)
    vec.reset()
    n = 60
    rewards = np.array([vec.step(np.array([[1.0, 0.0]], dtype=np.float32))[1][0] for _ in range(n)])
    units = cfg.initial_cash / opn[1]
    equity = np.concatenate([[cfg.initial_cash], units * cls[1 : n + 1]])
    np.testing.assert_allclose(rewards, _hand_rewards(reward, equity, cfg), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------ sampling
def test_seeding_is_deterministic_and_episodes_stay_in_their_windows(random_walk: ToyMarket) -> None:
    cfg = VecTradingEnvConfig(n_envs=8, episode_len=20)
    windows = [(0, 100), (150, 290)]
    args = (random_walk.obs, random_walk.open_prices, random_walk.close_prices, cfg)
    runs = []
    for seed in (3, 3, 4):
        vec = VecTradingEnv(*args, windows=windows, seed=seed)
        trace = [vec.reset()]
        bars = [vec.current_bars]
        for action in _actions(300, 0):
            trace.append(vec.step(np.tile(action, (8, 1)))[0])
            bars.append(vec.current_bars)
        runs.append((np.stack(trace), np.stack(bars)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert not np.array_equal(runs[0][0], runs[2][0])
    bars = runs[0][1]
    assert ((bars < 100) | ((bars >= 150) & (bars < 290))).all()
    assert (bars >= 150).any()
    assert (bars < 100).any()
    # seed() then reset() restarts the same sequence, as SB3 expects.
    vec = VecTradingEnv(*args, windows=windows, seed=99)
    vec.seed(3)
    np.testing.assert_array_equal(vec.reset(), runs[0][0][0])


def test_windows_from_walk_forward_folds() -> None:
    folds = walk_forward_splits(
        1000, WalkForwardConfig(n_folds=3, test_size=100, label_horizon=5, purge=2, embargo=10)
    )
    windows = windows_from_folds(folds)
    assert windows
    for start, end in windows:
        assert end - start >= 2
        assert any(np.isin(np.arange(start, end), f.train_idx).all() for f in folds)


def test_panel_of_assets_samples_every_asset(spy: ToyMarket) -> None:
    n = 500
    obs = np.stack([spy.obs[:n], spy.obs[n : 2 * n]])
    opn = np.stack([spy.open_prices[:n], spy.open_prices[n : 2 * n]])
    cls = np.stack([spy.close_prices[:n], spy.close_prices[n : 2 * n]])
    vec = VecTradingEnv(obs, opn, cls, VecTradingEnvConfig(n_envs=16, episode_len=50), seed=0)
    o = vec.reset()
    assets = vec.current_assets
    assert set(assets.tolist()) == {0, 1}
    for i in range(16):
        np.testing.assert_array_equal(o[i, : obs.shape[2]], obs[assets[i], vec.current_bars[i]])


def test_volume_adds_the_cost_models_impact(spy: ToyMarket) -> None:
    impact = CostModel(slippage_bps=1.0, impact_coef=1.0)
    cfg = VecTradingEnvConfig(n_envs=1, episode_len=None, costs=impact)
    n = 200
    args = (spy.obs[:n], spy.open_prices[:n], spy.close_prices[:n], cfg)
    plain, thin = (
        VecTradingEnv(*args),
        VecTradingEnv(*args, volume=np.full(n, 1e4), volatility=np.full(n, 0.02)),
    )
    plain.reset()
    thin.reset()
    act = np.array([[1.0, 0.0]], dtype=np.float32)
    plain.step(act)
    thin.step(act)
    units = cfg.initial_cash / spy.open_prices[1]
    px = impact.fill_price(units, spy.open_prices[1], volatility=0.02, volume=1e4)
    expected = cfg.initial_cash - units * px - impact.commission(units, px) + units * spy.close_prices[1]
    assert thin.equity[0] == pytest.approx(expected, rel=1e-12)
    assert thin.equity[0] < plain.equity[0]


# ------------------------------------------------------------------------------------------ SB3
def test_ppo_learns_on_the_vec_env(market: ToyMarket) -> None:
    torch.set_num_threads(1)
    cfg = VecTradingEnvConfig(n_envs=8, episode_len=64)
    vec = VecTradingEnv(market.obs, market.open_prices, market.close_prices, cfg, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=512)
    assert model.num_timesteps >= 512
