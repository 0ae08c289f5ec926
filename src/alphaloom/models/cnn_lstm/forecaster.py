"""The CNN+LSTM forecaster: fit on per-symbol feature frames, predict calibrated class probabilities.

It follows the scikit-learn contract: ``__init__`` only stores the config, :meth:`CNNLSTMForecaster.fit`
returns ``self``, learned state ends in ``_`` and :meth:`CNNLSTMForecaster.predict` never refits.

Training, in one place (:func:`_train`): AdamW with a one-cycle learning-rate schedule and gradient-norm
clipping; a class-weighted cross-entropy plus a Huber loss on the standardised forward return, combined with
fixed or learned (uncertainty) weights; early stopping on the validation windows, keeping the best epoch;
temperature scaling of the logits on the same windows; float16 autocast with a gradient scaler on CUDA,
float32 on the CPU; and, with ``checkpoint_dir``, a checkpoint after every epoch that a later ``fit`` of the
same config and data resumes bit for bit.

Walk-forward evaluation drives it fold by fold: ``fit(frames, rows={symbol: fold.train_idx})`` trains only
on windows whose inputs and labels lie inside the fold's training rows, and ``predict(frame,
rows=fold.test_idx)`` forecasts at the test rows, reading the ``lookback`` rows before them as inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    ModelError,
    NotFittedError,
    TrainingError,
)
from alphaloom.models.cnn_lstm.config import CNNLSTMConfig
from alphaloom.models.cnn_lstm.dataset import (
    CLASS_NAMES,
    Rows,
    TrainingSet,
    as_frames,
    build_training_set,
    class_labels,
    forward_log_return,
    frame_arrays,
    gather_windows,
    row_mask,
    rows_per_symbol,
    window_end_mask,
)
from alphaloom.models.cnn_lstm.network import CNNLSTM

__all__ = [
    "CNNLSTMForecaster",
    "EpochRecord",
    "ProgressCallback",
    "TrainingHistory",
    "expected_calibration_error",
]

#: ``progress(epoch, n_epochs, metrics)`` is called after every epoch; ``epoch`` counts from 1.
ProgressCallback = Callable[[int, int, dict[str, float]], None]

_FORMAT = "alphaloom.cnn_lstm"
# 2: residual skips between LSTM layers (same weights, different outputs) and the class and task weights.
_FORMAT_VERSION = 2
_DEFAULT_FILE = "cnn_lstm.pt"
_CHECKPOINT_FORMAT = "alphaloom.cnn_lstm.checkpoint"
_CHECKPOINT_VERSION = 1
_CHECKPOINT_FILE = "checkpoint.pt"
_INFERENCE_BATCH = 2048
_PROBA_COLUMNS = [f"p_{c}" for c in CLASS_NAMES]


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one training epoch; validation values are NaN when there is no validation set."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    samples_per_s: float


@dataclass(frozen=True)
class TrainingHistory:
    """What happened during :meth:`CNNLSTMForecaster.fit`.

    ``best_epoch`` is the epoch whose weights were kept (the last one without a validation set);
    ``val_nll_before`` / ``val_nll_after`` (nats per window) and ``val_ece_before`` / ``val_ece_after``
    (expected calibration error) are measured on the validation windows before and after temperature
    scaling. ``device`` is where training ran and ``mixed_precision`` whether it used float16 autocast;
    ``resumed_from_epoch`` is the last epoch read from a checkpoint (0 for a fresh run). ``seconds`` counts
    this call only.
    """

    epochs: tuple[EpochRecord, ...]
    best_epoch: int
    stopped_early: bool
    n_fit_windows: int
    n_val_windows: int
    val_nll_before: float
    val_nll_after: float
    seconds: float
    val_ece_before: float = math.nan
    val_ece_after: float = math.nan
    device: str = "cpu"
    mixed_precision: bool = False
    resumed_from_epoch: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """Rebuild from ``dataclasses.asdict(history)``, as stored by :meth:`CNNLSTMForecaster.save`."""
        return cls(**{**data, "epochs": tuple(EpochRecord(**e) for e in data["epochs"])})


@dataclass
class _Windows:
    # Windows on the training device: `values` holds every symbol's stacked rows and a window is named by the
    # stacked row where it ends.
    values: Tensor  # (n_rows, n_features) standardised float32
    ends: Tensor  # (n,) int64
    labels: Tensor  # (n,) int64
    targets: Tensor  # (n,) float32, forward log return / ret_scale_


class CNNLSTMForecaster:
    """Forecast the direction and size of the forward log return from a window of feature bars.

    Parameters
    ----------
    config
        Architecture, labelling and training settings.

    Attributes
    ----------
    network_ : CNNLSTM
        The trained network (in eval mode).
    feature_names_ : list of str
        Feature columns, in model input order.
    n_features_in_ : int
        ``len(feature_names_)``.
    scaler_mean_, scaler_std_ : ndarray of shape (n_features,)
        Standardisation fitted on the fit part of the training data only.
    flat_threshold_ : float
        ``|forward log return| <=`` this is the flat class.
    ret_scale_ : float
        Root mean square of the fit part's forward log returns; the regression head predicts returns in these
        units.
    class_weight_ : ndarray of shape (3,)
        Weights of down, flat and up in the cross-entropy (see ``config.class_weight``).
    loss_weights_ : tuple of float
        Weights of the classification and the regression loss at the end of training: ``(1,
        regression_weight)`` when fixed, ``(exp(-s_c), exp(-s_r) / 2)`` when learned.
    temperature_ : float
        Divides the logits before the softmax so the probabilities are calibrated on validation data.
    history_ : TrainingHistory
        Per-epoch metrics, the kept epoch and calibration figures.

    Examples
    --------
    >>> from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster
    >>> from alphaloom.models.cnn_lstm import make_toy_frames
    >>> frames = make_toy_frames(n_symbols=2, n_bars=600)
    >>> model = CNNLSTMForecaster(CNNLSTMConfig.quick(batch_size=64)).fit(frames)
    >>> model.predict(frames["TOY0"]).columns[:4].tolist()
    ['p_down', 'p_flat', 'p_up', 'pred_return']
    """

    def __init__(self, config: CNNLSTMConfig | None = None) -> None:
        self.config = config if config is not None else CNNLSTMConfig()

    # scikit-learn style parameter access, so the estimator can be cloned and tuned.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters, as scikit-learn's ``get_params``."""
        return {"config": self.config}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (only ``config``); learned state is left as is until the next fit."""
        unknown = set(params) - {"config"}
        if unknown:
            raise ConfigError(f"CNNLSTMForecaster takes only 'config', got {sorted(unknown)}.")
        self.config = params.get("config", self.config)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"

    @property
    def lookback(self) -> int:
        """Rows of history before a row that its forecast reads: ``window - 1``."""
        return self.config.window - 1

    @property
    def label_horizon(self) -> int:
        """Rows after a row that its label reads: ``horizon`` (purge at least this many before a test)."""
        return self.config.horizon

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
        *,
        feature_columns: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        rows: Mapping[str, Rows] | Rows | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Train on one training segment per symbol.

        Parameters
        ----------
        frames
            ``{symbol: frame}``; each frame is indexed by UTC bar time ``ts`` (strictly increasing; or has a
            ``ts`` column) and holds float feature columns plus ``close`` (for labels only, never an input).
            A long panel frame with a ``symbol`` column is split by symbol; any other single frame is one
            symbol. Rows with non-finite features are excluded from windows; windows whose label would need
            a close beyond the frame's end are dropped. The last ``val_fraction`` of each symbol's windows is
            held out for early stopping and calibration, purged from the fit windows (see
            :func:`~alphaloom.models.cnn_lstm.dataset.split_windows`); the scaler and the flat threshold are
            fitted on the fit windows only.
        feature_columns
            The feature columns to use; by default every column except ``close`` (and ``ts``, ``symbol``), in
            the first frame's order.
        progress
            Called as ``progress(epoch, n_epochs, metrics)`` after each epoch (``metrics`` holds the
            :class:`EpochRecord` fields), e.g. to drive a progress bar. Nothing is printed.
        rows
            The rows that may be trained on, per symbol (``{symbol: positions or bool mask}``; one array for a
            single symbol), e.g. a walk-forward fold's ``train_idx``. A window is trained on only when its
            inputs and its label (rows ``t - window + 1 .. t + horizon``) all lie in these rows, so purged,
            embargoed and test rows are never read. ``None``: every row.
        checkpoint_dir
            Directory for a checkpoint written after every epoch (network, optimiser, schedule, gradient
            scaler, random generators, early-stopping state). When it already holds one written for the same
            config and training data, training resumes after its last epoch and ends with the same weights
            as an uninterrupted run (bit for bit on the CPU); a finished checkpoint is not retrained. A
            checkpoint of another config or other data is refused; delete it to start over.

        Returns
        -------
        CNNLSTMForecaster
            ``self``, fitted.

        Raises
        ------
        ConfigError
            If ``config.device`` names CUDA on a machine without it.
        DataFormatError
            On malformed frames or rows, or feature sets that differ between symbols.
        EmptyRangeError
            If no window with a label can be built.
        TrainingError
            If there are fewer fit windows than ``batch_size``, the loss becomes non-finite, or the
            checkpoint belongs to another run.
        """
        cfg = self.config
        started = time.perf_counter()
        device = _resolve_device(cfg.device)
        data = build_training_set(frames, cfg, feature_columns=feature_columns, rows=rows)
        class_weight = _class_weights(data.class_counts, cfg.class_weight)
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = Path(checkpoint_dir) / _CHECKPOINT_FILE
            checkpoint.parent.mkdir(parents=True, exist_ok=True)

        with _torch_session(cfg, device):
            result = _train(cfg, data, class_weight, device, progress, checkpoint)
        history = dataclasses.replace(result.history, seconds=time.perf_counter() - started)

        self.network_ = result.network
        self.feature_names_ = list(data.feature_names)
        self.n_features_in_ = len(data.feature_names)
        self.scaler_mean_ = data.scaler_mean
        self.scaler_std_ = data.scaler_std
        self.flat_threshold_ = data.flat_threshold
        self.ret_scale_ = data.ret_scale
        self.class_weight_ = class_weight
        self.loss_weights_ = result.loss_weights
        self.temperature_ = result.temperature
        self.history_ = history
        return self

    # -------------------------------------------------------------- predict

    def predict(self, frame: pd.DataFrame, *, rows: Rows | None = None) -> pd.DataFrame:
        """Forecast at every bar where a full window of finite features ends.

        Parameters
        ----------
        frame
            One symbol's frame indexed by UTC ``ts`` (or with a ``ts`` column) with at least
            :attr:`feature_names_` (extra columns, ``close`` included, are ignored).
        rows
            Positions (or a boolean mask) of the rows to forecast at, e.g. a walk-forward fold's ``test_idx``;
            their windows still read the :attr:`lookback` rows before them. ``None``: every row.

        Returns
        -------
        DataFrame
            Indexed by ``ts``; columns ``p_down``, ``p_flat``, ``p_up`` (calibrated, summing to 1),
            ``pred_return`` (forward log return over ``horizon`` bars) and ``emb_0 .. emb_{k-1}`` (the
            network's penultimate layer, for the RL observation). The row at ``t`` depends on feature rows
            ``t - window + 1 .. t`` only; rows without a full window of finite features are left out.
        """
        self._check_fitted()
        frame = self._one_symbol(frame)
        index, values, _ = frame_arrays(frame, self.feature_names_, need_close=False)
        mask = window_end_mask(values, self.config.window) & row_mask(len(values), rows)
        ends = np.flatnonzero(mask)
        emb_cols = [f"emb_{i}" for i in range(self.config.embedding_dim)]
        columns = [*_PROBA_COLUMNS, "pred_return", *emb_cols]
        if len(ends) == 0:
            return pd.DataFrame(columns=columns, index=index[:0], dtype=np.float64)
        proba, regression, embedding = self._infer(values, ends)
        out = np.column_stack([proba, regression * self.ret_scale_, embedding])
        return pd.DataFrame(out, index=index[ends], columns=columns)

    def predict_proba(self, frame: pd.DataFrame, *, rows: Rows | None = None) -> pd.DataFrame:
        """Only the calibrated ``p_down``, ``p_flat``, ``p_up`` columns of :meth:`predict`."""
        return self.predict(frame, rows=rows)[_PROBA_COLUMNS]

    def evaluate(
        self,
        frame: pd.DataFrame | Mapping[str, pd.DataFrame],
        *,
        rows: Mapping[str, Rows] | Rows | None = None,
    ) -> dict[str, float]:
        """Score forecasts against realised forward returns on labelled frames.

        Parameters
        ----------
        frame
            A frame with the features and ``close``, ``{symbol: frame}`` or a long panel frame with a
            ``symbol`` column (scores are pooled over symbols).
        rows
            The rows to score per symbol (as in :meth:`fit`), e.g. a fold's ``test_idx``; ``None``: all.

        Returns
        -------
        dict
            ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present), ``log_loss`` (nats),
            ``ece`` (top-label expected calibration error, 15 equal-width bins, see
            :func:`expected_calibration_error`), ``ic`` (Pearson) and ``rank_ic`` (Spearman) of
            ``pred_return`` against the realised forward log return, and ``n`` (windows scored). Windows
            whose realised return needs a close past the frame's end are skipped.
        """
        self._check_fitted()
        frames = as_frames(frame, name="frame")
        selected = rows_per_symbol(rows, list(frames))
        parts = []
        for name, f in frames.items():
            index, _, close = frame_arrays(f, self.feature_names_, need_close=True, name=str(name))
            assert close is not None
            realised = pd.Series(forward_log_return(close, self.config.horizon), index=index)
            pred = self.predict(f, rows=selected[name])
            parts.append(pred.assign(realised=realised.reindex(pred.index).to_numpy()))
        scored = pd.concat(parts).dropna(subset=["realised"])
        if scored.empty:
            raise EmptyRangeError(
                "nothing to evaluate: no window has a realised forward return inside the frame(s); pass "
                f"frames longer than window + horizon = {self.config.window + self.config.horizon} bars."
            )
        return _classification_metrics(
            scored[_PROBA_COLUMNS].to_numpy(),
            class_labels(scored["realised"].to_numpy(), self.flat_threshold_),
            scored["pred_return"].to_numpy(),
            scored["realised"].to_numpy(),
        )

    # ------------------------------------------------------------ save/load

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to one file and return its path.

        ``path`` is a file (conventionally ``.pt``) or an existing directory, which receives ``cnn_lstm.pt``.
        The file holds only tensors and plain Python values, so :meth:`load` reads it with
        ``torch.load(weights_only=True)``.
        """
        self._check_fitted()
        target = Path(path)
        if target.is_dir():
            target = target / _DEFAULT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "feature_names": list(self.feature_names_),
            "state_dict": {k: v.detach().cpu() for k, v in self.network_.state_dict().items()},
            "scaler_mean": torch.from_numpy(np.asarray(self.scaler_mean_, dtype=np.float64)),
            "scaler_std": torch.from_numpy(np.asarray(self.scaler_std_, dtype=np.float64)),
            "flat_threshold": float(self.flat_threshold_),
            "ret_scale": float(self.ret_scale_),
            "class_weight": [float(w) for w in self.class_weight_],
            "loss_weights": [float(w) for w in self.loss_weights_],
            "temperature": float(self.temperature_),
            "history": asdict(self.history_),
        }
        _atomic_save(payload, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | None = None) -> CNNLSTMForecaster:
        """Read a model written by :meth:`save` (a file, or a directory holding ``cnn_lstm.pt``).

        ``device`` (``"cpu"``, ``"cuda"``, ...) places the network for inference; by default the saved
        config's ``device`` decides, so a model trained on a GPU loads on the CPU with ``device="cpu"``.
        """
        source = Path(path)
        if source.is_dir():
            source = source / _DEFAULT_FILE
        if not source.is_file():
            raise NotFittedError(f"no saved CNN+LSTM model at {source}; train one and call save() first.")
        try:
            payload = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle, zip and runtime errors alike
            raise ModelError(f"{source} is not a readable alphaloom CNN+LSTM model file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ModelError(f"{source} is not an alphaloom CNN+LSTM model file (format {_FORMAT!r}).")
        if payload.get("version") != _FORMAT_VERSION:
            raise ModelError(
                f"{source} has model format version {payload.get('version')}, this alphaloom reads "
                f"{_FORMAT_VERSION}; retrain the model or load it with the alphaloom version that wrote it."
            )
        config = CNNLSTMConfig.from_dict(payload["config"], source=str(source))
        model = cls(config)
        try:
            names = [str(n) for n in payload["feature_names"]]
            network = CNNLSTM(config, len(names))
            network.load_state_dict(payload["state_dict"])
            model.network_ = network.to(_resolve_device(device or config.device)).eval()
            model.feature_names_ = names
            model.n_features_in_ = len(names)
            model.scaler_mean_ = payload["scaler_mean"].numpy()
            model.scaler_std_ = payload["scaler_std"].numpy()
            model.flat_threshold_ = float(payload["flat_threshold"])
            model.ret_scale_ = float(payload["ret_scale"])
            model.class_weight_ = np.asarray(payload["class_weight"], dtype=np.float64)
            model.loss_weights_ = tuple(float(w) for w in payload["loss_weights"])
            model.temperature_ = float(payload["temperature"])
            model.history_ = TrainingHistory.from_dict(payload["history"])
        except (KeyError, TypeError, RuntimeError) as exc:  # a missing entry or weights of another shape
            raise ModelError(
                f"{source} is an incomplete or inconsistent CNN+LSTM model file: {exc!r}"
            ) from exc
        return model

    # -------------------------------------------------------------- helpers

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(frames) or load(path) first."
            )

    @staticmethod
    def _one_symbol(frame: pd.DataFrame) -> pd.DataFrame:
        frames = as_frames(frame, name="frame")
        if len(frames) > 1:
            raise DataFormatError(
                f"predict takes one symbol's frame, but this panel holds {len(frames)} symbols "
                f"({list(frames)[:5]}); predict each symbol's rows separately, e.g. "
                "{s: model.predict(f) for s, f in as_frames(panel).items()}."
            )
        return next(iter(frames.values()))

    def _infer(self, values: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        network = self.network_
        device = next(network.parameters()).device
        standardised = ((values - self.scaler_mean_) / self.scaler_std_).astype(np.float32)
        x_all = torch.from_numpy(standardised).to(device)
        ends_t = torch.from_numpy(ends).to(device)
        probas, regressions, embeddings = [], [], []
        with _torch_session(self.config, device, train=False):
            network.eval()
            for start in range(0, len(ends), _INFERENCE_BATCH):
                batch = gather_windows(x_all, ends_t[start : start + _INFERENCE_BATCH], self.config.window)
                logits, regression, embedding = network(batch)
                probas.append(torch.softmax(logits.double() / self.temperature_, dim=1).cpu())
                regressions.append(regression.double().cpu())
                embeddings.append(embedding.double().cpu())
        return (
            torch.cat(probas).numpy(),
            torch.cat(regressions).numpy(),
            torch.cat(embeddings).numpy(),
        )


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error of class probabilities (Guo et al., 2017).

    Windows are binned by their highest probability into ``n_bins`` equal-width bins of ``[0, 1]``; the ECE
    is the window-weighted mean over bins of ``|accuracy - mean highest probability|``. 0 is perfectly
    calibrated.

    Parameters
    ----------
    proba
        ``(n, n_classes)`` probabilities, rows summing to 1.
    labels
        ``(n,)`` true class indices.
    n_bins
        Number of confidence bins.

    Returns
    -------
    float
        In ``[0, 1]``; NaN for ``n == 0``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return math.nan
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(labels))


def _resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device={spec!r} but CUDA is not available on this machine (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda or 'none'}); use device='auto' (CUDA when present, else "
            "CPU) or device='cpu'. Nothing in alphaloom requires a GPU."
        )
    return torch.device(spec)


def _uses_amp(cfg: CNNLSTMConfig, device: torch.device) -> bool:
    return device.type == "cuda" and cfg.mixed_precision


@contextlib.contextmanager
def _torch_session(cfg: CNNLSTMConfig, device: torch.device, *, train: bool = True) -> Iterator[None]:
    # torch's thread count, determinism flags and RNG are process-global: set them for the call and restore
    # them afterwards so fitting a model does not change the caller's torch state.
    # Deterministic mode would also fill every fresh tensor with NaN, which costs the LSTM up to half of a
    # training step on CPU; results do not depend on it, since nothing reads uninitialised memory. On CUDA
    # the cuDNN flags pin the convolution and LSTM kernels instead (torch's global deterministic mode would
    # also demand a CUBLAS_WORKSPACE_CONFIG set before CUDA starts, and warn on every call without it).
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    cuda = device.type == "cuda"
    rng_devices = [device.index or 0] if cuda else []
    try:
        torch.set_num_threads(cfg.num_threads)
        if cuda:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        else:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode(not train):
            if train:
                torch.manual_seed(cfg.seed)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _class_weights(counts: np.ndarray, scheme: str) -> np.ndarray:
    # "balanced" is scikit-learn's n / (k * count): every class carries the same total weight. A class absent
    # from the fit windows gets the largest weight; it never appears in a loss, so its value does not matter.
    if scheme == "none":
        return np.ones(len(counts))
    balanced = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return np.sqrt(balanced) if scheme == "sqrt" else balanced


class _MultiTaskLoss(nn.Module):
    # The training loss of the two heads. "fixed" adds regression_weight * Huber to the class-weighted
    # cross-entropy. "uncertainty" learns one log-variance s per task (Kendall, Gal & Cipolla, 2018):
    # exp(-s_c) * CE + s_c / 2 + exp(-s_r) * Huber / 2 + s_r / 2, so the noisier task is down-weighted while
    # the s / 2 terms keep the weights from collapsing to zero. Validation always uses the fixed form, so
    # early stopping compares epochs on one scale.
    def __init__(self, cfg: CNNLSTMConfig, class_weight: Tensor) -> None:
        super().__init__()
        self.regression_weight = cfg.regression_weight
        self.register_buffer("class_weight", class_weight)
        self.log_vars = nn.Parameter(torch.zeros(2)) if cfg.loss_weighting == "uncertainty" else None

    def parts(
        self, logits: Tensor, regression: Tensor, labels: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor]:
        # Autocast may hand float16 outputs; both losses are computed in float32.
        ce = F.cross_entropy(logits.float(), labels, weight=self.class_weight)
        return ce, F.huber_loss(regression.float(), targets, delta=1.0)

    def forward(self, logits: Tensor, regression: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        ce, huber = self.parts(logits, regression, labels, targets)
        if self.log_vars is None:
            return ce + self.regression_weight * huber
        s_c, s_r = self.log_vars[0], self.log_vars[1]
        return torch.exp(-s_c) * ce + 0.5 * s_c + 0.5 * torch.exp(-s_r) * huber + 0.5 * s_r

    def validation(self, logits: Tensor, regression: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        ce, huber = self.parts(logits, regression, labels, targets)
        return ce + self.regression_weight * huber

    def weights(self) -> tuple[float, float]:
        if self.log_vars is None:
            return 1.0, float(self.regression_weight)
        s = self.log_vars.detach().double().cpu()
        return float(torch.exp(-s[0])), float(0.5 * torch.exp(-s[1]))


@dataclass(frozen=True)
class _TrainResult:
    network: CNNLSTM
    history: TrainingHistory
    temperature: float
    loss_weights: tuple[float, float]


def _on_device(data: TrainingSet, device: torch.device) -> tuple[_Windows, _Windows]:
    values = torch.from_numpy(data.values).to(device)

    def windows(ends: np.ndarray, labels: np.ndarray, targets: np.ndarray) -> _Windows:
        return _Windows(
            values=values,
            ends=torch.from_numpy(ends).to(device),
            labels=torch.from_numpy(labels).to(device),
            targets=torch.from_numpy(targets).to(device),
        )

    return (
        windows(data.fit_ends, data.fit_labels, data.fit_targets),
        windows(data.val_ends, data.val_labels, data.val_targets),
    )


_MIN_ONE_CYCLE_STEPS = 10


def _lr_schedule(
    optimiser: torch.optim.Optimizer, max_lr: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule, or a constant rate for runs too short to have a warm-up phase.

    OneCycleLR divides by the length of its warm-up (``0.25 * total_steps - 1`` steps), which is zero for 4
    steps and meaningless below about 10; tiny fits (a short walk-forward fold) keep ``max_lr`` instead.
    """
    if total_steps >= _MIN_ONE_CYCLE_STEPS:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=max_lr, total_steps=total_steps, pct_start=0.25
        )
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)


