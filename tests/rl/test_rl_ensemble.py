"""The RL ensemble: each weighting method favours the better agent; failures, all-fail and the threshold."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from alphaloom.core.exceptions import AlphaloomError, ConfigError, DataFormatError
from alphaloom.core.types import SignalAction
from alphaloom.rl import EnsembleConfig, RLEnsemble

OBS = np.zeros(5, dtype=np.float32)
TS = datetime(2024, 1, 2, tzinfo=UTC)


class _Stub:
    # A scripted agent: ``position()`` gives its position for the current step.
    def __init__(self, name: str, position: Callable[[], float] | float, hold: float = 0.0) -> None:
        self.name = name
        self._position = position if callable(position) else (lambda: position)
        self.hold = hold

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.array([self._position(), self.hold], dtype=np.float32)


class _Raising:
    name = "broken"

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        raise RuntimeError("model file corrupted")


class _NaN:
    name = "nan"

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.array([np.nan, 0.0])


def _bandit_agents(rng_seed: int) -> tuple[list[_Stub], Callable[[float], None]]:
    rng = np.random.default_rng(rng_seed)
    call = {"pos": 0.0}

    def prepare(next_return: float) -> None:
        right = rng.random() < 0.7
        call["pos"] = float(np.sign(next_return) if right else -np.sign(next_return))

    good = _Stub("good", lambda: call["pos"])
    bad = _Stub("bad", lambda: -call["pos"])
    return [good, bad], prepare


def _run(ens: RLEnsemble, prepare: Callable[[float], None], n_steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        r = float(rng.normal(0.0, 0.01))
        prepare(r)  # the agents' forecast of the coming bar; the ensemble only learns r after update()
        ens.act(OBS, ts=TS)
        ens.update(r)


# ------------------------------------------------------------------------------------------ weighting methods
def test_performance_weights_favour_the_better_agent() -> None:
    agents, prepare = _bandit_agents(1)
    ens = RLEnsemble(agents, EnsembleConfig(method="performance", window=50, temperature=0.1))
    np.testing.assert_allclose(ens.method_weights(), [0.5, 0.5])
    _run(ens, prepare, 200)
    w = ens.weights_
    assert w.shape == (200, 2)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert w[-50:, 0].mean() > 0.8


def test_thompson_sampling_concentrates_on_the_better_agent() -> None:
    agents, prepare = _bandit_agents(2)
    ens = RLEnsemble(agents, EnsembleConfig(method="thompson", window=100, thompson_draws=32, seed=5))
    _run(ens, prepare, 300)
    w = ens.weights_
    assert 0.2 < w[0, 0] < 0.8  # with no history both posteriors are the prior: it explores
    assert w[-50:, 0].mean() > 0.9


def test_thompson_sampling_is_seeded() -> None:
    runs = []
    for _ in range(2):
        agents, prepare = _bandit_agents(2)
        ens = RLEnsemble(agents, EnsembleConfig(method="thompson", seed=9))
        _run(ens, prepare, 60)
        runs.append(ens.weights_)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_hedge_weights_converge_to_the_better_agent() -> None:
    agents, prepare = _bandit_agents(3)
    ens = RLEnsemble(agents, EnsembleConfig(method="meta", learning_rate=0.2, fixed_share=0.001))
    _run(ens, prepare, 300)
    w = ens.weights_[:, 0]
    assert w[0] == pytest.approx(0.5)
    assert w[-50:].min() > 0.9


def test_weights_use_only_past_returns() -> None:
    """The weights at a step are fixed before that step's return is known: changing the return leaves them."""
    histories = []
    for last in (0.05, -0.05):
        agents, prepare = _bandit_agents(4)
        ens = RLEnsemble(agents, EnsembleConfig(method="meta"))
        _run(ens, prepare, 30)
        prepare(last)
        ens.act(OBS, ts=TS)
        ens.update(last)
        histories.append(ens.weights_)
    np.testing.assert_array_equal(histories[0], histories[1])


# ------------------------------------------------------------------------------------------ combination
def test_weighted_average_and_signal() -> None:
    ens = RLEnsemble([_Stub("a", 1.0, hold=1.0), _Stub("b", 0.5, hold=0.0)], EnsembleConfig(method="meta"))
    action, signal = ens.act(OBS, current_price=101.5, ts=TS, symbol="SPY")
    np.testing.assert_allclose(action, [0.75, 0.5])
    assert action.dtype == np.float32
    assert signal.action is SignalAction.BUY
    assert signal.symbol == "SPY"
    assert signal.ts == TS
    assert signal.position_size == pytest.approx(0.75)
    assert signal.confidence == pytest.approx(1.0)
    assert signal.model_version == ens.model_version
    assert ens.model_version.startswith("ensemble-")
    assert ens.steps_[0].current_price == 101.5
    _, short = RLEnsemble([_Stub("a", -0.4)]).act(OBS, ts=TS)
    assert short.action is SignalAction.SELL
    assert short.position_size == pytest.approx(-0.4)
    _, default = RLEnsemble([_Stub("a", 0.0)]).act(OBS)
    assert default.action is SignalAction.HOLD
    assert default.symbol == "UNSPECIFIED"
    assert default.ts.tzinfo is not None


