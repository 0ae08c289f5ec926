"""Walk-forward: split invariants (purge, embargo, coverage), a model that tries to peek, runners agree."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alphaloom.backtest import CostModel, run_backtest
from alphaloom.backtest.walkforward import (
    Fold,
    FoldRunner,
    MomentumModel,
    ProcessPoolRunner,
    SequentialRunner,
    WalkForwardConfig,
    run_walk_forward,
    walk_forward_splits,
)
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    ModelError,
    NotFittedError,
)

T = TypeVar("T")
R = TypeVar("R")


# ----------------------------------------------------------------------------------------------- splits
@st.composite
def configs(draw: st.DrawFn) -> tuple[int, WalkForwardConfig]:
    scheme = draw(st.sampled_from(["anchored", "rolling"]))
    min_train = draw(st.integers(1, 40))
    train_size = draw(st.integers(min_train, 120)) if scheme == "rolling" else None
    config = WalkForwardConfig(
        scheme=scheme,
        n_folds=draw(st.integers(1, 8)),
        test_size=draw(st.one_of(st.none(), st.integers(1, 50))),
        train_size=train_size,
        min_train_size=min_train,
        label_horizon=draw(st.integers(0, 10)),
        purge=draw(st.integers(0, 10)),
        embargo=draw(st.integers(0, 15)),
    )
    return draw(st.integers(1, 600)), config


@settings(max_examples=400, deadline=None)
@given(configs())
def test_split_invariants(case: tuple[int, WalkForwardConfig]) -> None:
    n, config = case
    try:
        folds = walk_forward_splits(n, config)
    except EmptyRangeError:
        assume(False)
    assert len(folds) == config.n_folds
    tests = np.concatenate([f.test_idx for f in folds])
    # Test windows: contiguous, ordered, non-overlapping, each row once, covering the tail up to n - 1.
    np.testing.assert_array_equal(tests, np.arange(tests[0], n))
    sizes = {len(f.test_idx) for f in folds}
    assert len(sizes) == 1
    if config.test_size is not None:
        assert sizes == {config.test_size}
    gap = config.label_horizon + config.purge
    spans = []
    for k, fold in enumerate(folds):
        start = int(fold.test_idx[0])
        train = fold.train_idx
        assert len(train) >= config.min_train_size
        assert np.all(np.diff(train) > 0)
        assert train.min() >= 0
        # Purging: no training row in [s - label_horizon - purge, e + embargo], and nothing after the window.
        assert train.max() < start - gap
        np.testing.assert_array_equal(fold.purged_idx, np.arange(start - gap, start))
        # Embargo: no training row within `embargo` bars after any earlier test window.
        after_earlier = np.zeros(n, dtype=bool)
        for earlier in folds[:k]:
            e_j = int(earlier.test_idx[-1])
            after_earlier[e_j + 1 : e_j + 1 + config.embargo] = True
        assert not after_earlier[train].any()
        assert after_earlier[fold.embargoed_idx].all()
        for other in (fold.purged_idx, fold.embargoed_idx, fold.test_idx):
            assert not np.intersect1d(train, other).size
        # The training span is the train rows plus the embargo holes, ending right before the purge zone.
        span = np.union1d(train, fold.embargoed_idx)
        np.testing.assert_array_equal(span, np.arange(span[0], start - gap))
        assert k > 0 or fold.embargoed_idx.size == 0
        if config.scheme == "anchored":
            assert span[0] == 0
        else:
            assert config.train_size is not None
            assert len(span) == min(config.train_size, start - gap)
        spans.append(len(span))
    if config.scheme == "anchored":
        assert all(b - a == len(folds[0].test_idx) for a, b in itertools.pairwise(spans))


def test_a_worked_example() -> None:
    config = WalkForwardConfig(n_folds=3, test_size=4, min_train_size=3, label_horizon=1, purge=1, embargo=2)
    folds = walk_forward_splits(20, config)
    as_lists = [tuple(a.tolist() for a in f) for f in folds]
    assert as_lists == [
        (list(range(6)), [8, 9, 10, 11], [6, 7], []),
        (list(range(10)), [12, 13, 14, 15], [10, 11], []),
        (list(range(12)), [16, 17, 18, 19], [14, 15], [12, 13]),  # 12, 13: within 2 bars after fold 0
    ]
    rolling = walk_forward_splits(
        20, WalkForwardConfig(scheme="rolling", train_size=5, n_folds=2, test_size=5, min_train_size=5)
    )
    assert [f.train_idx.tolist() for f in rolling] == [[4, 5, 6, 7, 8], [9, 10, 11, 12, 13]]
    assert [f.test_idx.tolist() for f in rolling] == [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]


def test_splits_accept_bar_times_and_split_the_rest_evenly() -> None:
    ts = pd.date_range("2020-01-01", periods=107, freq="D", tz="UTC")
    folds = walk_forward_splits(ts, WalkForwardConfig(n_folds=4, min_train_size=20))
    assert [len(f.test_idx) for f in folds] == [21] * 4  # (107 - 1 - 20) // 4
    assert folds[0].test_idx[0] == 107 - 84
    assert isinstance(folds[0], Fold)


def test_configs_and_sizes_that_cannot_work_say_why() -> None:
    with pytest.raises(ConfigError, match="train_size"):
        WalkForwardConfig.from_dict({"scheme": "rolling"})
    with pytest.raises(ConfigError, match="only applies to scheme='rolling'"):
        WalkForwardConfig.from_dict({"train_size": 100})
    with pytest.raises(ConfigError, match="Did you mean 'embargo'"):
        WalkForwardConfig.from_dict({"embargoo": 5})
    with pytest.raises(EmptyRangeError, match="need at least"):
        walk_forward_splits(30, WalkForwardConfig(n_folds=5, min_train_size=30))
    with pytest.raises(EmptyRangeError, match="reduce n_folds or test_size"):
        walk_forward_splits(100, WalkForwardConfig(n_folds=5, test_size=20))
    with pytest.raises(EmptyRangeError, match="Lower embargo"):
        walk_forward_splits(
            100,
            WalkForwardConfig(
                scheme="rolling", train_size=10, min_train_size=10, n_folds=5, test_size=10, embargo=10
            ),
        )
    with pytest.raises(DataFormatError, match="bar count"):
        walk_forward_splits(3.5, WalkForwardConfig())  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------- running
LABEL_HORIZON = 5


class PeekingModel:
    """Tries to learn from the future: records what fit and predict were handed, so the test can check."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, train: pd.DataFrame) -> PeekingModel:
        # A leaky model would look at the last rows' forward returns, or rows of the test window.
        PeekingModel.calls.append(
            {
                "seed": self.seed,
                "rows": train.index.to_numpy(),
                "ts": train["ts"],
                "label": train["fwd_return"],
            }
        )
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        PeekingModel.calls[-1]["predict_columns"] = list(frame.columns)
        PeekingModel.calls[-1]["predict_last_ts"] = frame["ts"].iloc[-1]
        return np.zeros(len(frame))


