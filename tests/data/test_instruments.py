"""Instrument metadata and the package's public surface."""

from __future__ import annotations

import dataclasses

import pytest

import alphaloom.data
import alphaloom.data.storage
from alphaloom.core.exceptions import DataFormatError
from alphaloom.core.types import AssetClass
from alphaloom.data import SAMPLE_INSTRUMENTS, Instrument

ETFS = {"SPY", "QQQ", "IWM", "EEM", "BNO", "USO"}


def test_sample_instruments_cover_the_shipped_symbols() -> None:
    by_class = {}
    for inst in SAMPLE_INSTRUMENTS.values():
        by_class.setdefault(inst.asset_class, set()).add(inst.symbol)
    assert by_class[AssetClass.ETF] == ETFS
    assert by_class[AssetClass.STOCK] == {"AAPL", "AIG", "BAC", "FB", "GOOG", "GOOGL", "IBM", "WM"}
    assert by_class[AssetClass.FOREX] == {"EURUSD", "GBPUSD", "NZDUSD", "EURGBP"}
    assert by_class[AssetClass.CRYPTO] == {"BTCUSD", "ETHUSD", "LTCUSD"}
    assert {i.calendar for i in SAMPLE_INSTRUMENTS.values() if i.asset_class is AssetClass.FOREX} == {"24/5"}
    assert SAMPLE_INSTRUMENTS["EURGBP"].quote_currency == "GBP"
    assert not SAMPLE_INSTRUMENTS["EURUSD"].has_volume
    assert SAMPLE_INSTRUMENTS["BTCUSD"].has_volume


def test_sample_instruments_are_read_only() -> None:
    with pytest.raises(TypeError):
        SAMPLE_INSTRUMENTS["XXX"] = Instrument("XXX", "stock", "XNYS")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAMPLE_INSTRUMENTS["AAPL"].symbol = "X"  # type: ignore[misc]


def test_strings_are_coerced_to_asset_class() -> None:
    assert Instrument("X", "crypto", "24/7").asset_class is AssetClass.CRYPTO


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"asset_class": "stonk"}, r"unknown asset_class 'stonk'.*Did you mean 'stock'"),
        ({"calendar": "XNYSE"}, r"unknown calendar 'XNYSE'.*Did you mean 'XNYS'"),
        ({"quote_currency": "dollars"}, r"3-letter ISO code"),
        ({"symbol": " "}, r"non-empty string"),
    ],
)
def test_invalid_instruments(kwargs: dict[str, str], fragment: str) -> None:
    args = {"symbol": "X", "asset_class": "stock", "calendar": "XNYS", **kwargs}
    with pytest.raises(DataFormatError, match=fragment):
        Instrument(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("module", [alphaloom.data, alphaloom.data.storage])
def test_public_surface_is_curated_and_importable(module) -> None:
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
    for name in module.__all__:
        assert getattr(module, name) is not None
