"""PPO, SAC and TD3 agents: thin wrappers of stable-baselines3 behind the common :class:`Agent` interface.

All three use an ``MlpPolicy`` with small networks on the CPU and hyper-parameters chosen for a budget of
tens of seconds on one core: short rollouts and few epochs for PPO, small batches and early learning starts
for SAC and TD3. stable-baselines3 errors raised while training are translated into
:class:`~alphaloom.core.exceptions.TrainingError`.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, TrainingError
from alphaloom.rl.agents.base import Agent, AgentConfig, ProgressFn

__all__ = ["PPOAgent", "PPOConfig", "SACAgent", "SACConfig", "TD3Agent", "TD3Config"]


class PPOConfig(AgentConfig):
    """PPO settings (per-environment rollout length ``n_steps``; the rest as in stable-baselines3)."""

    n_steps: int = Field(default=256, ge=2)
    batch_size: int = Field(default=64, ge=2)
    n_epochs: int = Field(default=4, ge=1)
    gae_lambda: float = Field(default=0.95, ge=0.0, le=1.0)
    clip_range: float = Field(default=0.2, gt=0.0)
    ent_coef: float = Field(default=0.0, ge=0.0)
    vf_coef: float = Field(default=0.5, ge=0.0)
    max_grad_norm: float = Field(default=0.5, gt=0.0)


class SACConfig(AgentConfig):
    """SAC settings; ``learning_starts`` random steps fill the buffer before the first update."""

    learning_rate: float = Field(default=1e-3, gt=0.0)
    buffer_size: int = Field(default=100_000, ge=100)
    learning_starts: int = Field(default=500, ge=0)
    batch_size: int = Field(default=64, ge=2)
    tau: float = Field(default=0.005, gt=0.0, le=1.0)
    train_freq: int = Field(default=1, ge=1)
    gradient_steps: int = Field(default=1, ge=1)
    ent_coef: str | float = "auto"

    @field_validator("ent_coef")
    @classmethod
    def _auto_or_positive(cls, v: str | float) -> str | float:
        if isinstance(v, str) and not v.startswith("auto"):
            raise ValueError(f"ent_coef must be a number, 'auto' or 'auto_<initial value>', got {v!r}")
        if not isinstance(v, str) and not v >= 0:
            raise ValueError(f"ent_coef must be >= 0, got {v}")
        return v


class TD3Config(AgentConfig):
    """TD3 settings; ``action_noise_std`` is the Gaussian exploration noise in the [-1, 1] action scale."""

    learning_rate: float = Field(default=1e-3, gt=0.0)
    buffer_size: int = Field(default=100_000, ge=100)
    learning_starts: int = Field(default=500, ge=0)
    batch_size: int = Field(default=64, ge=2)
    tau: float = Field(default=0.005, gt=0.0, le=1.0)
    train_freq: int = Field(default=1, ge=1)
    gradient_steps: int = Field(default=1, ge=1)
    policy_delay: int = Field(default=2, ge=1)
    action_noise_std: float = Field(default=0.2, gt=0.0)
    target_policy_noise: float = Field(default=0.2, ge=0.0)
    target_noise_clip: float = Field(default=0.5, ge=0.0)


class _ProgressCallback(BaseCallback):
    # Reports (done, total) to the caller about a hundred times per run, and once at the end.
    def __init__(self, progress: ProgressFn, total: int) -> None:
        super().__init__(verbose=0)
        self._progress = progress
        self._total = total
        self._every = max(1, total // 100)
        self._start = 0
        self._last = 0

    def _on_training_start(self) -> None:
        self._start = self.num_timesteps

    def _on_step(self) -> bool:
        done = self.num_timesteps - self._start
        if done - self._last >= self._every:
            self._last = done
            self._progress(min(done, self._total), self._total)
        return True

    def _on_training_end(self) -> None:
        self._progress(min(self.num_timesteps - self._start, self._total), self._total)


def _normal_cdf(x: torch.Tensor) -> np.ndarray:
    return torch.special.ndtr(x).double().cpu().numpy()


class _SB3Agent(Agent):
    # Shared plumbing of the stable-baselines3 agents; subclasses build the model and read confidences.
    algorithm: ClassVar[type[BaseAlgorithm]]

    def __init__(self, config: AgentConfig | None = None) -> None:
        super().__init__(config)
        self.model_: BaseAlgorithm | None = None

    @abstractmethod
    def _build(self, vec_env: VecEnv) -> BaseAlgorithm: ...

    def _train(self, vec_env: VecEnv, total_timesteps: int, progress: ProgressFn | None) -> None:
        first = self.model_ is None
        if first:
            self.model_ = self._build(vec_env)
        else:
            assert self.model_ is not None
            if self.model_.n_envs != vec_env.num_envs:
                raise ConfigError(
                    f"{self.name} was trained with {self.model_.n_envs} environments and cannot continue "
                    f"with {vec_env.num_envs}; keep the same symbols or train a new agent."
                )
            self.model_.set_env(vec_env)
        callback = _ProgressCallback(progress, total_timesteps) if progress is not None else None
        try:
            self.model_.learn(
                total_timesteps=total_timesteps,
                callback=callback,
                reset_num_timesteps=first,
                progress_bar=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise TrainingError(f"{self.name} training failed: {exc}") from exc

    def _predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        assert self.model_ is not None
        actions, _ = self.model_.predict(obs, deterministic=deterministic)
        return np.asarray(actions)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        assert self.model_ is not None
        tensor, _ = self.model_.policy.obs_to_tensor(obs)
        return tensor

    def _save_model(self, path: Path) -> None:
        assert self.model_ is not None
        self.model_.save(path / "model.zip")

    def _load_model(self, path: Path, observation_dim: int) -> None:
        file = path / "model.zip"
        if not file.is_file():
            raise DataNotFoundError(f"{path} has agent.json but no model.zip; the save is incomplete.")
        self.model_ = self.algorithm.load(file, device="cpu")

    def _weights_finite(self) -> bool:
        assert self.model_ is not None
        return all(bool(torch.isfinite(p).all()) for p in self.model_.policy.parameters())

    def _common_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "learning_rate": cfg.learning_rate,
            "gamma": cfg.gamma,
            "seed": cfg.seed,
            "device": "cpu",
            "verbose": 0,
            "policy_kwargs": {"net_arch": list(cfg.net_arch)},
        }


class PPOAgent(_SB3Agent):
    """Proximal Policy Optimisation (stable-baselines3 ``PPO``).

    Confidence: the Gaussian policy's probability that a sampled position has the sign of its mean,
    ``Phi(|mu| / sigma)``.
    """

    name: ClassVar[str] = "ppo"
    config_class: ClassVar[type[AgentConfig]] = PPOConfig
    algorithm: ClassVar[type[BaseAlgorithm]] = PPO

    def _build(self, vec_env: VecEnv) -> BaseAlgorithm:
        cfg = self.config
        assert isinstance(cfg, PPOConfig)
        return PPO(
            "MlpPolicy",
            vec_env,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            **self._common_kwargs(),
        )

    def _confidence(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        assert self.model_ is not None
        with torch.no_grad():
            dist = self.model_.policy.get_distribution(self._obs_tensor(obs)).distribution
            return _normal_cdf(dist.mean[:, 0].abs() / dist.stddev[:, 0])


class SACAgent(_SB3Agent):
    """Soft Actor-Critic (stable-baselines3 ``SAC``).

    Confidence: the squashed Gaussian's probability that a sampled position has the sign of its mean (tanh
    keeps the sign), ``Phi(|mu| / sigma)`` before squashing.
    """

    name: ClassVar[str] = "sac"
    config_class: ClassVar[type[AgentConfig]] = SACConfig
    algorithm: ClassVar[type[BaseAlgorithm]] = SAC

    def _build(self, vec_env: VecEnv) -> BaseAlgorithm:
        cfg = self.config
        assert isinstance(cfg, SACConfig)
        return SAC(
            "MlpPolicy",
            vec_env,
            buffer_size=cfg.buffer_size,
            learning_starts=cfg.learning_starts,
            batch_size=cfg.batch_size,
            tau=cfg.tau,
            train_freq=cfg.train_freq,
            gradient_steps=cfg.gradient_steps,
            ent_coef=cfg.ent_coef,
            **self._common_kwargs(),
        )

    def _confidence(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        assert self.model_ is not None
        with torch.no_grad():
            mean, log_std, _ = self.model_.policy.actor.get_action_dist_params(self._obs_tensor(obs))
            return _normal_cdf(mean[:, 0].abs() / log_std[:, 0].exp())


class TD3Agent(_SB3Agent):
    """Twin Delayed DDPG (stable-baselines3 ``TD3``).

    Confidence: TD3's policy is deterministic, so this is the probability that exploration-sized Gaussian
    noise (``action_noise_std``) would not flip the position's sign, ``Phi(|a| / sigma)``.
    """

    name: ClassVar[str] = "td3"
    config_class: ClassVar[type[AgentConfig]] = TD3Config
    algorithm: ClassVar[type[BaseAlgorithm]] = TD3

    def _build(self, vec_env: VecEnv) -> BaseAlgorithm:
        cfg = self.config
        assert isinstance(cfg, TD3Config)
        noise = NormalActionNoise(mean=np.zeros(2), sigma=np.full(2, cfg.action_noise_std))
        return TD3(
            "MlpPolicy",
            vec_env,
            buffer_size=cfg.buffer_size,
            learning_starts=cfg.learning_starts,
            batch_size=cfg.batch_size,
            tau=cfg.tau,
            train_freq=cfg.train_freq,
            gradient_steps=cfg.gradient_steps,
            policy_delay=cfg.policy_delay,
            action_noise=noise,
            target_policy_noise=cfg.target_policy_noise,
            target_noise_clip=cfg.target_noise_clip,
            **self._common_kwargs(),
        )

    def _confidence(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        assert self.model_ is not None
        cfg = self.config
        assert isinstance(cfg, TD3Config)
        with torch.no_grad():
            scaled = self.model_.policy.actor(self._obs_tensor(obs))
            return _normal_cdf(scaled[:, 0].abs() / cfg.action_noise_std)
