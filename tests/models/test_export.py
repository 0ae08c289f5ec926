"""Export round trips of the CNN+LSTM: TorchScript and ONNX equal eager, quantisation stays close.

Tolerances: exported outputs (probabilities, forward return, embedding) equal eager to 1e-5 absolute; the
only differences are float32 rounding of BatchNorm folded into the convolutions (TorchScript freeze) and of
ONNX Runtime's kernels, measured at ~1e-6. Dynamic int8 quantisation of the Linear and LSTM weights moved
probabilities by 3e-4 at most (5e-5 on average) and changed 1 top class in 453 on these windows; it is held
to 1e-2 (1e-3 on average), >= 97% unchanged top classes and an accuracy change of at most 1 point.
Real-feature windows: the shipped BTCUSD sample through the default FeatureEngineer (21 features).
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alphaloom.core.exceptions import ConfigError, DataFormatError, ModelError, NotFittedError
from alphaloom.data.sample import load_sample
from alphaloom.features import FeatureEngineer
from alphaloom.models import CNNLSTM, CNNLSTMConfig, CNNLSTMForecaster
from alphaloom.models.cnn_lstm.dataset import class_labels, forward_log_return, window_end_mask
from alphaloom.models.cnn_lstm.export import (
    BACKENDS,
    INPUT_NAME,
    OUTPUT_NAMES,
    Predictor,
    export_onnx,
    export_torchscript,
    inference_module,
    quantization_report,
    quantize_dynamic,
)

ATOL = 1e-5
_FIT_ROWS = 1400

try:
    import onnxruntime
except ImportError:  # pragma: no cover - the onnx extra is in the dev extra
    onnxruntime = None
needs_onnx = pytest.mark.skipif(
    onnxruntime is None or importlib.util.find_spec("onnxscript") is None,
    reason="the onnx extra is not installed (pip install '.[onnx]')",
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """BTCUSD daily bars as 21 engineered features plus ``close``, NaN warm-up rows included."""
    bars = load_sample("crypto_daily")
    bars = bars[bars["symbol"] == "BTCUSD"]
    with np.errstate(invalid="ignore", divide="ignore"):
        features = FeatureEngineer().fit_transform(bars)
    return features.assign(close=bars["close"].to_numpy())


@pytest.fixture(scope="module")
def config() -> CNNLSTMConfig:
    return CNNLSTMConfig(
        window=12,
        kernel_sizes=(2, 3, 5),
        conv_channels=8,
        attention_heads=2,
        lstm_hidden=12,
        lstm_layers=2,
        embedding_dim=6,
        epochs=2,
        batch_size=64,
        seed=1,
        device="cpu",
    )


@pytest.fixture(scope="module")
def model(config: CNNLSTMConfig, frame: pd.DataFrame) -> CNNLSTMForecaster:
    return CNNLSTMForecaster(config).fit(frame.iloc[:_FIT_ROWS])


@pytest.fixture(scope="module")
def held_out(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[_FIT_ROWS:]


@pytest.fixture(scope="module")
def windows(model: CNNLSTMForecaster, held_out: pd.DataFrame) -> np.ndarray:
    """``(n, window, n_features)`` raw feature windows of the held-out rows."""
    values = held_out[model.feature_names_].to_numpy()
    ends = np.flatnonzero(window_end_mask(values, model.config.window))
    return values[ends[:, None] + np.arange(1 - model.config.window, 1)]


@pytest.fixture(scope="module")
def eager(model: CNNLSTMForecaster, windows: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(Predictor(model, backend="eager").predict_windows(windows))


@pytest.fixture(scope="module")
def ts_path(model: CNNLSTMForecaster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_torchscript(model, tmp_path_factory.mktemp("export") / "cnn_lstm.ts")


@pytest.fixture(scope="module")
def onnx_path(model: CNNLSTMForecaster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("export") / "cnn_lstm.onnx")


def _assert_outputs_equal(actual: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    for name, a, e in zip(OUTPUT_NAMES, actual, expected, strict=True):
        assert a.shape == e.shape, name
        np.testing.assert_allclose(a, e, rtol=0, atol=ATOL, err_msg=name)


# ------------------------------------------------------------------------------------------ round trips


def test_eager_equals_forecaster_predict(model: CNNLSTMForecaster, held_out: pd.DataFrame) -> None:
    expected = model.predict(held_out)
    got = Predictor(model).predict(held_out)
    assert len(expected) > 300
    pd.testing.assert_index_equal(got.index, expected.index)
    assert got.columns.tolist() == expected.columns.tolist()
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", ["torchscript", pytest.param("onnx", marks=needs_onnx)])
def test_exported_file_equals_eager(
    kind: str, request: pytest.FixtureRequest, windows: np.ndarray, eager: tuple[np.ndarray, ...]
) -> None:
    path = request.getfixturevalue("ts_path" if kind == "torchscript" else "onnx_path")
    predictor = Predictor.load(path)
    assert predictor.backend == kind
    _assert_outputs_equal(tuple(predictor.predict_windows(windows)), eager)


@pytest.mark.parametrize("kind", ["torchscript", pytest.param("onnx", marks=needs_onnx)])
@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_without_alphaloom(
    kind: str,
    batch: int,
    request: pytest.FixtureRequest,
    windows: np.ndarray,
    eager: tuple[np.ndarray, ...],
) -> None:
    # The files alone, run by torch.jit / onnxruntime, at batch sizes other than the traced one (2).
    path = request.getfixturevalue("ts_path" if kind == "torchscript" else "onnx_path")
    x = windows[5 : 5 + batch]
    if kind == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
            out = tuple(t.numpy() for t in torch.jit.load(str(path))(torch.from_numpy(x)))
    else:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
        out = tuple(session.run(None, {INPUT_NAME: x}))
    _assert_outputs_equal(out, tuple(e[5 : 5 + batch] for e in eager))


@pytest.mark.parametrize("backend", ["eager", "torchscript", pytest.param("onnx", marks=needs_onnx)])
def test_in_memory_backends_match_forecaster(
    backend: str, model: CNNLSTMForecaster, held_out: pd.DataFrame
) -> None:
    predictor = Predictor(model, backend=backend, batch_size=100)  # several batches
    expected = model.predict(held_out)
    np.testing.assert_allclose(predictor.predict(held_out).to_numpy(), expected.to_numpy(), rtol=0, atol=ATOL)


def test_saved_forecaster_round_trip(
    model: CNNLSTMForecaster, tmp_path: Path, windows: np.ndarray, eager: tuple[np.ndarray, ...]
) -> None:
    model.save(tmp_path)
    for backend in ("eager", "torchscript"):
        predictor = Predictor.load(tmp_path, backend=backend)
        _assert_outputs_equal(tuple(predictor.predict_windows(windows)), eager)
    # Re-exporting the loaded model gives the same file contents' outputs.
    loaded = CNNLSTMForecaster.load(tmp_path, device="cpu")
    again = Predictor.load(export_torchscript(loaded, tmp_path / "again.ts"))
    _assert_outputs_equal(tuple(again.predict_windows(windows)), eager)


def test_bare_network_has_identity_scaling(config: CNNLSTMConfig) -> None:
    network = CNNLSTM(config, 4)
    x = torch.randn(7, config.window, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        logits, regression, embedding = network.eval()(x.float())
    for backend in ("eager", "torchscript"):
        out = Predictor(network, backend=backend).predict_windows(x.numpy())
        np.testing.assert_allclose(out.probabilities, torch.softmax(logits, 1).numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(out.pred_return, regression.numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(out.embedding, embedding.numpy(), rtol=0, atol=ATOL)


def test_rows_do_not_depend_on_the_batch(model: CNNLSTMForecaster, windows: np.ndarray) -> None:
    predictor = Predictor(model, backend="torchscript", batch_size=16)
    whole = predictor.predict_windows(windows[:40])
    one = predictor.predict_windows(windows[23:24])
    np.testing.assert_allclose(one.probabilities[0], whole.probabilities[23], rtol=0, atol=ATOL)


# -------------------------------------------------------------------------------------------- quantised


def test_quantized_stays_close(model: CNNLSTMForecaster, windows: np.ndarray, held_out: pd.DataFrame) -> None:
    values = held_out[model.feature_names_].to_numpy()
    ends = np.flatnonzero(window_end_mask(values, model.config.window))
    labels = class_labels(forward_log_return(held_out["close"].to_numpy(), 1), model.flat_threshold_)[ends]
    keep = ends < len(held_out) - 1  # the last bar has no realised return
    report = quantization_report(model, windows[keep], labels[keep])
    assert report.n == int(keep.sum())
    assert report.max_abs_proba_diff < 1e-2
    assert report.mean_abs_proba_diff < 1e-3
    assert report.agreement >= 0.97
    assert abs(report.accuracy_change) <= 0.01


def test_quantize_dynamic_swaps_linear_and_lstm(model: CNNLSTMForecaster) -> None:
    module = inference_module(model)
    quantized = quantize_dynamic(module)
    dynamic = torch.ao.nn.quantized.dynamic
    kinds = {type(m) for m in quantized.modules()}
    assert {dynamic.Linear, dynamic.LSTM} <= kinds
    assert not kinds & {torch.nn.Linear, torch.nn.LSTM}
    assert type(module.network.lstm.layers[0]) is torch.nn.LSTM  # the original is untouched
    linear_only = {type(m) for m in quantize_dynamic(module, layers=(torch.nn.Linear,)).modules()}
    assert {dynamic.Linear, torch.nn.LSTM} <= linear_only
    with pytest.raises(ConfigError, match="qint8"):
        quantize_dynamic(module, dtype=torch.int32)
    with pytest.raises(ConfigError, match="subset"):
        quantize_dynamic(module, layers=(torch.nn.Conv1d,))


# --------------------------------------------------------------------------------------------- threads


def test_torch_threads_restored(model: CNNLSTMForecaster, windows: np.ndarray) -> None:
    before = torch.get_num_threads()
    Predictor(model, num_threads=before + 1).predict_windows(windows[:3])
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------------------- errors


def test_unfitted_forecaster_is_refused(config: CNNLSTMConfig, tmp_path: Path) -> None:
    unfitted = CNNLSTMForecaster(config)
    for call in (
        lambda: Predictor(unfitted),
        lambda: export_torchscript(unfitted, tmp_path / "m.ts"),
        lambda: export_onnx(unfitted, tmp_path / "m.onnx"),
    ):
        with pytest.raises(NotFittedError, match="fit"):
            call()


def test_missing_onnxruntime_says_how_to_install(
    model: CNNLSTMForecaster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(
        ConfigError, match=r"needs the 'onnxruntime' package.*pip install 'alphaloom\[onnx\]'"
    ):
        Predictor(model, backend="onnx")
    fake = tmp_path / "m.onnx"
    fake.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="onnxruntime"):
        Predictor.load(fake)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ConfigError, match="ONNX export needs the 'onnxscript' package"):
        export_onnx(model, tmp_path / "m.onnx")


@needs_onnx
def test_unreadable_onnx_file(tmp_path: Path) -> None:
    fake = tmp_path / "m.onnx"
    fake.write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelError, match="could not load"):
        Predictor.load(fake)


def test_bad_arguments(model: CNNLSTMForecaster, ts_path: Path, tmp_path: Path, windows: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'onnx'"):
        Predictor(model, backend="onx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_threads"):
        Predictor(model, num_threads=0)
    with pytest.raises(ConfigError, match="serves only backend='torchscript'"):
        Predictor.load(ts_path, backend="onnx")
    with pytest.raises(NotFittedError, match="no model file"):
        Predictor.load(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="is a directory"):
        export_torchscript(model, tmp_path)
    predictor = Predictor.load(ts_path)
    with pytest.raises(DataFormatError, match=r"windows\[None\]"):
        predictor.predict_windows(windows[0])
    with pytest.raises(DataFormatError, match="n_features=21"):
        predictor.predict_windows(windows[:, :, :5])
    bad = windows[:2].copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        predictor.predict_windows(bad)
    with pytest.raises(ConfigError, match="predict_windows"):
        Predictor(model.network_).predict(pd.DataFrame())


def test_backends_listed() -> None:
    assert BACKENDS == ("eager", "torchscript", "quantized", "onnx")
