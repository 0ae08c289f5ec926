""" "Can it learn": on a toy market whose observation reveals the next bar's direction, each agent's short
training, and every ensemble of the trained agents, must clearly beat a random policy on a market none of them
has seen."""

from __future__ import annotations

import numpy as np
import pytest

from alphaloom.rl import (
    Agent,
    EnsembleConfig,
    PPOAgent,
    PPOConfig,
    RainbowConfig,
    RainbowDQNAgent,
    RLEnsemble,
    RolloutResult,
    SACAgent,
    SACConfig,
    SingleAssetTradingEnv,
    TD3Agent,
    TD3Config,
    TradingEnvConfig,
    make_vec_env,
    toy_market,
)

# A perfect policy earns about 47 bp per bar here (0.5% moves less costs); a random one about -1 bp.
MIN_EDGE_BP = 5.0

# (agent, environment steps): SAC's entropy bonus keeps it exploring longer, so it gets twice the steps.
AGENTS: dict[str, tuple[Agent, int]] = {
    "ppo": (PPOAgent(PPOConfig(seed=0)), 2048),
    "sac": (SACAgent(SACConfig(seed=0, learning_starts=256)), 4096),
    "td3": (TD3Agent(TD3Config(seed=0, learning_starts=256)), 2048),
    "rainbow": (
        RainbowDQNAgent(
            RainbowConfig(learning_starts=256, update_every=4, target_update_interval=50, gamma=0.5, seed=0)
        ),
        2048,
    ),
}


def _log_return_per_bar_bp(result: RolloutResult) -> float:
    return float(np.log(result.equity[-1] / result.equity[0]) / (len(result.equity) - 1) * 1e4)


@pytest.fixture(scope="module")
def trained() -> dict[str, Agent]:
    markets = [toy_market(1024, seed=100 + i) for i in range(2)]
    out = {}
    for name, (agent, steps) in AGENTS.items():
        vec = make_vec_env(
            [m.obs for m in markets],
            [m.open_prices for m in markets],
            [m.close_prices for m in markets],
            TradingEnvConfig(episode_len=128),
            seed=0,
        )
        agent.train(vec, steps)
        vec.close()
        out[name] = agent
    return out


@pytest.fixture(scope="module")
def unseen() -> tuple[SingleAssetTradingEnv, float]:
    market = toy_market(512, seed=999)
    env = SingleAssetTradingEnv(
        market.obs, market.open_prices, market.close_prices, TradingEnvConfig(episode_len=None)
    )
    rng = np.random.default_rng(0)
    random = _log_return_per_bar_bp(env.rollout(lambda obs: rng.uniform([-1.0, 0.0], [1.0, 1.0])))
    assert random < 1.0
    return env, random


@pytest.mark.parametrize("name", list(AGENTS))
def test_agent_learns_an_obvious_edge(
    name: str, trained: dict[str, Agent], unseen: tuple[SingleAssetTradingEnv, float]
) -> None:
    env, random = unseen
    learned = _log_return_per_bar_bp(env.rollout(trained[name].predict))
    assert learned > MIN_EDGE_BP
    assert learned > random + MIN_EDGE_BP


@pytest.mark.parametrize("method", ["performance", "thompson", "meta"])
def test_ensemble_of_trained_agents_beats_random(
    method: str, trained: dict[str, Agent], unseen: tuple[SingleAssetTradingEnv, float]
) -> None:
    env, random = unseen
    ensemble = RLEnsemble(
        list(trained.values()), EnsembleConfig(method=method, window=20, confidence_threshold=0.5, seed=0)
    )
    learned = _log_return_per_bar_bp(ensemble.rollout(env, symbol="TOY"))
    assert learned > MIN_EDGE_BP
    assert learned > random + MIN_EDGE_BP
    assert len(ensemble.steps_) > 0
    assert not ensemble.failures_
