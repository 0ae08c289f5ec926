"""Hold the CNN+LSTM forecaster against baselines on the same purged walk-forward folds.

:func:`evaluate_forecasters` is the harness: every model is fitted on the same training rows and scored on
the same out-of-sample rows, fold by fold, seed by seed. :func:`run_evaluation` is the job around it behind
``alphaloom evaluate forecasters``: load a data set, compute features, run the harness, store the comparison
table and write a report.

Folds
-----
The symbols' bar times are merged into one calendar, which
:func:`~alphaloom.backtest.walkforward.walk_forward_splits` cuts into anchored folds: test window ``k`` is a
span of calendar bars ``[s, e]``; training uses calendar bars before ``s - label_horizon - purge`` and
skips the ``embargo`` bars after each earlier test window. Each symbol's rows follow their bar time, so a
fold is the same period for every symbol and no symbol trains on a day another is tested on. Training rows
reach a model as contiguous per-symbol segments (an embargo gap splits a symbol into two segments, named
``SYMBOL/0``, ``SYMBOL/1``), and labels are built inside each segment, so no training label reaches the
test window: a label ``log(close[t + h] / close[t])`` needs row ``t + h`` in the same segment.

Labels and scores
-----------------
The flat threshold of fold ``k`` is the tercile of ``|forward log return|`` over the fold's labelled training
rows, and every model is built with it, so all models predict the same classes. Test rows are scored only
where every model (and every seed) has a forecast and the realised return is known. Per fold and pooled over
the folds: accuracy, balanced accuracy, MCC and log loss of the class probabilities, IC and rank IC of
``pred_return`` (:mod:`alphaloom.models.evaluation`). Scores of several seeds are averaged.

Trading rule
------------
Each model's forecasts are traded long/short: target weight ``sign(p_up - p_down)`` (+1, -1 or 0) decided at
each test bar's close and filled at the next open by :func:`~alphaloom.backtest.run_backtest` with the cost
model. Each symbol trades its own account over the stitched test windows; the portfolio return of a bar is
the mean over the symbols trading then (equal-weight sleeves). ``ls_sharpe`` is its annualised Sharpe
ratio after costs.

Significance
------------
A Diebold-Mariano test (:func:`~alphaloom.risk.diebold_mariano`, with the Harvey-Leybourne-Newbold
correction) compares the reference model (the CNN+LSTM) with each other model on two losses: the per-bar
log loss of the class probabilities (``dm_logloss``, ``p_logloss``) and the squared error of ``pred_return``
(``dm_sqerr``, ``p_sqerr``). Losses are averaged over seeds, the differential ``loss_reference -
loss_model`` is averaged over the symbols at each bar time (so cross-sectional correlation does not
inflate the test), and the test runs over time with the label horizon. A negative statistic means the
reference had the lower loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
from pydantic import Field, model_validator
from rich.table import Table

from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.engine import BacktestResult, buy_and_hold, periods_per_year_for, run_backtest
from alphaloom.backtest.walkforward import WalkForwardConfig, walk_forward_splits
from alphaloom.core.config import ComponentConfig, read_config_file
from alphaloom.core.exceptions import ConfigError, DataFormatError, EmptyRangeError, ModelError, did_you_mean
from alphaloom.distributed import Executor
from alphaloom.features.pipeline import FeatureConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.workspace import Workspace
from alphaloom.models.baselines import LightGBMConfig, LogisticConfig, PersistenceConfig
from alphaloom.models.cnn_lstm.config import CNNLSTMConfig
from alphaloom.risk import measures

__all__ = [
    "COMPARISON_TABLE",
    "DATASETS",
    "FOLDS_TABLE",
    "MODEL_NAMES",
    "PREDICTIONS_TABLE",
    "ComparisonResult",
    "EvaluationConfig",
    "EvaluationRun",
    "FoldContext",
    "Forecaster",
    "ForecasterFactory",
    "build_frames",
    "comparison_table",
    "default_models",
    "evaluate_forecasters",
    "load_evaluation_config",
    "run_evaluation",
    "stored_comparison",
]

COMPARISON_TABLE = "forecaster_comparison"
FOLDS_TABLE = "forecaster_comparison_folds"
PREDICTIONS_TABLE = "forecaster_predictions"
REFERENCE = "cnn_lstm"
#: Models :func:`default_models` can build, the reference first.
MODEL_NAMES: tuple[str, ...] = ("cnn_lstm", "persistence", "logistic", "lightgbm")
#: ``--dataset`` names: the shipped sample set each loads (see :mod:`alphaloom.data.sample`).
DATASETS: Mapping[str, str] = {"stocks": "us_equities_daily", "forex": "fx_daily", "crypto": "crypto_daily"}
_PRICE_COLUMNS = frozenset({"symbol", "ts", "open", "high", "low", "close", "volume"})
_PROBA = ["p_down", "p_flat", "p_up"]
_OUTPUT = [*_PROBA, "pred_return"]
_SCORE_NAMES = ("accuracy", "balanced_accuracy", "mcc", "log_loss", "ic", "rank_ic")
_COST_PRESET = {
    "stock": "equity",
    "etf": "equity",
    "index": "equity",
    "option": "equity",
    "forex": "forex",
    "cfd": "forex",
    "crypto": "crypto",
}


# ----------------------------------------------------------------------------------------------- API types
class FoldContext(NamedTuple):
    """What a model factory is told about the fit it is building a model for.

    Attributes
    ----------
    fold
        Fold number, 0-based in time order.
    seed
        Seed for the model's randomness.
    horizon
        Label horizon in bars; the model must label ``log(close[t + horizon] / close[t])``.
    flat_threshold
        The fold's flat threshold; the model must use it so every model predicts the same classes.
    test_start, test_end
        First and last bar time of the fold's test window (for checks; a model must not need them).
    """

    fold: int
    seed: int
    horizon: int
    flat_threshold: float
    test_start: pd.Timestamp
    test_end: pd.Timestamp


class Forecaster(Protocol):
    """What the harness drives: the interface of :class:`~alphaloom.models.CNNLSTMForecaster` and of the
    baselines in :mod:`alphaloom.models.baselines`.

    ``fit`` receives ``{segment: frame}`` training segments (features plus ``open`` and ``close``) and
    returns ``self``; ``predict(frame)`` returns a frame indexed by bar time with ``p_down``, ``p_flat``,
    ``p_up`` and ``pred_return``, causal in its rows.
    """

    def fit(
        self,
        frames: Mapping[str, pd.DataFrame],
        *,
        feature_columns: Sequence[str] | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> Any: ...

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame: ...


#: ``factory(context) -> Forecaster``: a fresh, unfitted model for one fit.
ForecasterFactory = Callable[[FoldContext], Forecaster]


class EvaluationConfig(ComponentConfig):
    """Settings of ``alphaloom evaluate forecasters``.

    Attributes
    ----------
    horizon
        Label horizon in bars, for every model.
    walk_forward
        How to cut the calendar into folds (anchored by default); ``label_horizon`` must be at least
        ``horizon``.
    seeds
        Seeds; every model is fitted once per seed and fold, and the scores are averaged over seeds.
    models
        Which of :data:`MODEL_NAMES` to compare; the first is the reference of the Diebold-Mariano tests.
    costs
        Trading costs of the long/short rule; ``None`` takes the asset-class preset of
        :meth:`CostModel.for_asset_class <alphaloom.backtest.CostModel.for_asset_class>` when every symbol
        is a known instrument of one class, else ``CostModel()`` (1 bp commission, 2 bp slippage).
    periods_per_year
        Bars per year for the Sharpe ratio; ``None`` derives it from the instruments' calendar (252, 260,
        365), else 252.
    initial_cash
        Starting equity of each symbol's account.
    symbols
        Symbols to use (all of the data set's by default).
    max_symbols
        Keep only the first this many symbols (after ``symbols``).
    max_bars_per_symbol
        Keep only each symbol's last this many bars.
    features
        The feature pipeline (``FeatureEngineer``) run per symbol.
    cnn, logistic, lightgbm
        Model settings; ``horizon``, ``flat_threshold`` and ``seed`` are set by the harness per fit.
    """

    horizon: int = Field(default=1, ge=1)
    walk_forward: WalkForwardConfig = WalkForwardConfig(
        n_folds=5, min_train_size=750, label_horizon=1, embargo=5
    )
    seeds: tuple[int, ...] = (0,)
    models: tuple[str, ...] = MODEL_NAMES
    costs: CostModel | None = None
    periods_per_year: float | None = Field(default=None, gt=0)
    initial_cash: float = Field(default=100_000.0, gt=0)
    symbols: tuple[str, ...] | None = None
    max_symbols: int | None = Field(default=None, ge=1)
    max_bars_per_symbol: int | None = Field(default=None, ge=100)
    features: FeatureConfig = FeatureConfig()
    cnn: CNNLSTMConfig = CNNLSTMConfig()
    logistic: LogisticConfig = LogisticConfig()
    lightgbm: LightGBMConfig = LightGBMConfig()

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationConfig:
        if self.walk_forward.label_horizon < self.horizon:
            raise ValueError(
                f"walk_forward.label_horizon ({self.walk_forward.label_horizon}) must be >= horizon "
                f"({self.horizon}) so training labels never reach into a test window"
            )
        if not self.seeds:
            raise ValueError("seeds needs at least one seed, e.g. (0,)")
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown:
            hints = "".join(did_you_mean(m, MODEL_NAMES) for m in unknown)
            raise ValueError(f"unknown model(s) {unknown}.{hints} Valid: {', '.join(MODEL_NAMES)}")
        if len(set(self.models)) != len(self.models) or not self.models:
            raise ValueError(f"models must name each model once, got {list(self.models)}")
        return self

    @classmethod
    def quick(cls, **changes: Any) -> EvaluationConfig:
        """A setting that runs in seconds (tests, smoke runs): 2 symbols, 700 bars each, 2 folds, one seed,
        a tiny CNN trained for one epoch and 50 boosting rounds."""
        preset: dict[str, Any] = {
            "walk_forward": WalkForwardConfig(n_folds=2, min_train_size=300, label_horizon=1, embargo=5),
            "max_symbols": 2,
            "max_bars_per_symbol": 700,
            "cnn": CNNLSTMConfig.quick(epochs=1, batch_size=64),
            "lightgbm": LightGBMConfig(n_estimators=50, min_child_samples=20),
        }
        return cls.from_dict({**preset, **changes}, source="EvaluationConfig.quick")


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """What :func:`evaluate_forecasters` measured.

    Attributes
    ----------
    table
        One row per model (the reference first), scores pooled over folds and averaged over seeds:
        ``model``, ``n`` (bars scored), ``accuracy``, ``balanced_accuracy``, ``mcc``, ``log_loss``,
        ``ic``, ``rank_ic``, ``ls_sharpe`` (annualised, after costs), ``dm_logloss``, ``p_logloss``,
        ``dm_sqerr``, ``p_sqerr`` (Diebold-Mariano against the reference; NaN on its own row) and
        ``fit_s`` (seconds spent fitting, all folds and seeds). A last row ``buy_and_hold`` holds the
        Sharpe ratio of holding every symbol over the same bars (its ``n`` counts those bars).
    folds
        One row per model, seed and fold with the same scores (no DM) and ``fit_s``.
    splits
        One row per fold: test window, training and scored rows, flat threshold.
    predictions
        The scored out-of-sample forecasts: ``symbol``, ``ts``, ``fold``, ``model``, ``seed``, the four
        forecast columns, ``realised`` (forward log return) and ``label`` (its class).
    backtests
        The long/short rule of each model on each symbol for the first seed, plus ``buy_and_hold``.
    reference
        Name of the reference model.
    seconds
        Wall time of the evaluation.
    """

    table: pd.DataFrame
    folds: pd.DataFrame
    splits: pd.DataFrame
    predictions: pd.DataFrame = field(repr=False)
    backtests: dict[str, list[BacktestResult]] = field(repr=False)
    reference: str | None
    seconds: float


# -------------------------------------------------------------------------------------------- factories
def _cnn(config: CNNLSTMConfig, ctx: FoldContext) -> Forecaster:
    from alphaloom.models import CNNLSTMForecaster

    cfg = config.replace(horizon=ctx.horizon, flat_threshold=ctx.flat_threshold, seed=ctx.seed)
    return CNNLSTMForecaster(cfg)


def _baseline(kind: str, config: ComponentConfig, ctx: FoldContext) -> Forecaster:
    from alphaloom.models import LightGBMForecaster, LogisticForecaster, PersistenceForecaster

    cls = {
        "persistence": PersistenceForecaster,
        "logistic": LogisticForecaster,
        "lightgbm": LightGBMForecaster,
    }
    cfg = config.replace(horizon=ctx.horizon, flat_threshold=ctx.flat_threshold, seed=ctx.seed)
    return cls[kind](cfg)


def default_models(config: EvaluationConfig | None = None) -> dict[str, ForecasterFactory]:
    """``{name: factory}`` for ``config.models``: ``cnn_lstm``, ``persistence``, ``logistic``, ``lightgbm``.

    Each factory builds the model from the config's settings with the fold's horizon, flat threshold and
    seed.
    """
    config = config or EvaluationConfig()
    every: dict[str, ForecasterFactory] = {
        "cnn_lstm": partial(_cnn, config.cnn),
        "persistence": partial(_baseline, "persistence", PersistenceConfig()),
        "logistic": partial(_baseline, "logistic", config.logistic),
        "lightgbm": partial(_baseline, "lightgbm", config.lightgbm),
    }
    return {name: every[name] for name in config.models}


# --------------------------------------------------------------------------------------------- harness
@dataclass
class _Symbol:
    name: str
    frame: pd.DataFrame
    position: np.ndarray  # calendar position of each row
    realised: np.ndarray  # forward log return over the horizon, NaN where unknown


@dataclass
class _Fold:
    k: int
    context: FoldContext
    train: dict[str, pd.DataFrame]
    index: pd.DataFrame  # symbol, ts, row, realised, label of the fold's test rows
    n_train_rows: int


def _check_frames(frames: Mapping[str, pd.DataFrame], feature_columns: Sequence[str] | None) -> list[str]:
    if not isinstance(frames, Mapping) or not frames:
        raise DataFormatError("frames must be a non-empty {symbol: DataFrame} mapping.")
    names: list[str] | None = list(feature_columns) if feature_columns is not None else None
    for symbol, frame in frames.items():
        where = f"frames[{symbol!r}]"
        if not isinstance(frame, pd.DataFrame):
            raise DataFormatError(f"{where} should be a DataFrame, got {type(frame).__name__}.")
        index = frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise DataFormatError(
                f"{where} must be indexed by UTC bar times (a tz-aware DatetimeIndex); use "
                "frame.set_index('ts') with ts in UTC."
            )
        if not index.is_monotonic_increasing or not index.is_unique:
            raise DataFormatError(f"{where}: bar times must be strictly increasing (sorted, no duplicates).")
        missing = [c for c in ("open", "close") if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"{where} lacks {missing}; the harness needs 'close' for labels and 'open' to trade the "
                "long/short rule at the next open. build_frames(bars) adds both."
            )
        own = [str(c) for c in frame.columns if c not in _PRICE_COLUMNS]
        if names is None:
            names = own
            if not names:
                raise DataFormatError(f"{where} has no feature columns besides open/high/low/close/volume.")
        absent = [c for c in names if c not in frame.columns]
        if absent:
            hints = "".join(did_you_mean(c, map(str, frame.columns)) for c in absent[:3])
            raise DataFormatError(f"{where} lacks feature column(s) {absent[:5]}.{hints}")
    assert names is not None
    return names


def _segments(symbol: str, frame: pd.DataFrame, keep: np.ndarray) -> dict[str, pd.DataFrame]:
    rows = np.flatnonzero(keep)
    if not len(rows):
        return {}
    breaks = np.flatnonzero(np.diff(rows) > 1) + 1
    parts = np.split(rows, breaks)
    if len(parts) == 1:
        return {symbol: frame.iloc[parts[0]]}
    return {f"{symbol}/{j}": frame.iloc[part] for j, part in enumerate(parts)}


def _fold_threshold(train: Mapping[str, pd.DataFrame], features: list[str], horizon: int) -> float:
    from alphaloom.models.cnn_lstm.dataset import forward_log_return

    pooled = []
    for frame in train.values():
        forward = forward_log_return(frame["close"].to_numpy(dtype=np.float64), horizon)
        finite = np.isfinite(frame[features].to_numpy(dtype=np.float64)).all(axis=1) & np.isfinite(forward)
        pooled.append(np.abs(forward[finite]))
    values = np.concatenate(pooled) if pooled else np.empty(0)
    if not len(values):
        raise EmptyRangeError(
            "a fold has no labelled training row with finite features; use fewer folds, a larger "
            "walk_forward.min_train_size or more history."
        )
    return float(np.quantile(values, 1.0 / 3.0))


def _build_folds(
    symbols: list[_Symbol], calendar: pd.DatetimeIndex, config: WalkForwardConfig, features: list[str], h: int
) -> list[_Fold]:
    from alphaloom.models.cnn_lstm.dataset import class_labels

    folds = []
    for k, split in enumerate(walk_forward_splits(len(calendar), config)):
        s, e = int(split.test_idx[0]), int(split.test_idx[-1])
        train_positions = np.zeros(len(calendar), dtype=bool)
        train_positions[split.train_idx] = True
        train: dict[str, pd.DataFrame] = {}
        parts = []
        for sym in symbols:
            train.update(_segments(sym.name, sym.frame, train_positions[sym.position]))
            rows = np.flatnonzero((sym.position >= s) & (sym.position <= e) & np.isfinite(sym.realised))
            parts.append(
                pd.DataFrame(
                    {
                        "symbol": sym.name,
                        "ts": sym.frame.index[rows],
                        "row": rows,
                        "realised": sym.realised[rows],
                    }
                )
            )
        if not train:
            raise EmptyRangeError(f"fold {k} has no training rows; use fewer folds or more history.")
        threshold = _fold_threshold(train, features, h)
        index = pd.concat(parts, ignore_index=True)
        index["label"] = class_labels(index["realised"].to_numpy(), threshold)
        context = FoldContext(k, 0, h, threshold, calendar[s], calendar[e])
        folds.append(_Fold(k, context, train, index, sum(len(f) for f in train.values())))
    return folds


def _predict_fold(model: Forecaster, name: str, fold: _Fold, symbols: dict[str, _Symbol]) -> np.ndarray:
    out = np.full((len(fold.index), len(_OUTPUT)), np.nan)
    for symbol, rows in fold.index.groupby("symbol", sort=False).indices.items():
        sym = symbols[str(symbol)]
        last_row = int(fold.index["row"].iloc[rows].max())
        pred = model.predict(sym.frame.iloc[: last_row + 1])
        if not isinstance(pred, pd.DataFrame) or any(c not in pred.columns for c in _OUTPUT):
            raise ModelError(
                f"model {name!r}: predict() must return a DataFrame with columns {_OUTPUT}, got "
                f"{list(getattr(pred, 'columns', []))[:8]}."
            )
        ts = pd.DatetimeIndex(fold.index["ts"].iloc[rows])
        out[rows] = pred[_OUTPUT].reindex(ts).to_numpy(dtype=np.float64)
    return out


def _scores(labels: np.ndarray, pred: np.ndarray, realised: np.ndarray) -> dict[str, float]:
    from alphaloom.models.evaluation import forecast_scores

    if not len(labels):
        return {"n": 0, **dict.fromkeys(_SCORE_NAMES, math.nan)}
    scores = forecast_scores(labels, pred[:, :3], pred[:, 3], realised)
    return scores._asdict()


def _row_losses(labels: np.ndarray, pred: np.ndarray, realised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from alphaloom.models.evaluation import log_loss_per_sample

    return log_loss_per_sample(labels, pred[:, :3]), (pred[:, 3] - realised) ** 2


def _trade(
    oos: pd.DataFrame,
    symbols: dict[str, _Symbol],
    name: str,
    costs: CostModel,
    initial_cash: float,
    ppy: float,
) -> tuple[pd.Series, list[BacktestResult]]:
    """Trade ``sign(p_up - p_down)`` of the scored rows of each symbol; equal-weight portfolio returns."""
    results, returns = [], []
    for symbol, rows in oos.groupby("symbol", sort=False):
        sym = symbols[str(symbol)]
        first = int(rows["row"].min())
        bars = sym.frame.iloc[first:]
        targets = pd.Series(0.0, index=bars.index)
        signal = np.sign(rows["p_up"].to_numpy() - rows["p_down"].to_numpy())
        targets.loc[pd.DatetimeIndex(rows["ts"])] = signal
        frame = pd.DataFrame(
            {"ts": bars.index, "open": bars["open"].to_numpy(), "close": bars["close"].to_numpy()}
        )
        frame.insert(0, "symbol", str(symbol))
        if name == "buy_and_hold":
            result = buy_and_hold(frame, costs, initial_cash=initial_cash, periods_per_year=ppy)
        else:
            result = run_backtest(
                frame,
                targets.to_numpy(),
                costs=costs,
                initial_cash=initial_cash,
                name=name,
                periods_per_year=ppy,
            )
        results.append(result)
        returns.append(pd.Series(result.returns, index=result.ts, name=str(symbol)))
    portfolio = pd.concat(returns, axis=1).sort_index().mean(axis=1, skipna=True)
    return portfolio, results


def _dm(reference: pd.DataFrame, other: pd.DataFrame, column: str, horizon: int) -> tuple[float, float]:
    # Differential per bar, averaged over symbols at each bar time, tested over time.
    diff = (reference[column] - other[column]).groupby(level="ts").mean().sort_index()
    test = measures.diebold_mariano(diff.to_numpy(), np.zeros(len(diff)), horizon=horizon)
    return test.statistic, test.p_value


@dataclass(frozen=True)
class _FitJob:
    fold: int
    name: str
    seed: int


@dataclass(frozen=True)
class _FitInputs:
    # What every fit reads; an executor ships it once (Ray's object store), not once per fit.
    folds: list[_Fold]
    symbols: dict[str, _Symbol]
    models: dict[str, ForecasterFactory]
    features: list[str]


def _fit_predict(
    job: _FitJob, inputs: _FitInputs, on_epoch: Callable[..., None] | None = None
) -> tuple[np.ndarray, float]:
    # One model, fold and seed: fit on the fold's training segments, forecast its test rows.
    fold = inputs.folds[job.fold]
    model = inputs.models[job.name](fold.context._replace(seed=job.seed))
    t0 = time.perf_counter()
    fitted = model.fit(fold.train, feature_columns=inputs.features, progress=on_epoch)
    if fitted is None:
        raise ModelError(f"model {job.name!r}: fit() returned None; it must return self.")
    seconds = time.perf_counter() - t0
    return _predict_fold(fitted, job.name, fold, inputs.symbols), seconds


def evaluate_forecasters(
    frames: Mapping[str, pd.DataFrame],
    models: Mapping[str, ForecasterFactory],
    *,
    walk_forward: WalkForwardConfig,
    costs: CostModel,
    seeds: Sequence[int] = (0,),
    horizon: int = 1,
    reference: str | None = REFERENCE,
    feature_columns: Sequence[str] | None = None,
    periods_per_year: float = 252,
    initial_cash: float = 100_000.0,
    progress: StageProgress | None = None,
    executor: Executor | None = None,
) -> ComparisonResult:
    """Fit and score every model on the same purged walk-forward folds; see the module docstring.

    Parameters
    ----------
    frames
        ``{symbol: frame}``: each indexed by UTC bar time, strictly increasing, with the feature columns
        plus ``open`` and ``close`` (:func:`build_frames` makes them from a bars frame).
    models
        ``{name: factory}``; ``factory(context)`` returns a fresh :class:`Forecaster` for one fit.
    walk_forward
        How to cut the merged calendar into folds; ``label_horizon`` must be at least ``horizon``.
    costs
        Costs of the long/short rule.
    seeds
        Each model is fitted once per seed per fold.
    horizon
        Label horizon in bars.
    reference
        The model the others are tested against (Diebold-Mariano); ``None`` skips the tests.
    feature_columns
        Model inputs; by default every column but ``open``, ``high``, ``low``, ``close`` and ``volume``.
    periods_per_year
        Bars per year for the Sharpe ratio.
    initial_cash
        Starting equity of each symbol's account.
    progress
        Progress display; one step per fit.
    executor
        Where the fits (folds x models x seeds) run, e.g. a Ray executor from
        :func:`alphaloom.distributed.open_executor`; ``None`` fits them one after the other here. The
        results do not depend on it (every fit is seeded and single-threaded); only ``fit_s`` and
        ``seconds`` do.

    Returns
    -------
    ComparisonResult

    Raises
    ------
    DataFormatError
        On malformed frames.
    ConfigError
        On an empty model set, an unknown reference or inconsistent horizons.
    EmptyRangeError
        If the data are too short for the folds.
    ModelError
        If a model's ``fit`` or ``predict`` breaks the :class:`Forecaster` interface.
    """
    started = time.perf_counter()
    progress = progress or NullProgress()
    features = _check_frames(frames, feature_columns)
    if not models:
        raise ConfigError("models is empty; pass {name: factory}, e.g. default_models().")
    if reference is not None and reference not in models:
        raise ConfigError(
            f"reference model {reference!r} is not among the models {list(models)}."
            f"{did_you_mean(reference, models)} Pass reference=None to skip the Diebold-Mariano tests."
        )
    if walk_forward.label_horizon < horizon:
        raise ConfigError(
            f"walk_forward.label_horizon ({walk_forward.label_horizon}) must be >= horizon ({horizon}): the "
            "purge must cover the label."
        )
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds is empty; pass at least one seed, e.g. (0,).")
    from alphaloom.models.cnn_lstm.dataset import forward_log_return

    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))), name="ts")
    symbols = {
        str(name): _Symbol(
            str(name),
            frame,
            calendar.get_indexer(frame.index),
            forward_log_return(frame["close"].to_numpy(dtype=np.float64), horizon),
        )
        for name, frame in frames.items()
    }
    folds = _build_folds(list(symbols.values()), calendar, walk_forward, features, horizon)
    names = list(models)
    if reference is not None:
        names.remove(reference)
        names.insert(0, reference)

    jobs = [_FitJob(fold.k, name, seed) for fold in folds for name in names for seed in seeds]
    inputs = _FitInputs(folds, symbols, dict(models), features)
    task = progress.task("evaluate forecasters", total=len(jobs))
    if executor is None or executor.backend == "serial":
        outputs = []
        for done, job in enumerate(jobs):
            note = f"{job.name} seed {job.seed} fold {job.fold + 1}/{len(folds)}"
            task.update(done, note=note)

            def on_epoch(
                epoch: int, n_epochs: int, metrics: dict, note: str = note, done: int = done
            ) -> None:
                if n_epochs > 1:
                    task.update(done, note=f"{note}: epoch {epoch}/{n_epochs}")

            outputs.append(_fit_predict(job, inputs, on_epoch))
            task.advance()
    else:
        task.update(0, note=f"{len(jobs)} fits on {executor.backend} ({executor.n_workers} workers)")
        outputs = executor.map(_fit_predict, jobs, shared=inputs, on_result=lambda i, r: task.advance())
    fits = dict(zip(((j.fold, j.name, j.seed) for j in jobs), outputs, strict=True))

    fold_rows, oos_parts, split_rows = [], [], []
    fit_seconds = dict.fromkeys(names, 0.0)
    for fold in folds:
        preds: dict[tuple[str, int], np.ndarray] = {}
        seconds: dict[tuple[str, int], float] = {}
        for name in names:
            for seed in seeds:
                preds[name, seed], seconds[name, seed] = fits[fold.k, name, seed]
                fit_seconds[name] += seconds[name, seed]
        common = np.logical_and.reduce([np.isfinite(p).all(axis=1) for p in preds.values()])
        index = fold.index[common].reset_index(drop=True)
        labels, realised = index["label"].to_numpy(), index["realised"].to_numpy()
        split_rows.append(
            {
                "fold": fold.k,
                "test_start": fold.context.test_start,
                "test_end": fold.context.test_end,
                "train_rows": fold.n_train_rows,
                "train_segments": len(fold.train),
                "test_rows": len(fold.index),
                "scored_rows": int(common.sum()),
                "flat_threshold": fold.context.flat_threshold,
            }
        )
        for (name, seed), pred in preds.items():
            p = pred[common]
            scores = _scores(labels, p, realised)
            fold_rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "fold": fold.k,
                    **scores,
                    "fit_s": round(seconds[name, seed], 2),
                }
            )
            log_loss, sq_err = _row_losses(labels, p, realised)
            part = index.assign(fold=fold.k, model=name, seed=seed, log_loss_bar=log_loss, sq_err_bar=sq_err)
            part[_OUTPUT] = p
            oos_parts.append(part)
    oos = pd.concat(oos_parts, ignore_index=True)
    if oos.empty:
        raise EmptyRangeError(
            "no test row has a forecast from every model; check that the models predict on the test windows "
            "(feature warm-up, window length) or use fewer folds."
        )

    # Pooled scores and the long/short rule, per model and seed.
    pooled_rows, backtests, portfolios = [], {}, {}
    for (name, seed), rows in oos.groupby(["model", "seed"], sort=False):
        pred = rows[_OUTPUT].to_numpy()
        pooled = _scores(rows["label"].to_numpy(), pred, rows["realised"].to_numpy())
        portfolio, results = _trade(rows, symbols, str(name), costs, initial_cash, periods_per_year)
        portfolios[name, seed] = portfolio
        if seed == seeds[0]:
            backtests[str(name)] = results
        pooled_rows.append(
            {
                "model": name,
                "seed": seed,
                **pooled,
                "ls_sharpe": measures.sharpe_ratio(portfolio, periods_per_year),
            }
        )
    first = oos[(oos["model"] == names[0]) & (oos["seed"] == seeds[0])]
    hold, hold_results = _trade(first, symbols, "buy_and_hold", costs, initial_cash, periods_per_year)
    backtests["buy_and_hold"] = hold_results

    folds_frame = pd.DataFrame(fold_rows)
    # Decisions of fold k (bars test_start_k .. test_end_k) fill on the next bar: their returns are the bars
    # after test_start_k up to and including test_start_{k+1}.
    bounds = [pd.Timestamp(r["test_start"]) for r in split_rows] + [pd.Timestamp.max.tz_localize("UTC")]
    folds_frame.insert(
        len(folds_frame.columns) - 1,
        "ls_sharpe",
        [
            _window_sharpe(portfolios[r.model, r.seed], bounds[r.fold], bounds[r.fold + 1], periods_per_year)
            for r in folds_frame.itertuples()
        ],
    )

    pooled = pd.DataFrame(pooled_rows)
    table = pooled.drop(columns=["seed"]).groupby("model", sort=False).mean().reset_index()
    table["n"] = table["n"].round().astype(np.int64)
    losses = oos.groupby(["model", "symbol", "ts"], sort=False)[["log_loss_bar", "sq_err_bar"]].mean()
    for col in ("dm_logloss", "p_logloss", "dm_sqerr", "p_sqerr"):
        table[col] = math.nan
    if reference is not None:
        ref = losses.loc[reference]
        for i, name in enumerate(table["model"]):
            if name == reference:
                continue
            other = losses.loc[name]
            table.loc[i, ["dm_logloss", "p_logloss"]] = _dm(ref, other, "log_loss_bar", horizon)
            table.loc[i, ["dm_sqerr", "p_sqerr"]] = _dm(ref, other, "sq_err_bar", horizon)
    table["fit_s"] = [round(fit_seconds[m], 2) for m in table["model"]]
    hold_row = {
        "model": "buy_and_hold",
        "n": len(hold),
        "ls_sharpe": measures.sharpe_ratio(hold, periods_per_year),
    }
    table = pd.concat([table, pd.DataFrame([hold_row])], ignore_index=True)
    table["n"] = table["n"].astype(np.int64)
    predictions = oos.drop(columns=["row", "log_loss_bar", "sq_err_bar"])
    return ComparisonResult(
        table=table,
        folds=folds_frame,
        splits=pd.DataFrame(split_rows),
        predictions=predictions,
        backtests=backtests,
        reference=reference,
        seconds=time.perf_counter() - started,
    )


def _window_sharpe(returns: pd.Series, start: pd.Timestamp, stop: pd.Timestamp, ppy: float) -> float:
    window = returns[(returns.index > start) & (returns.index <= stop)]
    return measures.sharpe_ratio(window.to_numpy(), ppy)


# ------------------------------------------------------------------------------------------------- data
def build_frames(bars: pd.DataFrame, features: FeatureConfig | None = None) -> dict[str, pd.DataFrame]:
    """``{symbol: frame}`` for :func:`evaluate_forecasters`: the feature pipeline run per symbol, plus the
    bars' ``open`` and ``close``, indexed by bar time.

    Parameters
    ----------
    bars
        Canonical bars frame (``symbol, ts, open, high, low, close, volume``).
    features
        Feature pipeline settings; the default ``FeatureConfig()`` by default.
    """
    from alphaloom.features import FeatureEngineer

    table = FeatureEngineer(features or FeatureConfig()).transform_panel(bars)
    frames = {}
    for symbol, group in bars.groupby("symbol", sort=False):
        prices = group.set_index("ts")[["open", "close"]]
        feats = table[table["symbol"] == symbol].drop(columns=["symbol"]).set_index("ts")
        frame = feats.join(prices, how="inner")
        frame.index = pd.DatetimeIndex(frame.index, name="ts")
        frames[str(symbol)] = frame
    return frames


class _Market(NamedTuple):
    bars: pd.DataFrame
    source: str
    costs: CostModel
    periods_per_year: float
    quarantined: int


def _market_defaults(symbols: Sequence[str], instruments: Mapping[str, Any]) -> tuple[CostModel, float]:
    known = [instruments[s] for s in symbols if s in instruments]
    classes = {_COST_PRESET.get(str(i.asset_class), "") for i in known}
    calendars = {str(i.calendar) for i in known}
    if len(known) == len(symbols) and len(classes) == 1 and "" not in classes:
        costs = CostModel.for_asset_class(classes.pop())
    else:
        costs = CostModel()
    ppy = float(periods_per_year_for(calendars.pop())) if len(calendars) == 1 else 252.0
    return costs, ppy


def _load_market(
    ws: Workspace, config: EvaluationConfig, dataset: str | None, input_path: Path | None
) -> _Market:
    from alphaloom.data.instruments import SAMPLE_INSTRUMENTS
    from alphaloom.data.loaders import read_bars_file
    from alphaloom.data.sample import SAMPLE_SETS, load_sample
    from alphaloom.data.validator import DataValidator, ValidatorConfig

    if dataset is not None and input_path is not None:
        raise ConfigError("pass either --dataset or --input, not both.")
    instruments: Mapping[str, Any] = SAMPLE_INSTRUMENTS
    if dataset is not None:
        sample = DATASETS.get(dataset, dataset)
        if sample not in SAMPLE_SETS:
            choices = [*DATASETS, *SAMPLE_SETS]
            raise ConfigError(
                f"unknown dataset {dataset!r}.{did_you_mean(dataset, choices)} Choose one of "
                f"{', '.join(choices)}, or pass --input FILE."
            )
        bars, source = load_sample(sample), f"sample:{sample}"
    elif input_path is not None:
        bars, source = read_bars_file(input_path), str(input_path)
    else:
        from alphaloom.jobs import stages
        from alphaloom.jobs.config import RunConfig

        run_config = ws.load_config() or RunConfig()
        bars, source = stages.load_symbol_bars(ws, run_config), f"store:{ws.store_path}"
        with ws.require_store() as store:
            instruments = store.instruments()
    available = list(dict.fromkeys(bars["symbol"].astype(str)))
    symbols = available
    if config.symbols is not None:
        missing = [s for s in config.symbols if s not in available]
        if missing:
            hints = "".join(did_you_mean(s, available) for s in missing)
            raise ConfigError(f"symbol(s) {missing} are not in {source}.{hints} Available: {available}.")
        symbols = list(config.symbols)
    if config.max_symbols is not None:
        symbols = symbols[: config.max_symbols]
    bars = bars[bars["symbol"].isin(symbols)]
    checked = DataValidator(ValidatorConfig()).validate(bars, instruments)
    bars = checked.clean
    if config.max_bars_per_symbol:
        bars = bars.groupby("symbol", sort=False).tail(config.max_bars_per_symbol)
    bars = bars.sort_values(["symbol", "ts"]).reset_index(drop=True)
    costs, ppy = _market_defaults(symbols, instruments)
    return _Market(
        bars=bars,
        source=source,
        costs=config.costs or costs,
        periods_per_year=config.periods_per_year or ppy,
        quarantined=len(checked.quarantined),
    )


# -------------------------------------------------------------------------------------------------- job
@dataclass(frozen=True, eq=False)
class EvaluationRun:
    """The outcome of :func:`run_evaluation`: the comparison, where it was written and the settings used."""

    result: ComparisonResult
    source: str
    symbols: list[str]
    costs: CostModel
    periods_per_year: float
    report_path: Path
    info: dict[str, Any]

    @property
    def table(self) -> pd.DataFrame:
        """The comparison table, one row per model."""
        return self.result.table


def load_evaluation_config(
    *,
    config_file: Path | None = None,
    quick: bool = False,
    folds: int | None = None,
    seeds: int | None = None,
    symbols: Sequence[str] | None = None,
) -> EvaluationConfig:
    """The evaluation settings: the quick or default preset, then the keys of a TOML/YAML file of
    :class:`EvaluationConfig` settings on top (a partial table such as ``[walk_forward]`` with only
    ``n_folds`` keeps the preset's other values), then ``folds`` (number of folds), ``seeds`` (number of
    seeds, 0 .. seeds - 1) and ``symbols``."""
    config = EvaluationConfig.quick() if quick else EvaluationConfig()
    if config_file is not None:
        merged = _merge(config.model_dump(), read_config_file(config_file))
        config = EvaluationConfig.from_dict(merged, source=str(config_file))
    changes: dict[str, Any] = {}
    if folds is not None:
        if folds < 1:
            raise ConfigError(f"--folds must be at least 1, got {folds}.")
        changes["walk_forward"] = config.walk_forward.replace(n_folds=folds)
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds is the number of seeds and must be at least 1, got {seeds}.")
        changes["seeds"] = tuple(range(seeds))
    if symbols:
        changes["symbols"] = tuple(symbols)
        if quick:
            changes["max_symbols"] = None
    return config.replace(**changes) if changes else config


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value)
        else:
            out[key] = value
    return out


def run_evaluation(
    ws: Workspace,
    config: EvaluationConfig,
    *,
    dataset: str | None = None,
    input_path: Path | None = None,
    progress: StageProgress | None = None,
    executor: Executor | None = None,
) -> EvaluationRun:
    """Load the data, compute features, compare the models, store the tables and write the report.

    Parameters
    ----------
    ws
        Where the comparison is stored (tables ``forecaster_comparison``, ``forecaster_comparison_folds``,
        ``forecaster_predictions``) and the report written (``reports/forecasters.html``).
    config
        The settings.
    dataset
        ``"stocks"``, ``"forex"``, ``"crypto"`` (the shipped samples) or a sample set name.
    input_path
        A bar file (CSV, CSV.gz or Parquet with a ``symbol`` column) instead of a dataset.
        With neither, the run's bars are read from the workspace store.
    progress
        Progress display.
    executor
        Where the fits run (serial here by default); see :func:`evaluate_forecasters`.
    """
    progress = progress or NullProgress()
    t0 = time.perf_counter()
    market = _load_market(ws, config, dataset, input_path)
    if market.quarantined:
        progress.log(f"{market.quarantined} bar(s) failed validation and were left out")
    frames = build_frames(market.bars, config.features)
    result = evaluate_forecasters(
        frames,
        default_models(config),
        walk_forward=config.walk_forward,
        costs=market.costs,
        seeds=config.seeds,
        horizon=config.horizon,
        reference=config.models[0],
        periods_per_year=market.periods_per_year,
        initial_cash=config.initial_cash,
        progress=progress,
        executor=executor,
    )
    symbols = list(frames)
    with ws.open_store() as store:
        store.write_frame(COMPARISON_TABLE, result.table)
        store.write_frame(FOLDS_TABLE, result.folds)
        store.write_frame(PREDICTIONS_TABLE, result.predictions, replace_symbols=False)
    notes = _notes(market, config, symbols)
    report = _write_report(ws, result, notes)
    info = {
        "source": market.source,
        "symbols": symbols,
        "bars": len(market.bars),
        "folds": config.walk_forward.n_folds,
        "seeds": list(config.seeds),
        "horizon": config.horizon,
        "costs": market.costs.model_dump(),
        "periods_per_year": market.periods_per_year,
        "config_hash": config.config_hash(),
        "seconds": round(time.perf_counter() - t0, 2),
        "executor": executor.info() if executor is not None else {"backend": "serial", "workers": 1},
        "report": str(report),
        "table": result.table.to_dict(orient="records"),
        "splits": result.splits.astype({"test_start": str, "test_end": str}).to_dict(orient="records"),
    }
    ws.record("evaluate_forecasters", info)
    return EvaluationRun(result, market.source, symbols, market.costs, market.periods_per_year, report, info)


def _notes(market: _Market, config: EvaluationConfig, symbols: list[str]) -> list[str]:
    wf = config.walk_forward
    c = market.costs
    return [
        f"Data: {market.source}, {len(symbols)} symbols ({', '.join(symbols)}), {len(market.bars):,} bars.",
        f"Purged walk-forward: {wf.n_folds} {wf.scheme} folds on the merged calendar, purge "
        f"{wf.label_horizon + wf.purge} bar(s), embargo {wf.embargo} bar(s); seeds {list(config.seeds)}; "
        f"label horizon {config.horizon} bar(s); flat class = tercile of |return| on each fold's training "
        "rows.",
        "Long/short rule: sign(p_up - p_down), decided at the close, filled at the next open; costs "
        f"{c.commission_bps} bp commission + {c.commission_per_share}/unit (min {c.min_commission}), "
        f"{c.spread_bps} bp spread, {c.slippage_bps} bp slippage; Sharpe annualised with "
        f"{market.periods_per_year:g} bars per year.",
        "Diebold-Mariano (HLN-corrected) of the reference against each model on per-bar log loss "
        "(dm_logloss) and squared error of pred_return (dm_sqerr); negative: the reference has the lower "
        "loss.",
    ]


def _write_report(ws: Workspace, result: ComparisonResult, notes: list[str]) -> Path:
    from alphaloom.backtest.report import write_html_report

    names = ["buy_and_hold", *(m for m in result.table["model"] if m != "buy_and_hold")]
    return write_html_report(
        ws.ensure().reports_dir / "forecasters.html",
        [r for name in names for r in result.backtests.get(name, [])],
        title="alphaloom: forecasters compared out of sample",
        extra_tables={
            "Forecaster comparison (pooled over folds, mean over seeds)": result.table,
            "Per fold": result.folds,
            "Folds": result.splits,
        },
        notes=notes,
    )


def stored_comparison(ws: Workspace) -> pd.DataFrame | None:
    """The comparison table of the last ``alphaloom evaluate forecasters`` in this workspace, if any."""
    if not ws.store_path.exists():
        return None
    with ws.open_store() as store:
        return store.read_frame(COMPARISON_TABLE) if store.has_frame(COMPARISON_TABLE) else None


_FORMATS = {"n": "{:d}", "fit_s": "{:.1f}", "p_logloss": "{:.3g}", "p_sqerr": "{:.3g}"}


def comparison_table(table: pd.DataFrame, title: str | None = None) -> Table:
    """The comparison as a rich table (NaN shown as a dash)."""
    out = Table(title=title or "Forecasters out of sample (purged walk-forward; DM vs the first row)")
    for col in table.columns:
        out.add_column(str(col), justify="left" if col == "model" else "right")
    for row in table.itertuples(index=False):
        cells = []
        for col, value in zip(table.columns, row, strict=True):
            if isinstance(value, float | np.floating) and not np.isfinite(value):
                cells.append("-")
            elif isinstance(value, int | np.integer) and col in _FORMATS:
                cells.append(_FORMATS[col].format(int(value)))
            elif isinstance(value, float | np.floating):
                cells.append(_FORMATS.get(str(col), "{:.4f}").format(float(value)))
            else:
                cells.append(str(value))
        out.add_row(*cells)
    return out
