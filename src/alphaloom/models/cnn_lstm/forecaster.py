"""The CNN+LSTM forecaster: fit on per-symbol feature frames, predict calibrated class probabilities.

It follows the scikit-learn contract: ``__init__`` only stores the config, :meth:`CNNLSTMForecaster.fit`
returns ``self``, learned state ends in ``_`` and :meth:`CNNLSTMForecaster.predict` never refits.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from torch import Tensor

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
    class_labels,
    forward_log_return,
    frame_arrays,
    gather_windows,
    split_windows,
    window_end_mask,
)
from alphaloom.models.cnn_lstm.dataset import feature_columns as _feature_columns
from alphaloom.models.cnn_lstm.network import CNNLSTM

__all__ = ["CNNLSTMForecaster", "EpochRecord", "ProgressCallback", "TrainingHistory"]

#: ``progress(epoch, n_epochs, metrics)`` is called after every epoch; ``epoch`` counts from 1.
ProgressCallback = Callable[[int, int, dict[str, float]], None]

_FORMAT = "alphaloom.cnn_lstm"
_FORMAT_VERSION = 1
_DEFAULT_FILE = "cnn_lstm.pt"
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
    ``val_nll_before`` and ``val_nll_after`` are the validation negative log-likelihoods (nats per window)
    before and after temperature scaling.
    """

    epochs: tuple[EpochRecord, ...]
    best_epoch: int
    stopped_early: bool
    n_fit_windows: int
    n_val_windows: int
    val_nll_before: float
    val_nll_after: float
    seconds: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """Rebuild from ``dataclasses.asdict(history)``, as stored by :meth:`CNNLSTMForecaster.save`."""
        return cls(**{**data, "epochs": tuple(EpochRecord(**e) for e in data["epochs"])})


