"""Rainbow DQN, implemented here in torch.

We write Rainbow ourselves rather than take tianshou's: tianshou would add about 400 MB of dependencies
and caps the pandas version, for one agent. The six Rainbow ingredients, each in
:mod:`alphaloom.rl.agents._rainbow_core` with its own unit test:

* distributional RL (C51): a categorical return distribution over ``n_atoms`` atoms, trained with the
  categorical projection and a cross-entropy loss;
* dueling heads: separate value and advantage streams;
* noisy linear layers with factorised Gaussian noise: exploration without epsilon-greedy;
* prioritised replay on a sum tree, with importance weights whose exponent anneals from ``beta_start`` to 1;
* n-step returns;
* double-Q targets: the online network picks the next action, the target network (synced every
  ``target_update_interval`` updates) values it.

The agent acts on a discrete grid of ``[position, hold]`` actions
(:class:`~alphaloom.rl.actions.DiscreteActionGrid`, 5 positions x 3 holds by default) and steps the same
continuous-action ``VecEnv`` as the other agents, all of its environments together, through
:class:`~alphaloom.rl.actions.DiscreteVecActionWrapper`; so every agent trains on one environment and one
cost model, and ``predict`` returns points of the continuous box like the others'.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from stable_baselines3.common.vec_env import VecEnv

from alphaloom.core.exceptions import DataFormatError, DataNotFoundError, TrainingError
from alphaloom.rl.actions import DiscreteActionGrid, DiscreteVecActionWrapper
from alphaloom.rl.agents._rainbow_core import (
    NStepAccumulator,
    NStepTransition,
    PrioritizedReplayBuffer,
    RainbowNetwork,
    double_q_target,
    project_distribution,
)
from alphaloom.rl.agents.base import Agent, AgentConfig, ProgressFn

__all__ = ["RainbowConfig", "RainbowDQNAgent"]


class RainbowConfig(AgentConfig):
    """Rainbow DQN settings.

    Parameters
    ----------
    n_step
        Rewards summed into each return before bootstrapping.
    n_atoms, v_min, v_max
        The categorical support; returns outside [v_min, v_max] are clipped onto it. The defaults suit the
        environment's percent-scaled rewards with ``gamma`` 0.95.
    buffer_size, batch_size, learning_starts
        Replay capacity, minibatch size, and transitions collected before the first update.
    update_every
        Transitions collected (summed over the environments) per gradient update: the replay period, 4 in
        the Rainbow paper. With 4 environments and the default, one update per step of the ``VecEnv``.
    target_update_interval
        Updates between hard copies of the online network into the target network.
    alpha, beta_start
        Priority exponent, and the importance-weight exponent at the start of a ``train`` call (annealed
        linearly to 1 by its end).
    noisy_sigma0
        Initial noise scale of the noisy layers.
    max_grad_norm
        Gradient clipping norm.
    positions, holds
        The discrete action grid (position sizes x hold times).
    """

    learning_rate: float = Field(default=1e-3, gt=0.0)
    n_step: int = Field(default=3, ge=1)
    n_atoms: int = Field(default=51, ge=2)
    v_min: float = -20.0
    v_max: float = 20.0
    buffer_size: int = Field(default=100_000, ge=64)
    batch_size: int = Field(default=64, ge=1)
    learning_starts: int = Field(default=1000, ge=1)
    update_every: int = Field(default=4, ge=1)
    target_update_interval: int = Field(default=100, ge=1)
    alpha: float = Field(default=0.5, ge=0.0)
    beta_start: float = Field(default=0.4, ge=0.0, le=1.0)
    noisy_sigma0: float = Field(default=0.5, ge=0.0)
    max_grad_norm: float = Field(default=10.0, gt=0.0)
    positions: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    holds: tuple[float, ...] = (0.0, 0.5, 1.0)

    @model_validator(mode="after")
    def _support_is_ordered(self) -> RainbowConfig:
        if not self.v_min < self.v_max:
            raise ValueError(f"v_min must be < v_max, got {self.v_min} >= {self.v_max}")
        return self


class RainbowDQNAgent(Agent):
    """Rainbow DQN on a discrete ``[position, hold]`` grid (see the module docstring).

    Confidence: the softmax (temperature = the spread of the expected returns across actions) of the
    actions' expected returns, summed over the actions whose position has the greedy action's sign.
    The replay buffer is not saved; a loaded agent predicts exactly as saved and, if trained further,
    starts a fresh buffer.
    """

    name: ClassVar[str] = "rainbow"
    config_class: ClassVar[type[AgentConfig]] = RainbowConfig

    def __init__(self, config: RainbowConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        assert isinstance(cfg, RainbowConfig)
        self.grid = DiscreteActionGrid(cfg.positions, cfg.holds)
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.n_atoms)
        self.online_: RainbowNetwork | None = None
        self.target_: RainbowNetwork | None = None
        self.optimizer_: torch.optim.Adam | None = None
        self.replay_: PrioritizedReplayBuffer | None = None
        self.n_updates_ = 0
        self.num_timesteps_ = 0
        self._torch_gen = torch.Generator().manual_seed(cfg.seed)
        self._np_rng = np.random.default_rng(cfg.seed)
        signs = np.sign(self.grid.table[:, 0])
        self._action_signs = torch.as_tensor(signs)

    # ------------------------------------------------------------------ construction
    def _make_network(self, obs_dim: int) -> RainbowNetwork:
        cfg = self.config
        assert isinstance(cfg, RainbowConfig)
        return RainbowNetwork(
            obs_dim, self.grid.n_actions, cfg.n_atoms, cfg.net_arch, cfg.noisy_sigma0, self._torch_gen
        )

    def _build(self, obs_dim: int) -> None:
        cfg = self.config
        assert isinstance(cfg, RainbowConfig)
        self.online_ = self._make_network(obs_dim)
        self.target_ = self._make_network(obs_dim)
        self.target_.load_state_dict(self.online_.state_dict())
        self.target_.train()
        for p in self.target_.parameters():
            p.requires_grad_(False)
        self.optimizer_ = torch.optim.Adam(
            self.online_.parameters(), lr=cfg.learning_rate, eps=1.5e-4, fused=True
        )

    # ------------------------------------------------------------------ training
    def _train(self, vec_env: VecEnv, total_timesteps: int, progress: ProgressFn | None) -> None:
        cfg = self.config
        assert isinstance(cfg, RainbowConfig)
        obs_dim = int(vec_env.observation_space.shape[0])
        if self.online_ is None:
            self._build(obs_dim)
        if self.replay_ is None:
            self.replay_ = PrioritizedReplayBuffer(
                cfg.buffer_size, obs_dim, alpha=cfg.alpha, rng=self._np_rng
            )
        online, replay = self.online_, self.replay_
        assert online is not None
        n_envs = vec_env.num_envs
        accumulators = [NStepAccumulator(cfg.n_step, cfg.gamma) for _ in range(n_envs)]
        env = DiscreteVecActionWrapper(vec_env, self.grid)
        env.seed(cfg.seed + self.num_timesteps_)
        obs = np.asarray(env.reset(), dtype=np.float32)
        every = max(1, total_timesteps // 100)
        done_steps, last_report, update_credit = 0, 0, 0
        online.train()
        while done_steps < total_timesteps:
            if len(replay) < cfg.learning_starts:
                # Uniform random actions fill the buffer before the first update (the noise is still fixed).
                actions = self._np_rng.integers(0, self.grid.n_actions, size=n_envs)
            else:
                with torch.no_grad():
                    q = online.probs(torch.from_numpy(obs)) @ self.support
                actions = q.argmax(dim=1).numpy()
            next_obs, rewards, dones, infos = env.step(actions)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            batch: list[NStepTransition] = []
            for i in range(n_envs):
                done = bool(dones[i])
                if done:
                    real_next = np.asarray(infos[i]["terminal_observation"], dtype=np.float32)
                    terminated = not infos[i].get("TimeLimit.truncated", False)
                else:
                    real_next, terminated = next_obs[i], False
                batch.extend(
                    accumulators[i].push(
                        obs[i],
                        int(actions[i]),
                        float(rewards[i]),
                        real_next,
                        terminated=terminated,
                        done=done,
                    )
                )
            if batch:
                replay.add(
                    np.stack([t.obs for t in batch]),
                    np.array([t.action for t in batch]),
                    np.array([t.ret for t in batch]),
                    np.stack([t.next_obs for t in batch]),
                    np.array([t.discount for t in batch]),
                )
            obs = next_obs
            done_steps += n_envs
            if len(replay) >= max(cfg.learning_starts, cfg.batch_size):
                update_credit += n_envs
                beta = cfg.beta_start + (1.0 - cfg.beta_start) * min(1.0, done_steps / total_timesteps)
                while update_credit >= cfg.update_every:
                    update_credit -= cfg.update_every
                    self._update(beta)
            if progress is not None and done_steps - last_report >= every:
                last_report = done_steps
                progress(min(done_steps, total_timesteps), total_timesteps)
        self.num_timesteps_ += done_steps
        if progress is not None:
            progress(total_timesteps, total_timesteps)

    def _update(self, beta: float) -> None:
        cfg = self.config
        assert isinstance(cfg, RainbowConfig)
        online, target, optimizer, replay = self.online_, self.target_, self.optimizer_, self.replay_
        assert online is not None
        assert target is not None
        assert optimizer is not None
        assert replay is not None
        sample = replay.sample(cfg.batch_size, beta)
        obs = torch.from_numpy(sample.obs)
        next_obs = torch.from_numpy(sample.next_obs)
        online.reset_noise(self._torch_gen)
        target.reset_noise(self._torch_gen)
        n = obs.shape[0]
        log_probs = online(obs)[torch.arange(n), torch.from_numpy(sample.actions)]
        with torch.no_grad():
            next_dist, _ = double_q_target(online.probs(next_obs), target.probs(next_obs), self.support)
            target_dist = project_distribution(
                next_dist, torch.from_numpy(sample.returns), torch.from_numpy(sample.discounts), self.support
            )
        loss_per = -(target_dist * log_probs).sum(dim=-1)
        loss = (torch.from_numpy(sample.weights) * loss_per).mean()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"rainbow loss became {float(loss)}; lower learning_rate or check rewards for extreme values."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(online.parameters(), cfg.max_grad_norm)
        optimizer.step()
        replay.update_priorities(sample.index, loss_per.detach().numpy())
        self.n_updates_ += 1
        if self.n_updates_ % cfg.target_update_interval == 0:
            target.load_state_dict(online.state_dict())

    # ------------------------------------------------------------------ inference
    def _q_values(self, obs: np.ndarray, deterministic: bool) -> torch.Tensor:
        online = self.online_
        assert online is not None
        was_training = online.training
        online.train(not deterministic)
        try:
            with torch.no_grad():
                if not deterministic:
                    online.reset_noise(self._torch_gen)
                return online.probs(torch.from_numpy(obs)) @ self.support
        finally:
            online.train(was_training)

    def _predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        q = self._q_values(obs, deterministic)
        return self.grid.table[q.argmax(dim=1).numpy()]

    def _confidence(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        q = self._q_values(obs, True)
        temperature = q.std(dim=1, keepdim=True).clamp_min(1e-8)
        probs = F.softmax(q / temperature, dim=1)
        chosen = torch.sign(torch.from_numpy(actions[:, 0]).to(torch.float32))
        same = self._action_signs[None, :] == chosen[:, None]
        return (probs * same).sum(dim=1).double().numpy()

    # ------------------------------------------------------------------ persistence
    def _save_model(self, path: Path) -> None:
        assert self.online_ is not None
        assert self.target_ is not None
        torch.save(
            {"online": self.online_.state_dict(), "target": self.target_.state_dict()}, path / "model.pt"
        )

    def _load_model(self, path: Path, observation_dim: int) -> None:
        file = path / "model.pt"
        if not file.is_file():
            raise DataNotFoundError(f"{path} has agent.json but no model.pt; the save is incomplete.")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
            self._build(observation_dim)
            assert self.online_ is not None
            assert self.target_ is not None
            self.online_.load_state_dict(state["online"])
            self.target_.load_state_dict(state["target"])
        except (RuntimeError, KeyError, OSError) as exc:
            raise DataFormatError(f"{file} does not hold weights for this Rainbow config: {exc}") from exc

    def _weights_finite(self) -> bool:
        assert self.online_ is not None
        return all(bool(torch.isfinite(p).all()) for p in self.online_.parameters())