def _train(
    cfg: CNNLSTMConfig,
    data: TrainingSet,
    class_weight: np.ndarray,
    device: torch.device,
    progress: ProgressCallback | None,
    checkpoint: Path | None,
) -> _TrainResult:
    fit, val = _on_device(data, device)
    network = CNNLSTM(cfg, len(data.feature_names)).to(device)
    loss_fn = _MultiTaskLoss(cfg, torch.tensor(class_weight, dtype=torch.float32)).to(device)
    groups: list[dict[str, Any]] = [{"params": list(network.parameters())}]
    if loss_fn.log_vars is not None:
        groups.append({"params": [loss_fn.log_vars], "weight_decay": 0.0})
    # The fused AdamW kernel and foreach clipping replace ~20 small tensor ops per parameter per step.
    fused = device.type in ("cpu", "cuda")
    optimiser = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused)
    n_fit = len(fit.ends)
    steps_per_epoch = n_fit // cfg.batch_size  # drop the ragged last batch; shuffling rotates who is left out
    scheduler = _lr_schedule(optimiser, cfg.learning_rate, cfg.epochs * steps_per_epoch)
    amp = _uses_amp(cfg, device)
    # Float16 autocast on CUDA; the scaler keeps small float16 gradients from flushing to zero, and skips a
    # step whose gradients overflowed. Disabled (a pass-through) on the CPU.
    grad_scaler = torch.amp.GradScaler(device.type, enabled=amp)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.float16)) if amp else contextlib.nullcontext
    generator = torch.Generator().manual_seed(cfg.seed)
    has_val = len(val.ends) > 0
    state = _LoopState()
    fingerprint = _fingerprint(cfg, data)
    if checkpoint is not None and checkpoint.is_file():
        state = _restore(
            checkpoint, fingerprint, device, network, loss_fn, optimiser, scheduler, grad_scaler, generator
        )
    resumed_from = state.epoch

    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.finished:
            break
        t0 = time.perf_counter()
        network.train()
        order = torch.randperm(n_fit, generator=generator).to(device)
        total = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            with autocast():
                logits, regression, _ = network(gather_windows(fit.values, fit.ends[idx], cfg.window))
            loss = loss_fn(logits, regression, fit.labels[idx], fit.targets[idx])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite training loss ({loss.item()}) at epoch {epoch}, batch {step + 1}; lower "
                    f"learning_rate (now {cfg.learning_rate}) or check the features for extreme values."
                )
            optimiser.zero_grad(set_to_none=True)
            grad_scaler.scale(loss).backward()
            grad_scaler.unscale_(optimiser)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip, foreach=True)
            grad_scaler.step(optimiser)
            grad_scaler.update()
            scheduler.step()
            total += loss.detach()
        train_loss = total.item() / steps_per_epoch
        seconds = time.perf_counter() - t0

        val_loss = val_acc = math.nan
        if has_val:
            logits, regression = _score(network, val, cfg)
            val_loss = loss_fn.validation(logits, regression, val.labels, val.targets).item()
            val_acc = (logits.argmax(dim=1) == val.labels).double().mean().item()
            if not math.isfinite(val_loss):
                raise TrainingError(f"non-finite validation loss at epoch {epoch}; lower learning_rate.")
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_acc,
            learning_rate=optimiser.param_groups[0]["lr"],
            samples_per_s=steps_per_epoch * cfg.batch_size / seconds,
        )
        state.records.append(record)
        state.epoch = epoch

        if not has_val:
            state.best_epoch = epoch
        elif val_loss < state.best_loss:
            state.best_loss, state.best_epoch, state.stale = val_loss, epoch, 0
            state.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            state.stale += 1
        state.finished = epoch == cfg.epochs or (has_val and state.stale >= cfg.early_stopping_patience)
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint, fingerprint, state, network, loss_fn, optimiser, scheduler, grad_scaler, generator
            )
        if progress is not None:
            progress(epoch, cfg.epochs, {k: v for k, v in asdict(record).items() if k != "epoch"})

    if state.best_state is not None:
        network.load_state_dict(state.best_state)
    network.eval()

    temperature, nll_before, nll_after = 1.0, math.nan, math.nan
    ece_before, ece_after = math.nan, math.nan
    if has_val:
        logits, _ = _score(network, val, cfg)
        temperature, nll_before, nll_after = _fit_temperature(logits, val.labels)
        labels = val.labels.cpu().numpy()
        logits64 = logits.detach().double().cpu()
        ece_before = expected_calibration_error(torch.softmax(logits64, dim=1).numpy(), labels)
        ece_after = expected_calibration_error(torch.softmax(logits64 / temperature, dim=1).numpy(), labels)
    history = TrainingHistory(
        epochs=tuple(state.records),
        best_epoch=state.best_epoch,
        stopped_early=len(state.records) < cfg.epochs,
        n_fit_windows=n_fit,
        n_val_windows=len(val.ends),
        val_nll_before=nll_before,
        val_nll_after=nll_after,
        seconds=0.0,
        val_ece_before=ece_before,
        val_ece_after=ece_after,
        device=str(device),
        mixed_precision=amp,
        resumed_from_epoch=resumed_from,
    )
    return _TrainResult(network, history, temperature, loss_fn.weights())


