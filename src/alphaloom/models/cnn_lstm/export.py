"""Serve the CNN+LSTM: TorchScript and ONNX export, dynamic int8 quantisation and a batched predictor.

Every backend runs the same :class:`InferenceModule`: the fitted feature scaler, the network and the
temperature folded into one graph, so an exported file is the whole model and needs no alphaloom at serving
time::

    features (batch, window, n_features) float64, raw feature values, time ascending
      -> (features - scaler_mean_) / scaler_std_, cast to float32     (exactly as CNNLSTMForecaster.predict)
      -> CNNLSTM
      -> probabilities  (batch, 3)              softmax(logits / temperature_): p_down, p_flat, p_up
         pred_return    (batch,)                regression * ret_scale_: forward log return over ``horizon``
         embedding      (batch, embedding_dim)

The batch axis is dynamic in both exported formats. Exported files carry a JSON description (window, feature
names, class names, config) under the key ``alphaloom`` (ONNX metadata) or the extra file
``alphaloom.json`` (TorchScript), which :meth:`Predictor.load` reads back.

Backends of :class:`Predictor`:

=============== ================================================================================
``eager``       the PyTorch module as is
``torchscript`` traced and frozen (BatchNorm folded into the convolutions): less Python per call
``quantized``   dynamic int8 weights for ``nn.Linear`` and ``nn.LSTM`` (:func:`quantize_dynamic`)
``onnx``        ONNX Runtime on the exported graph; needs ``pip install 'alphaloom[onnx]'``
=============== ================================================================================

Threads: torch's intra-op thread count is process-wide, so the torch backends set it for the duration of
each call and restore it afterwards; ONNX Runtime gets its own ``intra_op_num_threads``. Do not run ONNX
Runtime and PyTorch work at the same time in one process on a small machine: on 2 cores their thread pools
were measured slowing each other down by up to 100x. Serve one backend per process.

``torch.jit`` and ``torch.ao.quantization`` are deprecated upstream (in favour of ``torch.export`` and
torchao) but still work in the torch versions alphaloom supports; their deprecation warnings are silenced
here, and the round trips are pinned by tests.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple, get_args

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    ModelError,
    NotFittedError,
    did_you_mean,
)
from alphaloom.models.cnn_lstm.config import CNNLSTMConfig
from alphaloom.models.cnn_lstm.dataset import CLASS_NAMES, frame_arrays, window_end_mask
from alphaloom.models.cnn_lstm.forecaster import CNNLSTMForecaster
from alphaloom.models.cnn_lstm.network import CNNLSTM

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "BACKENDS",
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "Backend",
    "InferenceModule",
    "Prediction",
    "Predictor",
    "QuantizationReport",
    "export_onnx",
    "export_torchscript",
    "inference_module",
    "quantization_report",
    "quantize_dynamic",
]

Backend = Literal["eager", "torchscript", "quantized", "onnx"]
#: The inference backends of :class:`Predictor`.
BACKENDS: tuple[str, ...] = get_args(Backend)
#: Output names of the exported graphs, in order.
OUTPUT_NAMES = ("probabilities", "pred_return", "embedding")
#: Input name of the exported ONNX graph.
INPUT_NAME = "features"
#: ONNX opset written by :func:`export_onnx` unless told otherwise (ONNX Runtime >= 1.17 runs it).
DEFAULT_OPSET = 20

_FORMAT = "alphaloom.cnn_lstm.inference"
_FORMAT_VERSION = 1
_META_KEY = "alphaloom"
_META_FILE = "alphaloom.json"
_INSTALL_HINT = "pip install 'alphaloom[onnx]' (or: pip install onnxruntime onnx onnxscript)"
_PROBA_COLUMNS = [f"p_{c}" for c in CLASS_NAMES]

Model = CNNLSTMForecaster | CNNLSTM


class Prediction(NamedTuple):
    """What :meth:`Predictor.predict_windows` returns, one row per window, float32.

    Attributes
    ----------
    probabilities
        ``(n, 3)`` calibrated probabilities of down, flat, up; rows sum to 1.
    pred_return
        ``(n,)`` forecast forward log return over ``horizon`` bars (standardised units for a bare network).
    embedding
        ``(n, embedding_dim)`` penultimate representation, each value in ``(-1, 1)``.
    """

    probabilities: np.ndarray
    pred_return: np.ndarray
    embedding: np.ndarray


class QuantizationReport(NamedTuple):
    """How far dynamic int8 quantisation moves the forecasts on a set of windows (see
    :func:`quantization_report`).

    Attributes
    ----------
    n
        Windows compared.
    max_abs_proba_diff, mean_abs_proba_diff
        Largest and mean absolute change of any class probability.
    max_abs_return_diff
        Largest absolute change of ``pred_return`` (log-return units).
    agreement
        Share of windows whose most likely class is unchanged.
    accuracy_fp32, accuracy_int8
        Classification accuracy against ``labels`` before and after; NaN when no labels were given.
    """

    n: int
    max_abs_proba_diff: float
    mean_abs_proba_diff: float
    max_abs_return_diff: float
    agreement: float
    accuracy_fp32: float
    accuracy_int8: float

    @property
    def accuracy_change(self) -> float:
        """``accuracy_int8 - accuracy_fp32`` (NaN without labels)."""
        return self.accuracy_int8 - self.accuracy_fp32


class InferenceModule(nn.Module):
    """Feature scaler, network and temperature in one module: raw feature windows in, forecasts out.

    Build it with :func:`inference_module`. ``forward`` takes ``(batch, window, n_features)`` float64 raw
    features and returns ``(probabilities, pred_return, embedding)`` as float32 tensors (see the module
    docstring). The network is always in eval mode, so each window's output is independent of the batch.
    """

    def __init__(
        self,
        network: CNNLSTM,
        *,
        scaler_mean: ArrayLike | None = None,
        scaler_std: ArrayLike | None = None,
        temperature: float = 1.0,
        ret_scale: float = 1.0,
    ) -> None:
        super().__init__()
        n = network.n_features
        mean = np.zeros(n) if scaler_mean is None else np.asarray(scaler_mean, dtype=np.float64)
        std = np.ones(n) if scaler_std is None else np.asarray(scaler_std, dtype=np.float64)
        if mean.shape != (n,) or std.shape != (n,):
            raise ConfigError(
                f"scaler_mean and scaler_std need shape ({n},) for a network of {n} features, got "
                f"{mean.shape} and {std.shape}."
            )
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be finite and > 0, got {temperature}.")
        self.network = network.eval()
        self.register_buffer("scaler_mean", torch.from_numpy(mean.copy()))
        self.register_buffer("scaler_std", torch.from_numpy(std.copy()))
        self.temperature = float(temperature)
        self.ret_scale = float(ret_scale)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = ((features - self.scaler_mean) / self.scaler_std).to(torch.float32)
        logits, regression, embedding = self.network(x)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        return probabilities, regression * self.ret_scale, embedding


def inference_module(model: Model) -> InferenceModule:
    """The :class:`InferenceModule` of a fitted forecaster, or of a bare network (identity scaler,
    temperature 1, ``pred_return`` in the network's standardised units).

    The network is copied to the CPU in eval mode; ``model`` is not changed.

    Raises
    ------
    NotFittedError
        If ``model`` is a forecaster that has not been fitted or loaded.
    ConfigError
        If ``model`` is neither a :class:`CNNLSTMForecaster` nor a :class:`CNNLSTM`.
    """
    if isinstance(model, CNNLSTMForecaster):
        if not hasattr(model, "network_"):
            raise NotFittedError(
                "this CNNLSTMForecaster is not fitted yet; call fit(frames) or CNNLSTMForecaster.load(path) "
                "before exporting or serving it."
            )
        return InferenceModule(
            _cpu_copy(model.network_),
            scaler_mean=model.scaler_mean_,
            scaler_std=model.scaler_std_,
            temperature=model.temperature_,
            ret_scale=model.ret_scale_,
        )
    if isinstance(model, CNNLSTM):
        return InferenceModule(_cpu_copy(model))
    raise ConfigError(
        f"expected a fitted CNNLSTMForecaster or a CNNLSTM network, got {type(model).__name__}."
    )


# ------------------------------------------------------------------------------------------------ export


def export_torchscript(model: Model, path: str | os.PathLike[str]) -> Path:
    """Trace, freeze and save the model's :class:`InferenceModule` as TorchScript; return the path.

    The file (conventionally ``.ts``) loads without alphaloom through ``torch.jit.load(path)``; call it with
    a float64 ``(batch, window, n_features)`` tensor of raw features, any batch size. Freezing folds
    BatchNorm into the convolutions, which changes outputs by ~1e-7.

    Raises
    ------
    NotFittedError
        If ``model`` is an unfitted forecaster.
    """
    module = inference_module(model)
    target = _target(path)
    scripted = _trace(module)
    with _quiet():
        _atomic_write(
            target, lambda f: torch.jit.save(scripted, f, _extra_files={_META_FILE: _meta_json(model)})
        )
    return target


def export_onnx(model: Model, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> Path:
    """Export the model's :class:`InferenceModule` to ONNX with a dynamic batch axis; return the path.

    Input ``features`` ``(batch, window, n_features)`` float64 raw features; outputs ``probabilities``,
    ``pred_return`` and ``embedding`` (float32). Uses the ``torch.export``-based exporter, which needs the
    ``onnx`` and ``onnxscript`` packages.

    Parameters
    ----------
    model
        A fitted forecaster or a bare network.
    path
        File to write (conventionally ``.onnx``).
    opset
        ONNX opset version (18 or later).

    Raises
    ------
    ConfigError
        If ``onnx`` or ``onnxscript`` is not installed, or ``opset`` is below 18.
    NotFittedError
        If ``model`` is an unfitted forecaster.
    """
    module = inference_module(model)
    target = _target(path)
    payload = _onnx_bytes(module, _meta_json(model), opset)
    _atomic_write(target, lambda f: f.write(payload))
    return target


def _onnx_bytes(module: InferenceModule, meta: str, opset: int) -> bytes:
    if opset < 18:
        raise ConfigError(f"opset must be >= 18 for the torch.export-based ONNX exporter, got {opset}.")
    for package in ("onnx", "onnxscript"):
        _require(package, "ONNX export")
    net = module.network
    # Batch 2, not 1: torch.export specialises dimensions of size 1 to constants.
    example = torch.zeros(2, net.config.window, net.n_features, dtype=torch.float64)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"features": {0: torch.export.Dim("batch")}},
            opset_version=opset,
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ModelError("torch.onnx.export returned no program; update torch to 2.5 or later.")
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META_KEY, meta
    return proto.SerializeToString()


def _trace(module: InferenceModule) -> torch.jit.ScriptModule:
    net = module.network
    example = torch.zeros(2, net.config.window, net.n_features, dtype=torch.float64)
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
        return torch.jit.freeze(traced.eval())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # The exporters warn about their own internals (deprecation of torch.jit, tracer notes on the shape
    # check and constant head count, LSTM flat weights, absent torchvision ops): nothing a caller can act on.
    # Tests pin the outputs instead.
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        registry_log.setLevel(level)


def _meta_json(model: Model) -> str:
    network = model.network_ if isinstance(model, CNNLSTMForecaster) else model
    names = list(model.feature_names_) if isinstance(model, CNNLSTMForecaster) else None
    return json.dumps(
        {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "window": network.config.window,
            "n_features": network.n_features,
            "feature_names": names,
            "class_names": list(CLASS_NAMES),
            "embedding_dim": network.config.embedding_dim,
            "input": INPUT_NAME,
            "outputs": list(OUTPUT_NAMES),
            "config": network.config.model_dump(mode="json"),
        }
    )


# ------------------------------------------------------------------------------------------ quantisation


def quantize_dynamic(
    module: nn.Module,
    *,
    dtype: torch.dtype = torch.qint8,
    layers: Collection[type[nn.Module]] = (nn.Linear, nn.LSTM),
) -> nn.Module:
    """A copy of ``module`` with dynamically quantised ``nn.Linear`` and ``nn.LSTM`` layers (CPU only).

    Weights are stored as int8; activations are quantised on the fly per call. Convolutions, norms and the
    attention product stay float32. Accepts a :class:`CNNLSTM` or an :class:`InferenceModule`; ``module``
    is not changed. Measure the effect with :func:`quantization_report`.

    Parameters
    ----------
    module
        The float32 module.
    dtype
        ``torch.qint8`` (int8 weights) or ``torch.float16``.
    layers
        Layer types to quantise, a subset of ``(nn.Linear, nn.LSTM)``. PyTorch runs a quantised LSTM as an
        unfused per-time-step cell (~400 small ops per window at the default size) instead of oneDNN's fused
        RNN kernel, so at batch 1 ``layers=(nn.Linear,)`` is about twice as fast as the default.
    """
    if dtype not in (torch.qint8, torch.float16):
        raise ConfigError(f"dtype must be torch.qint8 or torch.float16, got {dtype}.")
    chosen = set(layers)
    if not chosen or not chosen <= {nn.Linear, nn.LSTM}:
        raise ConfigError(f"layers must be a non-empty subset of (nn.Linear, nn.LSTM), got {tuple(layers)}.")
    source = copy.deepcopy(module).cpu().eval()
    with _quiet():
        return torch.ao.quantization.quantize_dynamic(source, chosen, dtype=dtype)


def quantization_report(
    model: Model, windows: ArrayLike, labels: ArrayLike | None = None
) -> QuantizationReport:
    """Compare dynamic int8 quantisation with float32 on ``windows``.

    Parameters
    ----------
    model
        A fitted forecaster or a bare network.
    windows
        ``(n, window, n_features)`` raw feature windows (as :meth:`Predictor.predict_windows` takes).
    labels
        Optional ``(n,)`` true classes (0 down, 1 flat, 2 up), for the accuracy before and after.

    Returns
    -------
    QuantizationReport
    """
    fp32 = Predictor(model, backend="eager").predict_windows(windows)
    int8 = Predictor(model, backend="quantized").predict_windows(windows)
    diff = np.abs(fp32.probabilities.astype(np.float64) - int8.probabilities)
    top_fp32, top_int8 = fp32.probabilities.argmax(axis=1), int8.probabilities.argmax(axis=1)
    acc_fp32 = acc_int8 = math.nan
    if labels is not None:
        truth = np.asarray(labels)
        if truth.shape != top_fp32.shape:
            raise DataFormatError(f"labels need shape {top_fp32.shape}, got {truth.shape}.")
        acc_fp32, acc_int8 = float(np.mean(top_fp32 == truth)), float(np.mean(top_int8 == truth))
    return QuantizationReport(
        n=len(diff),
        max_abs_proba_diff=float(diff.max()),
        mean_abs_proba_diff=float(diff.mean()),
        max_abs_return_diff=float(np.max(np.abs(fp32.pred_return.astype(np.float64) - int8.pred_return))),
        agreement=float(np.mean(top_fp32 == top_int8)),
        accuracy_fp32=acc_fp32,
        accuracy_int8=acc_int8,
    )


# --------------------------------------------------------------------------------------------- predictor


class Predictor:
    """Batched CPU inference of a CNN+LSTM with one of four backends.

    Parameters
    ----------
    model
        A fitted :class:`CNNLSTMForecaster` (raw features in, calibrated forecasts out) or a bare
        :class:`CNNLSTM` (standardised features in, uncalibrated probabilities out). Use :meth:`load` for
        saved forecasters and exported files.
    backend
        ``"eager"``, ``"torchscript"``, ``"quantized"`` or ``"onnx"`` (see the module docstring); the model is
        traced, quantised or exported once, here.
    num_threads
        Intra-op threads: torch's for the torch backends (set for each call, then restored), ONNX Runtime's
        ``intra_op_num_threads`` for ``"onnx"``. 1 gives the lowest latency on small shared machines.
    batch_size
        Largest batch sent through the model at once; longer inputs are split.
    opset
        ONNX opset for the ``"onnx"`` backend.

    Attributes
    ----------
    window, n_features, embedding_dim : int
        Input and output sizes.
    feature_names : list of str or None
        The model's feature columns (None for a bare network), needed by :meth:`predict`.
    config : CNNLSTMConfig
        The model's configuration.

    Examples
    --------
    >>> predictor = Predictor(forecaster, backend="onnx")                      # doctest: +SKIP
    >>> predictor.predict(frame)[["p_down", "p_flat", "p_up"]]                  # doctest: +SKIP
    >>> predictor.predict_windows(windows).probabilities                        # doctest: +SKIP
    """

    def __init__(
        self,
        model: Model,
        *,
        backend: Backend = "eager",
        num_threads: int = 1,
        batch_size: int = 256,
        opset: int = DEFAULT_OPSET,
    ) -> None:
        _check_backend(backend)
        self.num_threads = _positive("num_threads", num_threads)
        self.batch_size = _positive("batch_size", batch_size)
        module = inference_module(model)
        if backend == "onnx":  # fail before the (seconds-long) export, not after it
            _require("onnxruntime", "the 'onnx' backend (ONNX Runtime)")
        self._set_meta(json.loads(_meta_json(model)))
        self.backend: str = backend
        self._torch: Any = None
        self._session: onnxruntime.InferenceSession | None = None
        if backend == "onnx":
            self._session = _ort_session(_onnx_bytes(module, _meta_json(model), opset), self.num_threads)
        elif backend == "torchscript":
            self._torch = _trace(module)
        elif backend == "quantized":
            self._torch = quantize_dynamic(module)
        else:
            self._torch = module

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: Backend | None = None,
        num_threads: int = 1,
        batch_size: int = 256,
    ) -> Predictor:
        """Serve a file: an ONNX or TorchScript export, or a forecaster saved by
        :meth:`CNNLSTMForecaster.save` (a file or its directory).

        ``backend`` defaults to the file's own (``"onnx"``, ``"torchscript"``, or ``"eager"`` for a saved
        forecaster, which can also be served by any other backend). Exported files serve only their own.
        """
        source = Path(path)
        if source.is_dir() or (zipfile.is_zipfile(source) and not _is_torchscript_export(source)):
            return cls(
                CNNLSTMForecaster.load(source, device="cpu"),
                backend=backend or "eager",
                num_threads=num_threads,
                batch_size=batch_size,
            )
        if not source.is_file():
            raise NotFittedError(f"no model file at {source}; export or save a model there first.")
        kind: Backend = "torchscript" if zipfile.is_zipfile(source) else "onnx"
        if backend is not None and backend != kind:
            _check_backend(backend)
            raise ConfigError(
                f"{source} is a {kind} export and serves only backend={kind!r}, not {backend!r}; to use "
                f"another backend, load the saved forecaster (CNNLSTMForecaster.save) instead."
            )
        predictor = cls.__new__(cls)
        predictor.num_threads = _positive("num_threads", num_threads)
        predictor.batch_size = _positive("batch_size", batch_size)
        predictor.backend = kind
        predictor._torch, predictor._session = None, None
        if kind == "torchscript":
            extra = {_META_FILE: ""}
            try:
                with _quiet():
                    predictor._torch = torch.jit.load(str(source), map_location="cpu", _extra_files=extra)
            except RuntimeError as exc:
                raise ModelError(f"{source} is not a readable TorchScript export: {exc}") from exc
            meta_text = extra[_META_FILE]
        else:
            predictor._session = _ort_session(source.read_bytes(), predictor.num_threads, name=str(source))
            meta_text = predictor._session.get_modelmeta().custom_metadata_map.get(_META_KEY, "")
        try:
            meta = json.loads(meta_text)
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ModelError(
                f"{source} is a {kind} file without alphaloom's description; export it with "
                f"alphaloom.models.cnn_lstm.export.export_{kind}()."
            )
        if meta.get("version") != _FORMAT_VERSION:
            raise ModelError(
                f"{source} has export format version {meta.get('version')}, this alphaloom reads "
                f"{_FORMAT_VERSION}; re-export the model with this version."
            )
        predictor._set_meta(meta)
        return predictor

    def _set_meta(self, meta: dict[str, Any]) -> None:
        self.window = int(meta["window"])
        self.n_features = int(meta["n_features"])
        self.embedding_dim = int(meta["embedding_dim"])
        names = meta.get("feature_names")
        self.feature_names: list[str] | None = None if names is None else [str(n) for n in names]
        self.config = CNNLSTMConfig.from_dict(meta["config"], source="export metadata")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(backend={self.backend!r}, window={self.window}, "
            f"n_features={self.n_features}, num_threads={self.num_threads}, batch_size={self.batch_size})"
        )

    def predict_windows(self, windows: ArrayLike) -> Prediction:
        """Forecast from feature windows.

        Parameters
        ----------
        windows
            ``(n, window, n_features)`` raw feature values (standardised ones for a bare network), time
            ascending, all finite. A single window is ``windows[None]``.

        Returns
        -------
        Prediction
            float32 ``probabilities (n, 3)``, ``pred_return (n,)``, ``embedding (n, embedding_dim)``.
        """
        x = np.ascontiguousarray(windows, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != (self.window, self.n_features):
            hint = "; for one window pass windows[None]" if x.shape == (self.window, self.n_features) else ""
            raise DataFormatError(
                f"expected windows of shape (n, window={self.window}, n_features={self.n_features}), got "
                f"{x.shape}{hint}."
            )
        if not np.isfinite(x).all():
            raise DataFormatError(
                "windows contain NaN or inf; forecast only at bars whose whole window is finite "
                "(Predictor.predict skips the others)."
            )
        if len(x) <= self.batch_size:
            return Prediction(*self._run(x))
        parts = [self._run(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return Prediction(*(np.concatenate(p) for p in zip(*parts, strict=True)))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast at every bar of ``frame`` where a full window of finite features ends.

        Same contract and columns as :meth:`CNNLSTMForecaster.predict`: ``p_down``, ``p_flat``, ``p_up``,
        ``pred_return`` and ``emb_*``, indexed by ``ts``, float64. Needs the model's feature names, which a
        bare network does not have (use :meth:`predict_windows` there).
        """
        if self.feature_names is None:
            raise ConfigError(
                "this predictor serves a bare network without feature names; call predict_windows(windows) "
                "or build it from a fitted CNNLSTMForecaster."
            )
        index, values, _ = frame_arrays(frame, self.feature_names, need_close=False)
        ends = np.flatnonzero(window_end_mask(values, self.window))
        columns = [*_PROBA_COLUMNS, "pred_return", *(f"emb_{i}" for i in range(self.embedding_dim))]
        if len(ends) == 0:
            return pd.DataFrame(columns=columns, index=index[:0], dtype=np.float64)
        offsets = np.arange(1 - self.window, 1)
        parts = [
            self._run(values[ends[i : i + self.batch_size, None] + offsets])
            for i in range(0, len(ends), self.batch_size)
        ]
        proba, ret, emb = (np.concatenate(p) for p in zip(*parts, strict=True))
        out = np.column_stack([proba, ret, emb]).astype(np.float64)
        return pd.DataFrame(out, index=index[ends], columns=columns)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._session is not None:
            probabilities, pred_return, embedding = self._session.run(None, {INPUT_NAME: x})
            return probabilities, pred_return, embedding
        previous = torch.get_num_threads()
        if previous != self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                out = self._torch(torch.from_numpy(x))
        finally:
            if previous != self.num_threads:
                torch.set_num_threads(previous)
        return out[0].numpy(), out[1].numpy(), out[2].numpy()


# ----------------------------------------------------------------------------------------------- helpers


def _cpu_copy(network: CNNLSTM) -> CNNLSTM:
    return copy.deepcopy(network).cpu().eval()


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown backend {backend!r}; choose one of {BACKENDS}.{did_you_mean(backend, BACKENDS)}"
        )


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
    return value


def _require(package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(
            f"{purpose} needs the {package!r} package, which is not installed: {_INSTALL_HINT}"
        ) from exc


def _ort_session(
    model: bytes, num_threads: int, name: str = "the exported model"
) -> onnxruntime.InferenceSession:
    ort = _require("onnxruntime", "the 'onnx' backend (ONNX Runtime)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / InvalidGraph / InvalidProtobuf types
        raise ModelError(f"ONNX Runtime could not load {name}: {exc}") from exc


def _is_torchscript_export(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(
            n.endswith(f"/extra/{_META_FILE}") or n.endswith("/code/__torch__.py") for n in archive.namelist()
        )


def _target(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; pass a file path such as {target / 'cnn_lstm.onnx'}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _atomic_write(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    # Write to a sibling and rename, so a crash never leaves a half-written model behind.
    tmp = target.with_name(target.name + ".tmp")
    buffer = io.BytesIO()
    write(buffer)
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(target)
