"""``check_trading_env``: the checks every alphaloom trading environment must pass.

stable-baselines3's ``check_env`` tests the gymnasium contract; this adds what a *trading* environment
owes us: the seed's action box, finite float32 observations, a reset that is a pure function of its seed,
out-of-box actions clipped rather than trusted, malformed actions refused, and no look-ahead: an
observation at bar ``t`` must not change when any data after bar ``t`` is changed.

The look-ahead probe rebuilds the environment as ``type(env)(obs, open_prices, close_prices, config)``
with the data after a probe bar scrambled, so an environment must keep those four attributes
(``market_obs``, ``open_prices``, ``close_prices``, ``config``) and that constructor signature, as
:class:`~alphaloom.rl.env.SingleAssetTradingEnv` and its subclasses do.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from alphaloom.core.exceptions import AlphaloomError, DataFormatError

__all__ = ["EnvCheckError", "check_trading_env"]

_ACTION_LOW = np.array([-1.0, 0.0], dtype=np.float32)
_ACTION_HIGH = np.array([1.0, 1.0], dtype=np.float32)


class EnvCheckError(AlphaloomError, AssertionError):
    """A trading environment broke one of the rules :func:`check_trading_env` enforces."""


def _fail(message: str) -> None:
    raise EnvCheckError(message)


def _check_obs(obs: Any, space: gym.spaces.Box, where: str) -> None:
    if not isinstance(obs, np.ndarray):
        _fail(f"{where}: the observation must be a numpy array, got {type(obs).__name__}.")
    if obs.dtype != np.float32 or obs.shape != space.shape:
        _fail(f"{where}: expected a float32 array of shape {space.shape}, got {obs.dtype} {obs.shape}.")
    if not np.isfinite(obs).all():
        _fail(
            f"{where}: the observation is non-finite at {np.flatnonzero(~np.isfinite(obs)).tolist()}; "
            "fill or trim feature warm-up rows before building the environment."
        )


def _run(env: gym.Env, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return observations, rewards


def check_trading_env(env: gym.Env, *, n_steps: int = 64, seed: int = 0) -> None:
    """Raise :class:`EnvCheckError` unless ``env`` behaves as an alphaloom trading environment.

    Parameters
    ----------
    env
        The environment to check; it is reset and stepped (its episode state is lost).
    n_steps
        Decisions taken in each probe episode.
    seed
        Seed of the probe's resets and of its random actions.
    """
    if not isinstance(env, gym.Env):
        _fail(f"expected a gymnasium.Env, got {type(env).__name__}.")
    act = env.action_space
    if not (
        isinstance(act, gym.spaces.Box)
        and act.shape == (2,)
        and np.array_equal(act.low, _ACTION_LOW)
        and np.array_equal(act.high, _ACTION_HIGH)
    ):
        _fail(f"action_space must be Box([-1, 0], [1, 1]) for [position_size, hold_time], got {act}.")
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and space.dtype == np.float32):
        _fail(f"observation_space must be a 1-D float32 Box, got {space}.")

    rng = np.random.default_rng(seed)
    actions = np.column_stack([rng.uniform(-1.0, 1.0, n_steps), rng.uniform(0.0, 1.0, n_steps)])
    actions = actions.astype(np.float32)

    obs, info = env.reset(seed=seed)
    _check_obs(obs, space, "reset()")
    if not isinstance(info, dict):
        _fail(f"reset() must return (obs, info dict), got info of type {type(info).__name__}.")
    for i, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        _check_obs(obs, space, f"step {i}")
        if not (isinstance(reward, float) and np.isfinite(reward)):
            _fail(f"step {i}: the reward must be a finite Python float, got {reward!r}.")
        if not (isinstance(terminated, bool) and isinstance(truncated, bool)):
            _fail(f"step {i}: terminated and truncated must be bools, got {terminated!r}, {truncated!r}.")
        if not (isinstance(info, dict) and "bars" in info):
            _fail(f"step {i}: info must be a dict with per-bar records under 'bars', got {info!r}.")
        if terminated or truncated:
            break

    # Out-of-box actions are clipped; malformed ones are refused with our error, not a crash deep inside.
    env.reset(seed=seed)
    obs, *_ = env.step(np.array([5.0, 7.0], dtype=np.float32))
    _check_obs(obs, space, "step with an out-of-box action")
    for bad in (np.array([np.nan, 0.0]), np.zeros(3)):
        env.reset(seed=seed)
        try:
            env.step(bad)
        except DataFormatError:
            pass
        except Exception as exc:  # any other error type is what we report
            _fail(f"step({bad!r}) raised {type(exc).__name__} ({exc}); expected DataFormatError.")
        else:
            _fail(f"step({bad!r}) was accepted; a malformed action must raise DataFormatError.")

    first = _run(env, seed, actions)
    second = _run(env, seed, actions)
    if len(first[0]) != len(second[0]) or not all(
        np.array_equal(a, b) for a, b in zip(first[0], second[0], strict=True)
    ):
        _fail("two resets with the same seed and the same actions gave different observations.")
    if first[1] != second[1]:
        _fail("two resets with the same seed and the same actions gave different rewards.")

    _check_no_look_ahead(env, actions)


def _check_no_look_ahead(env: gym.Env, actions: np.ndarray) -> None:
    needed = ("market_obs", "open_prices", "close_prices", "config")
    missing = [name for name in needed if not hasattr(env, name)]
    if missing:
        _fail(
            f"the look-ahead probe needs the attributes {', '.join(needed)} and the constructor "
            f"type(env)(obs, open_prices, close_prices, config); {type(env).__name__} lacks {missing}."
        )
    obs, opn, cls = env.market_obs, env.open_prices, env.close_prices
    n_bars = obs.shape[0]
    config = env.config.replace(episode_len=None)
    probe = max(1, n_bars // 2)
    rng = np.random.default_rng(12345)
    obs2, opn2, cls2 = obs.copy(), opn.copy(), cls.copy()
    obs2[probe + 1 :] = rng.normal(size=obs2[probe + 1 :].shape).astype(np.float32) * 3.0
    opn2[probe + 1 :] *= rng.uniform(0.5, 1.5, size=opn2[probe + 1 :].shape)
    cls2[probe + 1 :] *= rng.uniform(0.5, 1.5, size=cls2[probe + 1 :].shape)

    base = type(env)(obs, opn, cls, config)
    moved = type(env)(obs2, opn2, cls2, config)
    o1, _ = base.reset(seed=0)
    o2, _ = moved.reset(seed=0)
    step = 0
    while True:
        bar = base.current_bar
        if bar > probe:
            return
        if not np.array_equal(o1, o2):
            _fail(
                f"look-ahead: the observation at bar {bar} changed when only data after bar {probe} was "
                "changed; observations may use data up to the current bar's close only."
            )
        action = actions[step % len(actions)]
        o1, r1, term1, trunc1, _ = base.step(action)
        o2, r2, *_ = moved.step(action)
        step += 1
        if base.current_bar <= probe and r1 != r2:
            _fail(
                f"look-ahead: the reward up to bar {base.current_bar} changed when only data after bar "
                f"{probe} was changed."
            )
        if term1 or trunc1:
            return
