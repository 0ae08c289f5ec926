"""Walk-forward analysis: refit a model on each fold's past, trade its test window, stitch the windows.

Splits
------
:func:`walk_forward_splits` cuts ``n`` bars into ``n_folds`` contiguous test windows of ``test_size`` bars
that cover the tail of the series in order. Fold ``k`` trains on bars before its test window: from bar 0
(``scheme="anchored"``, the training set grows) or on the ``train_size`` bars before it (``"rolling"``, a
window of fixed span). Two rules of López de Prado (*Advances in Financial Machine Learning*, ch. 7) keep
information from the test window out of training::

    ... train ......... | purged | test window k ... | embargo |  (later folds' training resumes)
                        ^ s - label_horizon - purge   ^ s       ^ e + 1    ^ e + embargo

- **Purging.** The label of row ``i`` uses data up to row ``i + label_horizon`` (a forward return over
  ``label_horizon`` bars, say), so a training row whose label reaches into the test window has seen the test
  window. Rows ``[s - label_horizon - purge, s)`` are dropped from training (``purge`` adds a safety
  margin, e.g. for serially correlated features). No training row lies in ``[s - label_horizon - purge,
  e + embargo]``.
- **Embargo.** The ``embargo`` bars after every test window are excluded from the training set of every
  later fold. In a walk-forward each training row precedes its own test window, so this is the conservative
  reading of the rule: it keeps serial correlation from carrying an evaluated window into the rows that
  follow it, and makes the folds safe to reuse in a scheme that trains after a test window.

Refitting
---------
Any model that follows :class:`Refittable` (``fit(train_frame) -> self``, ``predict(frame) -> targets``)
can be walked forward; forecasters, RL agents and ensembles adapt with a thin wrapper that turns their output
into target weights, e.g. for the CNN+LSTM forecaster::

    class ForecastSign:
        lookback = 64  # bars of history predict needs before the test window

        def __init__(self, seed: int) -> None:
            self.seed = seed

        def fit(self, train: pd.DataFrame) -> ForecastSign:
            self.model_ = CNNLSTMForecaster(CNNLSTMConfig(seed=self.seed)).fit(train)
            return self

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            expected = self.model_.predict(frame)["pred_return"].to_numpy()
            return np.nan_to_num(np.sign(expected))

:func:`run_walk_forward` builds one fresh model per fold from ``model_factory(seed)`` (seeds are derived
from ``config.seed``, so a run is reproducible), hands ``fit`` only the fold's training rows, hands
``predict`` the history it declares plus the test window with the label columns removed, and backtests each
fold and the stitched out-of-sample targets. Folds run through a :class:`FoldRunner`:
:class:`SequentialRunner` or :class:`ProcessPoolRunner` here; anything with the same ``map`` method (a Ray
runner, say) plugs in.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, Self, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field, model_validator

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.engine import BacktestResult, run_backtest
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    ModelError,
    NotFittedError,
    did_you_mean,
)

__all__ = [
    "BacktestFn",
    "Fold",
    "FoldResult",
    "FoldRunner",
    "MomentumModel",
    "ProcessPoolRunner",
    "Refittable",
    "SequentialRunner",
    "WalkForwardConfig",
    "WalkForwardResult",
    "run_walk_forward",
    "walk_forward_splits",
]

T = TypeVar("T")
R = TypeVar("R")

#: ``backtest_fn(bars, target_weights) -> BacktestResult``, e.g. ``partial(run_backtest, costs=...)``.
BacktestFn = Callable[[pd.DataFrame, np.ndarray], BacktestResult]


class WalkForwardConfig(ComponentConfig):
    """How to cut a series into walk-forward folds (all sizes in bars).

    Parameters
    ----------
    scheme
        ``"anchored"``: every fold trains from bar 0, so the training set grows. ``"rolling"``: every fold
        trains on the ``train_size`` bars before its purge zone.
    n_folds
        Number of test windows.
    test_size
        Bars per test window; ``None`` splits everything after the first training window evenly (the
        remainder of the division goes to the first training window).
    train_size
        Span of the rolling training window (before embargo holes); required for ``"rolling"``, not allowed
        for ``"anchored"``. Early folds with less history get a shorter window.
    min_train_size
        Fewest training rows any fold may have; with ``test_size=None`` and ``"anchored"`` it is also the
        first fold's training span.
    label_horizon
        The label of row ``i`` uses data up to row ``i + label_horizon``; training rows whose label reaches
        into the test window are purged.
    purge
        Extra bars purged before each test window, on top of ``label_horizon``.
    embargo
        Bars after each test window excluded from the training of every later fold.
    seed
        Root seed; fold ``k`` gets its own seed derived from it.
    """

    scheme: Literal["anchored", "rolling"] = "anchored"
    n_folds: int = Field(default=5, ge=1, le=10_000)
    test_size: int | None = Field(default=None, ge=1)
    train_size: int | None = Field(default=None, ge=1)
    min_train_size: int = Field(default=20, ge=1)
    label_horizon: int = Field(default=1, ge=0)
    purge: int = Field(default=0, ge=0)
    embargo: int = Field(default=0, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _train_size_matches_scheme(self) -> WalkForwardConfig:
        if self.scheme == "rolling" and self.train_size is None:
            raise ValueError("scheme='rolling' needs train_size (bars in each training window)")
        if self.scheme == "anchored" and self.train_size is not None:
            raise ValueError(
                "train_size only applies to scheme='rolling' (anchored training grows from bar 0); "
                "drop train_size or set scheme='rolling'"
            )
        if self.train_size is not None and self.train_size < self.min_train_size:
            raise ValueError(
                f"train_size ({self.train_size}) must be >= min_train_size ({self.min_train_size})"
            )
        return self

    @property
    def gap(self) -> int:
        """Bars purged before each test window, ``label_horizon + purge``."""
        return self.label_horizon + self.purge


class Fold(NamedTuple):
    """Row positions of one walk-forward fold (sorted ``int64`` arrays, pairwise disjoint).

    Attributes
    ----------
    train_idx
        Rows the model is fitted on.
    test_idx
        The contiguous out-of-sample window ``[s, e]``.
    purged_idx
        Rows ``[s - label_horizon - purge, s)``, dropped because their labels overlap the test window.
    embargoed_idx
        Rows of the training span dropped because they follow an earlier test window by ``embargo`` bars or
        fewer.
    """

    train_idx: np.ndarray
    test_idx: np.ndarray
    purged_idx: np.ndarray
    embargoed_idx: np.ndarray


def _n_bars(n_bars_or_ts: int | Sized) -> int:
    if isinstance(n_bars_or_ts, bool):
        raise DataFormatError("walk_forward_splits needs a bar count or a sequence of bar times, got a bool.")
    if isinstance(n_bars_or_ts, int | np.integer):
        return int(n_bars_or_ts)
    if isinstance(n_bars_or_ts, Sized):
        return len(n_bars_or_ts)
    raise DataFormatError(
        f"walk_forward_splits needs a bar count or a sequence of bar times (e.g. bars['ts']), got "
        f"{type(n_bars_or_ts).__name__}."
    )


def walk_forward_splits(n_bars_or_ts: int | Sized, config: WalkForwardConfig) -> list[Fold]:
    """Cut ``n`` bars into purged and embargoed walk-forward folds.

    Parameters
    ----------
    n_bars_or_ts
        The number of bars ``n``, or anything with a length (the bars' ``ts``, the bars frame).
    config
        Scheme, sizes, purge and embargo; see :class:`WalkForwardConfig`.

    Returns
    -------
    list of Fold
        ``config.n_folds`` folds in time order. Guarantees: test windows are contiguous, non-overlapping and
        together cover rows ``[n - n_folds * test_size, n)``, each test row in exactly one fold; every
        training row of fold ``k`` lies before ``s_k - label_horizon - purge``; none lies within
        ``embargo`` bars after an earlier test window; every fold has at least ``min_train_size`` rows.

    Raises
    ------
    EmptyRangeError
        If ``n`` is too small for the folds, windows, purge and minimum training size asked for.
    """
    n = _n_bars(n_bars_or_ts)
    gap, n_folds = config.gap, config.n_folds
    first_train = config.train_size if config.scheme == "rolling" else config.min_train_size
    assert first_train is not None  # the config validator requires train_size for rolling
    test_size = config.test_size
    if test_size is None:
        test_size = (n - gap - first_train) // n_folds
        if test_size < 1:
            raise EmptyRangeError(
                f"{n} bars are too few for {n_folds} test windows after a first training window of "
                f"{first_train} bars and a purge of {gap} (label_horizon + purge); need at least "
                f"{first_train + gap + n_folds} bars. Use fewer folds or a shorter training window."
            )
    first_start = n - n_folds * test_size
    if first_start - gap < config.min_train_size:
        raise EmptyRangeError(
            f"{n} bars leave {max(first_start - gap, 0)} training rows for the first fold ({n_folds} folds "
            f"x {test_size} test bars, purge {gap}), fewer than min_train_size={config.min_train_size}. Need "
            f"at least {config.min_train_size + gap + n_folds * test_size} bars; reduce n_folds or test_size."
        )

    folds = []
    for k in range(n_folds):
        start = first_start + k * test_size
        window_end = start - gap
        window_start = 0 if config.train_size is None else max(0, window_end - config.train_size)
        span = np.arange(window_start, window_end, dtype=np.int64)
        embargoed = np.zeros(len(span), dtype=bool)
        if config.embargo:
            for j in range(k):
                end_j = first_start + (j + 1) * test_size - 1
                embargoed |= (span > end_j) & (span <= end_j + config.embargo)
        fold = Fold(
            train_idx=span[~embargoed],
            test_idx=np.arange(start, start + test_size, dtype=np.int64),
            purged_idx=np.arange(window_end, start, dtype=np.int64),
            embargoed_idx=span[embargoed],
        )
        if len(fold.train_idx) < config.min_train_size:
            raise EmptyRangeError(
                f"fold {k} keeps {len(fold.train_idx)} training rows after an embargo of {config.embargo} "
                f"bars, fewer than min_train_size={config.min_train_size}. Lower embargo below test_size "
                f"({test_size}) or widen train_size."
            )
        folds.append(fold)
    return folds


@runtime_checkable
class Refittable(Protocol):
    """A model that can be refitted on each fold: the interface :func:`run_walk_forward` drives.

    ``fit`` receives only the fold's training rows (a slice of the data frame, label columns included) and
    returns ``self``. ``predict`` receives a frame of consecutive rows ending with the test window, without
    label columns, and returns one target weight per row it was given (exposure decided at that row's close,
    as :func:`~alphaloom.backtest.engine.run_backtest` reads it). ``predict`` must be causal: the target of
    a row may use that row and earlier ones only.

    An optional integer attribute ``lookback``, read after ``fit``, says how many rows before the test
    window ``predict`` needs (feature warm-up); without it ``predict`` gets the whole history before the
    window.
    """

    def fit(self, train: pd.DataFrame) -> Self: ...

    def predict(self, frame: pd.DataFrame) -> npt.ArrayLike: ...


@runtime_checkable
class FoldRunner(Protocol):
    """Runs the folds' work: ``map(fn, tasks)`` returns ``[fn(t) for t in tasks]`` in order.

    ``fn`` is a module-level function and each task is picklable, so a runner may ship them to other
    processes or machines (a Ray runner implements this one method).
    """

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]: ...


@dataclass(frozen=True)
class SequentialRunner:
    """Runs the folds one after the other in this process (the default; easiest to debug)."""

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """``[fn(t) for t in tasks]``."""
        return [fn(t) for t in tasks]


@dataclass(frozen=True)
class ProcessPoolRunner:
    """Runs the folds in parallel worker processes (:class:`concurrent.futures.ProcessPoolExecutor`).

    Parameters
    ----------
    n_workers
        Worker processes; ``None`` uses one per CPU (capped at the number of folds).
    mp_context
        Start method: ``"spawn"`` (default: a clean interpreter per worker, safe with threaded libraries
        such as torch and numba), ``"forkserver"`` or ``"fork"``. The model factory and ``backtest_fn``
        must be picklable (module-level classes and functions, or :func:`functools.partial` of them).
    """

    n_workers: int | None = None
    mp_context: Literal["spawn", "forkserver", "fork"] = "spawn"

    def __post_init__(self) -> None:
        if self.n_workers is not None and (isinstance(self.n_workers, bool) or self.n_workers < 1):
            raise ConfigError(f"n_workers must be a positive integer or None, got {self.n_workers!r}.")
        methods = ("spawn", "forkserver", "fork")
        if self.mp_context not in methods:
            raise ConfigError(
                f"unknown mp_context {self.mp_context!r}.{did_you_mean(str(self.mp_context), methods)} "
                f"Choose one of {', '.join(methods)}."
            )

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """``[fn(t) for t in tasks]``, computed in worker processes, in the order of ``tasks``."""
        tasks = list(tasks)
        if not tasks:
            return []
        workers = min(self.n_workers or multiprocessing.cpu_count(), len(tasks))
        context = multiprocessing.get_context(self.mp_context)
        try:
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                return list(pool.map(fn, tasks))
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise ModelError(
                f"a {self.mp_context!r} worker process died before finishing its fold ({exc}). With "
                "'spawn' or 'forkserver' the calling script needs an `if __name__ == '__main__':` guard and "
                "the model factory must be importable; a worker killed for memory also ends here (use fewer "
                "n_workers)."
            ) from exc


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One fold's split, seed, out-of-sample targets and backtest.

    Attributes
    ----------
    fold
        Fold number, 0-based in time order.
    seed
        Seed the model factory received.
    split
        The fold's row positions.
    targets
        Target weights decided on the test window, shape ``(len(split.test_idx),)``.
    backtest
        The fold traded alone from ``initial_cash`` and flat: bars ``s + 1 .. e + 1`` (``.. e`` on the last
        fold, whose last decision has no next bar).
    """

    fold: int
    seed: int
    split: Fold
    targets: np.ndarray
    backtest: BacktestResult


@dataclass(frozen=True, eq=False)
class WalkForwardResult:
    """The folds and the stitched out-of-sample run.

    Attributes
    ----------
    config
        The split settings used.
    folds
        One :class:`FoldResult` per fold, in time order.
    targets
        Every out-of-sample target weight, indexed by the bars' ``ts``; shape ``(n_folds * test_size,)``.
    backtest
        The stitched targets traded as one account from the first test bar on (positions carry over
        between folds), bars ``s_0 + 1 .. n - 1``.
    """

    config: WalkForwardConfig
    folds: tuple[FoldResult, ...]
    targets: pd.Series
    backtest: BacktestResult = field(repr=False)

    @property
    def returns(self) -> np.ndarray:
        """Stitched out-of-sample returns per bar, ``backtest.returns``."""
        return self.backtest.returns

    @property
    def equity(self) -> np.ndarray:
        """Stitched out-of-sample equity at each close, ``backtest.equity``."""
        return self.backtest.equity

    def summary(self) -> pd.DataFrame:
        """One row per fold: split sizes, the first and last bar its backtest traded, and its statistics."""
        rows = []
        for f in self.folds:
            ts = f.backtest.ts
            rows.append(
                {
                    "fold": f.fold,
                    "train_rows": len(f.split.train_idx),
                    "purged": len(f.split.purged_idx),
                    "embargoed": len(f.split.embargoed_idx),
                    "first_bar": ts[0] if len(ts) else pd.NaT,
                    "last_bar": ts[-1] if len(ts) else pd.NaT,
                    **f.backtest.stats(),
                }
            )
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class _FoldTask:
    fold: int
    seed: int
    split: Fold
    model_factory: Callable[[int], Refittable]
    train: pd.DataFrame
    history: pd.DataFrame
    bars: pd.DataFrame
    backtest_fn: BacktestFn


def _run_fold(task: _FoldTask) -> FoldResult:
    model = task.model_factory(task.seed)
    for method in ("fit", "predict"):
        if not callable(getattr(model, method, None)):
            raise ModelError(
                f"model_factory({task.seed}) returned a {type(model).__name__!r}, which has no {method}() "
                "method; walk-forward models follow Refittable: fit(train_frame) -> self, predict(frame) -> "
                "targets."
            )
    fitted = model.fit(task.train)
    if fitted is None:
        raise ModelError(f"{type(model).__name__}.fit returned None; fit must return self.")
    n_test = len(task.split.test_idx)
    lookback = getattr(fitted, "lookback", None)
    if lookback is None:
        frame = task.history
    elif isinstance(lookback, int | np.integer) and not isinstance(lookback, bool) and lookback >= 0:
        frame = task.history.iloc[max(0, len(task.history) - n_test - int(lookback)) :]
    else:
        raise ModelError(
            f"{type(model).__name__}.lookback must be a non-negative int (rows of history predict needs "
            f"before the test window) or None, got {lookback!r}."
        )
    raw = fitted.predict(frame)
    targets = np.asarray(raw, dtype=np.float64).reshape(-1) if raw is not None else np.empty(0)
    if targets.shape != (len(frame),):
        raise ModelError(
            f"{type(model).__name__}.predict returned shape {np.shape(raw)} for {len(frame)} rows; it must "
            "return one target weight per row it is given."
        )
    targets = targets[-n_test:]
    bad = ~np.isfinite(targets)
    if bad.any():
        raise ModelError(
            f"{type(model).__name__}.predict returned {int(bad.sum())} non-finite targets in fold "
            f"{task.fold}'s test window; return 0.0 for flat (e.g. np.nan_to_num) or raise lookback so "
            "features warm up."
        )
    # The bar after the window executes its last decision; its own target is never executed.
    trailing = np.zeros(len(task.bars) - n_test)
    result = task.backtest_fn(task.bars, np.concatenate([targets, trailing]))
    targets.flags.writeable = False
    return FoldResult(fold=task.fold, seed=task.seed, split=task.split, targets=targets, backtest=result)


def _fold_seeds(seed: int, n_folds: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n_folds, dtype=np.uint32)]


