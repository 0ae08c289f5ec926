"""Combine several agents' actions into one, weighting each agent by how its proposals have done.

Every step, each agent proposes ``[position_size, hold_time]`` for the same observation. An agent that
raises or proposes a non-finite action is dropped for that step and the failure recorded (failure as data:
the trading loop goes on); if every agent fails the ensemble goes flat. The survivors' proposals are averaged
with weights from one of three methods, all driven by *shadow returns*: agent ``i``'s shadow return for a bar
is the position it proposed at the previous close times the asset's return over the bar, fed in by
:meth:`RLEnsemble.update` only after the bar is observed, so weights never see the future.

``"performance"``
    Softmax of each agent's rolling Sharpe ratio of its last ``window`` shadow returns, at ``temperature``.
``"thompson"``
    Thompson sampling: a Normal-Inverse-Gamma posterior over the mean of each agent's recent shadow returns
    (prior mean 0 worth one observation, prior variance the pooled variance of all agents' returns); each of
    ``thompson_draws`` draws samples every agent's mean and gives the draw to the best, and an agent's weight
    is its share of draws.
``"meta"``
    Online Hedge (exponentiated gradient) on shadow returns, scaled by their running root mean square so that
    ``learning_rate`` is unit-free, with a ``fixed_share`` mixed back in each step so that an agent written
    off can recover when regimes change.

The confidence of a combined action is the share of weight on agents whose proposed direction (long, short
or flat) is the combined one. Below ``confidence_threshold`` the ensemble keeps its current position.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import AlphaloomError, ConfigError, DataFormatError
from alphaloom.core.timeutil import ensure_utc
from alphaloom.core.types import SignalAction, TradingSignal
from alphaloom.rl._rewards import bar_sharpe

if TYPE_CHECKING:
    from alphaloom.rl.env import RolloutResult, SingleAssetTradingEnv

__all__ = ["ActionProposer", "AgentFailure", "EnsembleConfig", "EnsembleStep", "RLEnsemble"]

_FLAT_EPS = 1e-9
_DEFAULT_PRIOR_VAR = 1e-4
_UNSPECIFIED_SYMBOL = "UNSPECIFIED"


class EnsembleConfig(ComponentConfig):
    """Settings of :class:`RLEnsemble` (see the module docstring for the methods).

    Parameters
    ----------
    method
        ``"performance"``, ``"thompson"`` or ``"meta"``.
    window
        Shadow returns remembered per agent for the Sharpe ratio and the posterior.
    confidence_threshold
        Below this confidence the ensemble holds its current position.
    temperature
        Softmax temperature over per-bar Sharpe ratios (``"performance"``).
    learning_rate
        Hedge step size on RMS-scaled shadow returns (``"meta"``).
    fixed_share
        Share of weight spread evenly after each Hedge step (``"meta"``).
    thompson_draws
        Posterior draws per step (``"thompson"``).
    deterministic
        Ask agents for their deterministic action.
    seed
        Seeds Thompson sampling.
    """

    method: Literal["performance", "thompson", "meta"] = "performance"
    window: int = Field(default=50, ge=2)
    confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    temperature: float = Field(default=0.1, gt=0.0)
    learning_rate: float = Field(default=0.2, gt=0.0)
    fixed_share: float = Field(default=0.001, ge=0.0, lt=1.0)
    thompson_draws: int = Field(default=32, ge=1)
    deterministic: bool = True
    seed: int = Field(default=0, ge=0)


@runtime_checkable
class ActionProposer(Protocol):
    """Anything with a ``name`` and ``predict(obs, deterministic)`` returning ``[position, hold]``."""

    name: str

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...


class AgentFailure(NamedTuple):
    """An agent dropped at ``step`` and why."""

    step: int
    agent: str
    reason: str


class EnsembleStep(NamedTuple):
    """One :meth:`RLEnsemble.act` call.

    ``proposals`` (n_agents, 2) holds NaN rows for dropped agents; ``weights`` (n_agents,) are the weights
    used (0 for dropped agents); ``held`` says the threshold kept the previous position; ``all_failed`` that
    every agent failed and the ensemble went flat.
    """

    step: int
    proposals: np.ndarray
    weights: np.ndarray
    action: np.ndarray
    confidence: float
    held: bool
    all_failed: bool
    current_price: float | None


def _direction(x: np.ndarray | float) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    return np.where(arr > _FLAT_EPS, 1, np.where(arr < -_FLAT_EPS, -1, 0))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


class RLEnsemble:
    """Weighted combination of agents' actions with online, look-ahead-free weight updates.

    Parameters
    ----------
    agents
        The agents (anything :class:`ActionProposer`); repeated names get a ``-<i>`` suffix in the records.
    config
        Ensemble settings; the defaults when omitted.

    Attributes
    ----------
    names_
        One label per agent, in order.
    model_version
        ``"ensemble-<hash>"`` of the agent names and the config; stamped on every signal.
    steps_
        One :class:`EnsembleStep` per :meth:`act`.
    failures_
        One :class:`AgentFailure` per dropped proposal.

    Examples
    --------
    Per bar: ``action, signal = ens.act(obs, ts=ts, symbol="SPY")``; trade; after the next bar closes,
    ``ens.update(close[t + 1] / close[t] - 1)``.
    """

    def __init__(self, agents: Sequence[ActionProposer], config: EnsembleConfig | None = None) -> None:
        self.config = config if config is not None else EnsembleConfig()
        if not isinstance(self.config, EnsembleConfig):
            raise ConfigError(f"config must be an EnsembleConfig, got {type(self.config).__name__}.")
        self.agents = tuple(agents)
        if not self.agents:
            raise ConfigError("RLEnsemble needs at least one agent.")
        for agent in self.agents:
            if not callable(getattr(agent, "predict", None)) or not isinstance(
                getattr(agent, "name", None), str
            ):
                raise ConfigError(
                    f"every agent needs a str `name` and a `predict(obs, deterministic)` method; "
                    f"{type(agent).__name__} does not have both."
                )
        raw = [agent.name for agent in self.agents]
        self.names_ = tuple(name if raw.count(name) == 1 else f"{name}-{i}" for i, name in enumerate(raw))
        payload = json.dumps({"agents": list(self.names_), "config": self.config.config_hash()})
        self.model_version = "ensemble-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all history: shadow returns, Hedge weights, position and records."""
        n = len(self.agents)
        self._history: list[deque[float]] = [deque(maxlen=self.config.window) for _ in range(n)]
        self._log_w = np.zeros(n)
        self._sq_sum = 0.0
        self._sq_count = 0
        self._pending: np.ndarray | None = None
        self._position = 0.0
        self._rng = np.random.default_rng(self.config.seed)
        self.steps_: list[EnsembleStep] = []
        self.failures_: list[AgentFailure] = []

    @property
    def position(self) -> float:
        """The position (target weight) of the last action."""
        return self._position

    @property
    def weights_(self) -> np.ndarray:
        """Weights used at each step, shape (n_steps, n_agents); 0 for an agent dropped at that step."""
        if not self.steps_:
            return np.zeros((0, len(self.agents)))
        return np.stack([s.weights for s in self.steps_])

    def method_weights(self) -> np.ndarray:
        """The method's current weights over all agents, shape (n_agents,), as if none were dropped."""
        return self._weights(np.ones(len(self.agents), dtype=bool))

    # ------------------------------------------------------------------ acting
    def act(
        self,
        obs: np.ndarray,
        current_price: float | None = None,
        ts: datetime | None = None,
        symbol: str = "",
    ) -> tuple[np.ndarray, TradingSignal]:
        """Combine the agents' actions for ``obs``.

        Parameters
        ----------
        obs
            Shape (d,): the observation every agent receives.
        current_price
            The latest price, recorded with the step (optional).
        ts
            Aware timestamp of the decision; now (UTC) when omitted.
        symbol
            Symbol for the signal; ``"UNSPECIFIED"`` when empty.

        Returns
        -------
        tuple
            The action ``[position_size, hold_time]`` (float32, shape (2,)) and its :class:`TradingSignal`:
            BUY for a long target, SELL for a short one, HOLD for flat or for a position the threshold kept;
            ``position_size`` is always the target exposure.
        """
        if current_price is not None and not (math.isfinite(current_price) and current_price > 0):
            raise DataFormatError(f"current_price must be finite and > 0, got {current_price!r}.")
        ts = datetime.now(UTC) if ts is None else ensure_utc(ts, name="ts")
        step = len(self.steps_)
        n = len(self.agents)
        proposals = np.full((n, 2), np.nan)
        for i, agent in enumerate(self.agents):
            try:
                raw = np.asarray(
                    agent.predict(obs, deterministic=self.config.deterministic), dtype=np.float64
                )
            except Exception as exc:  # any agent error drops that agent for this step
                self.failures_.append(AgentFailure(step, self.names_[i], f"{type(exc).__name__}: {exc}"))
                continue
            if raw.size != 2 or not np.isfinite(raw).all():
                self.failures_.append(AgentFailure(step, self.names_[i], f"invalid action {raw.tolist()!r}"))
                continue
            raw = raw.reshape(2)
            proposals[i] = (min(max(raw[0], -1.0), 1.0), min(max(raw[1], 0.0), 1.0))
        alive = np.isfinite(proposals[:, 0])
        self._pending = proposals[:, 0].copy()

        if not alive.any():
            weights = np.zeros(n)
            action = np.zeros(2)
            confidence, held, all_failed = 0.0, False, True
            self._position = 0.0
        else:
            weights = self._weights(alive)
            combined = weights[alive] @ proposals[alive]
            direction = _direction(combined[0])
            confidence = float(weights[alive][_direction(proposals[alive, 0]) == direction].sum())
            all_failed = False
            held = confidence < self.config.confidence_threshold
            if held:
                action = np.array([self._position, 0.0])
            else:
                action = np.array([min(max(combined[0], -1.0), 1.0), min(max(combined[1], 0.0), 1.0)])
                self._position = float(action[0])
        confidence = min(max(confidence, 0.0), 1.0)
        action32 = action.astype(np.float32)
        self.steps_.append(
            EnsembleStep(step, proposals, weights, action32, confidence, held, all_failed, current_price)
        )
        return action32, self._signal(action, confidence, held, ts, symbol)

    def _signal(
        self, action: np.ndarray, confidence: float, held: bool, ts: datetime, symbol: str
    ) -> TradingSignal:
        size = float(action[0])
        direction = int(_direction(size))
        if held or direction == 0:
            signal_action = SignalAction.HOLD
        else:
            signal_action = SignalAction.BUY if direction > 0 else SignalAction.SELL
        return TradingSignal(
            symbol=symbol or _UNSPECIFIED_SYMBOL,
            action=signal_action,
            confidence=confidence,
            position_size=size if direction != 0 else 0.0,
            ts=ts,
            model_version=self.model_version,
        )

    def rollout(
        self,
        env: SingleAssetTradingEnv,
        *,
        symbol: str = "",
        ts: Sequence[datetime] | None = None,
    ) -> RolloutResult:
        """Trade ``env``'s whole series with the ensemble, scoring each decision once its outcome is known.

        Before every decision after the first, :meth:`update` receives the close-to-close return since the
        previous decision, so weights only ever use returns that have happened.

        Parameters
        ----------
        env
            The environment whose series to trade (its own episode state is untouched).
        symbol
            Symbol for the signals.
        ts
            Bar timestamps, one per bar of ``env`` (aware); signals are stamped with them. Without them
            signals carry the wall-clock time.

        Returns
        -------
        RolloutResult
            As :meth:`alphaloom.rl.SingleAssetTradingEnv.rollout`.
        """
        closes = env.close_prices
        if ts is not None and len(ts) != len(closes):
            raise DataFormatError(f"ts has {len(ts)} timestamps but the environment has {len(closes)} bars.")
        state: dict[str, int | None] = {"decided_at": None, "now": 0}

        def policy(obs: np.ndarray) -> np.ndarray:
            now, decided_at = int(state["now"] or 0), state["decided_at"]
            if decided_at is not None:
                self.update(float(closes[now] / closes[decided_at] - 1.0))
            stamp = None if ts is None else ts[now]
            action, _signal = self.act(obs, ts=stamp, symbol=symbol)
            state["decided_at"] = now
            return action

        def on_step(info: dict) -> None:
            state["now"] = int(info["bar"])

        return env.rollout(policy, on_step=on_step)

    # ------------------------------------------------------------------ learning
    def update(self, realised_return: float) -> None:
        """Feed the asset's simple return over the bar the last action was in force for.

        Each agent's shadow return is its proposed position times ``realised_return``; agents dropped at
        that step get none.

        Raises
        ------
        AlphaloomError
            If no :meth:`act` is waiting for its outcome.
        """
        if self._pending is None:
            raise AlphaloomError(
                "update() must follow act(): it scores the positions proposed at the last act() call."
            )
        r = float(realised_return)
        if not math.isfinite(r):
            raise DataFormatError(f"realised_return must be finite, got {realised_return!r}.")
        positions = self._pending
        self._pending = None
        valid = np.isfinite(positions)
        shadow = np.where(valid, positions, 0.0) * r
        for i in np.flatnonzero(valid):
            self._history[i].append(float(shadow[i]))
        if valid.any():
            self._sq_sum += float(np.sum(shadow[valid] ** 2))
            self._sq_count += int(valid.sum())
            scale = math.sqrt(self._sq_sum / self._sq_count)
            if scale > 0.0:
                self._log_w[valid] += self.config.learning_rate * shadow[valid] / scale
            w = _softmax(self._log_w)
            w = (1.0 - self.config.fixed_share) * w + self.config.fixed_share / len(w)
            self._log_w = np.log(w)

    # ------------------------------------------------------------------ weighting
    def _weights(self, alive: np.ndarray) -> np.ndarray:
        method = self.config.method
        if method == "performance":
            scores = np.array([bar_sharpe(np.asarray(h)) for h in self._history])
            raw = np.zeros(len(alive))
            raw[alive] = _softmax(scores[alive] / self.config.temperature)
            return raw
        if method == "thompson":
            return self._thompson_weights(alive)
        raw = np.zeros(len(alive))
        raw[alive] = _softmax(self._log_w[alive])
        return raw

    def _thompson_weights(self, alive: np.ndarray) -> np.ndarray:
        pooled = np.concatenate([np.asarray(h) for h in self._history])
        prior_var = float(pooled.var(ddof=1)) if pooled.size >= 2 else 0.0
        if not prior_var > 0.0:
            prior_var = _DEFAULT_PRIOR_VAR
        kappa0, alpha0 = 1.0, 1.0
        beta0 = alpha0 * prior_var
        idx = np.flatnonzero(alive)
        mu_n = np.empty(idx.size)
        kappa_n = np.empty(idx.size)
        alpha_n = np.empty(idx.size)
        beta_n = np.empty(idx.size)
        for j, i in enumerate(idx):
            x = np.asarray(self._history[i])
            n = x.size
            mean = float(x.mean()) if n else 0.0
            ss = float(((x - mean) ** 2).sum()) if n else 0.0
            kappa_n[j] = kappa0 + n
            mu_n[j] = n * mean / kappa_n[j]
            alpha_n[j] = alpha0 + 0.5 * n
            beta_n[j] = beta0 + 0.5 * ss + kappa0 * n * mean * mean / (2.0 * kappa_n[j])
        draws = self.config.thompson_draws
        variance = beta_n / self._rng.gamma(alpha_n, 1.0, size=(draws, idx.size))
        means = self._rng.normal(mu_n, np.sqrt(variance / kappa_n))
        wins = np.bincount(means.argmax(axis=1), minlength=idx.size)
        raw = np.zeros(len(alive))
        raw[idx] = wins / draws
        return raw
