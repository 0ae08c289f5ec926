"""One symbol scheme across venues: parse any venue's spelling, map the canonical form back to a venue's.

alphaloom's canonical symbols are upper case, with no separator inside a pair:

================  ==========================================  =========================
kind              accepted spellings (any case)               canonical
================  ==========================================  =========================
crypto pair       ``BTC-USD``, ``BTC/USD``, ``BTCUSD``,       ``BTCUSD``
                  ``XBTUSD``, ``XBT/USD``, ``XXBTZUSD``
forex pair        ``EUR_USD``, ``EUR/USD``, ``EURUSD``        ``EURUSD``
stock or ETF      ``SPY``, ``spy``                            ``SPY``
share class       ``BRK.B``, ``BRK-B``, ``BRK/B``             ``BRK.B``
index             ``^GSPC``                                   ``^GSPC``
================  ==========================================  =========================

Aliases that venues use for the same asset are folded in (``XBT`` and Kraken's ``XXBT`` are ``BTC``, ``XDG``
is ``DOGE``, Kraken's ``ZUSD`` is ``USD``). Stablecoins stay themselves: ``BTCUSDT`` is not ``BTCUSD``.

A pair written without a separator is split on the known assets (:data:`KNOWN_ASSETS`); one written with a
separator may have an unknown base (``PEPE-USD``) when its quote is known, or, on a venue that only lists
pairs (``venue="ccxt"``, ``"coinbase"``, ``"oanda"``), any base and quote (OANDA's ``SPX500_USD``). A symbol
that fits none of these raises :class:`~alphaloom.core.exceptions.UnknownSymbolError` with the closest
known spelling.

Examples
--------
>>> canonical("btc-usd"), canonical("EUR_USD"), canonical("BRK-B"), canonical("XBTUSD")
('BTCUSD', 'EURUSD', 'BRK.B', 'BTCUSD')
>>> to_venue("BTCUSD", "coinbase"), to_venue("EURUSD", "oanda"), to_venue("BTCUSD", "ccxt")
('BTC-USD', 'EUR_USD', 'BTC/USD')
>>> to_venue("BRK.B", "robinhood"), to_venue("ETHUSD", "robinhood")
('BRK.B', 'ETH-USD')
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal, NamedTuple

from alphaloom.core.exceptions import ConfigError, UnknownSymbolError, did_you_mean
from alphaloom.core.types import AssetClass

__all__ = [
    "CRYPTO_ASSETS",
    "FIAT_CURRENCIES",
    "KNOWN_ASSETS",
    "VENUES",
    "SymbolInfo",
    "SymbolKind",
    "Venue",
    "canonical",
    "parse_symbol",
    "to_venue",
]

Venue = Literal["paper", "coinbase", "oanda", "robinhood", "ccxt"]
SymbolKind = Literal["pair", "ticker"]

#: Venues whose symbol spelling :func:`to_venue` and :func:`canonical` know.
VENUES: tuple[str, ...] = ("paper", "coinbase", "oanda", "robinhood", "ccxt")


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: ISO 4217 codes (and the offshore yuan) treated as fiat currencies; precious metals are quoted like them.
FIAT_CURRENCIES: frozenset[str] = _codes(
    "USD EUR GBP JPY CHF CAD AUD NZD SEK NOK DKK PLN CZK HUF TRY ZAR MXN BRL CNY CNH HKD SGD INR KRW TWD "
    "THB MYR IDR PHP ILS RUB SAR AED LKR CLP COP PEN ARS VND NGN KES EGP PKR"
)
_METALS: frozenset[str] = frozenset({"XAU", "XAG", "XPT", "XPD"})

#: Crypto assets recognised inside a pair written without a separator (``ETHBTC``), stablecoins included.
CRYPTO_ASSETS: frozenset[str] = _codes(
    "BTC ETH LTC XRP BCH ADA DOT SOL DOGE AVAX MATIC POL LINK XLM XMR ZEC DASH ETC TRX NXT EOS UNI ATOM "
    "ALGO FIL SHIB BNB TON NEAR APT SUI ARB OP PEPE XTZ AAVE COMP MKR SNX YFI SUSHI CRV BAT ZRX ICP HBAR "
    "VET THETA EGLD FTM SAND MANA AXS GRT KSM QTUM NEO WAVES IOTA OMG ICX ZIL ONT LSK STX INJ RNDR IMX "
    "USDT USDC DAI BUSD TUSD USDP PAX GUSD FDUSD PYUSD EURT EURC"
)
_STABLECOINS: frozenset[str] = frozenset(
    {"USDT", "USDC", "DAI", "BUSD", "TUSD", "USDP", "PAX", "GUSD", "FDUSD", "PYUSD", "EURT", "EURC"}
)

#: Every asset code a pair written without a separator may be split on.
KNOWN_ASSETS: frozenset[str] = FIAT_CURRENCIES | _METALS | CRYPTO_ASSETS

# Venue aliases -> canonical asset code (BitMEX/Kraken XBT, Kraken's X/Z-prefixed four-letter codes).
_ALIASES: dict[str, str] = {
    "XBT": "BTC",
    "XDG": "DOGE",
    "XXBT": "BTC",
    "XETH": "ETH",
    "XLTC": "LTC",
    "XXRP": "XRP",
    "XXLM": "XLM",
    "XXMR": "XMR",
    "XZEC": "ZEC",
    "XETC": "ETC",
    "XXDG": "DOGE",
    "ZUSD": "USD",
    "ZEUR": "EUR",
    "ZGBP": "GBP",
    "ZJPY": "JPY",
    "ZCAD": "CAD",
    "ZAUD": "AUD",
    "ZCHF": "CHF",
}

_PAIR_VENUES = frozenset({"coinbase", "oanda", "ccxt"})
_TOKEN = re.compile(r"^[A-Z0-9]{1,12}$")
_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9]{0,9}$")
_INDEX = re.compile(r"^\^[A-Z0-9]{1,10}$")
_CLASS = re.compile(r"^[A-Z]{1,2}$")
_SEPARATORS = re.compile(r"[-/_.]")
_MAX_BARE_TICKER = 6


class SymbolInfo(NamedTuple):
    """A parsed symbol.

    Attributes
    ----------
    canonical
        alphaloom's spelling (``"BTCUSD"``, ``"BRK.B"``).
    kind
        ``"pair"`` (base and quote) or ``"ticker"`` (stock, ETF, index, future).
    base, quote
        The pair's assets (``"BTC"``, ``"USD"``); for a ticker, ``base`` is the ticker without its share class
        and ``quote`` is ``""``.
    share_class
        ``"B"`` for ``BRK.B``; ``""`` otherwise.
    asset_class
        Best guess from the spelling: forex (two fiat currencies), crypto (a crypto asset on either side),
        CFD (a pair with an unknown or metal base, as OANDA lists indices and gold), index (``^GSPC``), else
        stock. Instrument metadata, where available, is the authority.
    """

    canonical: str
    kind: SymbolKind
    base: str
    quote: str
    share_class: str
    asset_class: AssetClass


def canonical(symbol: str, venue: str | None = None) -> str:
    """alphaloom's canonical spelling of ``symbol``.

    Parameters
    ----------
    symbol
        Any supported spelling (see the module docstring), in any case.
    venue
        The venue the spelling comes from, one of :data:`VENUES`, or ``None`` when unknown. A pair-only
        venue (``"coinbase"``, ``"oanda"``, ``"ccxt"``) reads ``A-B``, ``A_B`` or ``A/B`` as a pair even when
        neither asset is known.

    Returns
    -------
    str
        ``"BTCUSD"``, ``"EURUSD"``, ``"SPY"``, ``"BRK.B"``.

    Raises
    ------
    UnknownSymbolError
        ``symbol`` is not a recognisable pair or ticker; the message suggests the closest known one.
    ConfigError
        ``venue`` is not one of :data:`VENUES`.
    """
    return parse_symbol(symbol, venue).canonical


def to_venue(symbol: str, venue: str) -> str:
    """The venue's spelling of ``symbol`` (given in any supported spelling).

    ==============  =================================  =====================
    venue           pairs                              tickers
    ==============  =================================  =====================
    ``paper``       canonical (``BTCUSD``)             canonical (``BRK.B``)
    ``coinbase``    ``BTC-USD``                        not listed: error
    ``oanda``       ``EUR_USD``                        not listed: error
    ``ccxt``        ``BTC/USD``                        not listed: error
    ``robinhood``   crypto ``BTC-USD``; forex: error   ``BRK.B``
    ==============  =================================  =====================

    Raises
    ------
    UnknownSymbolError
        ``symbol`` is junk, or the venue does not list that kind of instrument.
    ConfigError
        ``venue`` is not one of :data:`VENUES`.
    """
    venue = _check_venue(venue)
    info = parse_symbol(symbol, None)
    if venue == "paper":
        return info.canonical
    if info.kind == "ticker" and venue in _PAIR_VENUES:
        split = _split_loose(info.canonical) if not info.share_class else None
        if split is None:
            raise UnknownSymbolError(
                f"{venue} lists currency and crypto pairs only, got the ticker {info.canonical!r}; trade "
                f"stocks and ETFs through 'robinhood' or 'paper'."
            )
        info = _pair_info(*split)
    if venue == "coinbase":
        return f"{info.base}-{info.quote}"
    if venue == "oanda":
        return f"{info.base}_{info.quote}"
    if venue == "ccxt":
        return f"{info.base}/{info.quote}"
    # robinhood
    if info.kind == "ticker":
        return info.canonical
    if info.asset_class is not AssetClass.CRYPTO:
        raise UnknownSymbolError(
            f"robinhood trades crypto pairs, stocks, ETFs and options, not {info.asset_class.value} pairs "
            f"such as {info.canonical!r}; use 'oanda' for forex."
        )
    return f"{info.base}-{info.quote}"


def parse_symbol(symbol: str, venue: str | None = None) -> SymbolInfo:
    """Parse ``symbol`` into a :class:`SymbolInfo`; see :func:`canonical` for the arguments and errors."""
    if venue is not None:
        venue = _check_venue(venue)
    if not isinstance(symbol, str):
        raise UnknownSymbolError(f"a symbol must be a string, got {type(symbol).__name__} ({symbol!r}).")
    return _parse(symbol, venue)


@lru_cache(maxsize=4096)
def _parse(symbol: str, venue: str | None) -> SymbolInfo:
    text = symbol.strip().upper()
    if not text:
        raise UnknownSymbolError("a symbol must not be empty; pass e.g. 'BTCUSD', 'EURUSD' or 'SPY'.")
    if ":" in text:
        raise UnknownSymbolError(
            f"symbol {symbol!r} names a derivative contract (settlement after ':'); the canonical scheme "
            f"covers spot pairs and tickers, e.g. {text.split(':', 1)[0].replace('/', '')!r}."
        )
    if " " in text and _SEPARATORS.search(text) is None:
        text = text.replace(" ", "-", 1) if text.count(" ") == 1 else text
    if _INDEX.match(text):
        return SymbolInfo(text, "ticker", text, "", "", AssetClass.INDEX)
    parts = _SEPARATORS.split(text)
    if len(parts) == 1:
        info = _parse_bare(text)
    elif len(parts) == 2 and all(_TOKEN.match(p) for p in parts):
        info = _parse_separated(parts[0], parts[1], text[len(parts[0])], venue)
    else:
        info = None
    if info is None:
        raise UnknownSymbolError(_junk_message(symbol, text, venue))
    return info


def _parse_bare(text: str) -> SymbolInfo | None:
    split = _split_known(text)
    if split is not None:
        return _pair_info(*split)
    if _TICKER.match(text) and len(text) <= _MAX_BARE_TICKER:
        return _ticker_info(text, "")
    split = _split_loose(text)
    if split is not None:
        return _pair_info(*split)
    return None


def _parse_separated(left: str, right: str, sep: str, venue: str | None) -> SymbolInfo | None:
    base, quote = _ALIASES.get(left, left), _ALIASES.get(right, right)
    if sep != "_" and _CLASS.match(right) and quote not in KNOWN_ASSETS and venue not in _PAIR_VENUES:
        if _TICKER.match(left) and len(left) <= _MAX_BARE_TICKER and left not in KNOWN_ASSETS:
            return _ticker_info(left, right)
        return None
    if sep == "." and not (base in KNOWN_ASSETS and quote in KNOWN_ASSETS) and venue not in _PAIR_VENUES:
        return None  # a dot separates a share class, or two known assets (Interactive Brokers' EUR.USD)
    if quote in KNOWN_ASSETS or venue in _PAIR_VENUES:
        return _pair_info(base, quote)
    return None


def _split_known(text: str) -> tuple[str, str] | None:
    """Split ``BTCUSD``-style text where both sides are known assets (aliases allowed)."""
    best: tuple[int, int, str, str] | None = None
    for i in range(2, len(text) - 1):
        left, right = text[:i], text[i:]
        base, quote = _ALIASES.get(left, left), _ALIASES.get(right, right)
        if base in KNOWN_ASSETS and quote in KNOWN_ASSETS and base != quote:
            # Prefer fiat or stablecoin quotes, then the longer base (USDTUSD is USDT/USD, not USD/TUSD).
            rank = (_quote_rank(quote), -len(base))
            if best is None or rank < best[:2]:
                best = (*rank, base, quote)
    return None if best is None else (best[2], best[3])


def _split_loose(text: str) -> tuple[str, str] | None:
    """Split ``PEPEUSD``-style text on a known fiat or stablecoin quote, whatever the base."""
    for quote in sorted(FIAT_CURRENCIES | _STABLECOINS, key=len, reverse=True):
        base = text[: -len(quote)]
        if text.endswith(quote) and len(base) >= 2 and _TOKEN.match(base):
            return _ALIASES.get(base, base), quote
    return None


def _quote_rank(quote: str) -> int:
    if quote in FIAT_CURRENCIES or quote in _STABLECOINS:
        return 0
    if quote in ("BTC", "ETH", "BNB"):
        return 1
    return 2


def _pair_info(base: str, quote: str) -> SymbolInfo:
    crypto = base in CRYPTO_ASSETS or quote in CRYPTO_ASSETS
    if crypto:
        asset_class = AssetClass.CRYPTO
    elif base in FIAT_CURRENCIES and quote in FIAT_CURRENCIES:
        asset_class = AssetClass.FOREX
    else:
        asset_class = AssetClass.CFD
    return SymbolInfo(f"{base}{quote}", "pair", base, quote, "", asset_class)


def _ticker_info(ticker: str, share_class: str) -> SymbolInfo:
    text = f"{ticker}.{share_class}" if share_class else ticker
    return SymbolInfo(text, "ticker", ticker, "", share_class, AssetClass.STOCK)


def _check_venue(venue: str) -> str:
    if isinstance(venue, str) and venue.lower() in VENUES:
        return venue.lower()
    raise ConfigError(
        f"unknown venue {venue!r}.{did_you_mean(str(venue).lower(), VENUES)} "
        f"Known venues: {', '.join(VENUES)}."
    )


def _junk_message(symbol: str, text: str, venue: str | None) -> str:
    guess = re.sub(r"[^A-Z0-9^.]", "", text)
    hint = ""
    if guess and guess != text:
        try:
            parsed = _parse(guess, venue)
        except UnknownSymbolError:
            parsed = None
        # Dropping separators turns any junk into a plausible ticker; only suggest what reads as a pair.
        if parsed is not None and parsed.kind == "pair":
            hint = f" Did you mean {parsed.canonical!r}?"
    if not hint:
        hint = did_you_mean(guess or text, _known_symbols())
    where = f" on {venue}" if venue else ""
    return (
        f"cannot read symbol {symbol!r}{where}: expected a pair such as 'BTC-USD', 'EUR_USD', 'BTC/USD' or "
        f"'BTCUSD', or a ticker such as 'SPY' or 'BRK.B'.{hint}"
    )


@lru_cache(maxsize=1)
def _known_symbols() -> tuple[str, ...]:
    majors_crypto = ("BTC", "ETH", "LTC", "XRP", "BCH", "ADA", "DOT", "SOL", "DOGE", "AVAX", "LINK", "XLM")
    majors_fx = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD")
    pairs = {f"{b}{q}" for b in majors_crypto for q in ("USD", "USDT", "USDC", "EUR", "BTC") if b != q}
    pairs |= {f"{b}{q}" for b in majors_fx for q in majors_fx if b != q}
    tickers = {"SPY", "QQQ", "IWM", "AAPL", "MSFT", "AMZN", "GOOG", "GOOGL", "META", "NVDA", "TSLA", "BRK.B"}
    return tuple(sorted(pairs | tickers))
