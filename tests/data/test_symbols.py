"""One symbol scheme across venues: every spelling reads to one canonical form and maps back per venue."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alphaloom.core.exceptions import ConfigError, UnknownSymbolError
from alphaloom.core.types import AssetClass
from alphaloom.data.symbols import (
    CRYPTO_ASSETS,
    FIAT_CURRENCIES,
    VENUES,
    canonical,
    parse_symbol,
    to_venue,
)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("BTC-USD", "BTCUSD"),
        ("BTC/USD", "BTCUSD"),
        ("BTCUSD", "BTCUSD"),
        ("btc-usd", "BTCUSD"),
        (" btc/usd ", "BTCUSD"),
        ("btc usd", "BTCUSD"),
        ("XBTUSD", "BTCUSD"),  # BitMEX / Kraken alias
        ("XBT/USD", "BTCUSD"),
        ("XXBTZUSD", "BTCUSD"),  # Kraken's prefixed codes
        ("XETHZEUR", "ETHEUR"),
        ("XDG-USD", "DOGEUSD"),
        ("BTCUSDT", "BTCUSDT"),  # a stablecoin is not the dollar
        ("USDTUSD", "USDTUSD"),
        ("ETHBTC", "ETHBTC"),
        ("ADA/BTC", "ADABTC"),
        ("XRP/ETH", "XRPETH"),
        ("PEPE-USD", "PEPEUSD"),  # unknown base, known quote
        ("EUR_USD", "EURUSD"),
        ("EUR/USD", "EURUSD"),
        ("EUR.USD", "EURUSD"),  # Interactive Brokers
        ("eurusd", "EURUSD"),
        ("USDJPY", "USDJPY"),
        ("XAU_USD", "XAUUSD"),
        ("SPY", "SPY"),
        ("spy", "SPY"),
        ("GOOGL", "GOOGL"),
        ("BRK.B", "BRK.B"),
        ("BRK-B", "BRK.B"),
        ("brk/b", "BRK.B"),
        ("BF-B", "BF.B"),
        ("^GSPC", "^GSPC"),
        ("SX5E", "SX5E"),
        ("0700", "0700"),
    ],
)
def test_canonical_spellings(spelling: str, expected: str) -> None:
    assert canonical(spelling) == expected


@pytest.mark.parametrize(
    ("spelling", "venue", "expected"),
    [
        ("BTC-USD", "coinbase", "BTCUSD"),
        ("EUR_USD", "oanda", "EURUSD"),
        ("SPX500_USD", "oanda", "SPX500USD"),  # an OANDA CFD: a pair on a pair-only venue
        ("DE30_EUR", "oanda", "DE30EUR"),
        ("BTC/USDT", "ccxt", "BTCUSDT"),
        ("FOO/BAR", "ccxt", "FOOBAR"),  # ccxt always writes BASE/QUOTE
        ("BTC-USD", "robinhood", "BTCUSD"),
        ("BRK.B", "robinhood", "BRK.B"),
        ("BRK-B", "robinhood", "BRK.B"),
        ("AAPL", "paper", "AAPL"),
    ],
)
def test_canonical_with_a_venue(spelling: str, venue: str, expected: str) -> None:
    assert canonical(spelling, venue) == expected


@pytest.mark.parametrize(
    ("symbol", "venue", "expected"),
    [
        ("BTCUSD", "coinbase", "BTC-USD"),
        ("ETHBTC", "coinbase", "ETH-BTC"),
        ("EURUSD", "oanda", "EUR_USD"),
        ("XAUUSD", "oanda", "XAU_USD"),
        ("BTCUSD", "ccxt", "BTC/USD"),
        ("ADABTC", "ccxt", "ADA/BTC"),
        ("BTCUSD", "robinhood", "BTC-USD"),
        ("SPY", "robinhood", "SPY"),
        ("BRK.B", "robinhood", "BRK.B"),
        ("BTCUSD", "paper", "BTCUSD"),
        ("BRK-B", "paper", "BRK.B"),
        ("XBTUSD", "coinbase", "BTC-USD"),  # any spelling in, the venue's out
        ("PEPEUSD", "coinbase", "PEPE-USD"),  # read as a pair where only pairs are listed
    ],
)
def test_to_venue(symbol: str, venue: str, expected: str) -> None:
    assert to_venue(symbol, venue) == expected


@pytest.mark.parametrize("symbol", ["BTCUSD", "ETHBTC", "EURUSD", "USDJPY", "LTCUSDT", "XAUUSD"])
@pytest.mark.parametrize("venue", ["coinbase", "oanda", "ccxt", "paper"])
def test_round_trip_through_a_venue(symbol: str, venue: str) -> None:
    assert canonical(to_venue(symbol, venue), venue) == symbol


def test_parse_gives_the_parts_and_a_guess_of_the_asset_class() -> None:
    btc = parse_symbol("XBT/USD")
    assert (btc.kind, btc.base, btc.quote, btc.asset_class) == ("pair", "BTC", "USD", AssetClass.CRYPTO)
    eur = parse_symbol("EUR_USD")
    assert (eur.base, eur.quote, eur.asset_class) == ("EUR", "USD", AssetClass.FOREX)
    brk = parse_symbol("BRK-B")
    assert (brk.kind, brk.base, brk.share_class, brk.asset_class) == ("ticker", "BRK", "B", AssetClass.STOCK)
    assert parse_symbol("SPX500_USD", "oanda").asset_class is AssetClass.CFD
    assert parse_symbol("^GSPC").asset_class is AssetClass.INDEX


@pytest.mark.parametrize(
    ("junk", "hint"),
    [
        ("BTC--USD", "Did you mean 'BTCUSD'?"),
        ("BTCUSDD", "Did you mean 'BTCUSD'?"),
        ("BTCUSD_PERP", "Did you mean 'BTCUSD'?"),
        ("FOO-BAR", "expected a pair such as 'BTC-USD'"),
        ("!!!", "or a ticker such as 'SPY' or 'BRK.B'"),
        ("", "must not be empty"),
        ("BTC/USDT:USDT", "derivative contract"),
    ],
)
def test_junk_is_refused_with_a_hint(junk: str, hint: str) -> None:
    with pytest.raises(UnknownSymbolError) as err:
        canonical(junk)
    assert hint in str(err.value)


def test_venue_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown venue 'coinbse'\. Did you mean 'coinbase'"):
        to_venue("BTCUSD", "coinbse")
    with pytest.raises(ConfigError, match="Known venues: paper, coinbase, oanda, robinhood, ccxt"):
        canonical("BTCUSD", "kraken")
    with pytest.raises(UnknownSymbolError, match="coinbase lists currency and crypto pairs only"):
        to_venue("SPY", "coinbase")
    with pytest.raises(UnknownSymbolError, match="use 'oanda' for forex"):
        to_venue("EURUSD", "robinhood")
    with pytest.raises(UnknownSymbolError, match="must be a string"):
        canonical(42)  # type: ignore[arg-type]
    assert set(VENUES) == {"paper", "coinbase", "oanda", "robinhood", "ccxt"}


assets = st.sampled_from(sorted(FIAT_CURRENCIES | CRYPTO_ASSETS))


@given(assets, assets, st.sampled_from(["-", "/", "_"]), st.booleans())
def test_separated_pairs_of_known_assets_are_their_concatenation(
    base: str, quote: str, sep: str, lower: bool
) -> None:
    if base == quote:
        return
    text = f"{base}{sep}{quote}"
    assert canonical(text.lower() if lower else text) == base + quote
    # Whatever split the concatenation gets, every venue spelling reads back to the same canonical string.
    assert canonical(to_venue(base + quote, "ccxt"), "ccxt") == base + quote
