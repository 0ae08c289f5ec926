"""The validator on every file of the shared real-data directory, and the documented quirks it must catch.

The directory is ``/work/shared/data`` or, in CI, ``../shared/data`` beside the clone (its README documents
every file and quirk). Every file is listed in :data:`FILES` with how it is judged; a file on disk that is
not listed fails :func:`test_every_shared_file_is_classified`, so nothing is skipped silently:

- bar files go through :meth:`DataValidator.validate` (quote bars with their closing bid/ask, so crossed
  quotes are checked); daily files get instrument metadata, so gaps are checked against the calendar;
  intraday files do not (their sample days would make every night a gap), so their volume is expected;
- quote files go through :meth:`DataValidator.validate_quotes`, trade files through ``validate_trades``;
- the raw Binance websocket captures are parsed line by line; their trades and book tickers are judged like
  the CSVs (and counted against them); depth diffs are only counted (they need a book, not these checks);
- news files are only loaded, their dates parsed and their documented counts checked;
- ``README.md`` is documentation.

Counts asserted exactly are the README's (303 and 2,930 crossed FXCM bars, 3 all-NaN stocknet rows, ...).
Nothing is sampled: the whole directory is judged in about 10 s.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

from alphaloom.core.types import AssetClass
from alphaloom.data import DataValidator, Instrument, ValidationResult, ValidatorConfig
from alphaloom.data.aggregator import DataAggregator

REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)
pytestmark = pytest.mark.skipif(
    SHARED is None, reason="the shared real-data directory (/work/shared/data or ../shared/data) is absent"
)

AGG = DataAggregator()
VALIDATOR = DataValidator()
NY = "America/New_York"
FXCM_TZ = "Etc/GMT+5"  # Lean's FXCM data: fixed UTC-05, no daylight saving


class Spec(NamedTuple):
    """How one shared file is judged."""

    kind: str  # bars | quote_bars | fred | quotes | quote_closes | trades | raw_ws | news | doc
    tz: str = "UTC"  # zone of timestamps written without an offset
    asset: AssetClass | None = None  # daily files: instruments for the calendar checks
    key: tuple[str, ...] = ()  # columns that, with the symbol, tell series apart (exchange, broker, ...)
    options: tuple[tuple[str, Any], ...] = ()


STOCK, FX, COIN = AssetClass.STOCK, AssetClass.FOREX, AssetClass.CRYPTO

FILES: dict[str, Spec] = {
    "README.md": Spec("doc"),
    # stocks
    "stocks/lean_us_equities_daily_raw_1998-2021.csv.gz": Spec("bars", asset=STOCK),
    "stocks/lean_us_equities_hourly_raw_1998-2021.csv.gz": Spec("bars", tz=NY),
    "stocks/lean_us_equities_1min_trade_bars_2008-2023_sample_days.csv.gz": Spec("bars", tz=NY),
    "stocks/stocknet_88_daily_2012-2017.csv.gz": Spec("bars", asset=STOCK),
    "stocks/yahoo_faang_tsla_spx_daily_2017-2020.csv.gz": Spec("bars", asset=STOCK),
    "stocks/yahoo_single_stocks_daily_1995-2018.csv.gz": Spec("bars", asset=STOCK, key=("source",)),
    "stocks/spx_index_1min_2019-11-05_to_08.csv": Spec("bars", tz=NY),
    "stocks/fb_1min_2019-05-20_to_24.csv": Spec("bars", tz=NY),
    "stocks/inda_etf_1min_sparse_2023-07_to_2025-06.csv.gz": Spec("bars"),
    "stocks/eurostoxx50_futures_1min_2006-01-02_to_02-27.csv.gz": Spec("bars", tz="Europe/Berlin"),
    "stocks/eurostoxx50_index_5min_2006-01.csv.gz": Spec("bars", tz="Europe/Berlin"),
    # forex
    "forex/lean_fxcm_daily_bidask_2007-2018.csv.gz": Spec("quote_bars", asset=FX),
    "forex/lean_fxcm_hourly_bidask_2007-2018.csv.gz": Spec("quote_bars", tz=FXCM_TZ),
    "forex/lean_fx_1min_bidask_fxcm_oanda_2011-2018_sample_days.csv.gz": Spec(
        "quote_bars", key=("broker",), options=(("zone_by", "data_tz"),)
    ),
    "forex/eurusd_1min_histdata_2017-01_to_06.csv.gz": Spec("bars", tz=FXCM_TZ),  # "EST without DST"
    "forex/eurusd_1h_bid_dukascopy_2020-07_to_2023-07.csv.gz": Spec("bars"),
    "forex/fred_h10_fx_daily_close_2000-2019.csv.gz": Spec("fred", asset=FX),
    "forex/jpyusd_daily_barchart_2018-03_to_2020-03.csv": Spec("bars", asset=FX),
    "forex/usdjpy_daily_2019-2020.csv": Spec("bars", asset=FX),
    # crypto
    "crypto/crypto_daily_bitstamp_bitfinex_2014-2020.csv.gz": Spec("bars", asset=COIN, key=("exchange",)),
    "crypto/btcusd_1h_coinbase_bitfinex_2017-07_to_2019-10.csv.gz": Spec("bars", key=("exchange",)),
    "crypto/lean_coinbase_btcusd_daily_trade_and_bidask_2014-2018.csv": Spec("quote_bars", asset=COIN),
    "crypto/lean_coinbase_1min_trade_bars_2016-2018_sample_days.csv.gz": Spec("bars"),
    "crypto/altbtc_5m_freqtrade_2018-01-10_to_01-30.csv.gz": Spec("bars"),
    "crypto/binance_xrp_misc_freqtrade_2019-2021.csv.gz": Spec("bars", key=("timeframe",)),
    "crypto/btcusd_daily_yahoo_2019-2020.csv": Spec("bars", asset=COIN),
    # microstructure
    "microstructure/binance_bbo_quotes_2024-08-08T2354Z_to_2024-08-09T0005Z.csv.gz": Spec(
        "quotes", key=("market",)
    ),
    "microstructure/binance_trades_2024-08-08T2354Z_to_2024-08-09T0005Z.csv.gz": Spec(
        "trades", key=("market",), options=(("ts", "exch_time_ms"),)
    ),
    "microstructure/binance_xrpeth_trades_2019-10-11_to_13.csv.gz": Spec("trades"),
    "microstructure/lean_ibm_trade_ticks_2013-10-07_08.csv.gz": Spec("trades", tz=NY),
    "microstructure/lean_ibm_quote_ticks_by_exchange_2013-10-07_08.csv.gz": Spec("quotes", tz=NY),
    "microstructure/lean_fxcm_eurusd_quote_ticks_2014-05-05_to_09.csv.gz": Spec("quotes", tz=FXCM_TZ),
    "microstructure/lean_us_equities_1min_quote_bars_bidask_sample_days.csv.gz": Spec("quote_closes", tz=NY),
    "microstructure/lean_coinbase_1min_quote_bars_bidask_2017-2018_sample_days.csv.gz": Spec("quote_closes"),
    "microstructure/raw_binance_ws/spot_btcusdt_20240808.gz": Spec("raw_ws"),
    "microstructure/raw_binance_ws/spot_btcusdt_20240809.gz": Spec("raw_ws"),
    "microstructure/raw_binance_ws/usdm_btcusdt_20240808.gz": Spec("raw_ws"),
    # news
    "news/financial_news_headlines_cnbc_guardian_reuters_2017-12_to_2020-07.csv.gz": Spec("news"),
    "news/stocknet_tweets_88_tickers_2014-2015.csv.gz": Spec("news"),
}

_CALENDAR = {STOCK: "XNYS", FX: "24/5", COIN: "24/7"}


# ---------------------------------------------------------------------- loading and judging


class Judged(NamedTuple):
    frame: pd.DataFrame
    result: ValidationResult | None
    extra: dict[str, Any]


def _symbols(raw: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, bool]:
    """Series identity: the symbol, prefixed by the key columns. Keyed symbols stay as written."""
    if not spec.key:
        return raw, True
    symbol = raw["symbol"].astype("str")
    for col in reversed(spec.key):
        symbol = raw[col].astype("str") + ":" + symbol
    return raw.assign(symbol=symbol), False


def _instruments(frame: pd.DataFrame, spec: Spec) -> dict[str, Instrument] | None:
    if spec.asset is None:
        return None
    calendar = _CALENDAR[spec.asset]
    quote = "GBP" if spec.asset is FX else "USD"
    return {s: Instrument(s, spec.asset, calendar, quote) for s in frame["symbol"].unique()}


def _bars(raw: pd.DataFrame, spec: Spec, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    raw, mapped = _symbols(raw, spec)
    zone_by = dict(spec.options).get("zone_by")
    if zone_by is None:
        return AGG.normalize(raw, source_tz=spec.tz, map_symbols=mapped, keep=keep)
    # One file, two brokers, two zones (a ``data_tz`` column such as "UTC-05"): normalise each zone apart.
    parts = []
    for label, part in raw.groupby(zone_by):
        zone = "UTC" if label == "UTC" else f"Etc/GMT+{int(str(label)[4:])}"
        parts.append(AGG.normalize(part, source_tz=zone, map_symbols=mapped, keep=keep))
    return (
        pd.concat(parts, ignore_index=True)
        .sort_values(["symbol", "ts"], kind="stable")
        .reset_index(drop=True)
    )


@cache
def judge(name: str) -> Judged:
    """Load ``name`` and judge it as its :data:`FILES` entry says (cached: each file is read once)."""
    spec = FILES[name]
    path = SHARED / name
    if spec.kind == "raw_ws":
        return _judge_raw_ws(path)
    raw = pd.read_csv(path) if spec.kind != "doc" else None
    if spec.kind == "bars":
        frame = _bars(raw, spec)
        return Judged(frame, VALIDATOR.validate(frame, _instruments(frame, spec)), {})
    if spec.kind == "quote_bars":
        frame = _bars(raw, spec, keep=("bid_close", "ask_close"))
        return Judged(frame, VALIDATOR.validate(frame, _instruments(frame, spec)), {})
    if spec.kind == "fred":
        long = raw.melt(id_vars="timestamp", var_name="symbol", value_name="close")
        long = long.assign(open=long["close"], high=long["close"], low=long["close"])
        frame = AGG.normalize(long)
        return Judged(frame, VALIDATOR.validate(frame, _instruments(frame, spec)), {"wide": raw})
    if spec.kind in ("quotes", "quote_closes"):
        if spec.kind == "quote_closes":  # minute quote bars: judge the closing quote of each minute
            raw = raw.rename(columns={"bid_close": "bid", "ask_close": "ask"})
        raw, mapped = _symbols(raw, spec)
        keep = tuple(c for c in ("suspicious", "exchange") if c in raw.columns)
        frame = AGG.normalize(raw, kind="quotes", source_tz=spec.tz, map_symbols=mapped, keep=keep)
        return Judged(frame, VALIDATOR.validate_quotes(frame), {})
    if spec.kind == "trades":
        raw, mapped = _symbols(raw, spec)
        options = dict(spec.options)
        columns = {"ts": options["ts"]} if "ts" in options else None
        unit = "ms" if "ts" in options else None
        keep = tuple(c for c in ("suspicious",) if c in raw.columns)
        frame = AGG.normalize(
            raw,
            kind="trades",
            source_tz=spec.tz,
            map_symbols=mapped,
            columns=columns,
            ts_unit=unit,
            keep=keep,
        )
        return Judged(frame, VALIDATOR.validate_trades(frame), {})
    if spec.kind == "news":
        utc = pd.to_datetime(raw["timestamp"], format="ISO8601", utc=True)
        return Judged(raw.assign(ts=utc), None, {})
    return Judged(pd.DataFrame(), None, {"text": path.read_text(encoding="utf-8")})


def _judge_raw_ws(path: Path) -> Judged:
    """Parse ``<local_ns> <json>`` lines: trades and book tickers are judged, depth diffs counted."""
    kinds: Counter[str] = Counter()
    trades, quotes = [], []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            local_ns, _, body = line.partition(" ")
            message = json.loads(body)
            stream = message.get("stream")
            if stream is None:
                kinds["snapshot"] += 1
                continue
            kind = stream.split("@", 1)[1]
            kinds[kind] += 1
            data = message["data"]
            if kind == "trade":
                trades.append((data["s"], data["T"], float(data["p"]), float(data["q"]), data["t"]))
            elif kind == "bookTicker":
                event_ms = data.get("E") or int(local_ns) // 1_000_000  # spot tickers carry no event time
                prices = (float(data["b"]), float(data["a"]), float(data["B"]), float(data["A"]))
                quotes.append((data["s"], event_ms, *prices))
    t = pd.DataFrame(trades, columns=["symbol", "ts", "price", "size", "trade_id"])
    t["ts"] = pd.to_datetime(t["ts"], unit="ms", utc=True)
    q = pd.DataFrame(quotes, columns=["symbol", "ts", "bid", "ask", "bid_size", "ask_size"])
    q["ts"] = pd.to_datetime(q["ts"], unit="ms", utc=True)
    extra = {
        "kinds": kinds,
        "trades": VALIDATOR.validate_trades(t),
        "quotes": VALIDATOR.validate_quotes(q),
    }
    return Judged(t, None, extra)


def counts(result: ValidationResult, check: str) -> dict[str, int]:
    return {i.symbol: i.count for i in result.by_check(check)}


def total(result: ValidationResult, check: str) -> int:
    return sum(i.count for i in result.by_check(check))


# ---------------------------------------------------------------------- every file


def test_every_shared_file_is_classified() -> None:
    on_disk = {p.relative_to(SHARED).as_posix() for p in SHARED.rglob("*") if p.is_file()}
    assert on_disk - set(FILES) == set(), "new shared files: add them to FILES with how to judge them"
    assert set(FILES) - on_disk == set(), "FILES lists files that are gone"


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_shared_file_loads_and_validates(name: str) -> None:
    spec = FILES[name]
    judged = judge(name)
    if spec.kind == "doc":
        assert "## Conventions" in judged.extra["text"]  # documentation: nothing to validate
        return
    if spec.kind == "news":
        assert len(judged.frame) > 0
        assert judged.frame["ts"].notna().all()  # every date parses
        return
    results = (
        [judged.result] if judged.result is not None else [judged.extra["trades"], judged.extra["quotes"]]
    )
    for result in results:
        assert result.n_input > 0
        assert result.n_input == len(result.clean) + len(result.quarantined)  # nothing dropped silently
        if spec.kind in ("bars", "quote_bars", "fred"):  # ticks may share a timestamp; bars may not
            assert not result.clean.duplicated(["symbol", "ts"]).any()
        assert set(result.quarantined["check"]) <= {i.check for i in result.issues}  # each one reported
    if judged.result is not None:
        assert len(judged.frame) == judged.result.n_input


# ---------------------------------------------------------------------- documented quirks, stocks


def test_lean_daily_qqq_gap_and_bno_zero_volume() -> None:
    result = judge("stocks/lean_us_equities_daily_raw_1998-2021.csv.gz").result
    (qqq,) = [i for i in result.by_check("gap") if i.symbol == "QQQ"]
    assert qqq.ts == pd.Timestamp("2004-12-01", tz="UTC")
    assert "to 2011-03-22" in qqq.message  # the QQQQ years are missing
    assert counts(result, "zero_volume") == {"BNO": 26}
    assert result.quarantined.empty


def test_stocknet_all_nan_rows_and_zero_volume() -> None:
    result = judge("stocks/stocknet_88_daily_2012-2017.csv.gz").result
    q = result.quarantined
    assert q["check"].tolist() == ["missing_price"] * 3
    assert sorted(q["symbol"]) == ["PTR", "REX", "SNP"]
    assert set(q["ts"]) == {pd.Timestamp("2016-06-29", tz="UTC")}
    assert total(result, "zero_volume") == 111
    assert {"SPLP", "AGFS"} <= {s for s, n in counts(result, "zero_volume").items() if n >= 20}


def test_fb_minute_bars_are_degenerate() -> None:
    judged = judge("stocks/fb_1min_2019-05-20_to_24.csv")
    (issue,) = judged.result.by_check("degenerate_bars")
    assert issue.count == len(judged.frame) == 1951  # open = high = low = close on every bar
    assert issue.severity == "warning"
    # No other intraday file is one price per bar.
    for name, spec in FILES.items():
        if spec.kind == "bars" and name != "stocks/fb_1min_2019-05-20_to_24.csv":
            assert judge(name).result.by_check("degenerate_bars") == [], name


def test_spx_and_eurostoxx_index_volume_is_zero() -> None:
    assert counts(judge("stocks/spx_index_1min_2019-11-05_to_08.csv").result, "zero_volume") == {"SPX": 1563}
    assert counts(judge("stocks/eurostoxx50_index_5min_2006-01.csv.gz").result, "zero_volume") == {
        "SX5E": 2142
    }


def test_yahoo_faang_fb_misses_one_day() -> None:
    frame = judge("stocks/yahoo_faang_tsla_spx_daily_2017-2020.csv.gz").frame
    fb = frame[frame["symbol"] == "FB"]
    strict = DataValidator(ValidatorConfig(max_gap_business_days=0))
    gaps = {
        i.ts: i.count for i in strict.validate(fb, {"FB": Instrument("FB", STOCK, "XNYS")}).by_check("gap")
    }
    assert gaps[pd.Timestamp("2020-10-23", tz="UTC")] == 1  # below the holiday tolerance by default


def test_undocumented_findings_in_the_yahoo_files() -> None:
    """Found by the validator, not in the README: reported to the data owners."""
    single = judge("stocks/yahoo_single_stocks_daily_1995-2018.csv.gz").result.quarantined
    assert single["check"].tolist() == ["ohlc_inconsistent"] * 2  # mplfinance SPY: high below the close
    assert single["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2015-03-05", "2015-03-30"]
    btc = judge("crypto/btcusd_daily_yahoo_2019-2020.csv").result.quarantined
    assert btc["check"].tolist() == ["duplicate"] * 2  # dates repeated at the European DST change
    assert btc["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2019-03-31", "2020-03-29"]


# ---------------------------------------------------------------------- documented quirks, forex


@pytest.mark.parametrize(
    ("name", "crossed"),
    [
        ("forex/lean_fxcm_daily_bidask_2007-2018.csv.gz", 303),
        ("forex/lean_fxcm_hourly_bidask_2007-2018.csv.gz", 2930),
    ],
)
def test_fxcm_crossed_quote_bars(name: str, crossed: int) -> None:
    result = judge(name).result
    assert total(result, "crossed_quote") == crossed
    assert total(result, "locked_quote") > 0  # ask == bid also occurs
    assert result.quarantined.empty  # warned, not refused: the mid is still usable
    strict = DataValidator(ValidatorConfig(quarantine_crossed=True)).validate(judge(name).frame)
    assert (strict.quarantined["check"] == "crossed_quote").sum() == crossed


def test_fxcm_ticks_are_crossed_about_a_tenth_of_the_time() -> None:
    judged = judge("microstructure/lean_fxcm_eurusd_quote_ticks_2014-05-05_to_09.csv.gz")
    assert len(judged.frame) == 519_917
    share = total(judged.result, "crossed_quote") / len(judged.frame)
    assert 0.09 < share < 0.11
    assert total(judged.result, "locked_quote") > 0


def test_fred_all_missing_holiday_rows() -> None:
    judged = judge("forex/fred_h10_fx_daily_close_2000-2019.csv.gz")
    q = judged.result.quarantined
    n_series = judged.extra["wide"].shape[1] - 1
    assert n_series == 22
    per_day = q[q["check"] == "missing_price"].groupby("ts")["symbol"].nunique()
    assert int((per_day == n_series).sum()) == 197  # every currency missing: US holidays
    assert len(q) > 197 * n_series  # plus the single "ND" values


def test_histdata_volume_is_always_zero() -> None:
    judged = judge("forex/eurusd_1min_histdata_2017-01_to_06.csv.gz")
    assert counts(judged.result, "zero_volume") == {"EURUSD": len(judged.frame)}
    # Its week opens Sunday 17:00 local: 22:00 UTC when read as "EST without DST".
    first = judged.frame["ts"].iloc[0]
    assert (first.day_of_week, first.hour) in {(6, 22), (0, 7)}


# ---------------------------------------------------------------------- documented quirks, crypto


def test_lean_coinbase_daily_missing_bars() -> None:
    judged = judge("crypto/lean_coinbase_btcusd_daily_trade_and_bidask_2014-2018.csv")
    result = judged.result
    assert counts(result, "missing_price") == {"BTCUSD": 133}  # dates with no trade bar
    assert counts(result, "missing_quote") == {"BTCUSD": 119}  # dates with no quote bar
    clean = result.clean["ts"]
    days = pd.date_range(clean.min(), clean.max(), freq="D")
    assert total(result, "gap") == len(days) - len(clean)  # absent dates plus the trade-less ones inside


def test_crypto_daily_zero_volume_and_freqtrade_completeness() -> None:
    assert total(judge("crypto/crypto_daily_bitstamp_bitfinex_2014-2020.csv.gz").result, "zero_volume") == 51
    alt = judge("crypto/altbtc_5m_freqtrade_2018-01-10_to_01-30.csv.gz").frame
    per_pair = alt.groupby("symbol").size()
    assert len(per_pair) == 10
    assert per_pair.between(5720, 5760).all()


def test_binance_books_never_cross_and_trade_ids_never_repeat() -> None:
    quotes = judge("microstructure/binance_bbo_quotes_2024-08-08T2354Z_to_2024-08-09T0005Z.csv.gz").result
    trades = judge("microstructure/binance_trades_2024-08-08T2354Z_to_2024-08-09T0005Z.csv.gz").result
    assert quotes.n_input == 335_931
    assert trades.n_input == 78_638
    assert quotes.by_check("crossed_quote") == quotes.by_check("locked_quote") == []
    assert trades.by_check("duplicate_trade_id") == []
    assert quotes.quarantined.empty
    assert trades.quarantined.empty


def test_raw_websocket_captures_match_the_csv_files() -> None:
    spot = [judge(f"microstructure/raw_binance_ws/spot_btcusdt_2024080{d}.gz") for d in (8, 9)]
    usdm = judge("microstructure/raw_binance_ws/usdm_btcusdt_20240808.gz")
    trades = pd.read_csv(SHARED / "microstructure/binance_trades_2024-08-08T2354Z_to_2024-08-09T0005Z.csv.gz")
    counts_csv = trades.groupby(["market", "symbol"]).size()
    assert sum(j.extra["kinds"]["trade"] for j in spot) == counts_csv[("spot", "BTCUSDT")]
    assert usdm.extra["kinds"]["trade"] == counts_csv[("usdm_perp", "BTCUSDT")]
    assert sum(j.extra["kinds"]["bookTicker"] for j in spot) == 73_174
    assert [j.extra["kinds"]["snapshot"] for j in (*spot, usdm)] == [1, 0, 1]  # one REST snapshot per stream
    for judged in (*spot, usdm):
        assert judged.extra["trades"].quarantined.empty
        assert judged.extra["quotes"].by_check("crossed_quote") == []


# ---------------------------------------------------------------------- documented quirks, microstructure


def test_ibm_quote_ticks_are_one_sided_and_two_are_suspicious() -> None:
    result = judge("microstructure/lean_ibm_quote_ticks_by_exchange_2013-10-07_08.csv.gz").result
    assert total(result, "suspicious_flag") == 2
    assert total(result, "one_sided_quote") == result.n_input  # each row updates one side only
    ibm_trades = judge("microstructure/lean_ibm_trade_ticks_2013-10-07_08.csv.gz").result
    assert ibm_trades.quarantined.empty
    assert ibm_trades.by_check("suspicious_flag") == []


# ---------------------------------------------------------------------- news


def test_news_files_load_with_their_documented_counts() -> None:
    headlines = judge("news/financial_news_headlines_cnbc_guardian_reuters_2017-12_to_2020-07.csv.gz").frame
    assert len(headlines) == 53_242
    assert headlines["source"].value_counts().to_dict() == {
        "reuters": 32_691,
        "guardian": 17_760,
        "cnbc": 2_791,
    }
    assert headlines["ts"].nunique() == 931
    assert (headlines["ts"].min(), headlines["ts"].max()) == (
        pd.Timestamp("2017-12-17", tz="UTC"),
        pd.Timestamp("2020-07-18", tz="UTC"),
    )
    tweets = judge("news/stocknet_tweets_88_tickers_2014-2015.csv.gz").frame
    assert len(tweets) == 119_641
    assert tweets["ts"].min().strftime("%Y-%m-%d") == "2013-12-31"
    assert tweets["ts"].max().strftime("%Y-%m-%d") == "2016-03-31"
    assert not tweets.duplicated(["symbol", "tweet_id"]).any()  # the 203 duplicates were removed upstream
    assert np.issubdtype(tweets["tweet_id"].dtype, np.integer)
