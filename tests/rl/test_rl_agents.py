"""Every agent through one parametrised suite: interface, validation, determinism, save/load round-trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from alphaloom.core.exceptions import ConfigError, DataFormatError, DataNotFoundError, NotFittedError
from alphaloom.rl import (
    Agent,
    AgentConfig,
    PPOAgent,
    PPOConfig,
    RainbowConfig,
    RainbowDQNAgent,
    SACAgent,
    SACConfig,
    TD3Agent,
    TD3Config,
)

BUDGET = 256

# Tiny settings so that each agent trains in well under a second.
TINY: dict[str, tuple[type[Agent], AgentConfig]] = {
    "ppo": (PPOAgent, PPOConfig(n_steps=64, batch_size=64, n_epochs=2, seed=3)),
    "sac": (SACAgent, SACConfig(learning_starts=64, batch_size=32, buffer_size=1000, seed=3)),
    "td3": (TD3Agent, TD3Config(learning_starts=64, batch_size=32, buffer_size=1000, seed=3)),
    "rainbow": (
        RainbowDQNAgent,
        RainbowConfig(learning_starts=64, batch_size=32, buffer_size=1000, update_every=2, seed=3),
    ),
}
ALL = sorted(TINY)

VecFactory = Callable[..., DummyVecEnv]


def _trained(name: str, make_vec: VecFactory, budget: int = BUDGET) -> Agent:
    cls, config = TINY[name]
    return cls(config).train(make_vec(2), budget)


def _probe_obs(make_vec: VecFactory) -> np.ndarray:
    vec = make_vec(2)
    obs = [vec.reset()]
    for _ in range(20):
        o, *_ = vec.step(np.tile([0.7, 0.0], (2, 1)).astype(np.float32))
        obs.append(o)
    return np.concatenate(obs).astype(np.float32)


@pytest.mark.parametrize("name", ALL)
def test_train_predict_and_confidence(name: str, make_vec: VecFactory) -> None:
    calls: list[tuple[int, int]] = []
    cls, config = TINY[name]
    agent = cls(config)
    assert agent.seed == 3
    assert agent.name == name
    assert not agent.is_fitted
    assert agent.train(make_vec(2), BUDGET, progress=lambda done, total: calls.append((done, total))) is agent
    assert calls
    assert calls[-1] == (BUDGET, BUDGET)
    assert all(total == BUDGET for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    obs = _probe_obs(make_vec)
    single = agent.predict(obs[0])
    assert single.shape == (2,)
    assert single.dtype == np.float32
    batch = agent.predict(obs)
    assert batch.shape == (obs.shape[0], 2)
    assert np.all(batch >= [-1.0, 0.0])
    assert np.all(batch <= [1.0, 1.0])
    np.testing.assert_allclose(batch[0], single, rtol=0, atol=1e-6)  # batched matmul may round differently
    action, conf = agent.predict_with_confidence(obs[0])
    np.testing.assert_array_equal(action, single)
    assert isinstance(conf, float)
    assert 0.0 <= conf <= 1.0
    _actions, confs = agent.predict_with_confidence(obs)
    assert confs.shape == (obs.shape[0],)
    assert np.all((confs >= 0) & (confs <= 1))
    stochastic = agent.predict(obs, deterministic=False)
    assert np.all(stochastic >= [-1.0, 0.0])
    assert np.all(stochastic <= [1.0, 1.0])

    # Training continues from the current weights.
    agent.train(make_vec(2), 64)
    assert agent.is_fitted


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(name: str, make_vec: VecFactory, tmp_path: Path) -> None:
    agent = _trained(name, make_vec)
    obs = _probe_obs(make_vec)
    before, conf_before = agent.predict_with_confidence(obs)
    path = agent.save(tmp_path / name)
    assert (path / "agent.json").is_file()
    for loader in (Agent, type(agent)):
        loaded = loader.load(path)
        assert type(loaded) is type(agent)
        assert loaded.config == agent.config
        after, conf_after = loaded.predict_with_confidence(obs)
        np.testing.assert_array_equal(after, before)
        np.testing.assert_allclose(conf_after, conf_before, rtol=0, atol=1e-6)
    other = PPOAgent if name != "ppo" else SACAgent
    with pytest.raises(DataFormatError, match="not a"):
        other.load(path)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_trained_agent(name: str, make_vec: VecFactory) -> None:
    obs = _probe_obs(make_vec)
    a = _trained(name, make_vec).predict(obs)
    b = _trained(name, make_vec).predict(obs)
    np.testing.assert_array_equal(a, b)


def test_different_seed_different_agent(make_vec: VecFactory) -> None:
    obs = _probe_obs(make_vec)
    a = RainbowDQNAgent(TINY["rainbow"][1]).train(make_vec(2), BUDGET)
    b = RainbowDQNAgent(TINY["rainbow"][1].replace(seed=4)).train(make_vec(2), BUDGET)
    _, qa = a.predict_with_confidence(obs)
    _, qb = b.predict_with_confidence(obs)
    assert not np.array_equal(qa, qb)


@pytest.mark.parametrize("name", ALL)
def test_untrained_agent_refuses_to_predict_or_save(name: str, tmp_path: Path) -> None:
    cls, config = TINY[name]
    agent = cls(config)
    with pytest.raises(NotFittedError, match="train"):
        agent.predict(np.zeros(7, dtype=np.float32))
    with pytest.raises(NotFittedError):
        agent.save(tmp_path / "x")


def test_inputs_are_validated(make_vec: VecFactory) -> None:
    agent = _trained("ppo", make_vec, 64)
    with pytest.raises(DataFormatError, match=r"shape \(7,\)"):
        agent.predict(np.zeros(5, dtype=np.float32))
    with pytest.raises(DataFormatError, match="non-finite"):
        agent.predict(np.full(7, np.nan, dtype=np.float32))
    with pytest.raises(DataFormatError, match="VecEnv"):
        PPOAgent().train(object(), 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="total_timesteps"):
        PPOAgent().train(make_vec(1), 0)
    with pytest.raises(ConfigError, match="PPOConfig"):
        PPOAgent(SACConfig())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="environments"):
        agent.train(make_vec(3), 64)


def test_load_reports_missing_or_unknown(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="no saved agent"):
        Agent.load(tmp_path)
    (tmp_path / "agent.json").write_text(
        '{"format_version": 1, "name": "ppp", "config": {}, "observation_dim": 3}'
    )
    with pytest.raises(DataFormatError, match="Did you mean 'ppo'"):
        Agent.load(tmp_path)


def test_rainbow_config_validation() -> None:
    with pytest.raises(ConfigError, match="v_min"):
        RainbowConfig.from_dict({"v_min": 5.0, "v_max": 1.0})
    with pytest.raises(ConfigError, match="update_every"):
        RainbowConfig.from_dict({"update_evry": 2})