def test_a_peeking_model_sees_only_purged_training_rows(spy: pd.DataFrame) -> None:
    data = spy.copy()
    data["fwd_return"] = data["close"].shift(-LABEL_HORIZON) / data["close"] - 1.0
    config = WalkForwardConfig(n_folds=4, min_train_size=250, label_horizon=LABEL_HORIZON, purge=2, embargo=5)
    PeekingModel.calls = []
    result = run_walk_forward(PeekingModel, data, config, label_columns=["fwd_return"])
    folds = walk_forward_splits(len(data), config)
    assert len(PeekingModel.calls) == len(folds)
    for call, fold in zip(PeekingModel.calls, folds, strict=True):
        start, end = int(fold.test_idx[0]), int(fold.test_idx[-1])
        np.testing.assert_array_equal(call["rows"], fold.train_idx)  # fit gets the training rows only
        assert call["ts"].max() < data["ts"].iloc[start]
        # Every label fit saw was computed from closes strictly before the test window.
        assert call["rows"].max() + LABEL_HORIZON < start
        np.testing.assert_array_equal(call["label"].to_numpy(), data["fwd_return"].to_numpy()[fold.train_idx])
        # predict never gets label columns, nor any row after the test window.
        assert "fwd_return" not in call["predict_columns"]
        assert call["predict_last_ts"] == data["ts"].iloc[end]
    assert result.targets.index.equals(pd.DatetimeIndex(data["ts"].iloc[folds[0].test_idx[0] :]))


def test_fold_seeds_are_deterministic_and_distinct(spy: pd.DataFrame) -> None:
    config = WalkForwardConfig(n_folds=5, min_train_size=200, seed=42)
    runs = []
    for _ in range(2):
        PeekingModel.calls = []
        data = spy.assign(fwd_return=0.0)
        result = run_walk_forward(PeekingModel, data, config, label_columns=["fwd_return"])
        runs.append([c["seed"] for c in PeekingModel.calls])
        assert [f.seed for f in result.folds] == runs[-1]
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 5
    other = run_walk_forward(PeekingModel, spy.assign(fwd_return=0.0), config.replace(seed=43))
    assert [f.seed for f in other.folds] != runs[0]


MOMENTUM = functools.partial(MomentumModel, lookbacks=(5, 20, 60))
COSTS = CostModel(commission_bps=1.0, slippage_bps=2.0)
BACKTEST = functools.partial(run_backtest, costs=COSTS, name="momentum_wf")


def test_sequential_and_process_pool_runners_agree_on_real_data(spy: pd.DataFrame) -> None:
    config = WalkForwardConfig(
        scheme="rolling", train_size=500, min_train_size=250, n_folds=4, purge=2, embargo=5, seed=3
    )
    seq = run_walk_forward(MOMENTUM, spy, config, runner=SequentialRunner(), backtest_fn=BACKTEST)
    par = run_walk_forward(MOMENTUM, spy, config, runner=ProcessPoolRunner(n_workers=2), backtest_fn=BACKTEST)
    np.testing.assert_array_equal(seq.returns, par.returns)
    np.testing.assert_array_equal(seq.equity, par.equity)
    pd.testing.assert_series_equal(seq.targets, par.targets)
    pd.testing.assert_frame_equal(seq.summary(), par.summary())
    for a, b in zip(seq.folds, par.folds, strict=True):
        assert a.seed == b.seed
        np.testing.assert_array_equal(a.backtest.equity, b.backtest.equity)
    # The model was refitted per fold and actually traded.
    assert seq.backtest.n_trades > 10
    assert seq.backtest.name == "momentum_wf"
    assert np.isfinite(seq.summary()["sharpe"]).all()


