"""DataAggregator and IncrementalBarBuilder: hand-made cases pin the rules, real ticks pin batch == streaming.

Equality between the batch builders and the incremental builder is exact (``check_exact=True``): both use
correctly rounded sums, so no tolerance is needed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, DataFormatError, UnknownSymbolError
from alphaloom.core.types import BAR_COLUMNS, Bar, Quote, Trade
from alphaloom.data.aggregator import (
    QUOTE_BAR_EXTRAS,
    AggregatorConfig,
    DataAggregator,
    IncrementalBarBuilder,
    parse_timeframe,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)
needs_shared = pytest.mark.skipif(SHARED is None, reason="the shared real-data directory is not present")

AGG = DataAggregator()
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def utc(*args: int) -> pd.Timestamp:
    return pd.Timestamp(datetime(*args, tzinfo=UTC))


def bars_frame(rows: list[tuple], symbol: str = "AAA") -> pd.DataFrame:
    frame = pd.DataFrame([(symbol, *row) for row in rows], columns=list(BAR_COLUMNS))
    return frame.astype(
        {"symbol": "str", "ts": "datetime64[ns, UTC]", **dict.fromkeys(BAR_COLUMNS[2:], "float64")}
    )


def trades_frame(rows: list[tuple], symbol: str = "BTCUSD") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.to_datetime([r[0] for r in rows], utc=True),
            "price": [r[1] for r in rows],
            "size": [r[2] for r in rows],
        }
    )


# ---------------------------------------------------------------------- normalisation


def test_normalize_a_coinbase_trades_frame() -> None:
    raw = pd.DataFrame(
        {
            "product_id": ["BTC-USD", "ETH-USD", "BTC-USD"],
            "time": ["2024-01-01T00:00:02Z", "2024-01-01T00:00:01Z", "2024-01-01T00:00:01.5Z"],
            "price": ["42000.5", "2200", "42001"],
            "size": [0.1, 1.0, 0.2],
            "side": ["BUY", "sell", "buy"],
            "trade_id": ["a1", "b1", "a0"],
        }
    )
    out = DataAggregator(AggregatorConfig(venue="coinbase")).normalize(raw, kind="trades")
    assert list(out.columns) == ["symbol", "ts", "price", "size", "side", "trade_id"]
    assert out["symbol"].tolist() == ["BTCUSD", "BTCUSD", "ETHUSD"]
    assert out["ts"].tolist() == [
        utc(2024, 1, 1, 0, 0, 1, 500000),
        utc(2024, 1, 1, 0, 0, 2),
        utc(2024, 1, 1, 0, 0, 1),
    ]
    assert out["side"].tolist() == ["buy", "buy", "sell"]
    assert out["trade_id"].tolist() == ["a0", "a1", "b1"]
    assert str(out["ts"].dtype) == "datetime64[ns, UTC]"


def test_normalize_oanda_candles_with_offsets() -> None:
    raw = pd.DataFrame(
        {
            "instrument": ["EUR_USD", "EUR_USD"],
            "time": ["2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00"],  # across the DST change
            "o": [1.09, 1.091],
            "h": [1.092, 1.093],
            "l": [1.089, 1.09],
            "c": [1.091, 1.092],
        }
    )
    out = AGG.normalize(raw, venue="oanda")
    assert list(out.columns) == list(BAR_COLUMNS)
    assert out["symbol"].tolist() == ["EURUSD", "EURUSD"]
    assert out["ts"].tolist() == [utc(2024, 3, 10, 6), utc(2024, 3, 10, 7)]
    assert out["volume"].isna().all()


def test_normalize_naive_times_need_a_declared_zone() -> None:
    raw = pd.DataFrame(
        {"timestamp": ["2019-11-05 09:30:00", "2019-07-01 09:30:00"], "open": 1.0, "high": 1.0, "low": 1.0,
         "close": 1.0, "symbol": "SPX"}
    )  # fmt: skip
    out = AGG.normalize(raw, source_tz="America/New_York", map_symbols=False)
    assert out["ts"].tolist() == [utc(2019, 7, 1, 13, 30), utc(2019, 11, 5, 14, 30)]  # EDT, then EST
    fxcm = AGG.normalize(raw, source_tz="Etc/GMT+5", map_symbols=False)  # fixed UTC-05, no DST
    assert fxcm["ts"].tolist() == [utc(2019, 7, 1, 14, 30), utc(2019, 11, 5, 14, 30)]
    with pytest.raises(DataFormatError, match="no source zone was declared; pass source_tz"):
        DataAggregator(AggregatorConfig(source_tz=None)).normalize(raw, map_symbols=False)


def test_normalize_epoch_times_columns_and_keep() -> None:
    raw = pd.DataFrame(
        {"exch_time_ms": [1723161257476], "timestamp": ["2024-08-08 23:54:16+00:00"], "symbol": ["BTCUSDT"],
         "bid": [61804.7], "bid_qty": [35.0], "ask": [61804.8], "ask_qty": [1645.0], "market": ["spot"]}
    )  # fmt: skip
    out = AGG.normalize(raw, kind="quotes", columns={"ts": "exch_time_ms"}, ts_unit="ms", keep=["market"])
    assert list(out.columns) == ["symbol", "ts", "bid", "ask", "bid_size", "ask_size", "market"]
    assert out["ts"].iloc[0] == pd.Timestamp(1723161257476, unit="ms", tz="UTC")
    assert (out["bid_size"].iloc[0], out["market"].iloc[0]) == (35.0, "spot")
    with pytest.raises(DataFormatError, match="holds numbers, not times; pass ts_unit"):
        AGG.normalize(raw, kind="quotes", columns={"ts": "exch_time_ms"})


def test_normalize_errors_teach() -> None:
    raw = pd.DataFrame({"ts": ["2024-01-01T00:00:00Z"], "symbol": ["BTC-USD"], "price": [1.0]})
    with pytest.raises(DataFormatError, match=r"missing column\(s\) for size \(size, qty, quantity"):
        AGG.normalize(raw, kind="trades")
    with pytest.raises(ConfigError, match=r"not one of bars, trades, quotes\. Did you mean 'trades'"):
        AGG.normalize(raw, kind="trade")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"columns= names 'prize'.*Did you mean 'price'"):
        AGG.normalize(raw, kind="trades", columns={"prize": "price"})
    with pytest.raises(UnknownSymbolError, match="Did you mean 'BTCUSD'"):
        AGG.normalize(raw.assign(symbol="BTC--USD", size=1.0), kind="trades")
    with pytest.raises(DataFormatError, match="no symbol column"):
        AGG.normalize(raw.drop(columns="symbol").assign(size=1.0), kind="trades")


# ---------------------------------------------------------------------- resampling


def test_resample_ohlcv_rules_label_and_closed_left() -> None:
    minute = bars_frame(
        [
            (utc(2024, 1, 1, 10, 0), 10, 11, 9, 10.5, 1.0),
            (utc(2024, 1, 1, 10, 1), 10.5, 12, 10, 11, 2.0),
            (utc(2024, 1, 1, 10, 4), 11, 11.5, 8, 9, np.nan),
            (utc(2024, 1, 1, 10, 5), 9, 9.5, 8.5, 9.2, 4.0),  # opens the next bucket (closed left)
            (utc(2024, 1, 1, 10, 9), 9.2, 9.3, 9.1, 9.3, 5.0),  # completes it
            (utc(2024, 1, 1, 10, 10), 9.3, 9.4, 9.3, 9.4, 6.0),  # a partial last bucket
        ]
    )
    out = AGG.resample(minute, "5m")
    expected = bars_frame(
        [(utc(2024, 1, 1, 10, 0), 10, 12, 8, 9, 3.0), (utc(2024, 1, 1, 10, 5), 9, 9.5, 8.5, 9.3, 9.0)]
    ).astype({"ts": "datetime64[ns, UTC]"})
    pd.testing.assert_frame_equal(out, expected, check_exact=True)
    assert len(AGG.resample(minute, "5m", include_partial=True)) == 3
    assert len(AGG.resample(minute, "5m", end=datetime(2024, 1, 1, 10, 15, tzinfo=UTC))) == 3


def test_resample_keeps_interior_gaps_and_missing_volume() -> None:
    hours = bars_frame([(utc(2024, 1, 1, h), 1, 1, 1, 1, np.nan) for h in (0, 1, 2, 3, 8, 9, 10, 11, 12)])
    out = AGG.resample(hours, "4h")
    assert out["ts"].tolist() == [utc(2024, 1, 1, 0), utc(2024, 1, 1, 8)]  # no bar for the empty bucket
    assert out["volume"].isna().all()


def test_resample_weeks_start_on_monday() -> None:
    days = bars_frame([(utc(2024, 1, d), d, d, d, d, 1.0) for d in range(1, 15)])  # Mon 1st .. Sun 14th
    out = AGG.resample(days, "1w")
    assert out["ts"].tolist() == [utc(2024, 1, 1), utc(2024, 1, 8)]
    assert out["volume"].tolist() == [7.0, 7.0]


def test_resample_refuses_what_it_cannot_do() -> None:
    hours = bars_frame([(utc(2024, 1, 1, h), 1, 1, 1, 1, 1.0) for h in range(3)])
    with pytest.raises(ConfigError, match="cannot build 5m bars from 1h bars"):
        AGG.resample(hours, "5m")
    with pytest.raises(DataFormatError, match=r"run DataAggregator\.deduplicate"):
        AGG.resample(pd.concat([hours, hours]), "1d")
    with pytest.raises(ConfigError, match="cannot infer the length"):
        AGG.resample(hours.iloc[:1], "1d")
    with pytest.raises(ConfigError, match="use a count and a unit"):
        parse_timeframe("5 minutes")
    assert parse_timeframe("4h") == timedelta(hours=4)


@needs_shared
def test_resample_matches_pandas_on_real_hourly_bars() -> None:
    """An independent implementation: pandas' resample, on Dukascopy EURUSD hourly bars to 4 hours."""
    raw = pd.read_csv(SHARED / "forex" / "eurusd_1h_bid_dukascopy_2020-07_to_2023-07.csv.gz")
    hourly = AGG.normalize(raw)
    ours = AGG.resample(hourly, "4h", include_partial=True)
    theirs = (
        hourly.set_index("ts")
        .resample("4h", label="left", closed="left", origin="epoch")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna(subset=["open"])
        .reset_index()
    )
    np.testing.assert_array_equal(ours["ts"].to_numpy(), theirs["ts"].to_numpy())
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col].to_numpy())
    np.testing.assert_allclose(ours["volume"], theirs["volume"], rtol=1e-12)  # pandas sums differently


