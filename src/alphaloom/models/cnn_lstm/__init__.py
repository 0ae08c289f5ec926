"""CNN+LSTM forecaster: multi-scale convolutions, temporal attention and a bidirectional LSTM.

Fit :class:`CNNLSTMForecaster` on ``{symbol: frame}`` training segments (UTC-indexed feature columns plus
``close`` for labels), then :meth:`~CNNLSTMForecaster.predict` calibrated down/flat/up probabilities, the
forward log return and an embedding at every bar with a full window of finite features. For walk-forward
folds, ``fit(frames, rows=...)`` trains only on a fold's training rows and ``predict(frame, rows=...)``
forecasts its test rows; :func:`build_training_set` shows exactly which windows and labels a fit reads.
:mod:`~alphaloom.models.cnn_lstm.export` exports to TorchScript and ONNX, quantises to int8 and serves
batched inference through :class:`Predictor`.
"""

from alphaloom.models.cnn_lstm.config import CNNLSTMConfig
from alphaloom.models.cnn_lstm.dataset import CLASS_NAMES, TrainingSet, as_frames, build_training_set
from alphaloom.models.cnn_lstm.export import (
    Predictor,
    export_onnx,
    export_torchscript,
    quantization_report,
    quantize_dynamic,
)
from alphaloom.models.cnn_lstm.forecaster import (
    CNNLSTMForecaster,
    EpochRecord,
    ProgressCallback,
    TrainingHistory,
    expected_calibration_error,
)
from alphaloom.models.cnn_lstm.network import CNNLSTM, CNNLSTMOutput
from alphaloom.models.cnn_lstm.toy import make_toy_frames

__all__ = [
    "CLASS_NAMES",
    "CNNLSTM",
    "CNNLSTMConfig",
    "CNNLSTMForecaster",
    "CNNLSTMOutput",
    "EpochRecord",
    "Predictor",
    "ProgressCallback",
    "TrainingHistory",
    "TrainingSet",
    "as_frames",
    "build_training_set",
    "expected_calibration_error",
    "export_onnx",
    "export_torchscript",
    "make_toy_frames",
    "quantization_report",
    "quantize_dynamic",
]
