"""Shared fixtures for the CNN+LSTM tests: one thread, small configs, a toy market and one fitted model."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from alphaloom.models import CNNLSTMConfig, CNNLSTMForecaster
from alphaloom.models.cnn_lstm import make_toy_frames

torch.set_num_threads(1)

# Bars of each toy symbol used for training; later bars are out of sample.
_TRAIN_BARS = 900


@pytest.fixture(scope="session")
def small_config() -> CNNLSTMConfig:
    """A few-second config: short window, mixed odd and even kernels, narrow layers."""
    return CNNLSTMConfig(
        window=12,
        kernel_sizes=(2, 3, 5),
        conv_channels=8,
        attention_heads=2,
        lstm_hidden=12,
        lstm_layers=2,
        embedding_dim=6,
        epochs=3,
        batch_size=64,
        learning_rate=3e-3,
        seed=7,
        device="cpu",
    )


@pytest.fixture(scope="session")
def toy_frames() -> dict[str, pd.DataFrame]:
    return make_toy_frames(n_symbols=2, n_bars=1100, n_features=5, seed=3)


@pytest.fixture(scope="session")
def train_frames(toy_frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {symbol: frame.iloc[:_TRAIN_BARS] for symbol, frame in toy_frames.items()}


@pytest.fixture(scope="session")
def fitted(small_config: CNNLSTMConfig, train_frames: dict[str, pd.DataFrame]) -> CNNLSTMForecaster:
    """One model fitted once per session; tests must not mutate it."""
    return CNNLSTMForecaster(small_config).fit(train_frames)