def test_the_stitched_run_is_the_out_of_sample_targets_traded_as_one_account(spy: pd.DataFrame) -> None:
    config = WalkForwardConfig(n_folds=3, min_train_size=300, label_horizon=1)
    result = run_walk_forward(MOMENTUM, spy, config, backtest_fn=BACKTEST)
    first = int(walk_forward_splits(len(spy), config)[0].test_idx[0])
    expected = run_backtest(spy.iloc[first:], result.targets.to_numpy(), costs=COSTS, name="momentum_wf")
    np.testing.assert_array_equal(result.equity, expected.equity)
    assert result.backtest.ts.equals(pd.DatetimeIndex(spy["ts"].iloc[first + 1 :], name="ts"))
    # Each fold trades its own window from cash; together the fold backtests cover the stitched bars once.
    fold_ts = np.concatenate([f.backtest.ts.asi8 for f in result.folds])
    np.testing.assert_array_equal(fold_ts, result.backtest.ts.asi8)
    for f in result.folds:
        np.testing.assert_array_equal(f.targets, result.targets.to_numpy()[f.split.test_idx - first])
    summary = result.summary()
    assert summary["fold"].tolist() == [0, 1, 2]
    assert (summary["train_rows"].diff().dropna() > 0).all()  # anchored: training grows


class _ReversedRunner:
    """A third-party runner: runs the folds in reverse order but returns them in order."""

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return list(reversed([fn(t) for t in reversed(tasks)]))


def test_the_fold_runner_is_pluggable(spy: pd.DataFrame) -> None:
    assert isinstance(_ReversedRunner(), FoldRunner)
    config = WalkForwardConfig(n_folds=3, min_train_size=300)
    a = run_walk_forward(MOMENTUM, spy, config, runner=_ReversedRunner())
    b = run_walk_forward(MOMENTUM, spy, config)
    np.testing.assert_array_equal(a.equity, b.equity)
    with pytest.raises(ConfigError, match="n_workers"):
        ProcessPoolRunner(n_workers=0)
    with pytest.raises(ConfigError, match="Did you mean 'spawn'"):
        ProcessPoolRunner(mp_context="spwan")  # type: ignore[arg-type]


class _BadModel:
    def __init__(self, seed: int, *, mode: str) -> None:
        self.mode = mode

    def fit(self, train: pd.DataFrame) -> _BadModel | None:
        return None if self.mode == "fit_none" else self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.mode == "short":
            return np.zeros(3)
        return np.full(len(frame), np.nan)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("fit_none", "must return self"), ("short", "one target weight per row"), ("nan", "non-finite")],
)
def test_misbehaving_models_get_a_clear_error(spy: pd.DataFrame, mode: str, message: str) -> None:
    config = WalkForwardConfig(n_folds=2, min_train_size=300)
    with pytest.raises(ModelError, match=message):
        run_walk_forward(functools.partial(_BadModel, mode=mode), spy, config)


def test_bad_inputs_are_refused(spy: pd.DataFrame) -> None:
    config = WalkForwardConfig(n_folds=2, min_train_size=300)
    with pytest.raises(DataFormatError, match="Did you mean 'close'"):
        run_walk_forward(MOMENTUM, spy, config, label_columns=["closee"])
    with pytest.raises(DataFormatError, match="'ts' column"):
        run_walk_forward(MOMENTUM, spy.set_index("ts"), config)
    with pytest.raises(ModelError, match="has no fit"):
        run_walk_forward(lambda seed: object(), spy, config)


def test_momentum_model_follows_the_fit_predict_contract(synthetic: Callable[..., pd.DataFrame]) -> None:
    bars = synthetic(5, 400, drift=0.003)
    model = MomentumModel(lookbacks=(5, 50))
    with pytest.raises(NotFittedError, match="before fit"):
        model.predict(bars)
    assert model.lookback == 50
    assert model.fit(bars) is model
    assert model.lookback_ in (5, 50)
    assert set(model.scores_) == {5, 50}
    targets = model.predict(bars)
    assert targets.shape == (400,)
    assert set(np.unique(targets)) <= {0.0, 1.0}
    assert np.all(targets[: model.lookback_] == 0.0)  # no signal before the lookback has warmed up
    # Causal: the target of a row does not change when later rows are cut off.
    np.testing.assert_array_equal(model.predict(bars.iloc[:300]), targets[:300])
    short = MomentumModel(lookbacks=(5,), long_only=False).fit(bars)
    assert set(np.unique(short.predict(bars))) <= {-1.0, 0.0, 1.0}
    with pytest.raises(EmptyRangeError, match="longest lookback"):
        MomentumModel(lookbacks=(500,)).fit(bars)