# ---------------------------------------------------------------------- bars from ticks


def test_bars_from_trades_with_vwap() -> None:
    trades = trades_frame(
        [
            ("2024-01-01T00:00:10Z", 100.0, 1.0),
            ("2024-01-01T00:00:10Z", 102.0, 3.0),  # same time: input order decides the close
            ("2024-01-01T00:00:50Z", 99.0, 2.0),
            ("2024-01-01T00:01:00Z", 101.0, 1.0),  # at the boundary: the next minute
        ]
    )
    out = AGG.bars_from_trades(trades, "1m", vwap=True, include_partial=True)
    assert out[["open", "high", "low", "close", "volume", "n_trades"]].values.tolist() == [
        [100.0, 102.0, 99.0, 99.0, 6.0, 3],
        [101.0, 101.0, 101.0, 101.0, 1.0, 1],
    ]
    assert out["vwap"].iloc[0] == pytest.approx((100 + 306 + 198) / 6, rel=1e-15)
    assert len(AGG.bars_from_trades(trades, "1m")) == 1  # the last minute is not known complete
    assert "vwap" not in AGG.bars_from_trades(trades, "1m").columns


def test_bars_from_quotes_mid_and_spread() -> None:
    quotes = pd.DataFrame(
        {
            "symbol": "EURUSD",
            "ts": pd.to_datetime(["2024-01-01T00:00:01Z", "2024-01-01T00:00:30Z", "2024-01-01T00:00:59Z",
                                  "2024-01-01T00:01:00Z"], utc=True),
            "bid": [1.1000, 1.1003, 1.1002, 1.1],
            "ask": [1.1002, 1.1003, 1.1001, 1.1001],
        }
    )  # fmt: skip
    (bar,) = AGG.bars_from_quotes(quotes, "1m").itertuples()
    assert (bar.open, bar.high, bar.close) == (0.5 * (1.1 + 1.1002), 1.1003, 0.5 * (1.1002 + 1.1001))
    assert math.isnan(bar.volume)
    assert (bar.n_quotes, bar.n_crossed, bar.n_locked) == (3, 1, 1)
    assert bar.spread_min == pytest.approx(-0.0001)
    assert bar.spread_max == pytest.approx(0.0002)
    assert list(AGG.bars_from_quotes(quotes, "1m").columns) == [*BAR_COLUMNS, *QUOTE_BAR_EXTRAS]