# ------------------------------------------------------------------------------------------- checkpoints


@dataclass
class _LoopState:
    # What the epoch loop carries from one epoch to the next, besides the modules and the generators.
    epoch: int = 0
    finished: bool = False
    records: list[EpochRecord] = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    stale: int = 0
    best_state: dict[str, Tensor] | None = None


def _fingerprint(cfg: CNNLSTMConfig, data: TrainingSet) -> str:
    # Identifies a run: the config and every input and label training reads. Rows no window reads are NaN in
    # data.values, so data after the training rows does not change it.
    digest = hashlib.blake2b(digest_size=16)
    digest.update(cfg.config_hash().encode())
    digest.update(json.dumps([data.feature_names, data.symbols]).encode())
    for array in (data.values, data.fit_ends, data.val_ends, data.fit_labels, data.val_labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    for array in (data.fit_targets, data.val_targets, data.scaler_mean, data.scaler_std):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _save_checkpoint(
    path: Path,
    fingerprint: str,
    state: _LoopState,
    network: CNNLSTM,
    loss_fn: _MultiTaskLoss,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_scaler: torch.amp.GradScaler,
    generator: torch.Generator,
) -> None:
    device = next(network.parameters()).device
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "epoch": state.epoch,
        "finished": state.finished,
        "records": [asdict(r) for r in state.records],
        "best_loss": state.best_loss,
        "best_epoch": state.best_epoch,
        "stale": state.stale,
        "best_state": state.best_state,
        "network": network.state_dict(),
        "loss": loss_fn.state_dict(),
        "optimiser": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(),
        "grad_scaler": grad_scaler.state_dict(),
        "generator": generator.get_state(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    _atomic_save(payload, path)


def _restore(
    path: Path,
    fingerprint: str,
    device: torch.device,
    network: CNNLSTM,
    loss_fn: _MultiTaskLoss,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_scaler: torch.amp.GradScaler,
    generator: torch.Generator,
) -> _LoopState:
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise TrainingError(
            f"cannot read the checkpoint {path}: {exc}; delete it to train from scratch."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise TrainingError(
            f"{path} is not a CNN+LSTM training checkpoint; delete it or pick another directory."
        )
    if payload.get("version") != _CHECKPOINT_VERSION or payload.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"the checkpoint {path} was written for another config or other training data (or by another "
            "alphaloom version), so resuming from it would not reproduce this run; delete it to train from "
            "scratch, or pass a fresh checkpoint_dir."
        )
    try:
        network.load_state_dict(payload["network"])
        loss_fn.load_state_dict(payload["loss"])
        optimiser.load_state_dict(payload["optimiser"])
        scheduler.load_state_dict(payload["scheduler"])
        grad_scaler.load_state_dict(payload["grad_scaler"])
        generator.set_state(payload["generator"].cpu())
        torch.set_rng_state(payload["cpu_rng"].cpu())
        if device.type == "cuda" and payload["cuda_rng"] is not None:
            torch.cuda.set_rng_state(payload["cuda_rng"].cpu(), device)
        return _LoopState(
            epoch=int(payload["epoch"]),
            finished=bool(payload["finished"]),
            records=[EpochRecord(**r) for r in payload["records"]],
            best_loss=float(payload["best_loss"]),
            best_epoch=int(payload["best_epoch"]),
            stale=int(payload["stale"]),
            best_state=payload["best_state"],
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"the checkpoint {path} is incomplete ({exc!r}); delete it to train from scratch."
        ) from exc


def _atomic_save(payload: dict[str, Any], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(target)  # atomic: a crash never leaves a half-written file behind


# ------------------------------------------------------------------------------------- scoring helpers


def _score(network: CNNLSTM, data: _Windows, cfg: CNNLSTMConfig) -> tuple[Tensor, Tensor]:
    network.eval()
    logits, regressions = [], []
    with torch.no_grad():
        for start in range(0, len(data.ends), _INFERENCE_BATCH):
            out = network(
                gather_windows(data.values, data.ends[start : start + _INFERENCE_BATCH], cfg.window)
            )
            logits.append(out.logits)
            regressions.append(out.regression)
    return torch.cat(logits), torch.cat(regressions)


def _fit_temperature(logits: Tensor, labels: Tensor) -> tuple[float, float, float]:
    # Temperature scaling (Guo et al., 2017): one scalar T > 0 dividing the logits, fitted by LBFGS on the
    # validation NLL. Optimising log T keeps T positive. T = 1 is kept if the fit does not improve the NLL.
    logits, labels = logits.detach().double().cpu(), labels.cpu()
    nll_before = F.cross_entropy(logits, labels).item()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    temperature = float(log_t.detach().exp().clamp(0.05, 20.0))
    nll_after = F.cross_entropy(logits / temperature, labels).item()
    if not math.isfinite(nll_after) or nll_after > nll_before:
        return 1.0, nll_before, nll_before
    return temperature, nll_before, nll_after


def _classification_metrics(
    proba: np.ndarray, labels: np.ndarray, pred_return: np.ndarray, realised: np.ndarray
) -> dict[str, float]:
    predicted = proba.argmax(axis=1)
    recalls = [np.mean(predicted[labels == c] == c) for c in range(proba.shape[1]) if np.any(labels == c)]
    p_true = np.clip(proba[np.arange(len(labels)), labels], 1e-12, 1.0)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(np.mean(recalls)),
        "log_loss": float(-np.mean(np.log(p_true))),
        "ece": expected_calibration_error(proba, labels),
        "ic": _pearson(pred_return, realised),
        "rank_ic": _pearson(pd.Series(pred_return).rank().to_numpy(), pd.Series(realised).rank().to_numpy()),
        "n": float(len(labels)),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else math.nan
