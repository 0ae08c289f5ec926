"""The finance sentiment model, its lexicon, daily aggregates and look-ahead-free bar alignment.

Real data: the CNBC/Guardian/Reuters headlines (2017-12 to 2020-07, dates only) and the StockNet tweets
(2014-2015, UTC times) of the shared directory (``/work/shared/data`` or, in CI, ``../shared/data`` beside the
clone), with the StockNet daily prices for the return correlation. The headlines may not be redistributed, so
``data/sentiment/labelled.tsv`` stores their row index and a hash, never their text.

Tolerances: stream and batch agree to 1e-9 (they are in fact bit-identical); a text's score does not depend on
the batch it is scored in (exactly); the no-look-ahead property test compares exactly.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    EmptyRangeError,
    UnknownSymbolError,
)
from alphaloom.features.sentiment import (
    ALIGNED_COLUMNS,
    LEXICON_KINDS,
    MARKET_SYMBOL,
    SCORE_COLUMNS,
    FinanceSentiment,
    SentimentAlignConfig,
    SentimentConfig,
    SentimentStream,
    align_sentiment,
    daily_sentiment,
    load_lexicon,
    prepare_items,
    score_items,
    tokenize,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)
needs_shared = pytest.mark.skipif(
    SHARED is None, reason="the shared real-data directory (/work/shared/data or ../shared/data) is absent"
)
LABELLED = Path(__file__).parent / "data" / "sentiment" / "labelled.tsv"
LEXICON_DIR = REPO / "src" / "alphaloom" / "features" / "lexicon"
HEADLINES = "news/financial_news_headlines_cnbc_guardian_reuters_2017-12_to_2020-07.csv.gz"
TWEETS = "news/stocknet_tweets_88_tickers_2014-2015.csv.gz"
STOCKNET_PRICES = "stocks/stocknet_88_daily_2012-2017.csv.gz"
YAHOO_PRICES = "stocks/yahoo_faang_tsla_spx_daily_2017-2020.csv.gz"
LABELS = {"pos": 1, "neu": 0, "neg": -1}
TOL = 1e-9


# ------------------------------------------------------------------------------------------------ data
@cache
def model() -> FinanceSentiment:
    return FinanceSentiment()


@cache
def headlines() -> pd.DataFrame:
    assert SHARED is not None
    return pd.read_csv(SHARED / HEADLINES)


@cache
def tweets() -> pd.DataFrame:
    assert SHARED is not None
    return pd.read_csv(SHARED / TWEETS)


@cache
def scored_headlines() -> pd.DataFrame:
    return score_items(prepare_items(headlines(), text_col="headline"), model())


@cache
def scored_tweets() -> pd.DataFrame:
    return score_items(prepare_items(tweets()), model())


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def compound(text: str, config: SentimentConfig | None = None) -> float:
    m = model() if config is None else FinanceSentiment(config)
    return float(m.score([text])["compound"].iloc[0])


def items_frame(times: list[str], texts: list[str], symbols: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"timestamp": times, "text": texts})
    if symbols is not None:
        frame["symbol"] = symbols
    return frame


# --------------------------------------------------------------------------------------------- lexicon
def test_the_lexicon_ships_with_the_package_and_is_documented() -> None:
    lexicon = load_lexicon()
    entries = lexicon.entries
    assert 300 <= len(lexicon) <= 2500
    assert set(entries["kind"]) == set(LEXICON_KINDS)
    sentiment = entries[entries["kind"].isin(["word", "phrase", "marker"])]
    assert sentiment["value"].between(-4.0, 4.0).all()
    assert (entries["n_tokens"] <= 5).all()
    assert (LEXICON_DIR / "finance_lexicon.tsv").is_file()
    readme = (LEXICON_DIR / "README.md").read_text(encoding="utf-8")
    for needle in ("Apache-2.0", "Authored for alphaloom", "does **not** copy", "Loughran-McDonald", "VADER"):
        assert needle in readme


@pytest.mark.parametrize(
    ("term", "sign"),
    [
        ("beat", 1), ("misses", -1), ("upgrade", 1), ("downgrade", -1), ("surge", 1), ("plunge", -1),
        ("rally", 1), ("selloff", -1), ("sell-off", -1), ("bankruptcy", -1), ("lawsuit", -1), ("probe", -1),
        ("recall", -1), ("dividend hike", 1), ("guidance cut", -1), ("layoffs", -1), ("record high", 1),
        ("default", -1), ("bullish", 1), ("bearish", -1), ("buy", 1), ("sell", -1), ("short", -1),
        ("moon", 1), ("dump", -1), ("beat expectations", 1), ("short squeeze", 1), ("price target raised", 1),
        ("cut jobs", -1), ("rate cut", 1), ("🚀", 1), ("📈", 1), ("📉", -1), (":)", 1), (":(", -1),
    ],
)  # fmt: skip
def test_finance_terms_have_the_expected_sign(term: str, sign: int) -> None:
    entries = load_lexicon().entries.set_index("term")
    assert np.sign(entries.loc[term, "value"]) == sign
    assert np.sign(compound(term)) == sign


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("word\tkind\tvalue\nup\tword\t1\n", "expected the header"),
        ("term\tkind\tvalue\nup\twrd\t1\n", "Did you mean 'word'"),
        ("term\tkind\tvalue\nup\tword\t5\n", "outside [-4, 4]"),
        ("term\tkind\tvalue\nup\tword\tlots\n", "is not a number"),
        ("term\tkind\tvalue\nshort squeeze\tword\t2\n", "use kind 'phrase'"),
        ("term\tkind\tvalue\nsqueeze\tphrase\t2\n", "use kind 'word'"),
        ("term\tkind\tvalue\nnot\tnegator\t-1\n", "must have value 0"),
        ("term\tkind\tvalue\nvery\tintensifier\t-0.3\n", "needs a value in (0, 1]"),
        ("term\tkind\tvalue\nup\tword\t1\nUp\tword\t2\n", "repeats the term on line 2"),
        ("term\tkind\tvalue\n$AAPL\tword\t1\n", "has no tokens"),
        ("term\tkind\tvalue\nup\tword\n", "expected 3 tab-separated fields"),
    ],
)
def test_a_malformed_lexicon_is_refused_with_its_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "lexicon.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match="line") as info:
        load_lexicon(path)
    assert message in str(info.value)


def test_a_custom_lexicon_is_used_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tiny.tsv"
    path.write_text("term\tkind\tvalue\nmoonshot\tword\t-2\nnot\tnegator\t0\n", encoding="utf-8")
    custom = FinanceSentiment(SentimentConfig(lexicon_path=path))
    assert len(custom.lexicon) == 2
    assert custom.score(["a moonshot", "not a moonshot", "great"])["label"].tolist() == [-1, 1, 0]
    with pytest.raises(DataNotFoundError, match="does not exist"):
        FinanceSentiment(SentimentConfig(lexicon_path=tmp_path / "missing.tsv"))


# ----------------------------------------------------------------------------------------------- model
def test_tokeniser_copes_with_the_upstream_spacing_tickers_and_placeholders() -> None:
    assert tokenize("U . S . stocks drop 4 . 6% ; GBP 1 , 227") == ["u", "s", "stocks", "drop", ";", "gbp"]
    assert tokenize("RT @USER: $AAPL to the moon 🚀🚀 URL") == [":", "to", "the", "moon", "🚀", "🚀"]
    assert tokenize("China's sell-off isn't over :( $FB -1.5% &amp; +2%") == [
        "china", "sell-off", "isn't", "over", ":(", "-%", "+%",
    ]  # fmt: skip
    assert tokenize("great :-) :D ;) :/ :P <3 (: https://t.co/x #bullish") == [
        "great", ":)", ":)", ";)", ":/", ":p", "<3", ":)", "bullish",
    ]  # fmt: skip


def test_scores_are_bounded_and_shares_sum_to_one() -> None:
    texts = [
        "Dish results beat estimates , shares jump",
        "Boeing warns of job cuts",
        "",
        "Board meets Tuesday",
    ]
    scores = model().score(texts)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert scores["compound"].between(-1.0, 1.0).all()
    shares = scores[["positive", "negative", "neutral"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, atol=1e-12)
    assert scores["label"].tolist() == [1, -1, 0, 0]
    assert scores["n_hits"].tolist()[2:] == [0, 0]
    assert scores.loc[2, "neutral"] == 1.0
    np.testing.assert_array_equal(model().transform(texts), scores[list(SCORE_COLUMNS[:4])].to_numpy())
    np.testing.assert_array_equal(model().predict(texts), scores["label"].to_numpy())
    assert model().fit(texts) is model()


def test_phrases_are_matched_before_their_words() -> None:
    assert compound("GameStop short squeeze") > 0 > compound("hedge funds short GameStop")
    assert compound("Fed delivers rate cut") > 0 > compound("Ford to cut jobs")
    assert compound("Chevron profit beats expectations") > compound("Chevron profit beats")
    assert compound("Analyst says price target raised") > 0
    assert compound("Stocks fall for a third day in a row") == compound("Stocks fall for a third day")
    explained = model().explain("Tesla rally fuelled by fear of missing out , not short squeeze")
    assert "fear of missing out" in explained["term"].tolist()
    assert "short squeeze" in explained["term"].tolist()


def test_negation_has_a_scope_and_flips_once() -> None:
    assert compound("results were good") > 0 > compound("results were not good")
    assert compound("no longer bullish") < 0
    assert compound("the economy avoids recession") > 0 > compound("the economy enters recession")
    assert compound("they haven't and won't upgrade") < 0  # two negators still mean "no upgrade"
    # Three terms of scope by default: "not" before four neutral words no longer reaches "good".
    assert compound("not a b c good") > 0 > compound("not a b good")
    assert compound("not a b c good", SentimentConfig(negation_scope=4)) < 0
    # A clause boundary stops negation.
    assert compound("no deal yet , shares surge") > 0


def test_intensifiers_contrast_and_concession_weigh_terms() -> None:
    assert compound("very strong demand") > compound("strong demand") > compound("slightly strong demand") > 0
    assert compound("revenue fell but profit surged") > 0 > compound("profit surged but revenue fell")
    explained = model().explain("revenue fell but profit surged")
    weights = dict(zip(explained["term"], explained["weight"], strict=True))
    assert weights["fell"] == 0.5
    assert weights["surged"] == 1.5
    explained = model().explain("stocks rise despite trade fears , oil slides")
    weights = dict(zip(explained["term"], explained["weight"], strict=True))
    assert weights["fears"] == 0.5
    assert weights["rise"] == weights["slides"] == 1.0


def test_non_english_text_scores_neutral_for_want_of_hits() -> None:
    scores = model().score(
        [
            "Me pregunto a donde se fue el Presupuesto 2014 con una base a fin de año",
            "Unsere Jahrespressekonferenz wird am Mittwoch in Zürich stattfinden",
            "ExxonMobil: mise en production d'un projet en Malaisie",
        ]
    )
    assert (scores["n_hits"] == 0).all()
    assert (scores["compound"] == 0.0).all()


def test_a_score_does_not_depend_on_its_batch() -> None:
    texts = [
        "Wall Street rally pauses , but stocks mint weekly gain",
        "not very good at all :(",
        "",
        "$AAPL 🚀🚀 +3.5% breakout",
        "Deutsche Bank making progress on turnaround : ECB source",
    ] * 3
    batch = model().score(texts).to_numpy(dtype=float)
    single = np.vstack([model().score([t]).to_numpy(dtype=float) for t in texts])
    np.testing.assert_array_equal(batch, single)
    series = pd.Series(texts[:3], index=[10, 20, 30])
    assert model().score(series).index.tolist() == [10, 20, 30]


def test_texts_must_be_strings() -> None:
    with pytest.raises(DataFormatError, match="wrap it"):
        model().score("one headline")
    with pytest.raises(DataFormatError, match=r"1 of 3 are not \(first at 1: float nan\).*fillna"):
        model().score(["a", float("nan"), "b"])
    with pytest.raises(DataFormatError, match="first at 'y': int 3"):
        model().score(pd.Series(["a", 3], index=["x", "y"], dtype=object))
    with pytest.raises(ConfigError, match="SentimentConfig"):
        FinanceSentiment({"alpha": 15})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Did you mean 'negation_scope'"):
        SentimentConfig.from_dict({"negation_scop": 3})
    with pytest.raises(ConfigError, match="alpha"):
        SentimentConfig.from_dict({"alpha": -1.0})


# ------------------------------------------------------------------------------------ real corpora
@needs_shared
def test_scores_every_real_headline_and_tweet() -> None:
    # Throughput is measured in bench/sentiment.py, not asserted here.
    texts = headlines()["headline"].tolist() + tweets()["text"].tolist()
    scores = model().score(texts)
    n_headlines = len(headlines())
    no_hit_headlines = float((scores["n_hits"].iloc[:n_headlines] == 0).mean())
    no_hit_tweets = float((scores["n_hits"].iloc[n_headlines:] == 0).mean())
    assert len(scores) == 53_242 + 119_641
    assert scores["compound"].between(-1.0, 1.0).all()
    assert 0.15 < no_hit_headlines < 0.40
    assert 0.40 < no_hit_tweets < 0.70  # spam, tickers-only and non-English tweets (about 13%) find no term


@cache
def labelled() -> pd.DataFrame:
    frame = pd.read_csv(LABELLED, sep="\t", quoting=3, dtype=str, keep_default_na=False)
    by_id = tweets().drop_duplicates("tweet_id").set_index("tweet_id")["text"]
    texts = [
        headlines()["headline"].iloc[int(key)] if source == "headline" else by_id.loc[int(key)]
        for source, key in zip(frame["source"], frame["key"], strict=True)
    ]
    frame["text"] = texts
    frame["y"] = frame["label"].map(LABELS)
    frame["pred"] = model().predict(texts)
    return frame


@needs_shared
def test_the_labelled_set_points_at_the_shared_files() -> None:
    frame = labelled()
    assert len(frame) == 250
    assert set(frame["label"]) == set(LABELS)
    assert frame.groupby(["split", "source"]).size().to_dict() == {
        ("holdout", "headline"): 50,
        ("holdout", "tweet"): 50,
        ("seen", "headline"): 75,
        ("seen", "tweet"): 75,
    }
    digests = [hashlib.sha1(t.encode("utf-8")).hexdigest()[:12] for t in frame["text"]]
    assert digests == frame["sha1_12"].tolist(), "the shared files changed; re-derive labelled.tsv"
    assert (frame.loc[frame["source"] == "headline", "snippet"] == "").all()  # research-only text not stored


@needs_shared
def test_accuracy_on_hand_labelled_real_texts_beats_the_majority_class() -> None:
    frame = labelled()
    report = []
    for name, part in [("all", frame), *frame.groupby("split")]:
        accuracy = float((part["pred"] == part["y"]).mean())
        baseline = float(part["y"].value_counts(normalize=True).max())
        report.append(f"{name}: {accuracy:.1%} vs baseline {baseline:.1%} (n={len(part)})")
        margin = 0.10 if name == "holdout" else 0.15
        assert accuracy >= baseline + margin, report[-1]
    polar = frame[(frame["y"] != 0) & (frame["pred"] != 0)]
    direction = float((polar["y"] == polar["pred"]).mean())
    print("\naccuracy " + "; ".join(report) + f"; direction when both polar {direction:.1%}")
    assert direction >= 0.85
    # Golden figures of the shipped lexicon: a change to it must update these on purpose.
    assert int((frame["pred"] == frame["y"]).sum()) == 181
    holdout = frame[frame["split"] == "holdout"]
    assert int((holdout["pred"] == holdout["y"]).sum()) == 64


@needs_shared
def test_daily_tweet_sentiment_moves_with_the_same_day_return() -> None:
    assert SHARED is not None
    daily = daily_sentiment(scored_tweets())
    prices = pd.read_csv(SHARED / STOCKNET_PRICES)
    prices = prices.dropna(subset=["adj_close"])  # the README's 3 all-NaN rows
    prices["day"] = pd.to_datetime(prices["timestamp"], format="%Y-%m-%d").dt.tz_localize("UTC")
    prices = prices.sort_values(["symbol", "day"])
    prices["ret"] = prices.groupby("symbol")["adj_close"].pct_change()
    pairs = daily.merge(prices[["symbol", "day", "ret"]], on=["symbol", "day"]).dropna(subset=["ret"])
    pairs = pairs[pairs["sent_count"] >= 3]
    n = len(pairs)
    r = float(np.corrcoef(pairs["sent_mean"], pairs["ret"])[0, 1])
    t = r * math.sqrt((n - 2) / (1 - r * r))
    # Days are not independent (the whole market moves together): also the mean of daily cross-sections.
    by_day = pairs.groupby("day").filter(lambda g: len(g) >= 5).groupby("day")
    cross = by_day.apply(lambda g: g["sent_mean"].corr(g["ret"])).dropna()
    fm_t = float(cross.mean() / cross.std() * math.sqrt(len(cross)))
    print(
        f"\nsame-day corr(mean tweet compound, return): r={r:.3f} (t={t:.1f}, n={n:,} symbol-days, "
        f"{pairs['symbol'].nunique()} symbols); daily cross-sections mean r={cross.mean():.3f} "
        f"(t={fm_t:.1f}, {len(cross)} days)"
    )
    assert n > 5_000
    assert r > 0.08
    assert t > 5.0
    assert fm_t > 4.0


@needs_shared
def test_daily_aggregates_count_every_item_once() -> None:
    scored = scored_tweets()
    daily = daily_sentiment(scored)
    assert int(daily["sent_count"].sum()) == len(scored)  # nothing silently dropped
    assert not daily.duplicated(["day", "symbol"]).any()
    assert (daily["available_at"] >= daily["day"]).all()
    assert (daily["available_at"] < daily["day"] + pd.Timedelta(days=1)).all()
    assert daily[["sent_pos_share", "sent_neg_share", "sent_hit_share"]].stack().between(0, 1).all()
    headline_days = daily_sentiment(scored_headlines())
    assert set(headline_days["symbol"]) == {MARKET_SYMBOL}
    # A date-only headline day is known only when it is over.
    assert (headline_days["available_at"] == headline_days["day"] + pd.Timedelta(days=1)).all()
    assert int(headline_days["sent_count"].sum()) == len(headlines())


# ---------------------------------------------------------------------------------------- alignment
def test_prepare_items_gives_date_only_items_the_end_of_their_date() -> None:
    frame = items_frame(["2020-03-02", "2020-03-02", "2020-03-03"], ["Stocks surge", "Stocks slump", "Rally"])
    items = prepare_items(frame)
    assert items["available_at"].tolist() == [utc("2020-03-03")] * 2 + [utc("2020-03-04")]
    assert items["day"].tolist() == [utc("2020-03-02")] * 2 + [utc("2020-03-03")]
    assert set(items["symbol"]) == {MARKET_SYMBOL}
    # Dates kept in New York time become available at midnight New York time, after midnight UTC.
    new_york = prepare_items(frame, date_tz="America/New_York")
    assert new_york["available_at"].iloc[0] == utc("2020-03-03 05:00")
    # date objects are dates too.
    dates = items_frame([date(2020, 3, 2)], ["x"])
    assert prepare_items(dates)["available_at"].iloc[0] == utc("2020-03-03")


def test_a_date_only_headline_never_reaches_the_bar_of_its_own_date() -> None:
    items = prepare_items(items_frame(["2020-03-02"], ["Stocks surge to record high"]))
    daily = pd.date_range("2020-03-01", "2020-03-04", freq="D", tz="UTC")
    aligned = align_sentiment(items, daily, symbol=MARKET_SYMBOL)
    assert aligned["sent_count"].tolist() == [0, 0, 1, 0]
    assert aligned.loc[utc("2020-03-02"), "sent_mean"] == 0.0
    assert aligned.loc[utc("2020-03-03"), "sent_mean"] > 0
    hourly = pd.date_range("2020-03-02", "2020-03-03 01:00", freq="h", tz="UTC")
    aligned = align_sentiment(items, hourly, symbol=MARKET_SYMBOL)
    assert (aligned.loc[: utc("2020-03-02 23:00"), ["sent_count", "sent_ewm_weight"]] == 0).all().all()
    assert aligned.loc[utc("2020-03-03"), "sent_count"] == 1


def test_a_tweet_at_14_00_reaches_only_bars_starting_at_or_after_14_00() -> None:
    frame = items_frame(["2015-06-01 14:00:00+00:00"], ["$AAPL breakout , very bullish 🚀"], ["AAPL"])
    items = prepare_items(frame)
    bars = pd.date_range("2015-06-01 12:00", periods=5, freq="h", tz="UTC")
    aligned = align_sentiment(items, bars, symbol="AAPL")
    assert aligned["sent_count"].tolist() == [0, 0, 1, 0, 0]
    assert (aligned.loc[: utc("2015-06-01 13:00"), list(ALIGNED_COLUMNS)] == 0).all().all()
    assert (aligned.loc[utc("2015-06-01 14:00") :, "sent_ewm"] > 0).all()
    weights = aligned["sent_ewm_weight"].to_numpy()[2:]
    np.testing.assert_allclose(weights, 0.5 ** (np.arange(3) / 5.0), rtol=1e-12)  # half-life 5 bars
    in_days = align_sentiment(items, bars, symbol="AAPL", config=SentimentAlignConfig(ewm_unit="days"))
    np.testing.assert_allclose(
        in_days["sent_ewm_weight"].to_numpy()[2:], 0.5 ** (np.arange(3) / 24.0 / 5.0), rtol=1e-12
    )
    # One second later, the 14:00 bar no longer sees it.
    late = prepare_items(items_frame(["2015-06-01 14:00:01+00:00"], ["bullish"], ["AAPL"]))
    assert align_sentiment(late, bars, symbol="AAPL")["sent_count"].tolist() == [0, 0, 0, 1, 0]


@needs_shared
def test_real_headlines_land_on_the_first_bar_after_their_date() -> None:
    assert SHARED is not None
    scored = scored_headlines()
    prices = pd.read_csv(SHARED / YAHOO_PRICES)
    bars = pd.DatetimeIndex(
        pd.to_datetime(prices.loc[prices["symbol"] == "AAPL", "timestamp"], format="%Y-%m-%d")
    ).tz_localize("UTC")
    aligned = align_sentiment(scored, bars, symbol=MARKET_SYMBOL)
    # Bar k counts the headlines dated in [date(k-1), date(k) - 1 day]: none of its own date.
    dates = pd.DatetimeIndex(scored["day"])
    expected = np.histogram(
        (dates + pd.Timedelta(days=1)).as_unit("ns").asi8,
        bins=np.concatenate(([np.iinfo(np.int64).min], bars.as_unit("ns").asi8 + 1)),
    )[0]
    expected = expected[: len(bars)]
    np.testing.assert_array_equal(aligned["sent_count"].to_numpy(), expected)
    own_date = dates.isin(bars)
    assert own_date.sum() > 20_000  # most headlines fall on trading days, yet reach the next bar only
    assert int(aligned["sent_count"].sum()) + aligned.attrs["n_after_last_bar"] == len(scored)


def _feed_stream(scored: pd.DataFrame, bars: pd.DatetimeIndex, stream: SentimentStream) -> pd.DataFrame:
    ordered = scored.sort_values("available_at", kind="stable")
    avail = pd.DatetimeIndex(ordered["available_at"]).as_unit("ns").asi8
    times = ordered["available_at"].tolist()
    compounds = ordered["compound"].to_numpy()
    labels = ordered["label"].to_numpy()
    symbols = ordered["symbol"].tolist()
    rows, i = [], 0
    for ts in bars:
        while i < len(avail) and avail[i] <= ts.value:
            stream.add_score(times[i], compounds[i], int(labels[i]), symbols[i])
            i += 1
        rows.append(stream.on_bar(ts))
    return pd.DataFrame(rows).set_index("ts")


@needs_shared
@pytest.mark.parametrize(
    "config", [SentimentAlignConfig(), SentimentAlignConfig(ewm_halflife=2.0, ewm_unit="days")]
)
def test_stream_equals_batch_on_real_tweets(config: SentimentAlignConfig) -> None:
    scored = scored_tweets()
    bars = pd.date_range("2014-01-01", "2016-04-01", freq="6h", tz="UTC")
    batch = align_sentiment(scored, bars, symbol="AAPL", config=config)
    stream = SentimentStream("AAPL", config)
    streamed = _feed_stream(scored, bars, stream)
    assert list(streamed.columns) == list(ALIGNED_COLUMNS)
    np.testing.assert_allclose(streamed.to_numpy(float), batch.to_numpy(float), rtol=0, atol=TOL)
    assert stream.n_items == int(batch["sent_count"].sum()) == int((scored["symbol"] == "AAPL").sum())
    assert stream.n_items + stream.n_ignored == len(scored)


def test_stream_scores_texts_like_the_batch() -> None:
    frame = items_frame(
        ["2015-06-01 13:59:00+00:00", "2015-06-01 14:00:00+00:00", "2015-06-01 15:30:00+00:00"],
        ["Apple beats estimates", "Apple downgraded to sell :(", "rally continues"],
        ["AAPL", "AAPL", "MSFT"],
    )
    items = prepare_items(frame)
    bars = pd.date_range("2015-06-01 13:00", periods=4, freq="h", tz="UTC")
    batch = align_sentiment(items, bars, symbol="AAPL")
    stream = SentimentStream("AAPL")
    rows = []
    pending = list(items.itertuples())
    for ts in bars:
        while pending and pending[0].available_at <= ts:
            item = pending.pop(0)
            stream.add_item(item.available_at, item.text, item.symbol)
        rows.append(stream.on_bar(ts))
    np.testing.assert_allclose(
        pd.DataFrame(rows).set_index("ts").to_numpy(float), batch.to_numpy(float), atol=TOL
    )
    assert stream.n_ignored == 1


# ------------------------------------------------------------------------------- no look-ahead
T0 = pd.Timestamp("2020-01-01", tz="UTC")
SCORED_ITEM = st.tuples(
    st.integers(min_value=0, max_value=5_000),  # minutes after T0
    st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),
    st.sampled_from([-1, 0, 1]),
    st.sampled_from(["A", "B"]),
)


def _scored_frame(rows: list[tuple[int, float, int, str]], *, anchor: bool = True) -> pd.DataFrame:
    # The anchor, an item of "A" before every bar, keeps "A" a known symbol whatever is removed later.
    rows = [(0, 0.25, 1, "A"), *rows] if anchor else rows
    return pd.DataFrame(
        {
            "available_at": pd.DatetimeIndex([T0 + pd.Timedelta(minutes=m) for m, *_ in rows], tz="UTC"),
            "compound": [c for _, c, _, _ in rows],
            "label": [lab for *_, lab, _ in rows],
            "symbol": [s for *_, s in rows],
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(SCORED_ITEM, max_size=40),
    extra=st.lists(SCORED_ITEM, max_size=15),
    bar_steps=st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=30),
    cut=st.integers(min_value=0, max_value=29),
    unit=st.sampled_from(["bars", "days"]),
    data=st.data(),
)
def test_items_after_t_never_change_features_at_or_before_t(
    rows: list[tuple[int, float, int, str]],
    extra: list[tuple[int, float, int, str]],
    bar_steps: list[int],
    cut: int,
    unit: str,
    data: st.DataObject,
) -> None:
    bars = pd.DatetimeIndex(T0 + pd.to_timedelta(np.cumsum(bar_steps), unit="min"))
    cut = min(cut, len(bars) - 1)
    t = bars[cut]
    config = SentimentAlignConfig(ewm_halflife=3.0, ewm_unit=unit)
    original = _scored_frame(rows)
    before = align_sentiment(original, bars, symbol="A", config=config)
    # Change everything published after t: new scores, removed items, added items (anywhere after t).
    future = original["available_at"] > t
    changed = original.copy()
    changed.loc[future, "compound"] = data.draw(
        st.lists(st.floats(-1, 1, allow_nan=False), min_size=int(future.sum()), max_size=int(future.sum()))
    )
    keep = ~future | np.asarray(
        data.draw(st.lists(st.booleans(), min_size=len(changed), max_size=len(changed)))
    )
    changed = changed[keep]
    added = _scored_frame(extra, anchor=False)
    added = added[added["available_at"] > t]
    changed = pd.concat([changed, added], ignore_index=True)
    after = align_sentiment(changed, bars, symbol="A", config=config)
    pd.testing.assert_frame_equal(before.loc[:t], after.loc[:t], check_exact=True)
    # The stream gives the same rows as the batch, whatever the data.
    streamed = _feed_stream(original, bars, SentimentStream("A", config))
    np.testing.assert_allclose(streamed.to_numpy(float), before.to_numpy(float), rtol=0, atol=TOL)


# --------------------------------------------------------------------------------------- bad input
def test_bad_items_get_clear_errors() -> None:
    good = items_frame(["2015-06-01 14:00:00+00:00"], ["up"], ["AAPL"])
    with pytest.raises(DataFormatError, match=r"missing column.*'text'.*text_col='headline'"):
        prepare_items(good.rename(columns={"text": "headline"}))
    with pytest.raises(DataFormatError, match=r"missing column.*'timestamp'.*Did you mean 'timestmp'"):
        prepare_items(good.rename(columns={"timestamp": "timestmp"}))
    with pytest.raises(DataFormatError, match=r"without a UTC offset.*never guess"):
        prepare_items(items_frame(["2015-06-01 14:00:00"], ["up"]))
    naive = good.assign(timestamp=pd.to_datetime(["2015-06-01 14:00"]))
    with pytest.raises(DataFormatError, match=r"no timezone.*tz_localize"):
        prepare_items(naive)
    with pytest.raises(DataFormatError, match="has no timezone"):
        prepare_items(good.assign(timestamp=[datetime(2015, 6, 1, 14)]))  # noqa: DTZ001 - on purpose
    assert prepare_items(good.assign(timestamp=[datetime(2015, 6, 1, 14, tzinfo=UTC)]))["available_at"].iloc[
        0
    ] == utc("2015-06-01 14:00")
    with pytest.raises(DataFormatError, match=r"1 of 2 are not.*int 7"):
        prepare_items(items_frame(["2015-06-01", "2015-06-02"], ["up", 7]))
    with pytest.raises(DataFormatError, match="float nan"):
        prepare_items(items_frame(["2015-06-01"], [np.nan]))
    with pytest.raises(DataFormatError, match=r"missing timestamps|could not parse|without a UTC offset"):
        prepare_items(items_frame(["2015-06-01 14:00:00+00:00", None], ["up", "down"]))
    with pytest.raises(DataFormatError, match=r"non-empty str.*fillna"):
        prepare_items(items_frame(["2015-06-01 14:00:00+00:00"], ["up"], [None]))
    with pytest.raises(DataFormatError, match="dates written YYYY-MM-DD"):
        prepare_items(items_frame(["2015-06-01", "June 2"], ["up", "down"]), date_only=True)
    with pytest.raises(ConfigError, match="not a known time zone"):
        prepare_items(items_frame(["2015-06-01"], ["up"]), date_tz="Mars/Olympus")
    with pytest.raises(DataFormatError, match="must be a pandas DataFrame"):
        prepare_items(["up"])  # type: ignore[arg-type]


def test_bad_alignment_inputs_get_clear_errors() -> None:
    items = prepare_items(items_frame(["2015-06-01 14:00:00+00:00"], ["up"], ["AAPL"]))
    bars = pd.date_range("2015-06-01", periods=3, freq="D", tz="UTC")
    with pytest.raises(UnknownSymbolError, match=r"'APPL'.*Did you mean 'AAPL'"):
        align_sentiment(items, bars, symbol="APPL")
    with pytest.raises(DataFormatError, match="no timezone"):
        align_sentiment(items, bars.tz_localize(None), symbol="AAPL")
    with pytest.raises(DataFormatError, match=r"strictly increasing.*element 2"):
        align_sentiment(items, bars[[0, 1, 1]], symbol="AAPL")
    with pytest.raises(EmptyRangeError, match="empty"):
        align_sentiment(items, bars[:0], symbol="AAPL")
    raw = items_frame(["2015-06-01 14:00:00+00:00"], ["up"], ["AAPL"])
    with pytest.raises(DataFormatError, match="run prepare_items"):
        align_sentiment(raw, bars, symbol="AAPL")
    with pytest.raises(DataFormatError, match="timezone-aware"):
        align_sentiment(
            items.assign(available_at=items["available_at"].dt.tz_localize(None)), bars, symbol="AAPL"
        )
    with pytest.raises(DataFormatError, match=r"compound'\] must be finite and in \[-1, 1\]"):
        align_sentiment(items.assign(compound=2.0, label=1), bars, symbol="AAPL")
    with pytest.raises(DataFormatError, match="must be -1, 0 or 1"):
        align_sentiment(items.assign(compound=0.5, label=2), bars, symbol="AAPL")
    with pytest.raises(ConfigError, match="SentimentAlignConfig"):
        align_sentiment(items, bars, symbol="AAPL", config=SentimentConfig())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ewm_unit"):
        SentimentAlignConfig.from_dict({"ewm_unit": "weeks"})


def test_the_stream_refuses_late_naive_or_unordered_input() -> None:
    stream = SentimentStream("AAPL")
    with pytest.raises(DataFormatError, match="no timezone"):
        stream.add_score(datetime(2015, 6, 1, 14), 0.5, 1, "AAPL")  # noqa: DTZ001 - on purpose
    stream.add_score(utc("2015-06-01 14:00"), 0.5, 1, "AAPL")
    with pytest.raises(DataFormatError, match="time order"):
        stream.add_score(utc("2015-06-01 13:00"), 0.5, 1, "AAPL")
    stream.on_bar(utc("2015-06-01 15:00"))
    with pytest.raises(DataFormatError, match="not dropped silently"):
        stream.add_score(utc("2015-06-01 15:00"), 0.5, 1, "AAPL")
    with pytest.raises(DataFormatError, match="strictly increasing"):
        stream.on_bar(utc("2015-06-01 15:00"))
    stream.add_score(utc("2015-06-01 17:00"), 0.5, 1, "AAPL")
    with pytest.raises(DataFormatError, match="belongs to a later bar"):
        stream.on_bar(utc("2015-06-01 16:00"))
    with pytest.raises(DataFormatError, match=r"in \[-1, 1\]"):
        stream.add_score(utc("2015-06-01 18:00"), 1.5, 1, "AAPL")
    with pytest.raises(DataFormatError, match="must be a str"):
        stream.add_item(utc("2015-06-01 18:00"), None, "AAPL")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty str"):
        SentimentStream("")
