"""Every registered transformer, one harness: stream == batch, no look-ahead, declared look-back, contract.

Tolerances: streams must give the batch values to ``rtol=1e-9`` (``atol=1e-12`` for values that are
differences of nearly equal numbers, such as a close over its moving average minus 1); look-ahead checks are
exact (bit-for-bit). Real data: daily stocks, forex and crypto from the shipped samples; IBM quotes, trades
and the 1-minute bars built from them (shared data directory) for the microstructure transformer; real
headlines and tweets for the sentiment transformer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
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
    sentiment,
)
from alphaloom.features import microstructure as ms
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

REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)
DAILY = ("AAPL", "EURUSD", "BTCUSD")


def small_transformer(kind: str) -> FeatureTransformer[Any]:
    cls = TRANSFORMERS[kind]
    return cls(cls.config_class.from_dict(SMALL.get(kind, {})))


def shared_dir() -> Path:
    if SHARED is None:
        pytest.fail("the shared real-data directory (/work/shared/data or ../shared/data) is missing")
    return SHARED


@lru_cache(maxsize=1)
def daily_bars() -> dict[str, pd.DataFrame]:
    stocks = load_sample("us_equities_daily")
    fx = load_sample("fx_daily")
    crypto = load_sample("crypto_daily")
    pick = {
        "AAPL": stocks[stocks["symbol"] == "AAPL"].tail(700),
        "EURUSD": fx[fx["symbol"] == "EURUSD"].tail(700),
        "BTCUSD": crypto[crypto["symbol"] == "BTCUSD"].tail(700),
    }
    return {k: v.reset_index(drop=True) for k, v in pick.items()}


@lru_cache(maxsize=1)
def ibm_minute_case() -> tuple[pd.DataFrame, FeatureContext]:
    """Real IBM quotes and trades (2013-10-07/08) and the 1-minute bars built from those trades."""
    folder = shared_dir() / "microstructure"
    quotes = ms.lean_equity_quotes(
        pd.read_csv(folder / "lean_ibm_quote_ticks_by_exchange_2013-10-07_08.csv.gz")
    )
    trades = ms.lean_equity_trades(pd.read_csv(folder / "lean_ibm_trade_ticks_2013-10-07_08.csv.gz"))
    t = trades.frame.set_index("ts")
    bars = t["price"].resample("1min").ohlc()
    bars["volume"] = t["size"].resample("1min").sum()
    bars = bars.dropna().reset_index()
    bars.insert(0, "symbol", "IBM")
    return bars, FeatureContext(quotes=quotes.frame, trades=trades.frame)


@lru_cache(maxsize=1)
def aapl_tweets_case() -> tuple[pd.DataFrame, FeatureContext]:
    """Real AAPL daily bars for 2014-2015 and the StockNet tweets about AAPL."""
    tweets = pd.read_csv(shared_dir() / "news" / "stocknet_tweets_88_tickers_2014-2015.csv.gz")
    items = sentiment.prepare_items(tweets[tweets["symbol"] == "AAPL"])
    stocks = load_sample("us_equities_daily")
    aapl = stocks[(stocks["symbol"] == "AAPL") & stocks["ts"].between("2014-01-01", "2016-01-01", "left")]
    return aapl.reset_index(drop=True), FeatureContext(news=items)


def real_cases(kind: str) -> list[str]:
    if kind == "microstructure":
        return ["IBM-1min"]
    if kind == "sentiment":
        return ["AAPL-tweets"]
    return list(DAILY)


def real_case(kind: str, name: str) -> tuple[pd.DataFrame, FeatureContext]:
    if name == "IBM-1min":
        return ibm_minute_case()
    if name == "AAPL-tweets":
        return aapl_tweets_case()
    bars = daily_bars()[name]
    if kind == "cross_asset":
        panel = load_sample("us_equities_daily")
        return bars, FeatureContext(reference=panel[panel["symbol"] == "SPY"])
    return bars, FeatureContext()


def random_side_inputs(kind: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded side inputs for the property tests (a positive walk for prices, noise with gaps otherwise)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in TRANSFORMERS[kind].requires:
        if name.endswith("close"):
            out[name] = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        elif name.endswith(("count", "weight")):
            out[name] = rng.poisson(2.0, n).astype(np.float64)
        else:
            values = rng.normal(0.0, 1.0, n)
            values[rng.random(n) < 0.1] = np.nan
            out[name] = values
    return out


def engineer_inputs(
    transformer: FeatureTransformer[Any], bars: pd.DataFrame, context: FeatureContext | None = None
) -> FeatureInput:
    return FeatureEngineer.from_transformers([transformer]).inputs(bars, context)


def run_stream(transformer: FeatureTransformer[Any], data: FeatureInput) -> np.ndarray:
    stream = transformer.stream()
    return np.vstack([stream.update(data.row(t)) for t in range(data.n_bars)])


KINDS = list(TRANSFORMERS)
STREAM_CASES = [(kind, name) for kind in KINDS for name in real_cases(kind)]


@pytest.mark.parametrize(("kind", "case"), STREAM_CASES)
def test_stream_equals_batch_on_real_bars(kind: str, case: str) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(transformer, *real_case(kind, case))
    batch = transformer.fit(data).transform(data)
    streamed = run_stream(transformer, data)
    assert streamed.shape == batch.shape
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    np.testing.assert_allclose(streamed, batch, rtol=RTOL, atol=ATOL)
    # Past the warm-up the real series give defined values almost everywhere.
    assert np.isfinite(batch[transformer.lookback :]).mean() > 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_warm_up_rows_are_nan_and_later_rows_defined(kind: str) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(transformer, *real_case(kind, real_cases(kind)[0]))
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
def test_finite_memory_rows_depend_only_on_the_declared_look_back(kind: str) -> None:
    transformer = small_transformer(kind)
    bars, context = real_case(kind, real_cases(kind)[0])
    data = engineer_inputs(transformer, bars, context)
    full = transformer.fit(data).transform(data)
    lb = transformer.lookback
    for t in (lb + 5, 400, len(bars) - 1):
        window = bars.iloc[t - lb : t + 1].reset_index(drop=True)
        extras = {k: v[t - lb : t + 1] for k, v in data.extras.items()}
        part = engineer_inputs(transformer, window, FeatureContext(extras=extras))
        np.testing.assert_allclose(transformer.transform(part)[-1], full[t], rtol=RTOL, atol=ATOL)


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
    side = random_side_inputs(kind, len(bars), seed)
    side_altered = {k: np.where(after, v * scale + 1.0, v) for k, v in side.items()}
    a_in = engineer_inputs(transformer, bars, FeatureContext(extras=side))
    b_in = engineer_inputs(transformer, altered, FeatureContext(extras=side_altered))
    a = transformer.fit(a_in).transform(a_in)
    b = transformer.transform(b_in)
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])


@pytest.mark.parametrize("kind", KINDS)
def test_transform_before_fit_and_stream_before_fit_raise(kind: str) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(transformer, *real_case(kind, real_cases(kind)[0]))
    with pytest.raises(NotFittedError, match="fit"):
        transformer.transform(data)
    with pytest.raises(NotFittedError, match="fit"):
        transformer.stream()


@pytest.mark.parametrize("kind", [k for k in KINDS if TRANSFORMERS[k].requires])
def test_missing_side_inputs_say_how_to_provide_them(kind: str) -> None:
    transformer = small_transformer(kind)
    data = engineer_inputs(
        transformer, daily_bars()["AAPL"], FeatureContext(extras=random_side_inputs(kind, 700, 0))
    )
    transformer.fit(data)
    bare = FeatureInput(data.symbol, data.ts, data.open, data.high, data.low, data.close, data.volume, {})
    with pytest.raises(DataFormatError, match="FeatureContext"):
        transformer.transform(bare)
    with pytest.raises(DataFormatError, match="extras"):
        transformer.stream().update(bare.row(0))


def test_every_kind_is_configurable_from_the_feature_config() -> None:
    config = FeatureConfig.from_dict({"groups": KINDS, **SMALL})
    engineer = FeatureEngineer(config)
    names = engineer.get_feature_names_out()
    assert len(names) == len(set(names))
    assert engineer.lookback == max(small_transformer(k).lookback for k in KINDS)


def test_a_transformer_refuses_a_config_of_another_kind() -> None:
    with pytest.raises(ConfigError, match="takes a"):
        TRANSFORMERS["price"](TRANSFORMERS["returns"].config_class())


def test_side_inputs_with_the_wrong_length_are_refused() -> None:
    engineer = FeatureEngineer()
    with pytest.raises(DataFormatError, match=r"side input 'x'.*align it"):
        engineer.inputs(daily_bars()["AAPL"], FeatureContext(extras={"x": np.zeros(3)}))


@pytest.mark.parametrize(
    ("zone", "start"), [("America/New_York", "09:30"), ("UTC", "00:00"), ("Asia/Tokyo", "17:00")]
)
def test_streamed_session_ids_equal_the_batch_ones_across_dst(zone: str, start: str) -> None:
    from alphaloom.features import indicators as ind
    from alphaloom.features.transformers import _SessionIds

    # Every 7 minutes through both 2024 New York DST switches, plus odd nanosecond stamps.
    spans = [pd.date_range("2024-03-08", "2024-03-12", freq="7min", tz="UTC")]
    spans.append(pd.date_range("2024-10-31", "2024-11-05", freq="7min", tz="UTC"))
    ts = spans[0].append(spans[1]) + pd.Timedelta(nanoseconds=123_456_789)
    batch = ind.session_ids(ts, timezone=zone, session_start=start)
    stream = _SessionIds(zone, start)
    np.testing.assert_array_equal([stream.of(int(t)) for t in ts.asi8], batch)
