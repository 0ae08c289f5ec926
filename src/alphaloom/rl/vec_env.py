"""Vectorised single-asset trading environments: every environment stepped by one numba kernel call.

:class:`VecTradingEnv` is a stable-baselines3 ``VecEnv`` of ``n_envs`` copies of the trading problem of
:class:`~alphaloom.rl.env.SingleAssetTradingEnv` over a shared panel of assets. One ``step`` is one call of
an ``@njit(cache=True)`` kernel that, for every environment, decodes the action, trades at the next open
through the cost model's own kernels (:func:`~alphaloom.backtest.costs.fill_price_nb`,
:func:`~alphaloom.backtest.costs.commission_nb`), marks at the close, computes the reward, writes the next
observation into a preallocated buffer and, when an episode ends, restarts it on a fresh episode. With the
same config, data and actions the transitions (observations, rewards, equity) are those of
``SingleAssetTradingEnv`` (tested to 1e-9): the bar rule is :func:`~alphaloom.backtest.execution.execute_bar`
and the rewards are those of :mod:`alphaloom.rl._rewards`, rewritten as scalar kernels.

Timeline (as the backtester's)::

    bar t close ── observe obs[t] + portfolio ── decide [position, hold] ── bar t+1 open: trade to target
                                                                           bar t+1 close: mark, reward

Two step modes share the kernel:

- ``"decision"`` (default, the semi-MDP of ``SingleAssetTradingEnv``): one step is one decision; the action
  ``[position_size, hold_time]`` sets a target weight ``position_size * max_leverage`` and a minimum holding
  period ``k = 1 + round(hold_time * (H - 1))`` bars, the ``k`` bars are executed and their rewards summed.
- ``"bar"``: one step is one bar. A new action is read only when the previous holding period has run out;
  while it runs, actions are ignored and the held target is re-submitted at each open. The observation gets a
  fifth portfolio feature, the bars left in the holding period over ``H``.

Observation of environment ``i`` at bar ``t``: the market row ``obs[asset_i, t]`` (data up to the close of
``t``; for a model-driven observation put the CNN+LSTM embedding and predictions in these columns) followed by
the portfolio state :data:`~alphaloom.rl.env.PORTFOLIO_FEATURES` (weight, unrealised PnL over equity, time in
trade over ``H``, equity change; the cash fraction is ``1 - weight``).

Episodes are sampled, with a seeded generator, from training windows: half-open bar ranges ``[start, end)``
of the panel (see :func:`windows_from_folds` for walk-forward folds), a uniformly chosen asset and a start
bar uniform over all admissible starts. Samples are drawn in blocks ahead of time, so the kernel resets
environments without calling back into Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from numba import njit
from pydantic import Field
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from alphaloom.backtest.costs import clip_units_nb, commission_nb, fill_price_nb
from alphaloom.core.exceptions import AlphaloomError, DataFormatError
from alphaloom.rl.env import PORTFOLIO_FEATURES, BarRecord, TradingEnvConfig, episode_span

__all__ = [
    "FastTradingEnv",
    "VecTradingEnv",
    "VecTradingEnvConfig",
    "windows_from_folds",
]

_NAN = float("nan")
_TIME_IN_TRADE_CAP = 4.0
_DSR_PRIOR_VAR = 1e-4  # as alphaloom.rl._rewards
_DSR_CLIP = 10.0
_MIN_EQUITY = 1e-12
_QUEUE_BLOCK = 4096

REWARD_KINDS: dict[str, int] = {"log_return_dd": 0, "differential_sharpe": 1, "seed_risk_adjusted": 2}

# Columns of the float state (n_envs, _NF).
_CASH, _UNITS, _EQUITY, _AVG_COST, _PEAK, _DD, _DSR_A, _DSR_B, _TARGET = range(9)
_NF = 9
# Columns of the integer state (n_envs, _NI).
_ASSET, _BAR, _END, _TIT, _HOLD_LEFT, _RING_N, _RING_POS, _HOLD_BARS = range(8)
_NI = 8
# Columns of the environment parameter vector.
_P_CASH, _P_LEVERAGE, _P_BAND, _P_SCALE, _P_PENALTY, _P_ETA = range(6)
# Columns of a per-bar record (only written when records are asked for).
_R_BAR, _R_TARGET, _R_WEIGHT, _R_RET, _R_COST, _R_EQUITY = range(6)


class VecTradingEnvConfig(TradingEnvConfig):
    """Settings of :class:`VecTradingEnv`: those of :class:`~alphaloom.rl.env.TradingEnvConfig` plus three.

    Parameters
    ----------
    n_envs
        Environments stepped together.
    step_mode
        ``"decision"`` (one step per decision, the holding period executed inside it, as
        ``SingleAssetTradingEnv``) or ``"bar"`` (one step per bar, actions ignored until the holding period
        has passed).
    info_level
        ``"lite"``: ``infos`` are empty dicts except for environments whose episode just ended (they carry
        ``"terminal_observation"``, ``"TimeLimit.truncated"`` and ``"equity"``); ``"full"`` adds, for every
        environment, ``"bar"``, ``"target"``, ``"hold_bars"``, ``"equity"`` and the per-bar ``"bars"``
        records (slower: use it for evaluation, not training).
    """

    n_envs: int = Field(default=64, ge=1, le=1_000_000)
    step_mode: Literal["decision", "bar"] = "decision"
    info_level: Literal["lite", "full"] = "lite"


# ------------------------------------------------------------------------------------------------ kernels
@njit(cache=True)
def _reward_nb(
    kind: int,
    fs: np.ndarray,
    ist: np.ndarray,
    ring: np.ndarray,
    i: int,
    prev_equity: float,
    equity: float,
    prm: np.ndarray,
) -> float:
    # The three rewards of alphaloom.rl._rewards, term for term, so both give the same numbers.
    if kind == 1:
        r = equity / prev_equity - 1.0
        a = fs[i, _DSR_A]
        b = fs[i, _DSR_B]
        da = r - a
        db = r * r - b
        var = b - a * a
        d = (b * da - 0.5 * a * db) / var**1.5 if var > 1e-12 else 0.0
        fs[i, _DSR_A] = a + prm[_P_ETA] * da
        fs[i, _DSR_B] = b + prm[_P_ETA] * db
        if d > _DSR_CLIP:
            d = _DSR_CLIP
        elif d < -_DSR_CLIP:
            d = -_DSR_CLIP
        return d
    peak = fs[i, _PEAK]
    if equity > peak:
        peak = equity
    fs[i, _PEAK] = peak
    dd = 1.0 - equity / peak if peak > 0.0 else 0.0
    if kind == 0:
        log_ret = math.log(max(equity, _MIN_EQUITY) / prev_equity)
        deepening = dd - fs[i, _DD]
        if deepening < 0.0:
            deepening = 0.0
        fs[i, _DD] = dd
        return prm[_P_SCALE] * (log_ret - prm[_P_PENALTY] * deepening)
    # kind == 2: r * (1 + max(S, 0)) - penalty * drawdown, S the Sharpe of the last `window` returns.
    r = equity / prev_equity - 1.0
    window = ring.shape[1]
    n = ist[i, _RING_N]
    pos = ist[i, _RING_POS]
    ring[i, pos] = r
    pos = pos + 1 if pos + 1 < window else 0
    if n < window:
        n += 1
    ist[i, _RING_N] = n
    ist[i, _RING_POS] = pos
    sharpe = 0.0
    if n >= 2:
        first = pos - n if pos - n >= 0 else pos - n + window
        total = 0.0
        for j in range(n):
            k = first + j
            total += ring[i, k if k < window else k - window]
        mean = total / n
        ss = 0.0
        for j in range(n):
            k = first + j
            dev = ring[i, k if k < window else k - window] - mean
            ss += dev * dev
        std = math.sqrt(ss / (n - 1))
        if std > 0.0:
            sharpe = mean / std
    return prm[_P_SCALE] * (r * (1.0 + max(sharpe, 0.0)) - prm[_P_PENALTY] * dd)


@njit(cache=True)
def _reset_reward_nb(fs: np.ndarray, ist: np.ndarray, i: int, initial_cash: float) -> None:
    fs[i, _PEAK] = initial_cash
    fs[i, _DD] = 0.0
    fs[i, _DSR_A] = 0.0
    fs[i, _DSR_B] = _DSR_PRIOR_VAR
    ist[i, _RING_N] = 0
    ist[i, _RING_POS] = 0


@njit(cache=True)
def _single_obs_nb(
    market: np.ndarray,
    close: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    i: int,
    prm: np.ndarray,
    max_hold: int,
    bar_mode: bool,
    out: np.ndarray,
) -> None:
    asset = ist[i, _ASSET]
    bar = ist[i, _BAR]
    d = market.shape[2]
    for j in range(d):
        out[i, j] = market[asset, bar, j]
    equity = fs[i, _EQUITY]
    units = fs[i, _UNITS]
    price = close[asset, bar]
    if equity > 0.0 and units != 0.0:
        out[i, d] = units * price / equity
        out[i, d + 1] = units * (price - fs[i, _AVG_COST]) / equity
    else:
        out[i, d] = 0.0
        out[i, d + 1] = 0.0
    out[i, d + 2] = min(ist[i, _TIT] / max_hold, _TIME_IN_TRADE_CAP)
    out[i, d + 3] = equity / prm[_P_CASH] - 1.0
    if bar_mode:
        out[i, d + 4] = ist[i, _HOLD_LEFT] / max_hold


@njit(cache=True)
def _single_reset_nb(
    i: int,
    queue: np.ndarray,
    qpos: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    prm: np.ndarray,
) -> None:
    q = qpos[0]
    if q >= queue.shape[0]:
        q = 0  # never reached: Python refills the queue before it runs out
    ist[i, _ASSET] = queue[q, 0]
    ist[i, _BAR] = queue[q, 1]
    ist[i, _END] = queue[q, 2]
    qpos[0] = q + 1
    fs[i, _CASH] = prm[_P_CASH]
    fs[i, _UNITS] = 0.0
    fs[i, _EQUITY] = prm[_P_CASH]
    fs[i, _AVG_COST] = 0.0
    fs[i, _TARGET] = 0.0
    ist[i, _TIT] = 0
    ist[i, _HOLD_LEFT] = 0
    ist[i, _HOLD_BARS] = 0
    _reset_reward_nb(fs, ist, i, prm[_P_CASH])


@njit(cache=True)
def _reset_all_nb(
    market: np.ndarray,
    close: np.ndarray,
    queue: np.ndarray,
    qpos: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    prm: np.ndarray,
    max_hold: int,
    bar_mode: bool,
    obs_out: np.ndarray,
) -> None:
    for i in range(fs.shape[0]):
        _single_reset_nb(i, queue, qpos, fs, ist, prm)
        _single_obs_nb(market, close, fs, ist, i, prm, max_hold, bar_mode, obs_out)


@njit(cache=True)
def _first_bad_action_nb(actions: np.ndarray, width: int) -> int:
    if actions.shape[1] != width:
        return 0
    for i in range(actions.shape[0]):
        for j in range(width):
            if not math.isfinite(actions[i, j]):
                return i
    return -1


@njit(cache=True)
def _single_step_nb(
    actions: np.ndarray,
    market: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    volatility: np.ndarray,
    cost_params: np.ndarray,
    prm: np.ndarray,
    kind: int,
    max_hold: int,
    bar_mode: bool,
    auto_reset: bool,
    fs: np.ndarray,
    ist: np.ndarray,
    ring: np.ndarray,
    queue: np.ndarray,
    qpos: np.ndarray,
    obs_out: np.ndarray,
    rew_out: np.ndarray,
    term_out: np.ndarray,
    trunc_out: np.ndarray,
    final_obs: np.ndarray,
    record: bool,
    rec_out: np.ndarray,
    rec_n: np.ndarray,
) -> None:
    has_volume = volume.shape[1] > 0
    has_volatility = volatility.shape[1] > 0
    leverage = prm[_P_LEVERAGE]
    band = prm[_P_BAND]
    for i in range(actions.shape[0]):
        asset = ist[i, _ASSET]
        bar = ist[i, _BAR]
        end = ist[i, _END]
        if bar_mode and ist[i, _HOLD_LEFT] > 0:
            target = fs[i, _TARGET]
            n_bars = 1
        else:
            position = min(max(float(actions[i, 0]), -1.0), 1.0)
            hold = min(max(float(actions[i, 1]), 0.0), 1.0)
            hold_bars = 1 + math.floor(hold * (max_hold - 1) + 0.5)
            target = position * leverage
            fs[i, _TARGET] = target
            ist[i, _HOLD_BARS] = hold_bars
            ist[i, _HOLD_LEFT] = hold_bars
            n_bars = 1 if bar_mode else hold_bars
        last = bar + n_bars if bar + n_bars < end else end
        reward = 0.0
        busted = False
        n_rec = 0
        cash = fs[i, _CASH]
        units = fs[i, _UNITS]
        while bar < last:
            bar += 1
            # execute_bar: trade to target * equity / open at the open, then mark at the close.
            opn = open_[asset, bar]
            equity_open = cash + units * opn
            delta = target * max(equity_open, 0.0) / opn - units
            traded = 0.0
            fill_px = opn
            cost = 0.0
            if equity_open > 0.0 and abs(delta) * opn > band * equity_open and delta != 0.0:
                vol_b = volatility[asset, bar] if has_volatility else _NAN
                volume_b = volume[asset, bar] if has_volume else _NAN
                if has_volume:
                    delta = clip_units_nb(cost_params, delta, volume_b)
                if delta != 0.0:
                    fill_px = fill_price_nb(cost_params, delta, opn, vol_b, volume_b, _NAN)
                    fee = commission_nb(cost_params, delta, fill_px)
                    cash -= delta * fill_px + fee
                    cost = abs(delta) * abs(fill_px - opn) + fee
                    traded = delta
            before = units
            units = before + traded
            # Average entry cost and time in trade, as SingleAssetTradingEnv._track_position.
            if units == 0.0:
                fs[i, _AVG_COST] = 0.0
                ist[i, _TIT] = 0
            elif before == 0.0 or math.copysign(1.0, before) != math.copysign(1.0, units):
                fs[i, _AVG_COST] = fill_px
                ist[i, _TIT] = 1
            else:
                if traded != 0.0 and math.copysign(1.0, traded) == math.copysign(1.0, units):
                    fs[i, _AVG_COST] = (abs(before) * fs[i, _AVG_COST] + abs(traded) * fill_px) / abs(units)
                ist[i, _TIT] += 1
            prev_equity = fs[i, _EQUITY]
            cls = close[asset, bar]
            equity = cash + units * cls
            fs[i, _EQUITY] = equity
            reward += _reward_nb(kind, fs, ist, ring, i, prev_equity, equity, prm)
            if record:
                rec_out[i, n_rec, _R_BAR] = bar
                rec_out[i, n_rec, _R_TARGET] = target
                rec_out[i, n_rec, _R_WEIGHT] = units * cls / equity if equity > 0.0 else 0.0
                rec_out[i, n_rec, _R_RET] = equity / prev_equity - 1.0
                rec_out[i, n_rec, _R_COST] = cost
                rec_out[i, n_rec, _R_EQUITY] = equity
                n_rec += 1
            if equity <= 0.0:
                busted = True
                break
        fs[i, _CASH] = cash
        fs[i, _UNITS] = units
        ist[i, _BAR] = bar
        if bar_mode:
            ist[i, _HOLD_LEFT] -= 1
        rec_n[i] = n_rec
        rew_out[i] = reward
        truncated = not busted and bar >= end
        term_out[i] = busted
        trunc_out[i] = truncated
        _single_obs_nb(market, close, fs, ist, i, prm, max_hold, bar_mode, obs_out)
        if (busted or truncated) and auto_reset:
            for j in range(obs_out.shape[1]):
                final_obs[i, j] = obs_out[i, j]
            _single_reset_nb(i, queue, qpos, fs, ist, prm)
            _single_obs_nb(market, close, fs, ist, i, prm, max_hold, bar_mode, obs_out)


# ------------------------------------------------------------------------------------------------ helpers
def _as_panel(values: Any, name: str, dtype: type, ndim: int) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim == ndim - 1:
        arr = arr[np.newaxis]
    if arr.ndim != ndim:
        shape = "(T,) or (n_assets, T)" if ndim == 2 else "(T, d) or (n_assets, T, d)"
        raise DataFormatError(f"{name} must have shape {shape}, got {arr.shape}.")
    return np.ascontiguousarray(arr)


def _check_finite(arr: np.ndarray, name: str, *, positive: bool) -> None:
    bad = ~np.isfinite(arr) | (arr <= 0) if positive else ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(k) for k in np.argwhere(bad)[0])
        need = "finite and > 0" if positive else "finite"
        raise DataFormatError(
            f"{name} must be {need}; index {where} holds {arr[where]!r}. Trim the feature warm-up rows (and "
            "the matching prices) or repair such bars before building the environment."
        )


def _optional_panel(values: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    if values is None:
        return np.empty((shape[0], 0), dtype=np.float64)
    arr = _as_panel(values, name, np.float64, 2)
    if arr.shape != shape:
        raise DataFormatError(f"{name} must have the prices' shape {shape}, got {arr.shape}.")
    return arr


def windows_from_folds(folds: Iterable[Any]) -> list[tuple[int, int]]:
    """Training windows of walk-forward folds as half-open bar ranges ``[start, end)``.

    Parameters
    ----------
    folds
        :class:`~alphaloom.backtest.walkforward.Fold` objects (anything with a sorted ``train_idx``). A
        training set with gaps (purged or embargoed rows) gives one window per contiguous run, so no
        episode crosses a gap.

    Returns
    -------
    list of (int, int)
        Runs of at least two bars, in fold order.
    """
    out: list[tuple[int, int]] = []
    for fold in folds:
        idx = np.asarray(fold.train_idx, dtype=np.int64)
        if idx.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(idx) != 1)
        starts = np.concatenate([[0], breaks + 1])
        stops = np.concatenate([breaks + 1, [idx.size]])
        out.extend(
            (int(idx[a]), int(idx[b - 1]) + 1) for a, b in zip(starts, stops, strict=True) if b - a >= 2
        )
    return out


class _EpisodeSampler:
    # Draws (asset, start, end) triples ahead of time: a window weighted by its number of admissible starts,
    # a uniform start in it, a uniform asset. Mirrors SingleAssetTradingEnv.reset on a window.
    def __init__(
        self, windows: Sequence[tuple[int, int]], n_bars: int, n_assets: int, episode_len: int | None
    ) -> None:
        spans = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
        if spans.shape[0] == 0:
            raise DataFormatError("windows is empty; pass at least one (start, end) bar range.")
        for start, end in spans:
            if not (start >= 0 and end <= n_bars and end - start >= 2):
                raise DataFormatError(
                    f"window ({start}, {end}) must satisfy 0 <= start, end <= {n_bars} (the bars) and "
                    "end - start >= 2 (one bar to decide, one to trade); windows are half-open [start, end)."
                )
        self.starts = spans[:, 0]
        last = spans[:, 1] - 1 - spans[:, 0]  # bars after the first, per window
        if episode_len is None:
            self.n_starts = np.ones(len(spans), dtype=np.int64)
            self.length = last
        else:
            self.n_starts = np.where(episode_len >= last, 1, last - episode_len + 1)
            self.length = np.where(episode_len >= last, np.minimum(last, episode_len), episode_len)
        self.p = self.n_starts / self.n_starts.sum()
        self.n_assets = n_assets

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        w = rng.choice(len(self.p), size=n, p=self.p) if len(self.p) > 1 else np.zeros(n, dtype=np.int64)
        offset = np.minimum((rng.random(n) * self.n_starts[w]).astype(np.int64), self.n_starts[w] - 1)
        out = np.empty((n, 3), dtype=np.int64)
        out[:, 0] = rng.integers(0, self.n_assets, size=n)
        out[:, 1] = self.starts[w] + offset
        out[:, 2] = out[:, 1] + self.length[w]
        return out


def _as_actions(actions: Any, n_envs: int) -> np.ndarray:
    a = np.asarray(actions)
    if a.ndim != 2 and a.size % n_envs == 0:
        a = a.reshape(n_envs, -1)  # e.g. one flat action per env from a wrapper
    if a.ndim != 2 or a.dtype.kind != "f":
        a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    return a


def _env_params(config: TradingEnvConfig) -> np.ndarray:
    return np.array(
        [
            config.initial_cash,
            config.max_leverage,
            config.min_trade_weight,
            config.reward_scale,
            config.drawdown_penalty,
            config.dsr_eta,
        ],
        dtype=np.float64,
    )


class _KernelVecEnv(VecEnv):
    # VecEnv plumbing shared with the portfolio environment: attributes live on the vectorised object itself
    # (there are no sub-environments), so get_attr/set_attr/env_method answer once per index.
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name, None) if attr_name == "render_mode" else getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name in {"config", "num_envs"}:
            raise AlphaloomError(f"{attr_name} is fixed at construction; build a new environment instead.")
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def close(self) -> None:
        pass

    # Episode queue, shared by subclasses that define self._sampler, self._queue, self._qpos.
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Reseed the episode sampler; takes effect for every episode started from now on."""
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**32 - 1))
        self._rng = np.random.default_rng(seed)
        self._queue = self._sampler.draw(self._rng, _QUEUE_BLOCK + 2 * self.num_envs)
        self._qpos = np.zeros(1, dtype=np.int64)
        return [seed + i for i in range(self.num_envs)]

    def _refill(self) -> None:
        q = int(self._qpos[0])
        if q + self.num_envs > self._queue.shape[0]:
            fresh = self._sampler.draw(self._rng, _QUEUE_BLOCK + 2 * self.num_envs)
            fresh[: self._queue.shape[0] - q] = self._queue[q:]
            self._queue = fresh
            self._qpos[0] = 0

    def _infos(self, final_obs: np.ndarray, term: np.ndarray, trunc: np.ndarray) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done = term | trunc
        if done.any():
            for i in np.flatnonzero(done):
                infos[i] = {
                    "terminal_observation": final_obs[i].copy(),
                    "TimeLimit.truncated": bool(trunc[i]),
                }
        return infos


