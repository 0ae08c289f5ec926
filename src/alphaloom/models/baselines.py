"""Baseline forecasters to hold the CNN+LSTM against: persistence, logistic regression and LightGBM.

Each predicts what :class:`~alphaloom.models.CNNLSTMForecaster` predicts, from the same frames, with the
same labels: the probabilities ``p_down``, ``p_flat``, ``p_up`` of the class of the forward log return
``log(close[t + horizon] / close[t])`` (flat when ``|return| <= flat_threshold``; a threshold of 0 is learned
per fit as the tercile of ``|return|`` on the training rows, the CNN+LSTM's rule) and the return itself,
``pred_return``. They follow the scikit-learn contract: ``__init__`` stores the config, ``fit`` returns
``self``, learned state ends in ``_`` and ``predict`` never refits.

- :class:`PersistenceForecaster`: the last return goes on; its class is the forecast, its value the return.
- :class:`LogisticForecaster`: multinomial logistic regression and a ridge regression on the standardised
  last ``lags`` feature rows.
- :class:`LightGBMForecaster`: gradient-boosted trees (LightGBM) on the same inputs, deterministic for a
  seed.

The base class :class:`BaselineForecaster` owns fitting and predicting (validation, labels, the threshold,
the output frame); a subclass fills four small hooks. A copy-me outline of a new baseline::

    class MyForecaster(BaselineForecaster):
        def _usable_rows(self, values, close):   # (n_rows,) bool: rows the model can forecast from
            ...
        def _inputs(self, values, close, rows):  # (len(rows), n_inputs) float64 model inputs
            ...
        def _fit_inputs(self, x, labels, returns):  # learn from inputs, classes and forward returns
            ...
        def _predict_inputs(self, x):  # -> (proba (n, 3), pred_return (n,))
            ...
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    ModelError,
    NotFittedError,
    TrainingError,
)
from alphaloom.models.cnn_lstm.dataset import (
    CLASS_NAMES,
    class_labels,
    forward_log_return,
    frame_arrays,
    window_end_mask,
)
from alphaloom.models.cnn_lstm.dataset import feature_columns as _feature_columns
from alphaloom.models.cnn_lstm.forecaster import ProgressCallback

__all__ = [
    "BaselineConfig",
    "BaselineForecaster",
    "LightGBMConfig",
    "LightGBMForecaster",
    "LogisticConfig",
    "LogisticForecaster",
    "PersistenceConfig",
    "PersistenceForecaster",
]

_PROBA_COLUMNS = [f"p_{c}" for c in CLASS_NAMES]
_OUTPUT_COLUMNS = [*_PROBA_COLUMNS, "pred_return"]
_N_CLASSES = len(CLASS_NAMES)
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class BaselineConfig(ComponentConfig):
    """Labelling settings every baseline shares with :class:`~alphaloom.models.CNNLSTMConfig`.

    Attributes
    ----------
    horizon
        Bars ahead of the label: the target at bar ``t`` is ``log(close[t + horizon] / close[t])``.
    flat_threshold
        ``|forward log return| <= flat_threshold`` is the flat class; ``0.0`` learns it per fit as the
        tercile of ``|return|`` on the training rows.
    seed
        Seeds any randomness of the fit (LightGBM's row and column sampling); the same seed reproduces the
        same predictions.
    num_threads
        Threads of the numerical libraries (BLAS, OpenMP, LightGBM) while fitting and predicting. 1 is the
        fastest on small shared machines, where idle threads spin against busy cores (a logistic fit was
        measured 25x slower with 2 threads on a loaded 2-core machine), and keeps results reproducible.
    """

    horizon: PositiveInt = 1
    flat_threshold: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    seed: Annotated[int, Field(ge=0)] = 0
    num_threads: PositiveInt = 1


class PersistenceConfig(BaselineConfig):
    """Settings of :class:`PersistenceForecaster` (only the shared labelling settings)."""


class LogisticConfig(BaselineConfig):
    """Settings of :class:`LogisticForecaster`.

    Attributes
    ----------
    lags
        Feature rows per input, ``t - lags + 1 .. t``, flattened (1: the current row only).
    c
        Inverse L2 regularisation strength of the logistic regression (scikit-learn's ``C``).
    ridge_alpha
        L2 penalty of the ridge regression that predicts the return.
    class_weight
        ``"balanced"`` weighs classes inversely to their frequency (as the CNN+LSTM's loss does); ``"none"``
        weighs every row equally.
    max_iter
        Iterations of the Newton-Cholesky solver (it converges in a handful for a few hundred inputs).
    """

    lags: PositiveInt = 1
    c: PositiveFloat = 0.1
    ridge_alpha: PositiveFloat = 1.0
    class_weight: Literal["balanced", "none"] = "balanced"
    max_iter: PositiveInt = 100


class LightGBMConfig(BaselineConfig):
    """Settings of :class:`LightGBMForecaster` (see LightGBM's parameters of the same names).

    Attributes
    ----------
    lags
        Feature rows per input, flattened, as for :class:`LogisticConfig`.
    n_estimators, learning_rate, num_leaves, min_child_samples
        Boosting rounds, shrinkage, leaves per tree and fewest rows per leaf.
    subsample, colsample_bytree
        Share of rows (resampled every round) and of features each tree sees.
    reg_lambda
        L2 penalty on leaf values.
    class_weight
        As for :class:`LogisticConfig`.
    """

    lags: PositiveInt = 1
    n_estimators: PositiveInt = 200
    learning_rate: PositiveFloat = 0.03
    num_leaves: Annotated[int, Field(ge=2)] = 15
    min_child_samples: PositiveInt = 100
    subsample: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    reg_lambda: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 1.0
    class_weight: Literal["balanced", "none"] = "balanced"


@contextlib.contextmanager
def _thread_limit(n_threads: int) -> Iterator[None]:
    # threadpoolctl ships with scikit-learn; without it the libraries keep their own thread counts.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n_threads):
        yield


class BaselineForecaster(ABC):
    """Base of the baselines: validates frames, builds labels and the flat threshold, formats predictions.

    Subclasses take their config as the single constructor argument and fill the hooks ``_usable_rows``,
    ``_inputs``, ``_fit_inputs`` and ``_predict_inputs``; :meth:`fit` and :meth:`predict` call them.

    Attributes
    ----------
    feature_names_ : list of str
        Feature columns, in input order (empty for a model that reads only the close).
    n_features_in_ : int
        ``len(feature_names_)``.
    flat_threshold_ : float
        ``|forward log return| <=`` this is the flat class.
    n_fit_rows_ : int
        Labelled training rows the model was fitted on.
    fit_seconds_ : float
        Wall time of the fit.
    """

    config_class: type[BaselineConfig] = BaselineConfig
    #: Whether the model reads feature columns (False: only ``close``).
    uses_features: bool = True
    #: Whether ``predict`` needs the ``close`` column.
    needs_close: bool = False

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                f"{type(self.config).__name__}."
            )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters, as scikit-learn's ``get_params``."""
        return {"config": self.config}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (only ``config``); learned state is left as is until the next fit."""
        unknown = set(params) - {"config"}
        if unknown:
            raise ConfigError(f"{type(self).__name__} takes only 'config', got {sorted(unknown)}.")
        self.config = params.get("config", self.config)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"

    # ------------------------------------------------------------------------------------------------ fit
    def fit(
        self,
        frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
        *,
        feature_columns: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Fit on one training segment per symbol, as :meth:`CNNLSTMForecaster.fit
        <alphaloom.models.CNNLSTMForecaster.fit>` does.

        Parameters
        ----------
        frames
            ``{symbol: frame}``; each frame is indexed by UTC bar time (strictly increasing) and holds float
            feature columns plus ``close`` (for labels). A single frame is taken as one symbol. A row is
            used when the model's inputs there are finite and the close ``horizon`` bars later is inside the
            same frame.
        feature_columns
            The feature columns; by default every column except ``close`` (and ``ts``).
        progress
            Called once as ``progress(1, 1, {"fit_seconds": s})`` when the fit is done (the CNN+LSTM calls
            it per epoch).

        Returns
        -------
        BaselineForecaster
            ``self``, fitted.

        Raises
        ------
        DataFormatError
            On malformed frames or feature sets that differ between symbols.
        EmptyRangeError
            If no row has finite inputs and a label.
        """
        started = time.perf_counter()
        if isinstance(frames, pd.DataFrame):
            frames = {"frame": frames}
        if not isinstance(frames, Mapping) or not frames:
            raise DataFormatError("fit expects a non-empty {symbol: DataFrame} mapping of training segments.")
        for symbol, frame in frames.items():
            if not isinstance(frame, pd.DataFrame):
                raise DataFormatError(
                    f"frames[{symbol!r}] should be a DataFrame, got {type(frame).__name__}."
                )
        names = self._feature_names(frames, feature_columns)
        h = self.config.horizon
        inputs, returns = [], []
        for symbol, frame in frames.items():
            _, values, close = frame_arrays(frame, names, need_close=True, name=f"frames[{symbol!r}]")
            assert close is not None
            forward = forward_log_return(close, h)
            rows = np.flatnonzero(self._usable_rows(values, close) & np.isfinite(forward))
            inputs.append(self._inputs(values, close, rows))
            returns.append(forward[rows])
        x = np.concatenate(inputs)
        forward_all = np.concatenate(returns)
        if len(forward_all) == 0:
            raise EmptyRangeError(
                f"{type(self).__name__}: no training row has finite inputs and a close {h} bar(s) later in "
                f"the same frame; got {[len(f) for f in frames.values()]} rows per symbol. Pass longer "
                "segments or fewer NaN warm-up rows."
            )
        threshold = self.config.flat_threshold or float(np.quantile(np.abs(forward_all), 1.0 / 3.0))
        self.feature_names_ = list(names)
        self.n_features_in_ = len(names)
        self.flat_threshold_ = threshold
        with _thread_limit(self.config.num_threads):
            self._fit_inputs(x, class_labels(forward_all, threshold), forward_all)
        self.n_fit_rows_ = len(forward_all)
        self.fit_seconds_ = time.perf_counter() - started
        if progress is not None:
            progress(1, 1, {"fit_seconds": self.fit_seconds_})
        return self

    def _feature_names(
        self, frames: Mapping[str, pd.DataFrame], feature_columns: Sequence[str] | None
    ) -> list[str]:
        if not self.uses_features:
            return []
        first = next(iter(frames.values()))
        names = _feature_columns(first, feature_columns)
        if feature_columns is None:
            for symbol, frame in frames.items():
                other = _feature_columns(frame)
                if set(other) != set(names):
                    raise DataFormatError(
                        f"frames[{symbol!r}] has features {sorted(other)} but the first frame has "
                        f"{sorted(names)}; every symbol needs the same feature columns (or pass "
                        "feature_columns=[...])."
                    )
        return names

    # -------------------------------------------------------------------------------------------- predict
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast at every bar where the model's inputs are finite.

        Parameters
        ----------
        frame
            One symbol's frame indexed by UTC ``ts`` with the feature columns (and ``close`` for
            :class:`PersistenceForecaster`); other columns are ignored.

        Returns
        -------
        DataFrame
            Indexed by ``ts``; columns ``p_down``, ``p_flat``, ``p_up`` (summing to 1) and ``pred_return``
            (forward log return over ``horizon`` bars). The row at ``t`` depends on rows up to ``t`` only.
        """
        self._check_fitted()
        index, values, close = frame_arrays(frame, self.feature_names_, need_close=self.needs_close)
        rows = np.flatnonzero(self._usable_rows(values, close))
        if len(rows) == 0:
            return pd.DataFrame(columns=_OUTPUT_COLUMNS, index=index[:0], dtype=np.float64)
        with _thread_limit(self.config.num_threads):
            proba, pred_return = self._predict_inputs(self._inputs(values, close, rows))
        out = np.column_stack([proba, pred_return])
        return pd.DataFrame(out, index=index[rows], columns=_OUTPUT_COLUMNS)

    def predict_proba(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Only the ``p_down``, ``p_flat``, ``p_up`` columns of :meth:`predict`."""
        return self.predict(frame)[_PROBA_COLUMNS]

    def _check_fitted(self) -> None:
        if not hasattr(self, "flat_threshold_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(frames) first.")

    # ---------------------------------------------------------------------------------------------- hooks
    @abstractmethod
    def _usable_rows(self, values: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        """Bars at which a forecast can be made, boolean of shape ``(n_bars,)``."""

    @abstractmethod
    def _inputs(self, values: np.ndarray, close: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        """Model inputs for ``rows``, shape ``(len(rows), n_inputs)``."""

    @abstractmethod
    def _fit_inputs(self, x: np.ndarray, labels: np.ndarray, returns: np.ndarray) -> None:
        """Fit the model on inputs, class labels and forward returns."""

    @abstractmethod
    def _predict_inputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities ``(n, 3)`` and forward returns ``(n,)`` for inputs."""


class PersistenceForecaster(BaselineForecaster):
    """The naive forecast: the last ``horizon``-bar return repeats.

    At bar ``t`` the forecast return is the last one, ``log(close[t] / close[t - horizon])``, and the
    forecast class is that return's class. The class probabilities put ``hit_rate_`` on that class and
    split the rest equally between the other two, where ``hit_rate_`` is the Laplace-smoothed share of
    training rows on which the next class repeated the last, ``(hits + 1) / (n + 3)``, floored at 0.34 so
    that the last class stays the most probable one. Reads only ``close``; features are ignored.

    Attributes
    ----------
    hit_rate_ : float
        Probability given to the last return's class.
    """

    config_class = PersistenceConfig
    uses_features = False
    needs_close = True

    def __init__(self, config: PersistenceConfig | None = None) -> None:
        super().__init__(config)

    def _usable_rows(self, values: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        if close is None:
            raise DataFormatError("PersistenceForecaster reads the 'close' column; the frame has none.")
        h = self.config.horizon
        finite = np.isfinite(close)
        usable = np.zeros(len(close), dtype=bool)
        usable[h:] = finite[h:] & finite[:-h]
        return usable

    def _inputs(self, values: np.ndarray, close: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        assert close is not None
        return np.log(close[rows] / close[rows - self.config.horizon]).reshape(-1, 1)

    def _fit_inputs(self, x: np.ndarray, labels: np.ndarray, returns: np.ndarray) -> None:
        hits = int(np.sum(class_labels(x[:, 0], self.flat_threshold_) == labels))
        self.hit_rate_ = max((hits + 1.0) / (len(labels) + 3.0), 0.34)

    def _predict_inputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = x[:, 0]
        proba = np.full((len(last), _N_CLASSES), (1.0 - self.hit_rate_) / 2.0)
        proba[np.arange(len(last)), class_labels(last, self.flat_threshold_)] = self.hit_rate_
        return proba, last.copy()


class _LaggedFeatures(BaselineForecaster):
    """Inputs: the feature rows ``t - lags + 1 .. t`` flattened, oldest first; rows whose window holds a
    non-finite value are skipped, as the CNN+LSTM skips windows."""

    def _usable_rows(self, values: np.ndarray, close: np.ndarray | None) -> np.ndarray:
        return window_end_mask(values, self.config.lags)  # type: ignore[attr-defined]

    def _inputs(self, values: np.ndarray, close: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        lags = self.config.lags  # type: ignore[attr-defined]
        offsets = np.arange(1 - lags, 1)
        return values[rows[:, None] + offsets].reshape(len(rows), lags * values.shape[1])


def _full_proba(classes: np.ndarray, proba: np.ndarray) -> np.ndarray:
    # A classifier fitted on a sample missing a class returns fewer columns; put them in class order.
    out = np.zeros((len(proba), _N_CLASSES))
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def _check_classes(model: str, labels: np.ndarray) -> None:
    if len(np.unique(labels)) < 2:
        raise TrainingError(
            f"{model}: every training row has the same class ({CLASS_NAMES[int(labels[0])]}); pass more "
            "data or a different flat_threshold."
        )


class LogisticForecaster(_LaggedFeatures):
    """Multinomial logistic regression for the class and ridge regression for the return.

    Both read the last ``lags`` feature rows, standardised with the mean and standard deviation of the
    training inputs.

    Attributes
    ----------
    scaler_mean_, scaler_std_ : ndarray of shape (lags * n_features,)
        Standardisation fitted on the training inputs only.
    classifier_ : sklearn.linear_model.LogisticRegression
    regressor_ : sklearn.linear_model.Ridge
    """

    config_class = LogisticConfig

    def __init__(self, config: LogisticConfig | None = None) -> None:
        super().__init__(config)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.scaler_mean_) / self.scaler_std_

    def _fit_inputs(self, x: np.ndarray, labels: np.ndarray, returns: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression, Ridge

        cfg: LogisticConfig = self.config  # type: ignore[assignment]
        _check_classes("LogisticForecaster", labels)
        self.scaler_mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scaler_std_ = np.where(std > 1e-12, std, 1.0)
        z = self._standardise(x)
        self.classifier_ = LogisticRegression(
            C=cfg.c,
            class_weight=None if cfg.class_weight == "none" else "balanced",
            solver="newton-cholesky",
            max_iter=cfg.max_iter,
        ).fit(z, labels)
        self.regressor_ = Ridge(alpha=cfg.ridge_alpha).fit(z, returns)

    def _predict_inputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self._standardise(x)
        proba = _full_proba(self.classifier_.classes_, self.classifier_.predict_proba(z))
        return proba, self.regressor_.predict(z)


class LightGBMForecaster(_LaggedFeatures):
    """Gradient-boosted trees (LightGBM): a multiclass classifier and a regressor on the last ``lags``
    feature rows.

    The regressor fits the forward return in units of its training root mean square with the Huber loss
    (delta 1), as the CNN+LSTM's regression head does. Training is deterministic (``deterministic=True``,
    ``force_row_wise=True``, ``num_threads`` threads), so a seed reproduces the same trees.

    Attributes
    ----------
    classifier_ : lightgbm.LGBMClassifier
    regressor_ : lightgbm.LGBMRegressor
    ret_scale_ : float
        Root mean square of the training forward returns.
    """

    config_class = LightGBMConfig

    def __init__(self, config: LightGBMConfig | None = None) -> None:
        super().__init__(config)

    def _params(self) -> dict[str, Any]:
        cfg: LightGBMConfig = self.config  # type: ignore[assignment]
        return {
            "n_estimators": cfg.n_estimators,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "subsample": cfg.subsample,
            "subsample_freq": 1 if cfg.subsample < 1.0 else 0,
            "colsample_bytree": cfg.colsample_bytree,
            "reg_lambda": cfg.reg_lambda,
            "random_state": cfg.seed,
            "n_jobs": cfg.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def _fit_inputs(self, x: np.ndarray, labels: np.ndarray, returns: np.ndarray) -> None:
        try:
            import lightgbm
        except ImportError as exc:  # an optional dependency: say how to get it
            raise ModelError(
                "LightGBMForecaster needs the lightgbm package; install it with `pip install lightgbm`."
            ) from exc

        cfg: LightGBMConfig = self.config  # type: ignore[assignment]
        _check_classes("LightGBMForecaster", labels)
        scale = float(np.sqrt(np.mean(returns**2)))
        self.ret_scale_ = scale if scale > 0 and math.isfinite(scale) else 1.0
        self.classifier_ = lightgbm.LGBMClassifier(
            objective="multiclass",
            class_weight=None if cfg.class_weight == "none" else "balanced",
            **self._params(),
        ).fit(x, labels)
        self.regressor_ = lightgbm.LGBMRegressor(objective="huber", alpha=1.0, **self._params()).fit(
            x, returns / self.ret_scale_
        )

    def _predict_inputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = _full_proba(self.classifier_.classes_, self.classifier_.predict_proba(x))
        return proba, self.regressor_.predict(x) * self.ret_scale_
