"""Forecasting models (the only package besides :mod:`alphaloom.rl` that imports torch)."""

from alphaloom.models.cnn_lstm import (
    CNNLSTM,
    CNNLSTMConfig,
    CNNLSTMForecaster,
    CNNLSTMOutput,
    EpochRecord,
    ProgressCallback,
    TrainingHistory,
)

__all__ = [
    "CNNLSTM",
    "CNNLSTMConfig",
    "CNNLSTMForecaster",
    "CNNLSTMOutput",
    "EpochRecord",
    "ProgressCallback",
    "TrainingHistory",
]
