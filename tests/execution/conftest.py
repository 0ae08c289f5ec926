"""Trading-engine fixtures: real sample bars and a paper venue over them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from alphaloom.core.types import AssetClass
from alphaloom.data.connectors.paper import PaperConfig, PaperExchange
from alphaloom.data.sample import load_sample

SYMBOLS = ["SPY", "QQQ", "BTCUSD"]
CLASSES = {"SPY": AssetClass.ETF, "QQQ": AssetClass.ETF, "BTCUSD": AssetClass.CRYPTO}
START = datetime(2019, 6, 1, tzinfo=UTC)
END = datetime(2019, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def bars() -> pd.DataFrame:
    sample = load_sample(["us_equities_daily", "crypto_daily"])
    return sample[sample["symbol"].isin(SYMBOLS)].reset_index(drop=True)


@pytest.fixture
def make_paper(bars: pd.DataFrame):
    def build(journal: Path | None = None, **changes) -> PaperExchange:
        cfg = PaperConfig(symbols=tuple(SYMBOLS), start=START, end=END, journal=journal, **changes)
        return PaperExchange(cfg, bars=bars)

    return build
