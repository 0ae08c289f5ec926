"""Toy markets and environment builders for the RL tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from alphaloom.backtest.costs import CostModel
from alphaloom.rl import SingleAssetTradingEnv, ToyMarket, TradingEnvConfig, make_vec_env, toy_market


@pytest.fixture(scope="session")
def market() -> ToyMarket:
    """512 bars whose next return's sign is obs column 0 (0.5% per bar)."""
    return toy_market(512, seed=0)


@pytest.fixture(scope="session")
def random_walk() -> ToyMarket:
    """A 300-bar lognormal walk with gaps between close and next open, and 3 noise features."""
    rng = np.random.default_rng(7)
    n = 300
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.empty(n)
    open_[0] = 50.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 0.003, n - 1))
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return ToyMarket(obs=obs, open_prices=open_, close_prices=close)


@pytest.fixture
def costly_config() -> TradingEnvConfig:
    return TradingEnvConfig(costs=CostModel(commission_bps=5.0, slippage_bps=10.0, min_commission=1.0))


@pytest.fixture
def make_env() -> Callable[..., SingleAssetTradingEnv]:
    def build(m: ToyMarket, config: TradingEnvConfig | None = None) -> SingleAssetTradingEnv:
        return SingleAssetTradingEnv(m.obs, m.open_prices, m.close_prices, config)

    return build


@pytest.fixture
def make_vec() -> Callable[..., DummyVecEnv]:
    def build(n_envs: int = 2, n_bars: int = 512, config: TradingEnvConfig | None = None) -> DummyVecEnv:
        markets = [toy_market(n_bars, seed=100 + i) for i in range(n_envs)]
        return make_vec_env(
            [m.obs for m in markets],
            [m.open_prices for m in markets],
            [m.close_prices for m in markets],
            config if config is not None else TradingEnvConfig(episode_len=128),
            seed=0,
        )

    return build
