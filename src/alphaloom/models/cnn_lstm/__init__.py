"""CNN+LSTM forecaster: multi-scale convolutions, temporal attention and a bidirectional LSTM.

Fit :class:`CNNLSTMForecaster` on ``{symbol: frame}`` training segments (UTC-indexed feature columns plus
``close`` for labels), then :meth:`~CNNLSTMForecaster.predict` calibrated down/flat/up probabilities, the
forward log return and an embedding at every bar with a full window of finite features.
"""

from alphaloom.models.cnn_lstm.config import CNNLSTMConfig
from alphaloom.models.cnn_lstm.dataset import CLASS_NAMES
from alphaloom.models.cnn_lstm.forecaster import (
    CNNLSTMForecaster,
    EpochRecord,
    ProgressCallback,
    TrainingHistory,
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
    "ProgressCallback",
    "TrainingHistory",
    "make_toy_frames",
]
