"""Forecasting models (the only package besides :mod:`alphaloom.rl` that imports torch).

The CNN+LSTM forecaster, the baselines it is held against (persistence, logistic regression, LightGBM; all
with the same ``fit(frames)`` / ``predict(frame)`` interface and labels) and the scores of their forecasts
(:mod:`alphaloom.models.evaluation`).
"""

from alphaloom.models import evaluation
from alphaloom.models.baselines import (
    BaselineConfig,
    BaselineForecaster,
    LightGBMConfig,
    LightGBMForecaster,
    LogisticConfig,
    LogisticForecaster,
    PersistenceConfig,
    PersistenceForecaster,
)
from alphaloom.models.cnn_lstm import (
    CNNLSTM,
    CNNLSTMConfig,
    CNNLSTMForecaster,
    CNNLSTMOutput,
    EpochRecord,
    ProgressCallback,
    TrainingHistory,
)
from alphaloom.models.evaluation import ForecastScores, forecast_scores

__all__ = [
    "CNNLSTM",
    "BaselineConfig",
    "BaselineForecaster",
    "CNNLSTMConfig",
    "CNNLSTMForecaster",
    "CNNLSTMOutput",
    "EpochRecord",
    "ForecastScores",
    "LightGBMConfig",
    "LightGBMForecaster",
    "LogisticConfig",
    "LogisticForecaster",
    "PersistenceConfig",
    "PersistenceForecaster",
    "ProgressCallback",
    "TrainingHistory",
    "evaluation",
    "forecast_scores",
]
