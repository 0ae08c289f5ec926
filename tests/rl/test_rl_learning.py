""" "Can it learn": on a toy market whose observation reveals the next bar's direction, a short PPO or Rainbow
training must clearly beat a random policy on a market it has not seen."""

from __future__ import annotations

import numpy as np
import pytest

from alphaloom.rl import (
    Agent,
    AgentConfig,
    PPOAgent,
    PPOConfig,
    RainbowConfig,
    RainbowDQNAgent,
    RolloutResult,
    SingleAssetTradingEnv,
    TradingEnvConfig,
    make_vec_env,
    toy_market,
)

# A perfect policy earns about 47 bp per bar here (0.5% moves less costs); a random one about -1 bp.
MIN_EDGE_BP = 5.0


def _log_return_per_bar_bp(result: RolloutResult) -> float:
    return float(np.log(result.equity[-1] / result.equity[0]) / (len(result.equity) - 1) * 1e4)


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (PPOAgent, PPOConfig(seed=0)),
        (
            RainbowDQNAgent,
            RainbowConfig(learning_starts=256, update_every=4, target_update_interval=50, gamma=0.5, seed=0),
        ),
    ],
    ids=["ppo", "rainbow"],
)
def test_agent_learns_an_obvious_edge(cls: type[Agent], config: AgentConfig) -> None:
    agent = cls(config)
    markets = [toy_market(1024, seed=100 + i) for i in range(2)]
    vec = make_vec_env(
        [m.obs for m in markets],
        [m.open_prices for m in markets],
        [m.close_prices for m in markets],
        TradingEnvConfig(episode_len=128),
        seed=0,
    )
    agent.train(vec, 2048)
    unseen = toy_market(512, seed=999)
    env = SingleAssetTradingEnv(
        unseen.obs, unseen.open_prices, unseen.close_prices, TradingEnvConfig(episode_len=None)
    )
    learned = _log_return_per_bar_bp(env.rollout(agent.predict))
    rng = np.random.default_rng(0)
    random = _log_return_per_bar_bp(env.rollout(lambda obs: rng.uniform([-1.0, 0.0], [1.0, 1.0])))
    assert random < 1.0
    assert learned > MIN_EDGE_BP
    assert learned > random + MIN_EDGE_BP