@dataclass
class _Windows:
    # Pooled windows of all symbols: rows of every symbol stacked in ``values``; a window is named by the
    # global row where it ends.
    values: Tensor  # (n_rows, n_features) standardised float32, NaN where the raw feature was not finite
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

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
        *,
        feature_columns: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Train on one training segment per symbol.

        Parameters
        ----------
        frames
            ``{symbol: frame}``; each frame is indexed by UTC bar time ``ts`` (strictly increasing) and holds
            float feature columns plus ``close`` (used for labels only, never as an input). A single frame is
            taken as one symbol. Rows with non-finite features are excluded from windows; windows whose label
            would need a close beyond the frame's end are dropped. The last ``val_fraction`` of each
            symbol's windows is held out for early stopping and calibration, purged from the fit windows
            (see :func:`~alphaloom.models.cnn_lstm.dataset.split_windows`); the scaler and the flat
            threshold are fitted on the fit windows only.
        feature_columns
            The feature columns to use; by default every column except ``close`` (and ``ts``), in the first
            frame's order.
        progress
            Called as ``progress(epoch, n_epochs, metrics)`` after each epoch (``metrics`` holds the
            :class:`EpochRecord` fields), e.g. to drive a progress bar. Nothing is printed.

        Returns
        -------
        CNNLSTMForecaster
            ``self``, fitted.

        Raises
        ------
        DataFormatError
            On malformed frames or feature sets that differ between symbols.
        EmptyRangeError
            If no window with a label can be built.
        TrainingError
            If there are fewer fit windows than ``batch_size``, or the loss becomes non-finite.
        """
        cfg = self.config
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
        segments = [
            (symbol, *frame_arrays(frame, names, need_close=True, name=f"frames[{symbol!r}]"))
            for symbol, frame in frames.items()
        ]

        # Windows are named by the row where they end, in all symbols' rows stacked; the scaler sees only rows
        # up to each symbol's last fit window.
        w, h = cfg.window, cfg.horizon
        fit_ends, val_ends, returns_at, scaler_rows, blocks = [], [], [], [], []
        offset = 0
        for _, _, values, close in segments:
            assert close is not None
            split = split_windows(values, close, window=w, horizon=h, val_fraction=cfg.val_fraction)
            if len(split.fit_ends):
                seen = values[: split.fit_ends[-1] + 1]
                scaler_rows.append(seen[np.isfinite(seen).all(axis=1)])
            fit_ends.append(split.fit_ends + offset)
            val_ends.append(split.val_ends + offset)
            returns_at.append(split.log_return)
            blocks.append(values)
            offset += len(values)
        fit_idx, val_idx = np.concatenate(fit_ends), np.concatenate(val_ends)
        returns = np.concatenate(returns_at)
        if len(fit_idx) == 0:
            raise EmptyRangeError(
                f"no training windows: each needs {w} consecutive bars of finite features and a close "
                f"{h} bar(s) later inside the same frame. Got {[len(v) for v in blocks]} rows per symbol; "
                "pass longer segments, a shorter window, or fewer NaN warm-up rows."
            )
        if len(fit_idx) < cfg.batch_size:
            raise TrainingError(
                f"only {len(fit_idx)} fit windows for batch_size={cfg.batch_size}; pass more data or lower "
                "batch_size (and val_fraction)."
            )

        rows = np.concatenate(scaler_rows)
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        fit_returns = returns[fit_idx]
        threshold = cfg.flat_threshold or float(np.quantile(np.abs(fit_returns), 1.0 / 3.0))
        ret_scale = float(np.sqrt(np.mean(fit_returns**2)))
        ret_scale = ret_scale if ret_scale > 0 else 1.0

        device = _resolve_device(cfg.device)
        standardised = torch.from_numpy(((np.concatenate(blocks) - mean) / std).astype(np.float32)).to(device)
        labels_all = class_labels(returns, threshold)

        def windows(idx: np.ndarray) -> _Windows:
            return _Windows(
                values=standardised,
                ends=torch.from_numpy(idx).to(device),
                labels=torch.from_numpy(labels_all[idx]).to(device),
                targets=torch.from_numpy((returns[idx] / ret_scale).astype(np.float32)).to(device),
            )

        counts = np.bincount(labels_all[fit_idx], minlength=len(CLASS_NAMES))
        class_weight = torch.tensor(
            len(fit_idx) / (len(CLASS_NAMES) * np.maximum(counts, 1)), dtype=torch.float32, device=device
        )

        with _torch_session(cfg, device):
            network, history, temperature = _train(
                cfg, len(names), windows(fit_idx), windows(val_idx), class_weight, device, progress
            )
        history = dataclasses.replace(history, seconds=time.perf_counter() - started)

        self.network_ = network
        self.feature_names_ = list(names)
        self.n_features_in_ = len(names)
        self.scaler_mean_ = mean
        self.scaler_std_ = std
        self.flat_threshold_ = float(threshold)
        self.ret_scale_ = ret_scale
        self.temperature_ = temperature
        self.history_ = history
        return self

    # -------------------------------------------------------------- predict

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast at every bar where a full window of finite features ends.

        Parameters
        ----------
        frame
            One symbol's frame indexed by UTC ``ts`` with at least :attr:`feature_names_` (extra columns,
            ``close`` included, are ignored).

        Returns
        -------
        DataFrame
            Indexed by ``ts``; columns ``p_down``, ``p_flat``, ``p_up`` (calibrated, summing to 1),
            ``pred_return`` (forward log return over ``horizon`` bars) and ``emb_0 .. emb_{k-1}``. The row
            at ``t`` depends on feature rows ``t - window + 1 .. t`` only.
        """
        self._check_fitted()
        index, values, _ = frame_arrays(frame, self.feature_names_, need_close=False)
        ends = np.flatnonzero(window_end_mask(values, self.config.window))
        emb_cols = [f"emb_{i}" for i in range(self.config.embedding_dim)]
        columns = [*_PROBA_COLUMNS, "pred_return", *emb_cols]
        if len(ends) == 0:
            return pd.DataFrame(columns=columns, index=index[:0], dtype=np.float64)
        proba, regression, embedding = self._infer(values, ends)
        out = np.column_stack([proba, regression * self.ret_scale_, embedding])
        return pd.DataFrame(out, index=index[ends], columns=columns)

    def predict_proba(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Only the calibrated ``p_down``, ``p_flat``, ``p_up`` columns of :meth:`predict`."""
        return self.predict(frame)[_PROBA_COLUMNS]

    def evaluate(self, frame: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, float]:
        """Score forecasts against realised forward returns on labelled frames.

        Parameters
        ----------
        frame
            A frame with the features and ``close``, or ``{symbol: frame}`` (scores are pooled).

        Returns
        -------
        dict
            ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present), ``log_loss`` (nats),
            ``ic`` (Pearson) and ``rank_ic`` (Spearman) of ``pred_return`` against the realised forward log
            return, and ``n`` (windows scored). Windows without a realised return are skipped.
        """
        self._check_fitted()
        frames = frame.items() if isinstance(frame, Mapping) else [("frame", frame)]
        parts = []
        for name, f in frames:
            index, _, close = frame_arrays(f, self.feature_names_, need_close=True, name=str(name))
            assert close is not None
            realised = pd.Series(forward_log_return(close, self.config.horizon), index=index)
            pred = self.predict(f)
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
            "temperature": float(self.temperature_),
            "history": asdict(self.history_),
        }
        tmp = target.with_name(target.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(target)  # atomic: a crash never leaves a half-written model behind
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


def _resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={spec!r} but CUDA is not available here; use device='auto' or 'cpu'.")
    return torch.device(spec)


@contextlib.contextmanager
def _torch_session(cfg: CNNLSTMConfig, device: torch.device, *, train: bool = True) -> Iterator[None]:
    # torch's thread count, determinism flag and RNG are process-global: set them for the call and restore
    # them afterwards so fitting a model does not change the caller's torch state.
    # Deterministic mode would also fill every fresh tensor with NaN, which costs the LSTM up to half of a
    # training step on CPU; results do not depend on it, since nothing reads uninitialised memory.
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        torch.set_num_threads(cfg.num_threads)
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


def _losses(
    cfg: CNNLSTMConfig, logits: Tensor, regression: Tensor, data: _Windows, idx: Tensor, weight: Tensor
) -> Tensor:
    ce = F.cross_entropy(logits, data.labels[idx], weight=weight)
    return ce + cfg.regression_weight * F.huber_loss(regression, data.targets[idx], delta=1.0)


def _train(
    cfg: CNNLSTMConfig,
    n_features: int,
    fit: _Windows,
    val: _Windows,
    class_weight: Tensor,
    device: torch.device,
    progress: ProgressCallback | None,
) -> tuple[CNNLSTM, TrainingHistory, float]:
    network = CNNLSTM(cfg, n_features).to(device)
    # The fused AdamW kernel and foreach clipping replace ~20 small tensor ops per parameter per step.
    fused = device.type in ("cpu", "cuda")
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused
    )
    n_fit = len(fit.ends)
    steps_per_epoch = n_fit // cfg.batch_size  # drop the ragged last batch; shuffling rotates who is left out
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=cfg.learning_rate, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    has_val = len(val.ends) > 0
    records: list[EpochRecord] = []
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0

    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        network.train()
        order = torch.randperm(n_fit, generator=generator).to(device)
        total = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            logits, regression, _ = network(gather_windows(fit.values, fit.ends[idx], cfg.window))
            loss = _losses(cfg, logits, regression, fit, idx, class_weight)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite training loss ({loss.item()}) at epoch {epoch}, batch {step + 1}; lower "
                    f"learning_rate (now {cfg.learning_rate}) or check the features for extreme values."
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip, foreach=True)
            optimiser.step()
            scheduler.step()
            total += loss.detach()
        train_loss = total.item() / steps_per_epoch
        seconds = time.perf_counter() - t0

        val_loss = val_acc = math.nan
        if has_val:
            logits, regression = _score(network, val, cfg)
            all_idx = torch.arange(len(val.ends), device=device)
            val_loss = _losses(cfg, logits, regression, val, all_idx, class_weight).item()
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
        records.append(record)
        if progress is not None:
            progress(epoch, cfg.epochs, {k: v for k, v in asdict(record).items() if k != "epoch"})

        if not has_val:
            best_epoch = epoch
            continue
        if val_loss < best_loss:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.early_stopping_patience:
                break

    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()

    temperature, nll_before, nll_after = 1.0, math.nan, math.nan
    if has_val:
        logits, _ = _score(network, val, cfg)
        temperature, nll_before, nll_after = _fit_temperature(logits, val.labels)
    history = TrainingHistory(
        epochs=tuple(records),
        best_epoch=best_epoch,
        stopped_early=len(records) < cfg.epochs,
        n_fit_windows=n_fit,
        n_val_windows=len(val.ends),
        val_nll_before=nll_before,
        val_nll_after=nll_after,
        seconds=0.0,
    )
    return network, history, temperature


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
        "ic": _pearson(pred_return, realised),
        "rank_ic": _pearson(pd.Series(pred_return).rank().to_numpy(), pd.Series(realised).rank().to_numpy()),
        "n": float(len(labels)),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else math.nan
