"""Every registered transformer, one harness: stream == batch, no look-ahead, declared look-back, contract.

Tolerances: streams must give the batch values to ``rtol=1e-9`` (``atol=1e-12`` for values that are
differences of nearly equal numbers, such as a close over its moving average minus 1); look-ahead checks are
exact (bit-for-bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError, NotFittedError
from alphaloom.data.sample import load_sample
from alphaloom.features import (
    TRANSFORMERS,
    FeatureConfig,
    FeatureContext,
    FeatureEngineer,
    FeatureTransformer,
)
from alphaloom.features.base import FeatureInput

from .conftest import make_bars

RTOL, ATOL = 1e-9, 1e-12

#: Small windows so that short series exercise every transformer past its warm-up quickly.
SMALL: dict[str, dict[str, Any]] = {
    "wavelet": {"window": 32, "level": 2},
    "fourier": {"window": 32, "bands": [[2.0, 5.0], [5.0, 16.0]]},
    "fractal": {"katz_window": 16, "higuchi_window": 32, "k_max": 6},
    "hurst": {"window": 64},
    "volume": {"session_vwap": True},
}


def small_transformer(kind: str) -> FeatureTransformer[Any]:
    cls = TRANSFORMERS[kind]
    return cls(cls.config_class.from_dict(SMALL.get(kind, {})))


def context_for(kind: str, bars: pd.DataFrame) -> FeatureContext:
    """Side data for the transformers that need it, built from real data."""
    if kind == "cross_asset":
        panel = load_sample("us_equities_daily")
        reference = panel[panel["symbol"] == "SPY"]
        return FeatureContext(reference=reference)
    return FeatureContext()


def engineer_inputs(transformer: FeatureTransformer[Any], bars: pd.DataFrame) -> FeatureInput:
    engineer = FeatureEngineer.from_transformers([transformer])
    return engineer.inputs(bars, context_for(transformer.kind, bars))


KINDS = list(TRANSFORMERS)


@pytest.fixture(scope="module")
def real_bars() -> dict[str, pd.DataFrame]:
    stocks = load_sample("us_equities_daily")
    fx = load_sample("fx_daily")
    crypto = load_sample("crypto_daily")
    pick = {
        "AAPL": stocks[stocks["symbol"] == "AAPL"].tail(700),
        "EURUSD": fx[fx["symbol"] == "EURUSD"].tail(700),
        "BTCUSD": crypto[crypto["symbol"] == crypto["symbol"].iloc[0]].tail(700),
    }
    return {k: v.reset_index(drop=True) for k, v in pick.items()}


def run_stream(transformer: FeatureTransformer[Any], data: FeatureInput) -> np.ndarray:
    stream = transformer.stream()
    return np.vstack([stream.update(data.row(t)) for t in range(data.n_bars)])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("symbol", ["AAPL", "EURUSD", "BTCUSD"])
def test_stream_equals_batch_on_real_bars(kind: str, symbol: str, real_bars: dict[str, pd.DataFrame]) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(transformer, real_bars[symbol])
    batch = transformer.fit(data).transform(data)
    streamed = run_stream(transformer, data)
    assert streamed.shape == batch.shape
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    np.testing.assert_allclose(streamed, batch, rtol=RTOL, atol=ATOL)
    # Past the warm-up the real series give defined values almost everywhere.
    assert np.isfinite(batch[transformer.lookback :]).mean() > 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_warm_up_rows_are_nan_and_later_rows_defined(kind: str, real_bars: dict[str, pd.DataFrame]) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(transformer, real_bars["AAPL"])
    values = transformer.fit(data).transform(data)
    assert values.dtype == np.float64
    assert values.shape == (data.n_bars, len(transformer.feature_names_))
    for j, (name, warm) in enumerate(transformer.warmups.items()):
        assert np.isnan(values[:warm, j]).all(), name
        assert np.isfinite(values[warm, j]), f"{name} undefined at its declared first row {warm}"
    assert transformer.lookback == max(transformer.warmups.values())
    names = transformer.get_feature_names_out()
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("kind", [k for k in KINDS if TRANSFORMERS[k].finite_memory])
def test_finite_memory_rows_depend_only_on_the_declared_look_back(
    kind: str, real_bars: dict[str, pd.DataFrame]
) -> None:
    transformer = small_transformer(kind)
    bars = real_bars["AAPL"]
    full = transformer.fit(engineer_inputs(transformer, bars)).transform(engineer_inputs(transformer, bars))
    lb = transformer.lookback
    for t in (lb + 5, 400, len(bars) - 1):
        window = bars.iloc[t - lb : t + 1].reset_index(drop=True)
        data = engineer_inputs(transformer, window)
        np.testing.assert_allclose(transformer.transform(data)[-1], full[t], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 159), scale=st.floats(0.5, 2.0))
def test_changing_bars_after_t_never_changes_features_up_to_t(
    kind: str, seed: int, cut: int, scale: float
) -> None:
    transformer = small_transformer(kind)
    bars = make_bars(seed, 160)
    altered = bars.copy()
    after = altered.index > cut
    for col in ("open", "high", "low", "close"):
        altered.loc[after, col] *= scale
    altered.loc[after, "volume"] *= 3.0 - scale
    a = transformer.fit(engineer_inputs(transformer, bars)).transform(engineer_inputs(transformer, bars))
    b = transformer.transform(engineer_inputs(transformer, altered))
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])


@pytest.mark.parametrize("kind", KINDS)
def test_transform_before_fit_and_stream_before_fit_raise(kind: str, real_bars: dict) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(transformer, real_bars["AAPL"])
    with pytest.raises(NotFittedError, match="fit"):
        transformer.transform(data)
    with pytest.raises(NotFittedError, match="fit"):
        transformer.stream()


def test_every_kind_is_configurable_from_the_feature_config() -> None:
    config = FeatureConfig.from_dict({"groups": KINDS, **{k: v for k, v in SMALL.items()}})
    engineer = FeatureEngineer(config)
    names = engineer.get_feature_names_out()
    assert len(names) == len(set(names))
    assert engineer.lookback == max(small_transformer(k).lookback for k in KINDS)


def test_a_transformer_refuses_a_config_of_another_kind() -> None:
    with pytest.raises(ConfigError, match="takes a"):
        TRANSFORMERS["price"](TRANSFORMERS["returns"].config_class())


def test_side_inputs_with_the_wrong_length_are_refused(real_bars: dict) -> None:
    engineer = FeatureEngineer()
    with pytest.raises(DataFormatError, match=r"side input 'x'.*align it"):
        engineer.inputs(real_bars["AAPL"], FeatureContext(extras={"x": np.zeros(3)}))
