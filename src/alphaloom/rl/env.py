"""A single-asset trading environment that executes every bar through the backtester's own rule.

Timeline (the same convention as :func:`alphaloom.backtest.execution.execute_bar`)::

    bar t close ── observe obs[t] + portfolio ── decide [position, hold] ── bar t+1 open: trade to target
                                                                           bar t+1 close: mark, reward
                                                                           ... repeated for k bars ...
    bar t+k close ── observe obs[t+k] + portfolio ── decide ...

One environment step is one *decision*: the action ``[position_size, hold_time]`` in
``Box([-1, 0], [1, 1])`` sets a target weight ``position_size * max_leverage`` and a minimum holding period
``k = 1 + round(hold_time * (H - 1))`` bars (``H = max_hold_bars``). The environment then executes ``k`` bars
(a semi-MDP step), re-submitting the same target at every bar's open exactly as a backtest of the per-bar
target series would, and returns the reward summed over those bars. Because every bar goes through
``execute_bar`` with the configured :class:`~alphaloom.backtest.costs.CostModel`, replaying
:attr:`RolloutResult.targets` through the backtester gives the same equity to the last bit.

The observation is the caller's market row ``obs[t]`` (built from data up to the close of bar ``t``)
followed by four portfolio features: the current weight, unrealised PnL as a fraction of equity, time in the
current trade in units of ``H`` (capped at 4), and ``equity / initial_cash - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
from pydantic import Field
from stable_baselines3.common.vec_env import DummyVecEnv

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.execution import AccountState, execute_bar
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import AlphaloomError, DataFormatError
from alphaloom.rl._rewards import make_reward

__all__ = [
    "PORTFOLIO_FEATURES",
    "BarRecord",
    "RolloutResult",
    "SingleAssetTradingEnv",
    "TradingEnvConfig",
    "make_vec_env",
]

#: Names of the portfolio features appended to each market observation, in order.
PORTFOLIO_FEATURES: tuple[str, ...] = ("weight", "unrealised_pnl_frac", "time_in_trade", "equity_change")

_TIME_IN_TRADE_CAP = 4.0


class TradingEnvConfig(ComponentConfig):
    """Settings of :class:`SingleAssetTradingEnv`.

    Parameters
    ----------
    costs
        Commission and slippage, the same model the backtester charges.
    max_hold_bars
        ``H``: the longest minimum-holding period an action can ask for, in bars.
    episode_len
        Bars per training episode, started at a random bar; ``None`` runs the whole series from the first
        bar (evaluation mode).
    reward
        ``"log_return_dd"`` (log return of equity minus ``drawdown_penalty`` times each deepening of the
        drawdown), ``"differential_sharpe"`` (Moody and Saffell's differential Sharpe ratio, EWMA rate
        ``dsr_eta``) or ``"seed_risk_adjusted"`` (the seed design's reward with its bugs fixed: see
        :mod:`alphaloom.rl._rewards`).
    drawdown_penalty
        Weight of the drawdown term, in units of return.
    reward_scale
        Multiplies the return-based rewards (100 = percent), which keeps value targets and SAC's entropy
        bonus on comparable scales. The differential Sharpe ratio is unit-free and is not scaled.
    sharpe_window
        Bars in the rolling Sharpe ratio of ``"seed_risk_adjusted"``.
    dsr_eta
        Rate of the exponential moment estimates of ``"differential_sharpe"``.
    initial_cash
        Starting equity, in account currency.
    max_leverage
        A ``position_size`` of 1 means this fraction of equity.
    min_trade_weight
        No-trade band passed to ``execute_bar``; use the same value in the backtest.
    """

    costs: CostModel = Field(default_factory=CostModel)
    max_hold_bars: int = Field(default=5, ge=1, le=10_000)
    episode_len: int | None = Field(default=256, ge=1)
    reward: Literal["log_return_dd", "differential_sharpe", "seed_risk_adjusted"] = "log_return_dd"
    drawdown_penalty: float = Field(default=0.1, ge=0.0)
    reward_scale: float = Field(default=100.0, gt=0.0)
    sharpe_window: int = Field(default=20, ge=2)
    dsr_eta: float = Field(default=0.01, gt=0.0, lt=1.0)
    initial_cash: float = Field(default=100_000.0, gt=0.0)
    max_leverage: float = Field(default=1.0, gt=0.0, le=10.0)
    min_trade_weight: float = Field(default=0.0, ge=0.0, lt=1.0)


class BarRecord(NamedTuple):
    """What happened on one executed bar.

    ``target`` was decided at the close of ``bar - 1`` and traded at the open of ``bar``; ``weight`` is the
    exposure at the close of ``bar``; ``ret`` the simple return of equity over the bar; ``cost`` slippage plus
    commission in account currency; ``equity`` the equity at the close.
    """

    bar: int
    target: float
    weight: float
    ret: float
    cost: float
    equity: float


class RolloutResult(NamedTuple):
    """A full-series evaluation run, aligned to bars (every array has shape (T,)).

    ``targets[t]`` is the target weight decided at the close of bar ``t`` (executed at the open of ``t + 1``;
    the last entry is the target still in force). ``weights[t]``, ``returns[t]``, ``costs[t]`` and
    ``equity[t]`` describe bar ``t``; bar 0 only observes, so ``returns[0] = costs[0] = 0`` and
    ``equity[0] = initial_cash``. ``decision_bars`` (shape (n_decisions,)) lists the bars at which the policy
    was asked; ``total_reward`` sums the rewards the policy received.
    """

    targets: np.ndarray
    weights: np.ndarray
    returns: np.ndarray
    equity: np.ndarray
    costs: np.ndarray
    decision_bars: np.ndarray
    total_reward: float


def _as_prices(values: Any, name: str, n_bars: int | None) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must have shape (T,), got {arr.shape}; pass one price per bar.")
    if n_bars is not None and arr.shape[0] != n_bars:
        raise DataFormatError(
            f"{name} has {arr.shape[0]} bars but obs has {n_bars}; align prices and observations by bar."
        )
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{name} must be finite and > 0; bar {first} holds {arr[first]!r}. Drop or repair such bars."
        )
    return arr


def _as_obs(values: Any) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float32)
    if arr.ndim != 2:
        raise DataFormatError(f"obs must have shape (T, d), got {arr.shape}; one feature row per bar.")
    if arr.shape[0] < 2:
        raise DataFormatError(f"obs needs at least 2 bars (one to decide, one to trade), got {arr.shape[0]}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataFormatError(
            f"obs must be finite; row {row} column {col} holds {arr[row, col]!r}. Trim the feature warm-up "
            "rows (and the matching prices) before building the environment."
        )
    return arr


def episode_span(n_bars: int, episode_len: int | None, rng: np.random.Generator) -> tuple[int, int]:
    """First bar and last decision bar of a new episode over ``n_bars`` bars.

    The whole series when ``episode_len`` is ``None`` or covers it; otherwise a start drawn uniformly from
    ``rng`` (one draw, so every environment built on it replays the same episodes for the same seed).
    """
    last = n_bars - 1
    if episode_len is None or episode_len >= last:
        return 0, (last if episode_len is None else min(last, episode_len))
    start = int(rng.integers(0, last - episode_len + 1))
    return start, start + episode_len


class SingleAssetTradingEnv(gym.Env[np.ndarray, np.ndarray]):
    """Trade one asset from a precomputed observation matrix; see the module docstring for the timeline.

    Parameters
    ----------
    obs
        Shape (T, d), float32: row ``t`` is the market observation using data up to the close of bar ``t``.
    open_prices, close_prices
        Shape (T,), float64, strictly positive.
    config
        Environment settings; the defaults when omitted.

    Notes
    -----
    ``step`` returns ``info`` with ``"bars"`` (a tuple of :class:`BarRecord`, one per executed bar),
    ``"bar"`` (the current bar after the step), ``"target"``, ``"hold_bars"`` and ``"equity"``. Episodes are
    truncated (never terminated) at the end of their window, because trading goes on after it; they are
    terminated only if equity reaches zero.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's declared attribute)

    def __init__(
        self,
        obs: np.ndarray,
        open_prices: np.ndarray,
        close_prices: np.ndarray,
        config: TradingEnvConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else TradingEnvConfig()
        if not isinstance(self.config, TradingEnvConfig):
            raise DataFormatError(
                f"config must be a TradingEnvConfig, got {type(self.config).__name__}; "
                "build one with TradingEnvConfig(...) or TradingEnvConfig.from_dict(...)."
            )
        self.market_obs = _as_obs(obs)
        self.open_prices = _as_prices(open_prices, "open_prices", self.market_obs.shape[0])
        self.close_prices = _as_prices(close_prices, "close_prices", self.market_obs.shape[0])
        self.n_bars, self.market_dim = self.market_obs.shape
        self.observation_space = gym.spaces.Box(
            low=-np.inf, high=np.inf, shape=(self.market_dim + len(PORTFOLIO_FEATURES),), dtype=np.float32
        )
        self.action_space = gym.spaces.Box(
            low=np.array([-1.0, 0.0], dtype=np.float32),
            high=np.array([1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        cfg = self.config
        self._reward = make_reward(
            cfg.reward,
            scale=cfg.reward_scale,
            drawdown_penalty=cfg.drawdown_penalty,
            sharpe_window=cfg.sharpe_window,
            dsr_eta=cfg.dsr_eta,
        )
        self._bar = -1
        self._end = -1
        self._done = True

    # ------------------------------------------------------------------ decoding
    def decode_action(self, action: np.ndarray | Sequence[float]) -> tuple[float, int]:
        """Map an action to ``(target_weight, hold_bars)``; out-of-box values are clipped to the box.

        Raises
        ------
        DataFormatError
            If the action is not two finite numbers.
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise DataFormatError(
                f"action must be two finite numbers [position_size, hold_time], got {np.asarray(action)!r}."
            )
        position = min(max(float(a[0]), -1.0), 1.0)
        hold = min(max(float(a[1]), 0.0), 1.0)
        hold_bars = 1 + math.floor(hold * (self.config.max_hold_bars - 1) + 0.5)
        return position * self.config.max_leverage, hold_bars

    # ------------------------------------------------------------------ gymnasium API
    @property
    def current_bar(self) -> int:
        """The bar whose close the latest observation describes (-1 before the first reset)."""
        return self._bar

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start, self._end = episode_span(self.n_bars, self.config.episode_len, self.np_random)
        self._bar = start
        self._state = AccountState(cash=self.config.initial_cash, units=0.0)
        self._equity = self.config.initial_cash
        self._avg_cost = 0.0
        self._time_in_trade = 0
        self._reward.reset(self.config.initial_cash)
        self._done = False
        return self._observation(), {"bar": start, "equity": self._equity}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise AlphaloomError(
                "step() called on a finished episode (or before reset()); call reset() to start a new one."
            )
        target, hold_bars = self.decode_action(action)
        costs = self.config.costs
        band = self.config.min_trade_weight
        records: list[BarRecord] = []
        reward = 0.0
        busted = False
        bar = self._bar
        for bar in range(self._bar + 1, min(self._bar + hold_bars, self._end) + 1):
            out = execute_bar(
                self._state,
                target,
                float(self.open_prices[bar]),
                float(self.close_prices[bar]),
                costs,
                min_trade_weight=band,
            )
            self._track_position(self._state.units, out.state.units, out.traded_units, out.fill_price)
            prev_equity = self._equity
            self._state = out.state
            self._equity = out.equity_close
            reward += self._reward.bar(prev_equity, out.equity_close)
            records.append(
                BarRecord(
                    bar, target, out.weight, out.equity_close / prev_equity - 1.0, out.cost, self._equity
                )
            )
            if out.equity_close <= 0.0:
                busted = True
                break
        self._bar = bar
        truncated = not busted and bar >= self._end
        self._done = busted or truncated
        info = {
            "bars": tuple(records),
            "bar": bar,
            "target": target,
            "hold_bars": hold_bars,
            "equity": self._equity,
        }
        return self._observation(), float(reward), busted, truncated, info

    def _track_position(self, before: float, units: float, traded: float, fill_price: float) -> None:
        # Average entry cost (as Position.apply_fill keeps it) and bars since the position was opened.
        if units == 0.0:
            self._avg_cost, self._time_in_trade = 0.0, 0
            return
        opened = before == 0.0 or math.copysign(1.0, before) != math.copysign(1.0, units)
        if opened:
            self._avg_cost, self._time_in_trade = fill_price, 1
            return
        if traded != 0.0 and math.copysign(1.0, traded) == math.copysign(1.0, units):
            self._avg_cost = (abs(before) * self._avg_cost + abs(traded) * fill_price) / abs(units)
        self._time_in_trade += 1

    def _observation(self) -> np.ndarray:
        d = self.market_dim
        out = np.empty(d + len(PORTFOLIO_FEATURES), dtype=np.float32)
        out[:d] = self.market_obs[self._bar]
        equity = self._equity
        units = self._state.units
        price = float(self.close_prices[self._bar])
        if equity > 0.0 and units != 0.0:
            out[d] = units * price / equity
            out[d + 1] = units * (price - self._avg_cost) / equity
        else:
            out[d] = out[d + 1] = 0.0
        hold_bars = self.config.max_hold_bars
        out[d + 2] = min(self._time_in_trade / hold_bars, _TIME_IN_TRADE_CAP)
        out[d + 3] = equity / self.config.initial_cash - 1.0
        return out

    # ------------------------------------------------------------------ evaluation
    def rollout(
        self,
        policy: Callable[[np.ndarray], np.ndarray],
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> RolloutResult:
        """Run ``policy`` over the whole series on a fresh evaluation copy of this environment.

        Parameters
        ----------
        policy
            Maps one observation, shape (d + 4,), to an action ``[position_size, hold_time]``.
        on_step
            Called with each step's ``info`` (``"bar"`` is the bar whose close the next observation
            describes) before ``policy`` sees that observation, so an online learner such as the ensemble
            can score its previous decision first.

        Returns
        -------
        RolloutResult
            Per-bar targets, weights, returns, costs and equity. Replaying ``targets`` through
            ``execute_bar`` (target ``t`` on bar ``t + 1``) reproduces ``equity`` exactly. This environment's
            own episode state is untouched.
        """
        env = type(self)(
            self.market_obs, self.open_prices, self.close_prices, self.config.replace(episode_len=None)
        )
        n = self.n_bars
        targets = np.zeros(n)
        weights = np.zeros(n)
        returns = np.zeros(n)
        costs = np.zeros(n)
        equity = np.full(n, self.config.initial_cash)
        decisions: list[int] = []
        total_reward = 0.0
        obs, _ = env.reset(seed=0)
        done = False
        last_bar = 0
        while not done:
            decisions.append(env.current_bar)
            obs, reward, terminated, truncated, info = env.step(np.asarray(policy(obs)))
            total_reward += reward
            if on_step is not None:
                on_step(info)
            for rec in info["bars"]:
                targets[rec.bar - 1] = rec.target
                weights[rec.bar], returns[rec.bar] = rec.weight, rec.ret
                costs[rec.bar], equity[rec.bar] = rec.cost, rec.equity
                last_bar = rec.bar
            done = terminated or truncated
        targets[last_bar:] = targets[last_bar - 1] if last_bar > 0 else 0.0
        # After a bust (equity <= 0) no trade can happen; mark the frozen position to the end so the path is
        # still the one a backtest of ``targets`` produces.
        state = env._state
        for bar in range(last_bar + 1, n):
            out = execute_bar(
                state,
                float(targets[bar - 1]),
                float(self.open_prices[bar]),
                float(self.close_prices[bar]),
                self.config.costs,
                min_trade_weight=self.config.min_trade_weight,
            )
            returns[bar] = out.equity_close / equity[bar - 1] - 1.0 if equity[bar - 1] != 0 else 0.0
            state, weights[bar], costs[bar], equity[bar] = out.state, out.weight, out.cost, out.equity_close
        return RolloutResult(
            targets=targets,
            weights=weights,
            returns=returns,
            equity=equity,
            costs=costs,
            decision_bars=np.asarray(decisions, dtype=np.int64),
            total_reward=total_reward,
        )


def make_vec_env(
    obs_list: Sequence[np.ndarray],
    open_list: Sequence[np.ndarray],
    close_list: Sequence[np.ndarray],
    config: TradingEnvConfig | None = None,
    seed: int = 0,
) -> DummyVecEnv:
    """One :class:`SingleAssetTradingEnv` per symbol in a stable-baselines3 ``DummyVecEnv``.

    Parameters
    ----------
    obs_list, open_list, close_list
        One entry per symbol, as for :class:`SingleAssetTradingEnv`; every ``obs`` must have the same
        number of columns so the agents see one observation space.
    config
        Shared environment settings.
    seed
        Environment ``i`` is reset with ``seed + i`` on the first reset.
    """
    n = len(obs_list)
    if n == 0 or len(open_list) != n or len(close_list) != n:
        raise DataFormatError(
            f"make_vec_env needs one obs, open and close array per symbol, got {n} obs, {len(open_list)} "
            f"open and {len(close_list)} close arrays."
        )
    dims = {np.shape(o)[-1] if np.ndim(o) == 2 else None for o in obs_list}
    if len(dims) != 1:
        raise DataFormatError(
            f"every symbol's obs must have the same number of columns, got {sorted(map(str, dims))}; build "
            "the features with one pipeline for all symbols."
        )
    envs = [
        SingleAssetTradingEnv(obs, opn, cls, config)
        for obs, opn, cls in zip(obs_list, open_list, close_list, strict=True)
    ]
    vec = DummyVecEnv([partial(_identity, env) for env in envs])
    vec.seed(seed)
    return vec


def _identity(env: SingleAssetTradingEnv) -> SingleAssetTradingEnv:
    return env
