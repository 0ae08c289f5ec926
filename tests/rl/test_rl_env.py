"""The trading environment: gymnasium and alphaloom checkers, no look-ahead, backtest equivalence, rewards."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.execution import AccountState, execute_bar
from alphaloom.core.exceptions import AlphaloomError, ConfigError, DataFormatError
from alphaloom.rl import (
    PORTFOLIO_FEATURES,
    DiscreteActionGrid,
    DiscreteActionWrapper,
    DiscreteVecActionWrapper,
    EnvCheckError,
    SingleAssetTradingEnv,
    ToyMarket,
    TradingEnvConfig,
    check_trading_env,
    make_vec_env,
    toy_market,
)

EnvFactory = Callable[..., SingleAssetTradingEnv]


def _policy(obs: np.ndarray) -> np.ndarray:
    # Deterministic, varied: uses the market row and the portfolio state, so holds and flips both occur.
    return np.array([math.tanh(2.0 * obs[0] + obs[1]), 0.5 + 0.5 * math.sin(3.0 * obs[2] + obs[-4])])


# ------------------------------------------------------------------------------------------ checkers
@pytest.mark.parametrize("reward", ["log_return_dd", "differential_sharpe", "seed_risk_adjusted"])
def test_passes_stable_baselines3_check_env(market: ToyMarket, make_env: EnvFactory, reward: str) -> None:
    env = make_env(market, TradingEnvConfig(reward=reward, episode_len=64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    # The seed's action box [-1, 0] x [1, 1] is deliberate; SB3 only recommends a symmetric one.
    other = [str(w.message) for w in caught if "symmetric and normalized Box" not in str(w.message)]
    assert other == []


@pytest.mark.parametrize("episode_len", [None, 50])
def test_passes_our_checker(random_walk: ToyMarket, make_env: EnvFactory, episode_len: int | None) -> None:
    check_trading_env(make_env(random_walk, TradingEnvConfig(episode_len=episode_len)))


class _PeekingEnv(SingleAssetTradingEnv):
    # Leaks the next bar's close into the observation: the checker must catch it.
    def _observation(self) -> np.ndarray:
        obs = super()._observation()
        nxt = min(self.current_bar + 1, self.n_bars - 1)
        obs[0] = float(self.close_prices[nxt] / self.close_prices[self.current_bar] - 1.0)
        return obs


def test_checker_catches_look_ahead(random_walk: ToyMarket) -> None:
    env = _PeekingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices)
    with pytest.raises(EnvCheckError, match="look-ahead"):
        check_trading_env(env)


def test_checker_rejects_wrong_action_space(random_walk: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(random_walk)
    env.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    with pytest.raises(EnvCheckError, match="action_space"):
        check_trading_env(env)


# ------------------------------------------------------------------------------------------ look-ahead
@pytest.mark.parametrize("probe", [10, 150, 298])
def test_observation_ignores_future_data(
    random_walk: ToyMarket, costly_config: TradingEnvConfig, probe: int
) -> None:
    """Scramble every obs row after ``probe`` and every price after its close; nothing seen up to it moves."""
    rng = np.random.default_rng(probe)
    obs, opn, cls = random_walk.obs.copy(), random_walk.open_prices.copy(), random_walk.close_prices.copy()
    obs[probe + 1 :] = rng.normal(5.0, 3.0, obs[probe + 1 :].shape)
    opn[probe + 1 :] *= rng.uniform(0.3, 3.0, opn[probe + 1 :].shape)
    cls[probe + 1 :] *= rng.uniform(0.3, 3.0, cls[probe + 1 :].shape)
    config = costly_config.replace(episode_len=None)
    base = SingleAssetTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices, config)
    moved = SingleAssetTradingEnv(obs, opn, cls, config)
    o1, _ = base.reset(seed=1)
    o2, _ = moved.reset(seed=1)
    compared = 0
    while base.current_bar <= probe:
        assert np.array_equal(o1, o2), f"observation at bar {base.current_bar} saw data after bar {probe}"
        compared += 1
        action = _policy(o1)
        o1, r1, term, trunc, info1 = base.step(action)
        o2, r2, _, _, info2 = moved.step(action)
        if base.current_bar <= probe:
            assert r1 == r2
            assert info1["bars"] == info2["bars"]
        if term or trunc:
            break
    assert compared >= 3


# ---------------------------------------------------------------------------------- backtest equivalence
@pytest.mark.parametrize("band", [0.0, 0.05])
def test_rollout_replays_exactly_through_execute_bar(
    random_walk: ToyMarket, costly_config: TradingEnvConfig, band: float
) -> None:
    config = costly_config.replace(min_trade_weight=band, max_hold_bars=4)
    env = SingleAssetTradingEnv(random_walk.obs, random_walk.open_prices, random_walk.close_prices, config)
    result = env.rollout(_policy)
    n = env.n_bars
    for name in ("targets", "weights", "returns", "equity", "costs"):
        arr = getattr(result, name)
        assert arr.shape == (n,)
        assert np.isfinite(arr).all(), name
    state = AccountState(cash=config.initial_cash, units=0.0)
    equity = [config.initial_cash]
    costs = [0.0]
    for t in range(1, n):
        out = execute_bar(
            state,
            float(result.targets[t - 1]),
            float(random_walk.open_prices[t]),
            float(random_walk.close_prices[t]),
            config.costs,
            min_trade_weight=band,
        )
        state = out.state
        equity.append(out.equity_close)
        costs.append(out.cost)
    np.testing.assert_array_equal(result.equity, np.asarray(equity))
    np.testing.assert_array_equal(result.costs, np.asarray(costs))
    np.testing.assert_allclose(
        result.returns[1:], result.equity[1:] / result.equity[:-1] - 1.0, rtol=0, atol=1e-15
    )
    assert result.costs.sum() > 0.0
    # Holds happened (fewer decisions than bars) and targets are constant within each hold.
    assert 1 < len(result.decision_bars) < n - 1
    for start, stop in zip(result.decision_bars[:-1], result.decision_bars[1:], strict=True):
        assert np.all(result.targets[start:stop] == result.targets[start])


def test_rollout_targets_are_the_decoded_decisions(random_walk: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(random_walk, TradingEnvConfig(max_leverage=0.5))
    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs)
        return _policy(obs)

    result = env.rollout(policy)
    assert result.decision_bars[0] == 0
    for bar, obs in zip(result.decision_bars, seen, strict=True):
        target, _ = env.decode_action(_policy(obs))
        assert result.targets[bar] == target
        assert np.array_equal(obs[: env.market_dim], random_walk.obs[bar])
    assert result.targets[-1] == result.targets[-2]
    assert np.abs(result.targets).max() <= 0.5


def test_rollout_does_not_disturb_the_training_env(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market)
    env.reset(seed=3)
    bar = env.current_bar
    env.rollout(lambda o: np.array([1.0, 0.0]))
    assert env.current_bar == bar
    obs2, *_ = env.step(np.array([0.0, 0.0]))
    assert np.isfinite(obs2).all()


def test_perfect_policy_beats_random_on_toy_market(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market)
    perfect = env.rollout(lambda o: np.array([np.sign(o[0]), 0.0]))
    rng = np.random.default_rng(0)
    rand = env.rollout(lambda o: rng.uniform([-1.0, 0.0], [1.0, 1.0]))
    assert perfect.equity[-1] > 5 * rand.equity[-1]


# ------------------------------------------------------------------------------------------ stepping
def test_hold_time_sets_bars_per_step(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market, TradingEnvConfig(max_hold_bars=5, episode_len=None))
    env.reset(seed=0)
    for hold, bars in [(0.0, 1), (0.25, 2), (0.5, 3), (0.74, 4), (1.0, 5)]:
        _, reward, _, _, info = env.step(np.array([0.5, hold]))
        assert info["hold_bars"] == bars
        assert [r.bar for r in info["bars"]] == list(range(info["bar"] - bars + 1, info["bar"] + 1))
        assert all(r.target == 0.5 for r in info["bars"])
        assert math.isfinite(reward)


def test_step_reward_sums_the_bars(market: ToyMarket, make_env: EnvFactory) -> None:
    config = TradingEnvConfig(drawdown_penalty=0.0, episode_len=None, reward_scale=1.0)
    env = make_env(market, config)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([1.0, 1.0]))
    expected = sum(math.log1p(r.ret) for r in info["bars"])
    assert reward == pytest.approx(expected, rel=1e-12)


def test_portfolio_features(market: ToyMarket, make_env: EnvFactory) -> None:
    config = TradingEnvConfig(costs=CostModel(commission_bps=0.0, slippage_bps=0.0), episode_len=None)
    env = make_env(market, config)
    obs, _ = env.reset(seed=0)
    d = env.market_dim
    assert obs.shape == (d + len(PORTFOLIO_FEATURES),)
    assert np.array_equal(obs[d:], np.zeros(4, dtype=np.float32))
    for step in range(1, 4):
        obs, *_ = env.step(np.array([1.0, 0.0]))
        weight, upnl, time_in_trade, equity_change = obs[d:]
        assert weight == pytest.approx(1.0, abs=1e-6)
        bar = env.current_bar
        entry = market.open_prices[1]
        if step == 1:
            assert upnl == pytest.approx(1.0 - entry / market.close_prices[bar], rel=1e-4)
        assert time_in_trade == pytest.approx(step / config.max_hold_bars)
        assert equity_change == pytest.approx(market.close_prices[bar] / entry - 1.0, rel=1e-4)
    obs, *_ = env.step(np.array([0.0, 0.0]))
    assert np.array_equal(obs[d : d + 3], np.zeros(3, dtype=np.float32))


def test_reset_is_seeded_and_training_starts_vary(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market, TradingEnvConfig(episode_len=64))
    starts = set()
    for seed in range(8):
        a, _ = env.reset(seed=seed)
        start = env.current_bar
        b, _ = env.reset(seed=seed)
        assert np.array_equal(a, b)
        assert env.current_bar == start
        starts.add(start)
    assert len(starts) > 4


def test_training_episode_is_truncated_after_episode_len(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market, TradingEnvConfig(episode_len=40))
    env.reset(seed=5)
    start = env.current_bar
    bars = 0
    truncated = terminated = False
    while not (truncated or terminated):
        _, _, terminated, truncated, info = env.step(np.array([0.3, 1.0]))
        bars += len(info["bars"])
    assert truncated
    assert not terminated
    assert bars == 40
    assert env.current_bar == start + 40
    with pytest.raises(AlphaloomError, match="reset"):
        env.step(np.array([0.0, 0.0]))


def test_eval_mode_runs_the_whole_series(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market, TradingEnvConfig(episode_len=None))
    env.reset(seed=123)
    assert env.current_bar == 0
    done, bars = False, 0
    while not done:
        _, _, term, trunc, info = env.step(np.array([0.0, 1.0]))
        bars += len(info["bars"])
        done = term or trunc
    assert bars == market.obs.shape[0] - 1


def test_out_of_box_actions_are_clipped(market: ToyMarket, make_env: EnvFactory) -> None:
    env = make_env(market)
    assert env.decode_action([7.0, 9.0]) == (1.0, env.config.max_hold_bars)
    assert env.decode_action([-7.0, -9.0]) == (-1.0, 1)


@pytest.mark.parametrize("action", [[np.nan, 0.0], [0.0, np.inf], [0.1, 0.2, 0.3]])
def test_malformed_actions_are_refused(market: ToyMarket, make_env: EnvFactory, action: list[float]) -> None:
    env = make_env(market)
    env.reset(seed=0)
    with pytest.raises(DataFormatError, match="action"):
        env.step(np.asarray(action))


# ------------------------------------------------------------------------------------------ inputs and config
def test_inputs_are_validated(market: ToyMarket) -> None:
    obs = market.obs.copy()
    obs[3, 1] = np.nan
    with pytest.raises(DataFormatError, match="row 3 column 1"):
        SingleAssetTradingEnv(obs, market.open_prices, market.close_prices)
    with pytest.raises(DataFormatError, match="align"):
        SingleAssetTradingEnv(market.obs, market.open_prices[:-1], market.close_prices)
    bad = market.close_prices.copy()
    bad[10] = -1.0
    with pytest.raises(DataFormatError, match="bar 10"):
        SingleAssetTradingEnv(market.obs, market.open_prices, bad)
    with pytest.raises(DataFormatError, match=r"\(T, d\)"):
        SingleAssetTradingEnv(market.obs[:, 0], market.open_prices, market.close_prices)


def test_config_rejects_unknown_keys_and_values() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'max_hold_bars'"):
        TradingEnvConfig.from_dict({"max_hold_bar": 3})
    with pytest.raises(ConfigError, match="reward"):
        TradingEnvConfig.from_dict({"reward": "sharpe"})
    config = TradingEnvConfig.from_dict({"costs": {"commission_bps": 3.0}, "episode_len": None})
    assert config.costs.commission_bps == 3.0
    assert config.replace(max_hold_bars=2).config_hash() != config.config_hash()


# ------------------------------------------------------------------------------------------ rewards
def test_log_return_reward_without_drawdown_is_the_scaled_log_return(
    market: ToyMarket, make_env: EnvFactory
) -> None:
    env = make_env(market, TradingEnvConfig(episode_len=None, drawdown_penalty=0.0))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([1.0, 0.0]))
    assert reward == pytest.approx(100.0 * math.log1p(info["bars"][0].ret))


def test_drawdown_penalty_charges_deepening_only(market: ToyMarket, make_env: EnvFactory) -> None:
    env_plain = make_env(market, TradingEnvConfig(episode_len=None, drawdown_penalty=0.0))
    env_dd = make_env(market, TradingEnvConfig(episode_len=None, drawdown_penalty=2.0))
    env_plain.reset(seed=0)
    env_dd.reset(seed=0)
    diffs = []
    for _ in range(30):
        action = np.array([1.0, 0.0])
        _, r_plain, *_ = env_plain.step(action)
        _, r_dd, *_ = env_dd.step(action)
        diffs.append(r_dd - r_plain)
    assert all(d <= 1e-12 for d in diffs)
    assert any(d < 0 for d in diffs)


@pytest.mark.parametrize("reward", ["differential_sharpe", "seed_risk_adjusted"])
def test_other_rewards_are_finite_and_reward_the_edge(
    market: ToyMarket, make_env: EnvFactory, reward: str
) -> None:
    env = make_env(market, TradingEnvConfig(episode_len=None, reward=reward))
    good = env.rollout(lambda o: np.array([np.sign(o[0]), 0.0]))
    bad = env.rollout(lambda o: np.array([-np.sign(o[0]), 0.0]))
    assert np.isfinite(good.total_reward)
    assert np.isfinite(bad.total_reward)
    assert good.total_reward > 0 > bad.total_reward


def test_seed_reward_keeps_the_sign_of_a_loss(market: ToyMarket, make_env: EnvFactory) -> None:
    # The seed's returns * sharpe turned a loss in a losing streak into a positive reward.
    env = make_env(
        market, TradingEnvConfig(episode_len=None, reward="seed_risk_adjusted", drawdown_penalty=0.0)
    )
    env.reset(seed=0)
    for _ in range(40):
        _, reward, _, _, info = env.step(np.array([-np.sign(env.market_obs[env.current_bar, 0]), 0.0]))
        if info["bars"][0].ret < 0:
            assert reward < 0


# ----------------------------------------------------------------------------------- vec env and wrapper
def test_make_vec_env_steps_one_env_per_symbol() -> None:
    markets = [toy_market(200, seed=s) for s in range(3)]
    vec = make_vec_env(
        [m.obs for m in markets], [m.open_prices for m in markets], [m.close_prices for m in markets], seed=4
    )
    assert vec.num_envs == 3
    obs = vec.reset()
    assert obs.shape == (3, markets[0].obs.shape[1] + 4)
    obs, rewards, dones, infos = vec.step(np.tile([0.5, 0.0], (3, 1)).astype(np.float32))
    assert obs.shape[0] == rewards.shape[0] == dones.shape[0] == len(infos) == 3


def test_make_vec_env_rejects_mismatched_inputs() -> None:
    a, b = toy_market(100, seed=0), toy_market(100, seed=1, n_noise=4)
    with pytest.raises(DataFormatError, match="same number of columns"):
        make_vec_env([a.obs, b.obs], [a.open_prices, b.open_prices], [a.close_prices, b.close_prices])
    with pytest.raises(DataFormatError, match="one obs, open and close"):
        make_vec_env([a.obs], [a.open_prices, b.open_prices], [a.close_prices])


def test_discrete_wrapper_maps_the_grid(market: ToyMarket, make_env: EnvFactory) -> None:
    grid = DiscreteActionGrid((-1.0, 0.0, 1.0), (0.0, 1.0))
    env = DiscreteActionWrapper(make_env(market, TradingEnvConfig(episode_len=None)), grid)
    assert env.action_space.n == 6
    np.testing.assert_array_equal(grid.to_continuous(5), [1.0, 1.0])
    env.reset(seed=0)
    _, _, _, _, info = env.step(4)
    assert info["target"] == 1.0
    assert info["hold_bars"] == 1
    with pytest.raises(ConfigError):
        DiscreteActionGrid((2.0,), (0.0,))


def test_discrete_vec_wrapper_steps_all_envs_together() -> None:
    markets = [toy_market(100, seed=s) for s in range(2)]
    vec = make_vec_env(
        [m.obs for m in markets], [m.open_prices for m in markets], [m.close_prices for m in markets], seed=0
    )
    wrapped = DiscreteVecActionWrapper(vec, DiscreteActionGrid((-1.0, 1.0), (0.0,)))
    assert wrapped.action_space.n == 2
    wrapped.reset()
    _, _, _, infos = wrapped.step(np.array([0, 1]))
    assert [info["target"] for info in infos] == [-1.0, 1.0]


def test_same_seed_same_episode(random_walk: ToyMarket, make_env: EnvFactory) -> None:
    def run(seed: int) -> tuple[list[np.ndarray], list[float]]:
        env = make_env(random_walk, TradingEnvConfig(episode_len=100))
        obs, _ = env.reset(seed=seed)
        seen, rewards = [obs], []
        done = False
        while not done:
            obs, reward, term, trunc, _ = env.step(_policy(obs))
            seen.append(obs)
            rewards.append(reward)
            done = term or trunc
        return seen, rewards

    a, b, c = run(11), run(11), run(12)
    assert len(a[0]) == len(b[0])
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == b[1]
    assert not np.array_equal(a[0][0], c[0][0])