def test_ticks_must_be_normalised_and_clean() -> None:
    trades = trades_frame([("2024-01-01T00:00:10Z", 100.0, 1.0)])
    with pytest.raises(DataFormatError, match="missing or infinite price or size"):
        AGG.bars_from_trades(trades.assign(price=np.nan), "1m")
    with pytest.raises(DataFormatError, match=r"Run DataAggregator\.normalize"):
        AGG.bars_from_trades(trades.rename(columns={"size": "qty"}), "1m")


# ---------------------------------------------------------------------- the incremental builder


def feed(builder: IncrementalBarBuilder, events: list, until: pd.Timestamp | None = None) -> pd.DataFrame:
    done = []
    for event in events:
        done.extend(builder.update(event))
    if until is not None:
        done.extend(builder.flush(until.to_pydatetime()))
    return builder.to_frame(done)


def trade_events(frame: pd.DataFrame) -> list[Trade]:
    return [
        Trade(symbol=s, ts=t.to_pydatetime(), price=p, size=q)
        for s, t, p, q in zip(frame["symbol"], frame["ts"], frame["price"], frame["size"], strict=True)
    ]


@pytest.fixture(scope="module")
def binance_trades() -> pd.DataFrame:
    if SHARED is None:
        pytest.skip("the shared real-data directory is not present")
    raw = pd.read_csv(
        SHARED / "microstructure" / "binance_trades_2024-08-08T2354Z_to_2024-08-09T0005Z.csv.gz"
    )
    raw["stream"] = raw["market"] + ":" + raw["symbol"]  # spot and perpetual BTCUSDT are different series
    return AGG.normalize(
        raw,
        kind="trades",
        columns={"symbol": "stream", "ts": "exch_time_ms"},
        ts_unit="ms",
        map_symbols=False,
    )


