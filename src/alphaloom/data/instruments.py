"""Static descriptions of tradable instruments: asset class, trading calendar and quote currency.

The calendar decides which days a bar is expected on, which is what the validator's gap check and the
feature code need to know:

- ``"XNYS"``: New York Stock Exchange sessions, Monday to Friday (exchange holidays are not modelled, so gap
  checks use a tolerance of a few business days).
- ``"24/5"``: forex-style, trading from Sunday evening to Friday evening; one bar per weekday is expected.
- ``"24/7"``: crypto, every calendar day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

from alphaloom.core.exceptions import DataFormatError, did_you_mean
from alphaloom.core.types import AssetClass

__all__ = ["CALENDARS", "SAMPLE_INSTRUMENTS", "Calendar", "Instrument"]

Calendar = Literal["XNYS", "24/5", "24/7"]

#: The trading calendars an :class:`Instrument` may name.
CALENDARS: tuple[str, ...] = get_args(Calendar)

# Asset classes whose sources normally carry no traded volume (quotes only).
_QUOTE_ONLY = frozenset({AssetClass.FOREX, AssetClass.CFD, AssetClass.INDEX})


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument's static description.

    Parameters
    ----------
    symbol
        The ticker used in bar frames and the store (``"AAPL"``, ``"EURUSD"``, ``"BTCUSD"``).
    asset_class
        An :class:`~alphaloom.core.types.AssetClass` or its string value (``"stock"``, ``"forex"``, ...).
    calendar
        ``"XNYS"``, ``"24/5"`` or ``"24/7"``; see the module docstring.
    quote_currency
        ISO code of the currency prices are quoted in (``"USD"``; ``"GBP"`` for EURGBP).
    description
        Free text for humans.
    """

    symbol: str
    asset_class: AssetClass
    calendar: Calendar
    quote_currency: str = "USD"
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise DataFormatError(f"Instrument symbol must be a non-empty string, got {self.symbol!r}.")
        try:
            # Frozen dataclass: object.__setattr__ is the sanctioned way to normalise a field here.
            object.__setattr__(self, "asset_class", AssetClass(self.asset_class))
        except ValueError as exc:
            valid = [a.value for a in AssetClass]
            raise DataFormatError(
                f"Instrument {self.symbol!r}: unknown asset_class {self.asset_class!r}."
                f"{did_you_mean(str(self.asset_class), valid)} Valid: {', '.join(valid)}."
            ) from exc
        if self.calendar not in CALENDARS:
            raise DataFormatError(
                f"Instrument {self.symbol!r}: unknown calendar {self.calendar!r}."
                f"{did_you_mean(str(self.calendar), CALENDARS)} Valid: {', '.join(CALENDARS)}."
            )
        if not (isinstance(self.quote_currency, str) and len(self.quote_currency) == 3):
            raise DataFormatError(
                f"Instrument {self.symbol!r}: quote_currency must be a 3-letter ISO code such as 'USD', "
                f"got {self.quote_currency!r}."
            )

    @property
    def has_volume(self) -> bool:
        """Whether bars are expected to carry traded volume (False for forex, CFDs and indices)."""
        return self.asset_class not in _QUOTE_ONLY


def _equity(symbol: str, asset_class: AssetClass, description: str) -> Instrument:
    return Instrument(symbol, asset_class, "XNYS", "USD", description)


_SAMPLES = (
    _equity("AAPL", AssetClass.STOCK, "Apple Inc."),
    _equity("AIG", AssetClass.STOCK, "American International Group"),
    _equity("BAC", AssetClass.STOCK, "Bank of America"),
    _equity("FB", AssetClass.STOCK, "Facebook (Meta Platforms)"),
    _equity("GOOG", AssetClass.STOCK, "Alphabet class C"),
    _equity("GOOGL", AssetClass.STOCK, "Alphabet class A"),
    _equity("IBM", AssetClass.STOCK, "International Business Machines"),
    _equity("WM", AssetClass.STOCK, "Waste Management"),
    _equity("SPY", AssetClass.ETF, "SPDR S&P 500 ETF"),
    _equity("QQQ", AssetClass.ETF, "Invesco QQQ (Nasdaq-100) ETF"),
    _equity("IWM", AssetClass.ETF, "iShares Russell 2000 ETF"),
    _equity("EEM", AssetClass.ETF, "iShares MSCI Emerging Markets ETF"),
    _equity("BNO", AssetClass.ETF, "United States Brent Oil Fund"),
    _equity("USO", AssetClass.ETF, "United States Oil Fund"),
    Instrument("EURUSD", AssetClass.FOREX, "24/5", "USD", "Euro / US dollar (FXCM mid)"),
    Instrument("GBPUSD", AssetClass.FOREX, "24/5", "USD", "British pound / US dollar (FXCM mid)"),
    Instrument("NZDUSD", AssetClass.FOREX, "24/5", "USD", "New Zealand dollar / US dollar (FXCM mid)"),
    Instrument("EURGBP", AssetClass.FOREX, "24/5", "GBP", "Euro / British pound (FXCM mid)"),
    Instrument("BTCUSD", AssetClass.CRYPTO, "24/7", "USD", "Bitcoin / US dollar (Bitstamp)"),
    Instrument("ETHUSD", AssetClass.CRYPTO, "24/7", "USD", "Ether / US dollar (Bitstamp)"),
    Instrument("LTCUSD", AssetClass.CRYPTO, "24/7", "USD", "Litecoin / US dollar (Bitstamp)"),
)

#: The instruments of the shipped sample data sets, by symbol (read-only).
SAMPLE_INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType({i.symbol: i for i in _SAMPLES})