def run_walk_forward(
    model_factory: Callable[[int], Refittable],
    data: pd.DataFrame,
    config: WalkForwardConfig,
    *,
    runner: FoldRunner | None = None,
    backtest_fn: BacktestFn | None = None,
    label_columns: Sequence[str] = (),
) -> WalkForwardResult:
    """Refit a model on each fold's training rows, trade its test window, and stitch the windows.

    Parameters
    ----------
    model_factory
        ``model_factory(seed) -> Refittable``, called once per fold for a fresh model (a class taking a
        seed, or a :func:`functools.partial` of one). Must be picklable for :class:`ProcessPoolRunner`.
    data
        One symbol's bars, ``T`` rows in time order, with ``ts``, ``open`` and ``close`` (for the backtest)
        and any feature and label columns the model reads.
    config
        How to split; see :class:`WalkForwardConfig`.
    runner
        Where the folds run; :class:`SequentialRunner` by default.
    backtest_fn
        ``backtest_fn(bars, target_weights) -> BacktestResult``; by default
        :func:`~alphaloom.backtest.engine.run_backtest` with the default :class:`CostModel`.
    label_columns
        Columns of ``data`` that look ahead by ``config.label_horizon`` bars (targets, forward returns).
        ``fit`` sees them on purged training rows only; ``predict`` and the backtest never see them.

    Returns
    -------
    WalkForwardResult
        Per-fold results and the stitched out-of-sample targets, returns and equity.

    Raises
    ------
    DataFormatError
        If ``data`` is not a frame with a ``ts`` column, or a label column is missing.
    ModelError
        If a model does not follow :class:`Refittable` or predicts the wrong shape or non-finite targets.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataFormatError(
            f"data must be a pandas DataFrame of one symbol's bars, got {type(data).__name__}."
        )
    if "ts" not in data.columns:
        raise DataFormatError(
            "data needs a 'ts' column (the canonical bars frame); move a time index into it with "
            "data.reset_index()."
        )
    labels = list(label_columns)
    missing = [c for c in labels if c not in data.columns]
    if missing:
        hints = "".join(did_you_mean(c, map(str, data.columns)) for c in missing)
        raise DataFormatError(f"label column(s) {', '.join(map(repr, missing))} are not in data.{hints}")
    if not callable(model_factory):
        raise ConfigError(
            "model_factory must be callable as model_factory(seed) -> model, got "
            f"{type(model_factory).__name__}."
        )
    runner = runner or SequentialRunner()
    backtest_fn = backtest_fn or functools.partial(run_backtest, costs=CostModel(), name="walk_forward")
    data = data.reset_index(drop=True)
    splits = walk_forward_splits(len(data), config)
    seeds = _fold_seeds(config.seed, config.n_folds)
    features = data.drop(columns=labels)
    tasks = []
    for k, (split, seed) in enumerate(zip(splits, seeds, strict=True)):
        start, end = int(split.test_idx[0]), int(split.test_idx[-1])
        tasks.append(
            _FoldTask(
                fold=k,
                seed=seed,
                split=split,
                model_factory=model_factory,
                train=data.iloc[split.train_idx],
                history=features.iloc[: end + 1],
                bars=features.iloc[start : end + 2],
                backtest_fn=backtest_fn,
            )
        )
    folds = tuple(runner.map(_run_fold, tasks))
    if len(folds) != len(tasks) or any(f.fold != t.fold for f, t in zip(folds, tasks, strict=False)):
        raise ModelError(
            f"runner {type(runner).__name__} returned {len(folds)} results for {len(tasks)} folds, or out of "
            "order; FoldRunner.map must return [fn(t) for t in tasks] in order."
        )
    first = int(splits[0].test_idx[0])
    stitched = np.concatenate([f.targets for f in folds])
    ts = pd.DatetimeIndex(data["ts"].iloc[first:], name="ts")
    return WalkForwardResult(
        config=config,
        folds=folds,
        targets=pd.Series(stitched, index=ts, name="target_weight"),
        backtest=backtest_fn(features.iloc[first:], stitched),
    )


class MomentumModel:
    """A reference :class:`Refittable`: time-series momentum with the lookback that did best in training.

    The target at a row is 1 when the close is above the close ``lookback`` rows earlier, else 0 (or -1
    with ``long_only=False``). ``fit`` picks the lookback whose signal had the highest Sharpe ratio on the
    training rows' next-bar close-to-close returns. The rule is deterministic.

    Parameters
    ----------
    seed
        Accepted so the class itself is a ``model_factory`` (``run_walk_forward(MomentumModel, ...)``);
        stored, not used.
    lookbacks
        Candidate lookbacks in bars.
    long_only
        Hold cash instead of shorting when momentum is negative.

    Attributes
    ----------
    lookback_
        The chosen lookback (after ``fit``).
    scores_
        In-sample Sharpe ratio (per bar) of each candidate lookback.
    """

    def __init__(
        self, seed: int = 0, *, lookbacks: Sequence[int] = (10, 20, 60, 120), long_only: bool = True
    ) -> None:
        self.seed = seed
        self.lookbacks = tuple(lookbacks)
        self.long_only = long_only

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn convention)."""
        return {"seed": self.seed, "lookbacks": self.lookbacks, "long_only": self.long_only}

    @property
    def lookback(self) -> int:
        """Rows of history ``predict`` needs before the first row it scores."""
        return int(getattr(self, "lookback_", max(self.lookbacks, default=0)))

    def _signal(self, close: np.ndarray, lookback: int) -> np.ndarray:
        past = np.full_like(close, np.nan)
        past[lookback:] = close[:-lookback]
        with np.errstate(invalid="ignore"):
            up = close > past
            down = close < past
        return up.astype(np.float64) - (0.0 if self.long_only else down.astype(np.float64))

    def _close(self, frame: pd.DataFrame) -> np.ndarray:
        if not isinstance(frame, pd.DataFrame) or "close" not in frame.columns:
            raise DataFormatError("MomentumModel needs a frame with a 'close' column.")
        return frame["close"].to_numpy(dtype=np.float64)

    def fit(self, train: pd.DataFrame) -> Self:
        """Choose the lookback with the best in-sample Sharpe ratio; returns ``self``."""
        if not self.lookbacks or any(isinstance(b, bool) or int(b) != b or b < 1 for b in self.lookbacks):
            raise ConfigError(f"lookbacks must be positive integers, got {self.lookbacks!r}.")
        close = self._close(train)
        if len(close) <= max(self.lookbacks) + 1:
            raise EmptyRangeError(
                f"MomentumModel.fit got {len(close)} rows; the longest lookback ({max(self.lookbacks)}) "
                "needs more. Use a longer training window or shorter lookbacks."
            )
        next_return = np.append(close[1:] / close[:-1] - 1.0, np.nan)
        scores = {}
        for lookback in self.lookbacks:
            pnl = (self._signal(close, int(lookback)) * next_return)[int(lookback) : -1]
            sd = float(np.std(pnl))
            scores[int(lookback)] = float(np.mean(pnl)) / sd if sd > 0 and math.isfinite(sd) else -math.inf
        self.scores_ = scores
        self.lookback_ = max(scores, key=lambda b: (scores[b], -b))  # ties: the shorter lookback
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Target weight per row of ``frame`` (0 while the lookback warms up)."""
        if not hasattr(self, "lookback_"):
            raise NotFittedError("MomentumModel.predict called before fit; call fit(train_frame) first.")
        return self._signal(self._close(frame), self.lookback_)