@pytest.fixture(scope="module")
def binance_events(binance_trades: pd.DataFrame) -> list[Trade]:
    events = trade_events(binance_trades)  # 78,638 trades on six streams
    events.sort(key=lambda e: e.ts)  # merged by event time, as a multi-stream feed delivers them
    return events


@needs_shared
@pytest.mark.parametrize("timeframe", ["1s", "1m"])
def test_incremental_trades_equal_batch_on_real_binance_ticks(
    binance_trades: pd.DataFrame, binance_events: list[Trade], timeframe: str
) -> None:
    events = binance_events
    batch = AGG.bars_from_trades(binance_trades, timeframe, vwap=True)
    streamed = feed(IncrementalBarBuilder(timeframe, vwap=True), events)
    assert len(batch) > (20 if timeframe == "1m" else 2000)
    pd.testing.assert_frame_equal(batch, streamed, check_exact=True)
    end = binance_trades["ts"].max() + pd.Timedelta(timeframe.replace("m", "min"))
    with_tail = feed(IncrementalBarBuilder(timeframe, vwap=True), events, until=end)
    pd.testing.assert_frame_equal(
        AGG.bars_from_trades(binance_trades, timeframe, vwap=True, end=end), with_tail
    )
    assert len(with_tail) == len(batch) + 6  # each stream's last bar, known complete at ``end``


@pytest.fixture(scope="module")
def fxcm_quotes() -> tuple[pd.DataFrame, list[Quote]]:
    """The first 50,000 EURUSD quote ticks of the FXCM week (about a day), and the same as Quote events."""
    if SHARED is None:
        pytest.skip("the shared real-data directory is not present")
    path = SHARED / "microstructure" / "lean_fxcm_eurusd_quote_ticks_2014-05-05_to_09.csv.gz"
    quotes = AGG.normalize(pd.read_csv(path, nrows=50_000), kind="quotes", source_tz="Etc/GMT+5")  # UTC-05
    events = [
        Quote(symbol=s, ts=t.to_pydatetime(), bid=b, ask=a)
        for s, t, b, a in zip(quotes["symbol"], quotes["ts"], quotes["bid"], quotes["ask"], strict=True)
    ]
    return quotes, events


