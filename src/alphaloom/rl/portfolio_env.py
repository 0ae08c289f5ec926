"""Portfolio environments: target weights over N assets and cash, one numba kernel for all environments.

:class:`VecPortfolioEnv` (a stable-baselines3 ``VecEnv``) and :class:`PortfolioEnv` (one gymnasium
environment on the same kernel) trade a panel of ``N`` assets from one cash account, with the rule of the
vectorised backtester's :func:`~alphaloom.backtest.vectorized.from_target_weights` (``fill="next_open"``,
one shared account)::

    bar t close ── observe ── action (N + 1 numbers) ── target weights w ── bar t+1 open: equity E marked at
    the opens; asset j traded by w_j * E / open_j - units_j through the cost model (skipped inside the
    no-trade band) ── bar t+1 close: mark, reward

One step is one bar. The action is mapped to target weights in one of two documented ways
(``PortfolioEnvConfig.weighting``):

- ``"softmax"`` (long-only): ``w = softmax(softmax_scale * a)`` over the ``N + 1`` entries; the last entry is
  cash, so weights are in [0, 1] and the assets' weights sum to at most 1.
- ``"signed"`` (long/short): ``w_j = a_j * max_leverage / max(1, sum_k |a_k|)`` for the ``N`` assets, ``a``
  clipped to [-1, 1]; the cash entry is ignored. Gross exposure is at most ``max_leverage``.

Observation at bar ``t``: the market row ``obs[t]`` (features of all ``N`` assets, using data up to the
close of ``t``), then the current weights of the ``N`` assets and of cash at the close, then ``equity /
initial_cash - 1``. Rewards are those of the single-asset environments (:mod:`alphaloom.rl._rewards`) on the
portfolio's equity. Episodes are sampled from training windows as in
:class:`~alphaloom.rl.vec_env.VecTradingEnv`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from numba import njit
from pydantic import Field
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from alphaloom.backtest.costs import CostModel, clip_units_nb, commission_nb, fill_price_nb
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import AlphaloomError, DataFormatError
from alphaloom.rl.env import episode_span
from alphaloom.rl.vec_env import (
    _BAR,
    _CASH,
    _END,
    _EQUITY,
    _NF,
    _NI,
    _P_BAND,
    _P_CASH,
    _P_LEVERAGE,
    REWARD_KINDS,
    _as_actions,
    _check_finite,
    _EpisodeSampler,
    _first_bad_action_nb,
    _KernelVecEnv,
    _reset_reward_nb,
    _reward_nb,
)

__all__ = ["PortfolioEnv", "PortfolioEnvConfig", "VecPortfolioEnv"]

_NAN = float("nan")
_COST = (
    3  # the float-state column the single-asset kernel uses for the average cost: here the last step's cost
)
_P_SOFTMAX_SCALE = 6


class PortfolioEnvConfig(ComponentConfig):
    """Settings of :class:`PortfolioEnv` and :class:`VecPortfolioEnv`.

    Parameters
    ----------
    costs
        The cost model every fill is priced with (the backtester's).
    episode_len
        Bars per training episode; ``None`` runs each window from its first bar to its end.
    reward, drawdown_penalty, reward_scale, sharpe_window, dsr_eta
        As in :class:`~alphaloom.rl.env.TradingEnvConfig`.
    initial_cash
        Starting equity, in account currency.
    weighting
        ``"softmax"`` (long-only) or ``"signed"`` (long/short, gross exposure capped); see the module
        docstring.
    softmax_scale
        Multiplies the action before the softmax; at 5 an action of ``+1`` against ``-1`` elsewhere can put
        almost all equity in one asset.
    max_leverage
        Gross exposure cap of ``"signed"`` weighting.
    min_trade_weight
        No-trade band per asset, as a fraction of equity (the backtester's ``min_trade_weight``).
    n_envs
        Environments stepped together by :class:`VecPortfolioEnv`.
    """

    costs: CostModel = Field(default_factory=CostModel)
    episode_len: int | None = Field(default=256, ge=1)
    reward: Literal["log_return_dd", "differential_sharpe", "seed_risk_adjusted"] = "log_return_dd"
    drawdown_penalty: float = Field(default=0.1, ge=0.0)
    reward_scale: float = Field(default=100.0, gt=0.0)
    sharpe_window: int = Field(default=20, ge=2)
    dsr_eta: float = Field(default=0.01, gt=0.0, lt=1.0)
    initial_cash: float = Field(default=100_000.0, gt=0.0)
    weighting: Literal["softmax", "signed"] = "softmax"
    softmax_scale: float = Field(default=5.0, gt=0.0)
    max_leverage: float = Field(default=1.0, gt=0.0, le=10.0)
    min_trade_weight: float = Field(default=0.0, ge=0.0, lt=1.0)
    n_envs: int = Field(default=64, ge=1, le=1_000_000)


@njit(cache=True)
def _portfolio_obs_nb(
    market: np.ndarray,
    close: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    units: np.ndarray,
    i: int,
    initial_cash: float,
    out: np.ndarray,
) -> None:
    bar = ist[i, _BAR]
    d = market.shape[1]
    n_assets = close.shape[1]
    for j in range(d):
        out[i, j] = market[bar, j]
    equity = fs[i, _EQUITY]
    for j in range(n_assets):
        out[i, d + j] = units[i, j] * close[bar, j] / equity if equity > 0.0 else 0.0
    out[i, d + n_assets] = fs[i, _CASH] / equity if equity > 0.0 else 0.0
    out[i, d + n_assets + 1] = equity / initial_cash - 1.0


@njit(cache=True)
def _portfolio_reset_nb(
    i: int,
    queue: np.ndarray,
    qpos: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    units: np.ndarray,
    prm: np.ndarray,
) -> None:
    q = qpos[0]
    if q >= queue.shape[0]:
        q = 0
    ist[i, _BAR] = queue[q, 1]
    ist[i, _END] = queue[q, 2]
    qpos[0] = q + 1
    fs[i, _CASH] = prm[_P_CASH]
    fs[i, _EQUITY] = prm[_P_CASH]
    fs[i, _COST] = 0.0
    for j in range(units.shape[1]):
        units[i, j] = 0.0
    _reset_reward_nb(fs, ist, i, prm[_P_CASH])


@njit(cache=True)
def _portfolio_reset_all_nb(
    market: np.ndarray,
    close: np.ndarray,
    queue: np.ndarray,
    qpos: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    units: np.ndarray,
    prm: np.ndarray,
    obs_out: np.ndarray,
) -> None:
    for i in range(fs.shape[0]):
        _portfolio_reset_nb(i, queue, qpos, fs, ist, units, prm)
        _portfolio_obs_nb(market, close, fs, ist, units, i, prm[_P_CASH], obs_out)


@njit(cache=True)
def _portfolio_step_nb(
    actions: np.ndarray,
    market: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    volatility: np.ndarray,
    cost_params: np.ndarray,
    prm: np.ndarray,
    kind: int,
    signed: bool,
    auto_reset: bool,
    fs: np.ndarray,
    ist: np.ndarray,
    ring: np.ndarray,
    units: np.ndarray,
    targets: np.ndarray,
    queue: np.ndarray,
    qpos: np.ndarray,
    obs_out: np.ndarray,
    rew_out: np.ndarray,
    term_out: np.ndarray,
    trunc_out: np.ndarray,
    final_obs: np.ndarray,
) -> None:
    n_assets = close.shape[1]
    has_volume = volume.shape[1] > 0
    has_volatility = volatility.shape[1] > 0
    band = prm[_P_BAND]
    for i in range(actions.shape[0]):
        # Target weights from the action.
        if signed:
            gross = 0.0
            for j in range(n_assets):
                gross += abs(min(max(float(actions[i, j]), -1.0), 1.0))
            factor = prm[_P_LEVERAGE] / max(gross, 1.0)
            for j in range(n_assets):
                targets[i, j] = min(max(float(actions[i, j]), -1.0), 1.0) * factor
        else:
            scale = prm[_P_SOFTMAX_SCALE]
            top = -math.inf
            for j in range(n_assets + 1):
                z = scale * float(actions[i, j])
                if z > top:
                    top = z
            total = 0.0
            for j in range(n_assets + 1):
                total += math.exp(scale * float(actions[i, j]) - top)
            for j in range(n_assets):
                targets[i, j] = math.exp(scale * float(actions[i, j]) - top) / total
        # Trade at the next open (from_target_weights' rule, one shared account), then mark at the close.
        bar = ist[i, _BAR] + 1
        cash = fs[i, _CASH]
        equity_open = cash
        for j in range(n_assets):
            equity_open += units[i, j] * open_[bar, j]
        cost = 0.0
        if equity_open > 0.0:
            for j in range(n_assets):
                px = open_[bar, j]
                held = units[i, j]
                delta = targets[i, j] * equity_open / px - held
                if not (abs(delta) * px > band * equity_open and delta != 0.0):
                    continue
                vol_b = volatility[bar, j] if has_volatility else _NAN
                volume_b = volume[bar, j] if has_volume else _NAN
                if has_volume:
                    delta = clip_units_nb(cost_params, delta, volume_b)
                    if delta == 0.0:
                        continue
                fill_px = fill_price_nb(cost_params, delta, px, vol_b, volume_b, _NAN)
                fee = commission_nb(cost_params, delta, fill_px)
                cash -= delta * fill_px + fee
                cost += abs(delta) * abs(fill_px - px) + fee
                units[i, j] = held + delta
        equity = cash
        for j in range(n_assets):
            equity += units[i, j] * close[bar, j]
        prev_equity = fs[i, _EQUITY]
        fs[i, _CASH] = cash
        fs[i, _EQUITY] = equity
        fs[i, _COST] = cost
        ist[i, _BAR] = bar
        rew_out[i] = _reward_nb(kind, fs, ist, ring, i, prev_equity, equity, prm)
        busted = equity <= 0.0
        truncated = not busted and bar >= ist[i, _END]
        term_out[i] = busted
        trunc_out[i] = truncated
        _portfolio_obs_nb(market, close, fs, ist, units, i, prm[_P_CASH], obs_out)
        if (busted or truncated) and auto_reset:
            for j in range(obs_out.shape[1]):
                final_obs[i, j] = obs_out[i, j]
            _portfolio_reset_nb(i, queue, qpos, fs, ist, units, prm)
            _portfolio_obs_nb(market, close, fs, ist, units, i, prm[_P_CASH], obs_out)


def _as_market(obs: Any, n_bars: int) -> np.ndarray:
    arr = np.asarray(obs, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2 or arr.shape[0] != n_bars:
        raise DataFormatError(
            f"obs must have shape (T, d) or (T, n_assets, n_features) with T = {n_bars} (the prices' bars), "
            f"got {np.shape(obs)}."
        )
    arr = np.ascontiguousarray(arr)
    _check_finite(arr, "obs", positive=False)
    return arr


def _as_prices(values: Any, name: str, shape: tuple[int, int] | None) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "(T, n_assets)" if shape is None else str(shape)
        raise DataFormatError(f"{name} must have shape {want}, got {arr.shape}; one column per asset.")
    if arr.shape[0] < 2:
        raise DataFormatError(
            f"{name} needs at least 2 bars (one to decide, one to trade), got {arr.shape[0]}."
        )
    return arr


class VecPortfolioEnv(_KernelVecEnv):
    """``n_envs`` portfolio environments stepped by one numba kernel (a stable-baselines3 VecEnv).

    Parameters
    ----------
    obs
        Market observations, shape (T, d) or (T, n_assets, n_features) (flattened per bar), float32.
    open_prices, close_prices
        Shape (T, n_assets), float64, strictly positive.
    config
        Environment settings (defaults when omitted).
    windows
        Training windows as half-open bar ranges ``[start, end)``; default the whole series.
    volume, volatility
        Optional, shape (T, n_assets), for the cost model's impact and participation cap; NaN where unknown.
    seed
        Seed of the episode sampler.

    Notes
    -----
    Actions have shape (n_envs, n_assets + 1) in ``[-1, 1]``; observations (n_envs, d + n_assets + 2)
    float32; rewards float64. Finished episodes restart inside the step, with
    ``infos[i]["terminal_observation"]``.
    """

    def __init__(
        self,
        obs: np.ndarray,
        open_prices: np.ndarray,
        close_prices: np.ndarray,
        config: PortfolioEnvConfig | None = None,
        *,
        windows: Sequence[tuple[int, int]] | None = None,
        volume: np.ndarray | None = None,
        volatility: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config if config is not None else PortfolioEnvConfig()
        if not isinstance(self.config, PortfolioEnvConfig):
            raise DataFormatError(
                f"config must be a PortfolioEnvConfig, got {type(self.config).__name__}; "
                "build one with PortfolioEnvConfig(...)."
            )
        cfg = self.config
        self.close_prices = _as_prices(close_prices, "close_prices", None)
        n_bars, n_assets = self.close_prices.shape
        self.open_prices = _as_prices(open_prices, "open_prices", (n_bars, n_assets))
        for name, arr in (("open_prices", self.open_prices), ("close_prices", self.close_prices)):
            _check_finite(arr, name, positive=True)
        self.market_obs = _as_market(obs, n_bars)
        self.volume = self._optional(volume, "volume", (n_bars, n_assets))
        self.volatility = self._optional(volatility, "volatility", (n_bars, n_assets))
        self.n_bars, self.n_assets = n_bars, n_assets
        self.market_dim = self.market_obs.shape[1]
        obs_dim = self.market_dim + n_assets + 2
        observation_space = gym.spaces.Box(low=-np.inf, high=np.inf, shape=(obs_dim,), dtype=np.float32)
        action_space = gym.spaces.Box(low=-1.0, high=1.0, shape=(n_assets + 1,), dtype=np.float32)
        self.render_mode = None
        n = cfg.n_envs
        super().__init__(n, observation_space, action_space)
        self._sampler = _EpisodeSampler(
            windows if windows is not None else [(0, n_bars)], n_bars, 1, cfg.episode_len
        )
        self.windows = windows
        self._cost_params = cfg.costs.kernel_params()
        self._prm = np.array(
            [
                cfg.initial_cash,
                cfg.max_leverage,
                cfg.min_trade_weight,
                cfg.reward_scale,
                cfg.drawdown_penalty,
                cfg.dsr_eta,
                cfg.softmax_scale,
            ],
            dtype=np.float64,
        )
        self._kind = REWARD_KINDS[cfg.reward]
        self._signed = cfg.weighting == "signed"
        self._fs = np.zeros((n, _NF))
        self._ist = np.zeros((n, _NI), dtype=np.int64)
        self._ring = np.zeros((n, cfg.sharpe_window))
        self._units = np.zeros((n, n_assets))
        self._targets = np.zeros((n, n_assets))
        self._obs = np.zeros((n, obs_dim), dtype=np.float32)
        self._final_obs = np.zeros((n, obs_dim), dtype=np.float32)
        self._rew = np.zeros(n)
        self._term = np.zeros(n, dtype=np.bool_)
        self._trunc = np.zeros(n, dtype=np.bool_)
        self._actions = np.zeros((n, n_assets + 1), dtype=np.float32)
        self.seed(seed)

    @staticmethod
    def _optional(values: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
        if values is None:
            return np.empty((shape[0], 0), dtype=np.float64)
        return _as_prices(values, name, shape)

    def reset(self) -> VecEnvObs:
        seeds = [s for s in self._seeds if s is not None]
        if seeds:
            self.seed(seeds[0])
        self._reset_seeds()
        self._refill()
        _portfolio_reset_all_nb(
            self.market_obs,
            self.close_prices,
            self._queue,
            self._qpos,
            self._fs,
            self._ist,
            self._units,
            self._prm,
            self._obs,
        )
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = _as_actions(actions, self.num_envs)

    def _run(self, actions: np.ndarray, auto_reset: bool) -> None:
        bad = -1 if actions.shape[0] == self.num_envs else 0
        if bad < 0:
            bad = _first_bad_action_nb(actions, self.n_assets + 1)
        if bad >= 0:
            raise DataFormatError(
                f"actions must have shape ({self.num_envs}, {self.n_assets + 1}) (one weight score per asset "
                f"plus cash) and be finite; got shape {actions.shape}."
            )
        self._refill()
        _portfolio_step_nb(
            actions,
            self.market_obs,
            self.open_prices,
            self.close_prices,
            self.volume,
            self.volatility,
            self._cost_params,
            self._prm,
            self._kind,
            self._signed,
            auto_reset,
            self._fs,
            self._ist,
            self._ring,
            self._units,
            self._targets,
            self._queue,
            self._qpos,
            self._obs,
            self._rew,
            self._term,
            self._trunc,
            self._final_obs,
        )

    def step_wait(self) -> VecEnvStepReturn:
        self._run(self._actions, True)
        infos = self._infos(self._final_obs, self._term, self._trunc)
        return self._obs.copy(), self._rew.copy(), self._term | self._trunc, infos

    # ------------------------------------------------------------------ inspection
    @property
    def equity(self) -> np.ndarray:
        """Equity of each environment after the last step (account currency), shape (n_envs,)."""
        return self._fs[:, _EQUITY].copy()

    @property
    def target_weights(self) -> np.ndarray:
        """The target weights of the last step's actions, shape (n_envs, n_assets)."""
        return self._targets.copy()

    @property
    def current_bars(self) -> np.ndarray:
        """The bar whose close each environment's latest observation describes, shape (n_envs,)."""
        return self._ist[:, _BAR].copy()


class PortfolioEnv(gym.Env[np.ndarray, np.ndarray]):
    """One portfolio environment (gymnasium) on :class:`VecPortfolioEnv`'s kernel.

    Parameters are those of :class:`VecPortfolioEnv` (``config.n_envs`` is ignored). ``reset`` starts at a
    seeded random bar (or bar 0 when ``episode_len`` is None), as
    :class:`~alphaloom.rl.env.SingleAssetTradingEnv` does. ``step`` returns ``info`` with ``"bar"``,
    ``"equity"``, ``"cost"`` (slippage plus commission of the step, account currency) and
    ``"target_weights"``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's declared attribute)

    def __init__(
        self,
        obs: np.ndarray,
        open_prices: np.ndarray,
        close_prices: np.ndarray,
        config: PortfolioEnvConfig | None = None,
        *,
        volume: np.ndarray | None = None,
        volatility: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        cfg = config if config is not None else PortfolioEnvConfig()
        if not isinstance(cfg, PortfolioEnvConfig):
            raise DataFormatError(f"config must be a PortfolioEnvConfig, got {type(cfg).__name__}.")
        self.config = cfg
        self._vec = VecPortfolioEnv(
            obs, open_prices, close_prices, cfg.replace(n_envs=1), volume=volume, volatility=volatility
        )
        self.market_obs = self._vec.market_obs
        self.open_prices = self._vec.open_prices
        self.close_prices = self._vec.close_prices
        self.n_bars, self.n_assets = self._vec.n_bars, self._vec.n_assets
        self.observation_space = self._vec.observation_space
        self.action_space = self._vec.action_space
        self._done = True
        self._started = False

    @property
    def current_bar(self) -> int:
        """The bar whose close the latest observation describes (-1 before the first reset)."""
        return int(self._vec._ist[0, _BAR]) if self._started else -1

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start, end = episode_span(self.n_bars, self.config.episode_len, self.np_random)
        vec = self._vec
        vec._queue = np.array([[0, start, end]], dtype=np.int64)
        vec._qpos[0] = 0
        _portfolio_reset_all_nb(
            vec.market_obs,
            vec.close_prices,
            vec._queue,
            vec._qpos,
            vec._fs,
            vec._ist,
            vec._units,
            vec._prm,
            vec._obs,
        )
        self._done = False
        self._started = True
        return vec._obs[0].copy(), {"bar": start, "equity": float(vec._fs[0, _EQUITY])}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise AlphaloomError(
                "step() called on a finished episode (or before reset()); call reset() to start a new one."
            )
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.n_assets + 1,) or not np.isfinite(a).all():
            raise DataFormatError(
                f"action must be {self.n_assets + 1} finite numbers (one per asset, then cash), got "
                f"{np.asarray(action)!r}."
            )
        vec = self._vec
        vec._run(a.reshape(1, -1), False)
        terminated, truncated = bool(vec._term[0]), bool(vec._trunc[0])
        self._done = terminated or truncated
        info = {
            "bar": int(vec._ist[0, _BAR]),
            "equity": float(vec._fs[0, _EQUITY]),
            "cost": float(vec._fs[0, _COST]),
            "target_weights": vec._targets[0].copy(),
        }
        return vec._obs[0].copy(), float(vec._rew[0]), terminated, truncated, info