def test_failing_agents_are_dropped_for_the_step() -> None:
    ens = RLEnsemble([_Raising(), _Stub("ok", -0.6), _NaN()], EnsembleConfig(method="performance"))
    action, signal = ens.act(OBS, ts=TS)
    np.testing.assert_allclose(action, [-0.6, 0.0])
    assert signal.action is SignalAction.SELL
    np.testing.assert_array_equal(ens.weights_[0], [0.0, 1.0, 0.0])
    reasons = {f.agent: f.reason for f in ens.failures_}
    assert set(reasons) == {"broken", "nan"}
    assert "model file corrupted" in reasons["broken"]
    assert np.isnan(ens.steps_[0].proposals[0]).all()
    ens.update(0.01)  # dropped agents get no shadow return
    assert [len(h) for h in ens._history] == [0, 1, 0]


def test_all_agents_failing_goes_flat() -> None:
    toggle = {"fail": False}

    class _Flaky:
        name = "flaky"

        def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
            if toggle["fail"]:
                raise ValueError("feed down")
            return np.array([0.9, 0.0])

    ens = RLEnsemble([_Flaky(), _Raising()])
    action, _ = ens.act(OBS, ts=TS)
    assert action[0] == pytest.approx(0.9)
    toggle["fail"] = True
    action, signal = ens.act(OBS, ts=TS)
    np.testing.assert_array_equal(action, [0.0, 0.0])
    assert signal.action is SignalAction.HOLD
    assert signal.position_size == 0.0
    assert signal.confidence == 0.0
    assert ens.steps_[-1].all_failed
    assert ens.position == 0.0
    assert len(ens.failures_) == 3


def test_low_confidence_holds_the_current_position() -> None:
    box = {"b": 1.0}
    agents = [_Stub("a", 1.0), _Stub("b", lambda: box["b"])]
    ens = RLEnsemble(agents, EnsembleConfig(method="meta", confidence_threshold=0.6))
    action, signal = ens.act(OBS, ts=TS)
    assert action[0] == pytest.approx(1.0)
    assert not ens.steps_[-1].held
    box["b"] = -0.5  # combined +0.25, but only half the weight is long: confidence 0.5 < 0.6
    action, signal = ens.act(OBS, ts=TS)
    assert ens.steps_[-1].held
    assert signal.confidence == pytest.approx(0.5)
    np.testing.assert_allclose(action, [1.0, 0.0])
    assert signal.action is SignalAction.HOLD
    assert signal.position_size == pytest.approx(1.0)
    lenient = RLEnsemble(agents, EnsembleConfig(method="meta", confidence_threshold=0.5))
    action, _ = lenient.act(OBS, ts=TS)
    assert action[0] == pytest.approx(0.25)


def test_works_with_a_trained_agent(make_vec: Callable[..., object]) -> None:
    from alphaloom.rl import PPOAgent, PPOConfig

    agent = PPOAgent(PPOConfig(n_steps=64, batch_size=64, n_epochs=1)).train(make_vec(1), 64)
    ens = RLEnsemble([agent, _Stub("flat", 0.0)])
    action, signal = ens.act(np.zeros(7, dtype=np.float32), ts=TS, symbol="EURUSD")
    assert action.shape == (2,)
    assert 0.0 <= signal.confidence <= 1.0
    _, _ = ens.act(np.zeros(3, dtype=np.float32), ts=TS)  # wrong size: the PPO agent is dropped, not fatal
    assert ens.failures_[-1].agent == "ppo"


# ------------------------------------------------------------------------------------------ validation
def test_validation_and_protocol_errors() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        RLEnsemble([])
    with pytest.raises(ConfigError, match="predict"):
        RLEnsemble([object()])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="method"):
        EnsembleConfig.from_dict({"method": "vote"})
    ens = RLEnsemble([_Stub("a", 1.0), _Stub("a", -1.0)])
    assert ens.names_ == ("a-0", "a-1")
    with pytest.raises(AlphaloomError, match="follow act"):
        ens.update(0.01)
    ens.act(OBS, ts=TS)
    with pytest.raises(DataFormatError, match="finite"):
        ens.update(float("nan"))
    with pytest.raises(DataFormatError, match="current_price"):
        ens.act(OBS, current_price=-1.0, ts=TS)


def test_model_version_tracks_agents_and_config() -> None:
    a = RLEnsemble([_Stub("x", 0.0), _Stub("y", 0.0)])
    b = RLEnsemble([_Stub("x", 1.0), _Stub("y", 1.0)])
    c = RLEnsemble([_Stub("x", 0.0), _Stub("y", 0.0)], EnsembleConfig(window=20))
    d = RLEnsemble([_Stub("x", 0.0), _Stub("z", 0.0)])
    assert a.model_version == b.model_version
    assert len({a.model_version, c.model_version, d.model_version}) == 3


def test_reset_forgets_history() -> None:
    agents, prepare = _bandit_agents(1)
    ens = RLEnsemble(agents, EnsembleConfig(method="meta"))
    _run(ens, prepare, 20)
    ens.reset()
    assert ens.weights_.shape == (0, 2)
    np.testing.assert_allclose(ens.method_weights(), [0.5, 0.5])
