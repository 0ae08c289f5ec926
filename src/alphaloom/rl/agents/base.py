"""The common agent interface: the base class owns validation, subclasses fill small hooks.

``train``, ``predict``, ``predict_with_confidence``, ``save`` and ``load`` are implemented here once; they
check the vectorised environment, observation shapes, finiteness and the action box, then call the
protected hooks (``_train``, ``_predict``, ``_confidence``, ``_save_model``, ``_load_model``). A subclass
cannot skip the checks, and every agent reads and writes the same on-disk layout::

    <path>/agent.json    name, config, observation size, format version
    <path>/model.*       the algorithm's own weights (model.zip for stable-baselines3, model.pt for ours)
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field
from stable_baselines3.common.vec_env import VecEnv

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    NotFittedError,
    TrainingError,
    did_you_mean,
)

__all__ = ["ACTION_HIGH", "ACTION_LOW", "Agent", "AgentConfig", "ProgressFn", "single_torch_thread"]

#: ``progress(done_steps, total_steps)``, called as training advances and once when it ends.
ProgressFn = Callable[[int, int], None]

ACTION_LOW = np.array([-1.0, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([1.0, 1.0], dtype=np.float32)
_FORMAT_VERSION = 1


class AgentConfig(ComponentConfig):
    """Settings every agent has.

    Parameters
    ----------
    seed
        Seeds the network initialisation, exploration and replay sampling: the same seed, environment and
        budget give the same trained agent.
    net_arch
        Hidden layer sizes of the networks.
    gamma
        Discount per decision (one decision holds for one to ``max_hold_bars`` bars).
    learning_rate
        Optimiser step size.
    """

    seed: int = Field(default=0, ge=0)
    net_arch: tuple[Annotated[int, Field(gt=0)], ...] = Field(default=(64, 64), min_length=1)
    gamma: float = Field(default=0.95, gt=0.0, le=1.0)
    learning_rate: float = Field(default=3e-4, gt=0.0)


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the body with one torch thread (on two cores, two threads were measured up to 25x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Agent(ABC):
    """Base class of the RL agents: one frozen config in, actions in ``Box([-1, 0], [1, 1])`` out.

    Subclasses set ``name`` and ``config_class`` and implement the hooks. Learned state ends in ``_``;
    ``observation_dim_`` is set by the first ``train`` (or ``load``) and fixes the observation size.
    """

    name: ClassVar[str] = "agent"
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    _registry: ClassVar[dict[str, type[Agent]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and not cls.__name__.startswith("_"):
            Agent._registry[cls.name] = cls

    def __init__(self, config: AgentConfig | None = None) -> None:
        config = config if config is not None else self.config_class()
        if type(config) is not self.config_class:
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}."
            )
        self.config = config
        self.observation_dim_: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, fitted={self.is_fitted})"

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def is_fitted(self) -> bool:
        return self.observation_dim_ is not None

    # ------------------------------------------------------------------ public API (validated)
    def train(self, vec_env: VecEnv, total_timesteps: int, progress: ProgressFn | None = None) -> Self:
        """Train on ``vec_env`` for ``total_timesteps`` environment steps (summed over its environments).

        A second call continues training from the current weights. Returns ``self``.

        Raises
        ------
        DataFormatError
            If ``vec_env`` is not a stable-baselines3 VecEnv with the trading action box and a 1-D
            observation, or its observation size differs from the one the agent was trained on.
        TrainingError
            If training produced non-finite weights.
        """
        if not isinstance(vec_env, VecEnv):
            raise DataFormatError(
                f"train() needs a stable_baselines3 VecEnv, got {type(vec_env).__name__}; build one with "
                "alphaloom.rl.make_vec_env(...)."
            )
        act = vec_env.action_space
        if not (
            isinstance(act, gym.spaces.Box)
            and act.shape == (2,)
            and np.array_equal(act.low, ACTION_LOW)
            and np.array_equal(act.high, ACTION_HIGH)
        ):
            raise DataFormatError(f"the action space must be Box([-1, 0], [1, 1]), got {act}.")
        space = vec_env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise DataFormatError(f"the observation space must be a 1-D Box, got {space}.")
        dim = int(space.shape[0])
        if self.observation_dim_ is not None and dim != self.observation_dim_:
            raise DataFormatError(
                f"{self.name} was trained on observations of size {self.observation_dim_}, this environment "
                f"has {dim}; build a new agent for a different feature set."
            )
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int | np.integer):
            raise ConfigError(f"total_timesteps must be an int, got {total_timesteps!r}.")
        if total_timesteps < 1:
            raise ConfigError(f"total_timesteps must be >= 1, got {total_timesteps}.")
        with single_torch_thread():
            self._train(vec_env, int(total_timesteps), progress)
        self.observation_dim_ = dim
        if not self._weights_finite():
            raise TrainingError(
                f"{self.name} training produced non-finite weights; lower learning_rate or check the "
                "observations and rewards for extreme values."
            )
        return self

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for ``obs``.

        Parameters
        ----------
        obs
            Shape (d,) for one observation or (n, d) for a batch.
        deterministic
            The policy's mode (True) or a sample from it (False).

        Returns
        -------
        np.ndarray
            float32, shape (2,) or (n, 2): ``[position_size, hold_time]`` inside ``Box([-1, 0], [1, 1])``.
        """
        batch, single = self._check_obs(obs)
        actions = self._check_actions(self._predict(batch, deterministic))
        return actions[0] if single else actions

    def predict_with_confidence(
        self, obs: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, np.ndarray | float]:
        """Actions as :meth:`predict` and a confidence in [0, 1] for each.

        The confidence is the agent's own probability that its position's *direction* is right (each agent
        documents how it derives it); a float for one observation, shape (n,) for a batch.
        """
        batch, single = self._check_obs(obs)
        actions = self._check_actions(self._predict(batch, deterministic))
        conf = np.asarray(self._confidence(batch, actions), dtype=np.float64).reshape(-1)
        if conf.shape != (batch.shape[0],) or not np.isfinite(conf).all():
            raise TrainingError(f"{self.name} produced an invalid confidence {conf!r}.")
        conf = np.clip(conf, 0.0, 1.0)
        return (actions[0], float(conf[0])) if single else (actions, conf)

    def save(self, path: str | Path) -> Path:
        """Write the agent to directory ``path`` (created if needed); returns the path."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} has not been trained; call train() before save().")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": _FORMAT_VERSION,
            "name": self.name,
            "config": self.config.model_dump(mode="json"),
            "observation_dim": self.observation_dim_,
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        self._save_model(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Agent:
        """Load an agent written by :meth:`save`.

        ``Agent.load`` returns whichever agent the directory holds; ``PPOAgent.load`` insists on a PPO agent.
        """
        path = Path(path)
        meta_path = path / "agent.json"
        if not meta_path.is_file():
            raise DataNotFoundError(f"{path} holds no saved agent (no agent.json); check the path.")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            name, config_data, dim = meta["name"], meta["config"], int(meta["observation_dim"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataFormatError(f"{meta_path} is not a valid agent description: {exc}") from exc
        if meta.get("format_version") != _FORMAT_VERSION:
            raise DataFormatError(
                f"{meta_path} has format version {meta.get('format_version')!r}; this alphaloom reads "
                f"version {_FORMAT_VERSION}."
            )
        agent_cls = Agent._registry.get(name)
        if agent_cls is None:
            raise DataFormatError(
                f"{meta_path} names an unknown agent {name!r}.{did_you_mean(name, Agent._registry)} "
                f"Known agents: {', '.join(sorted(Agent._registry))}."
            )
        if not issubclass(agent_cls, cls):
            raise DataFormatError(f"{path} holds a {name!r} agent, not a {cls.name!r} agent.")
        agent = agent_cls(agent_cls.config_class.from_dict(config_data, source=str(meta_path)))
        agent._load_model(path, dim)
        agent.observation_dim_ = dim
        return agent

    # ------------------------------------------------------------------ validation helpers
    def _check_obs(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} has not been trained; call train() or load() first.")
        arr = np.asarray(obs, dtype=np.float32)
        single = arr.ndim == 1
        batch = arr[None, :] if single else arr
        if batch.ndim != 2 or batch.shape[1] != self.observation_dim_:
            raise DataFormatError(
                f"{self.name} expects observations of shape ({self.observation_dim_},) or "
                f"(n, {self.observation_dim_}), got {arr.shape}."
            )
        if not np.isfinite(batch).all():
            raise DataFormatError(f"{self.name} got a non-finite observation; clean the features first.")
        return batch, single

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        arr = np.asarray(actions, dtype=np.float32).reshape(-1, 2)
        if not np.isfinite(arr).all():
            raise TrainingError(f"{self.name} produced a non-finite action {arr!r}.")
        return np.clip(arr, ACTION_LOW, ACTION_HIGH)

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _train(self, vec_env: VecEnv, total_timesteps: int, progress: ProgressFn | None) -> None:
        """Train (or continue training) on ``vec_env``."""

    @abstractmethod
    def _predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions, shape (n, 2), for a validated float32 batch ``obs`` of shape (n, d)."""

    @abstractmethod
    def _confidence(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Direction confidences, shape (n,), for ``obs`` and the ``actions`` just predicted for it."""

    @abstractmethod
    def _save_model(self, path: Path) -> None:
        """Write the algorithm's weights into directory ``path``."""

    @abstractmethod
    def _load_model(self, path: Path, observation_dim: int) -> None:
        """Restore the weights written by :meth:`_save_model`."""

    @abstractmethod
    def _weights_finite(self) -> bool:
        """Whether every trained parameter is finite."""