class VecTradingEnv(_KernelVecEnv):
    """``n_envs`` single-asset trading environments stepped by one numba kernel (a stable-baselines3 VecEnv).

    Parameters
    ----------
    obs
        Market observations, shape (T, d) for one asset or (n_assets, T, d) for a panel, float32; row
        ``t`` uses data up to the close of bar ``t`` only.
    open_prices, close_prices
        Shape (T,) or (n_assets, T), float64, strictly positive.
    config
        Environment settings (defaults when omitted).
    windows
        Training windows as half-open bar ranges ``[start, end)``; default the whole series. See
        :func:`windows_from_folds`.
    volume, volatility
        Optional per-bar volume (units) and return volatility (fraction), shaped as the prices, for the
        cost model's square-root impact and participation cap; NaN where unknown. Without them the trades are
        priced exactly as :func:`~alphaloom.backtest.execution.execute_bar` prices them.
    seed
        Seed of the episode sampler.

    Notes
    -----
    ``step`` returns observations of shape (n_envs, d + 4) (``+ 5`` in ``"bar"`` mode) float32, rewards
    (n_envs,) float64, dones (n_envs,) bool and infos as ``config.info_level`` says. Finished episodes are
    restarted inside the step; the observation that ended them is in ``infos[i]["terminal_observation"]``.
    Actions are clipped to the box ``[-1, 1] x [0, 1]``; non-finite actions raise
    :class:`~alphaloom.core.exceptions.DataFormatError` before any environment moves.
    """

    def __init__(
        self,
        obs: np.ndarray,
        open_prices: np.ndarray,
        close_prices: np.ndarray,
        config: VecTradingEnvConfig | None = None,
        *,
        windows: Sequence[tuple[int, int]] | None = None,
        volume: np.ndarray | None = None,
        volatility: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config if config is not None else VecTradingEnvConfig()
        if not isinstance(self.config, TradingEnvConfig):
            raise DataFormatError(
                f"config must be a VecTradingEnvConfig, got {type(self.config).__name__}; "
                "build one with VecTradingEnvConfig(...)."
            )
        if not isinstance(self.config, VecTradingEnvConfig):
            self.config = VecTradingEnvConfig(**self.config.model_dump())
        cfg = self.config
        self.market_obs = _as_panel(obs, "obs", np.float32, 3)
        _check_finite(self.market_obs, "obs", positive=False)
        n_assets, n_bars, d = self.market_obs.shape
        self.open_prices = _as_panel(open_prices, "open_prices", np.float64, 2)
        self.close_prices = _as_panel(close_prices, "close_prices", np.float64, 2)
        for name, arr in (("open_prices", self.open_prices), ("close_prices", self.close_prices)):
            if arr.shape != (n_assets, n_bars):
                raise DataFormatError(
                    f"{name} has shape {arr.shape} but obs implies {(n_assets, n_bars)}; align prices and "
                    "observations by asset and bar."
                )
            _check_finite(arr, name, positive=True)
        self.volume = _optional_panel(volume, "volume", (n_assets, n_bars))
        self.volatility = _optional_panel(volatility, "volatility", (n_assets, n_bars))
        self.n_assets, self.n_bars, self.market_dim = n_assets, n_bars, d
        self._bar_mode = cfg.step_mode == "bar"
        obs_dim = d + len(PORTFOLIO_FEATURES) + (1 if self._bar_mode else 0)
        observation_space = gym.spaces.Box(low=-np.inf, high=np.inf, shape=(obs_dim,), dtype=np.float32)
        action_space = gym.spaces.Box(
            low=np.array([-1.0, 0.0], dtype=np.float32),
            high=np.array([1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        self.render_mode = None
        n = cfg.n_envs
        super().__init__(n, observation_space, action_space)
        self._sampler = _EpisodeSampler(
            windows if windows is not None else [(0, n_bars)], n_bars, n_assets, cfg.episode_len
        )
        self.windows = windows
        self._cost_params = cfg.costs.kernel_params()
        self._prm = _env_params(cfg)
        self._kind = REWARD_KINDS[cfg.reward]
        self._fs = np.zeros((n, _NF))
        self._ist = np.zeros((n, _NI), dtype=np.int64)
        self._ring = np.zeros((n, cfg.sharpe_window))
        self._obs = np.zeros((n, obs_dim), dtype=np.float32)
        self._final_obs = np.zeros((n, obs_dim), dtype=np.float32)
        self._rew = np.zeros(n)
        self._term = np.zeros(n, dtype=np.bool_)
        self._trunc = np.zeros(n, dtype=np.bool_)
        self._record = cfg.info_level == "full"
        self._rec = np.zeros((n, cfg.max_hold_bars if self._record else 1, 6))
        self._rec_n = np.zeros(n, dtype=np.int64)
        self._actions = np.zeros((n, 2), dtype=np.float32)
        self.seed(seed)

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> VecEnvObs:
        seeds = [s for s in self._seeds if s is not None]
        if seeds:
            self.seed(seeds[0])
        self._reset_seeds()
        self._refill()
        _reset_all_nb(
            self.market_obs,
            self.close_prices,
            self._queue,
            self._qpos,
            self._fs,
            self._ist,
            self._prm,
            self.config.max_hold_bars,
            self._bar_mode,
            self._obs,
        )
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = _as_actions(actions, self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        a = self._actions
        bad = _first_bad_action_nb(a, 2) if a.shape[0] == self.num_envs else 0
        if bad >= 0:
            raise DataFormatError(
                f"actions must have shape ({self.num_envs}, 2) and be finite [position_size, hold_time]; "
                f"got shape {a.shape}, row {bad} = {a[bad] if a.shape[1] else a!r}."
            )
        self._refill()
        _single_step_nb(
            a,
            self.market_obs,
            self.open_prices,
            self.close_prices,
            self.volume,
            self.volatility,
            self._cost_params,
            self._prm,
            self._kind,
            self.config.max_hold_bars,
            self._bar_mode,
            True,
            self._fs,
            self._ist,
            self._ring,
            self._queue,
            self._qpos,
            self._obs,
            self._rew,
            self._term,
            self._trunc,
            self._final_obs,
            self._record,
            self._rec,
            self._rec_n,
        )
        infos = self._infos(self._final_obs, self._term, self._trunc)
        if self._record:
            self._add_records(infos)
        return self._obs.copy(), self._rew.copy(), self._term | self._trunc, infos

    def _add_records(self, infos: list[dict[str, Any]]) -> None:
        for i, info in enumerate(infos):
            records = tuple(
                BarRecord(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
                for r in self._rec[i, : self._rec_n[i]]
            )
            info.update(
                bars=records,
                target=records[-1].target if records else float(self._fs[i, _TARGET]),
                hold_bars=int(self._ist[i, _HOLD_BARS]),
                equity=records[-1].equity if records else float(self._fs[i, _EQUITY]),
            )
            if "terminal_observation" not in info:
                info["bar"] = int(self._ist[i, _BAR])

    # ------------------------------------------------------------------ inspection
    @property
    def equity(self) -> np.ndarray:
        """Equity of each environment after the last step (account currency), shape (n_envs,)."""
        return self._fs[:, _EQUITY].copy()

    @property
    def current_bars(self) -> np.ndarray:
        """The bar whose close each environment's latest observation describes, shape (n_envs,)."""
        return self._ist[:, _BAR].copy()

    @property
    def current_assets(self) -> np.ndarray:
        """The asset each environment trades in its current episode, shape (n_envs,)."""
        return self._ist[:, _ASSET].copy()


class FastTradingEnv(gym.Env[np.ndarray, np.ndarray]):
    """One environment on :class:`VecTradingEnv`'s kernel, with ``SingleAssetTradingEnv``'s interface.

    Same constructor, spaces, reset (including the seeded random start), step, ``info`` and attributes
    (``market_obs``, ``open_prices``, ``close_prices``, ``config``, ``current_bar``) as
    :class:`~alphaloom.rl.env.SingleAssetTradingEnv`, so it passes stable-baselines3's ``check_env`` and
    :func:`~alphaloom.rl.checker.check_trading_env`, and it gives the same transitions. A
    :class:`VecTradingEnvConfig` with ``step_mode="bar"`` makes it step one bar at a time.
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
        obs_arr = np.asarray(obs, dtype=np.float32)
        if obs_arr.ndim != 2 or obs_arr.shape[0] < 2:
            raise DataFormatError(f"obs must have shape (T, d) with T >= 2, got {obs_arr.shape}.")
        vec_cfg = VecTradingEnvConfig(
            **{k: v for k, v in self.config.model_dump().items() if k in TradingEnvConfig.model_fields},
            n_envs=1,
            info_level="full",
            step_mode=getattr(self.config, "step_mode", "decision"),
        )
        self._vec = VecTradingEnv(obs_arr, open_prices, close_prices, vec_cfg)
        self.market_obs = self._vec.market_obs[0]
        self.open_prices = self._vec.open_prices[0]
        self.close_prices = self._vec.close_prices[0]
        self.n_bars, self.market_dim = self.market_obs.shape
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
        _reset_all_nb(
            vec.market_obs,
            vec.close_prices,
            vec._queue,
            vec._qpos,
            vec._fs,
            vec._ist,
            vec._prm,
            self.config.max_hold_bars,
            vec._bar_mode,
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
        if a.shape != (2,) or not np.isfinite(a).all():
            raise DataFormatError(
                f"action must be two finite numbers [position_size, hold_time], got {np.asarray(action)!r}."
            )
        vec = self._vec
        _single_step_nb(
            a.reshape(1, 2),
            vec.market_obs,
            vec.open_prices,
            vec.close_prices,
            vec.volume,
            vec.volatility,
            vec._cost_params,
            vec._prm,
            vec._kind,
            self.config.max_hold_bars,
            vec._bar_mode,
            False,
            vec._fs,
            vec._ist,
            vec._ring,
            vec._queue,
            vec._qpos,
            vec._obs,
            vec._rew,
            vec._term,
            vec._trunc,
            vec._final_obs,
            True,
            vec._rec,
            vec._rec_n,
        )
        terminated, truncated = bool(vec._term[0]), bool(vec._trunc[0])
        self._done = terminated or truncated
        info: dict[str, Any] = {}
        vec._add_records([info])
        info["bar"] = int(vec._ist[0, _BAR])
        return vec._obs[0].copy(), float(vec._rew[0]), terminated, truncated, info
