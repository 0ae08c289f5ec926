"""Sentiment scoring throughput on the real headlines and tweets, and the cost of aligning them to bars.

No peer is installed here (VADER and FinBERT-style models are not dependencies), so the figures are absolute:
texts scored per second on one core, and seconds to align a year of tweets to daily bars.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.features import sentiment

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (Path("/work/shared/data"), REPO.parent / "shared" / "data") if p.is_dir()), None)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    if SHARED is None:
        raise SystemExit("the shared real-data directory (/work/shared/data or ../shared/data) is missing")
    news = SHARED / "news"
    headlines = pd.read_csv(news / "financial_news_headlines_cnbc_guardian_reuters_2017-12_to_2020-07.csv.gz")
    tweets = pd.read_csv(news / "stocknet_tweets_88_tickers_2014-2015.csv.gz")
    texts = headlines["headline"].tolist() + tweets["text"].tolist()
    if args.quick:
        texts = texts[:20_000]
    model = sentiment.FinanceSentiment()
    seconds = best_of(lambda: model.score(texts), repeats=1 if args.quick else 3)
    items = sentiment.score_items(sentiment.prepare_items(tweets))
    bars = pd.date_range("2014-01-01", "2016-01-01", freq="D", tz="UTC")
    t0 = time.perf_counter()
    for symbol in items["symbol"].unique()[:20]:
        sentiment.align_sentiment(items, bars, symbol=symbol)
    align = (time.perf_counter() - t0) / 20
    figs = Figures("Finance-lexicon sentiment")
    rate = len(texts) / seconds
    figs.add("alphaloom", "texts_per_s", rate, "texts/s", f"{len(texts):,} real texts, one core")
    figs.add("alphaloom", "align_seconds_per_symbol", align, "s", "2 years of daily bars, scored tweets")
    figs.emit(args.json)


if __name__ == "__main__":
    main()
