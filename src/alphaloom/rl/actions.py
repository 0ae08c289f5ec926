"""A discrete action set for value-based agents, mapped onto the continuous ``[position, hold]`` box.

Rainbow DQN chooses among a finite set of actions; :class:`DiscreteActionGrid` lists them as the product of
a few position sizes and a few hold times; :class:`DiscreteActionWrapper` (one environment) and
:class:`DiscreteVecActionWrapper` (a stable-baselines3 ``VecEnv``) let such an agent drive any trading
environment unchanged, so it trains on exactly the environments (and cost model) the others do.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from alphaloom.core.exceptions import ConfigError

__all__ = ["DiscreteActionGrid", "DiscreteActionWrapper", "DiscreteVecActionWrapper"]


class DiscreteActionGrid:
    """The product ``positions x holds`` as a table of continuous actions.

    Parameters
    ----------
    positions
        Position sizes in [-1, 1].
    holds
        Hold times in [0, 1].

    Attributes
    ----------
    table
        Shape (n_actions, 2), float32: row ``i`` is the continuous action of discrete action ``i``; the hold
        time varies fastest.
    """

    def __init__(
        self,
        positions: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0),
        holds: Sequence[float] = (0.0, 0.5, 1.0),
    ) -> None:
        pos = np.asarray(positions, dtype=np.float64)
        hold = np.asarray(holds, dtype=np.float64)
        if pos.ndim != 1 or pos.size == 0 or not np.all((pos >= -1.0) & (pos <= 1.0)):
            raise ConfigError(f"positions must be a non-empty list of values in [-1, 1], got {positions!r}.")
        if hold.ndim != 1 or hold.size == 0 or not np.all((hold >= 0.0) & (hold <= 1.0)):
            raise ConfigError(f"holds must be a non-empty list of values in [0, 1], got {holds!r}.")
        self.positions = tuple(float(p) for p in pos)
        self.holds = tuple(float(h) for h in hold)
        pp, hh = np.meshgrid(pos, hold, indexing="ij")
        self.table = np.column_stack([pp.ravel(), hh.ravel()]).astype(np.float32)
        self.table.setflags(write=False)

    @property
    def n_actions(self) -> int:
        return int(self.table.shape[0])

    def to_continuous(self, index: np.ndarray | int) -> np.ndarray:
        """Continuous action(s) for discrete index(es): shape (2,) for a scalar, (n, 2) for (n,)."""
        idx = np.asarray(index, dtype=np.int64)
        if np.any((idx < 0) | (idx >= self.n_actions)):
            raise ConfigError(f"discrete actions must be in [0, {self.n_actions}), got {index!r}.")
        return self.table[idx].copy()


class DiscreteActionWrapper(gym.ActionWrapper):
    """Expose a trading environment through ``Discrete(grid.n_actions)`` actions."""

    def __init__(self, env: gym.Env, grid: DiscreteActionGrid | None = None) -> None:
        super().__init__(env)
        self.grid = grid if grid is not None else DiscreteActionGrid()
        self.action_space = gym.spaces.Discrete(self.grid.n_actions)

    def action(self, action: int | np.integer) -> np.ndarray:
        return self.grid.to_continuous(int(action))


class DiscreteVecActionWrapper(VecEnvWrapper):
    """Expose a continuous-action ``VecEnv`` through ``Discrete(grid.n_actions)`` actions, one per env."""

    def __init__(self, venv: VecEnv, grid: DiscreteActionGrid | None = None) -> None:
        self.grid = grid if grid is not None else DiscreteActionGrid()
        super().__init__(venv, action_space=gym.spaces.Discrete(self.grid.n_actions))

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.grid.to_continuous(np.asarray(actions, dtype=np.int64).reshape(-1)))

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()