@needs_shared
@pytest.mark.parametrize("timeframe", ["5s", "1m"])
def test_incremental_quotes_equal_batch_on_real_fxcm_ticks(fxcm_quotes, timeframe: str) -> None:
    quotes, events = fxcm_quotes
    batch = AGG.bars_from_quotes(quotes, timeframe)
    streamed = feed(IncrementalBarBuilder(timeframe), events)
    assert batch["n_crossed"].sum() > 0  # the feed's crossed quotes are counted, not hidden
    pd.testing.assert_frame_equal(batch, streamed, check_exact=True)


@needs_shared
def test_incremental_resample_equals_batch_on_real_minute_bars() -> None:
    raw = pd.read_csv(SHARED / "crypto" / "lean_coinbase_1min_trade_bars_2016-2018_sample_days.csv.gz")
    minute = AGG.normalize(raw)
    events = [
        Bar(symbol=r.symbol, ts=r.ts.to_pydatetime(), open=r.open, high=r.high, low=r.low, close=r.close,
            volume=r.volume, timeframe="1m")
        for r in minute.sort_values(["ts", "symbol"]).itertuples(index=False)
    ]  # fmt: skip
    batch = AGG.resample(minute, "15m", source_timeframe="1m")
    streamed = feed(IncrementalBarBuilder("15m"), events)
    pd.testing.assert_frame_equal(batch, streamed, check_exact=True)


def test_incremental_emits_on_the_next_event_and_reports_late_ones() -> None:
    builder = IncrementalBarBuilder("1m")
    trade = lambda sec, price: Trade(symbol="X", ts=T0 + timedelta(seconds=sec), price=price, size=1.0)  # noqa: E731
    assert builder.update(trade(1, 10.0)) == []
    assert builder.update(trade(59, 11.0)) == []
    (done,) = builder.update(trade(60, 12.0))  # an event at the bucket end closes it
    assert (done.bar.ts, done.bar.open, done.bar.close, done.extras["n_trades"]) == (T0, 10.0, 11.0, 2)
    assert builder.update(trade(30, 9.0)) == []  # belongs to an emitted bar: late
    assert builder.late == 1
    assert builder.late_events[0].price == 9.0
    assert builder.open_buckets() == {"X": T0 + timedelta(minutes=1)}
    assert builder.flush(T0 + timedelta(seconds=90)) == []  # not complete yet
    (tail,) = builder.flush()  # forced: the partial bar too
    assert tail.bar.close == 12.0


def test_incremental_sub_bars_complete_a_bucket_at_once() -> None:
    builder = IncrementalBarBuilder("5m")
    minute = [
        Bar(
            symbol="X",
            ts=T0 + timedelta(minutes=k),
            open=1,
            high=2,
            low=1,
            close=2,
            volume=1.0,
            timeframe="1m",
        )
        for k in range(5)
    ]
    out = [builder.update(b) for b in minute]
    assert [len(o) for o in out] == [0, 0, 0, 0, 1]  # the 10:04 bar reaches the bucket end
    assert out[-1][0].bar.volume == 5.0


def test_incremental_refuses_mixed_kinds_and_misfit_bars() -> None:
    builder = IncrementalBarBuilder("1m")
    builder.update(Trade(symbol="X", ts=T0, price=1.0, size=1.0))
    with pytest.raises(DataFormatError, match="builds X from Trade events and got a Quote"):
        builder.update(Quote(symbol="X", ts=T0, bid=1.0, ask=1.1))
    with pytest.raises(DataFormatError, match="cannot build 1m bars from 1h bars"):
        builder.update(Bar(symbol="Y", ts=T0, open=1, high=1, low=1, close=1, timeframe="1h"))
    with pytest.raises(DataFormatError, match="takes Bar, Quote or Trade"):
        builder.update({"symbol": "Z"})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- de-duplication and merging


def test_deduplicate_reports_exact_and_conflicting_copies() -> None:
    day = lambda d, c, v=1.0: (utc(2024, 1, d), c, c, c, c, v)  # noqa: E731
    frame = bars_frame(
        [day(1, 10), day(2, 11), day(1, 10), day(2, 11.5), day(3, 12, np.nan), day(3, 12, np.nan)]
    )
    first = AGG.deduplicate(frame)
    assert first.bars["close"].tolist() == [10, 11, 12]
    assert len(first.exact) == 2  # NaN volume equals NaN volume
    (conflict,) = first.conflicting.itertuples()
    assert conflict.close == 11.5
    assert "close 11.5 vs kept 11" in conflict.reason
    last = DataAggregator(AggregatorConfig(keep="last")).deduplicate(frame)
    assert last.bars["close"].tolist() == [10, 11.5, 12]
    assert last.n_removed == 3


def test_merge_by_precedence_reports_what_was_overridden() -> None:
    a = bars_frame([(utc(2024, 1, d), 10 + d, 10 + d, 10 + d, 10 + d, 1.0) for d in (1, 2, 3)], "BTCUSD")
    b = bars_frame([(utc(2024, 1, d), 20 + d, 20 + d, 20 + d, 20 + d, 1.0) for d in (2, 3, 4)], "BTCUSD")
    b.loc[1, ["open", "high", "low", "close"]] = 13.0  # agrees with a on the 3rd
    result = AGG.merge({"bitfinex": b, "bitstamp": a}, precedence=["bitstamp", "bitfinex"])
    assert result.bars["close"].tolist() == [11, 12, 13, 24]
    assert result.bars["source"].tolist() == ["bitstamp", "bitstamp", "bitstamp", "bitfinex"]
    assert result.counts() == {"bitstamp": 3, "bitfinex": 1}
    over = result.overridden
    assert over["source"].tolist() == ["bitfinex", "bitfinex"]
    assert over["kept_source"].tolist() == ["bitstamp", "bitstamp"]
    assert over["differs"].tolist() == [True, False]
    with pytest.raises(ConfigError, match=r"missing \['bitfinex'\], unknown \['bitfinx'\]\. Did you mean"):
        AGG.merge({"bitfinex": b, "bitstamp": a}, precedence=["bitstamp", "bitfinx"])


@needs_shared
def test_merge_and_deduplicate_on_real_files() -> None:
    raw = pd.read_csv(SHARED / "crypto" / "crypto_daily_bitstamp_bitfinex_2014-2020.csv.gz")
    btc = raw[raw["symbol"] == "BTCUSD"]
    sources = {ex: AGG.normalize(btc[btc["exchange"] == ex]) for ex in ("bitstamp", "bitfinex")}
    merged = AGG.merge(sources, precedence=["bitstamp", "bitfinex"])
    days = {ex: set(f["ts"]) for ex, f in sources.items()}
    assert len(merged.bars) == len(days["bitstamp"] | days["bitfinex"])
    assert len(merged.overridden) == len(days["bitstamp"] & days["bitfinex"])
    assert merged.overridden["differs"].all()  # two venues never print identical daily bars
    assert len(merged.duplicates) == 0
    # Yahoo's BTC-USD export repeats two dates at the European DST change, with different values.
    yahoo = AGG.normalize(pd.read_csv(SHARED / "crypto" / "btcusd_daily_yahoo_2019-2020.csv"))
    dedup = AGG.deduplicate(yahoo)
    assert len(dedup.exact) == 0
    assert dedup.conflicting["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2019-03-31", "2020-03-29"]


def test_empty_frames_give_empty_results() -> None:
    empty = bars_frame([])
    assert AGG.resample(empty, "1h").empty
    assert AGG.deduplicate(empty).bars.empty
    assert AGG.merge({"a": empty}).bars.empty
    assert AGG.bars_from_trades(trades_frame([]), "1m", vwap=True).empty


# ---------------------------------------------------------------------- property: batch == streaming

tick_rows = st.lists(
    st.tuples(
        st.sampled_from(["AAA", "BBB"]),
        st.integers(0, 600_000),  # ms
        st.floats(1.0, 2.0),
        st.floats(0.001, 5.0),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(tick_rows, st.sampled_from(["1s", "10s", "1m", "5m"]), st.booleans())
def test_incremental_equals_batch_for_any_ordered_trades(rows, timeframe: str, flush: bool) -> None:
    rows = sorted(rows, key=lambda r: r[1])  # time order (ties keep their order)
    frame = pd.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows], unit="ms", utc=True).astype("datetime64[ns, UTC]"),
            "price": [r[2] for r in rows],
            "size": [r[3] for r in rows],
        }
    )
    end = pd.Timestamp(700_000, unit="ms", tz="UTC") if flush else None
    batch = AGG.bars_from_trades(frame, timeframe, vwap=True, end=end)
    streamed = feed(IncrementalBarBuilder(timeframe, vwap=True), trade_events(frame), until=end)
    if batch.empty:
        assert streamed.empty
    else:
        pd.testing.assert_frame_equal(batch, streamed, check_exact=True)
