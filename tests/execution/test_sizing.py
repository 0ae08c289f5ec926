"""Target weights to lot-rounded orders: never beyond the target, whole lots, nothing dropped silently."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphaloom.core.exceptions import DataFormatError
from alphaloom.core.types import AssetClass, Side
from alphaloom.data.sample import load_sample
from alphaloom.execution.sizing import LotSpec, SizingConfig, round_to_lot, size_orders

CLASSES = {"SPY": AssetClass.ETF, "EURUSD": AssetClass.FOREX, "BTCUSD": AssetClass.CRYPTO}


@pytest.fixture(scope="module")
def closes() -> dict[str, float]:
    """Real last closes of three asset classes from the shipped samples."""
    bars = load_sample()
    last = bars[bars["symbol"].isin(list(CLASSES))].groupby("symbol")["close"].last()
    return {str(s): float(c) for s, c in last.items()}


def _after(positions: dict[str, float], intents) -> dict[str, float]:
    out = dict(positions)
    for i in intents:
        out[i.symbol] = out.get(i.symbol, 0.0) + i.side.sign * i.quantity
    return out


def test_real_prices_become_whole_lots_below_the_target(closes: dict[str, float]) -> None:
    res = size_orders(
        {"SPY": 0.3, "EURUSD": -0.2, "BTCUSD": 0.25},
        equity=100_000.0,
        prices=closes,
        positions={},
        asset_classes=CLASSES,
    )
    by = {i.symbol: i for i in res.intents}
    spy = 0.3 * 100_000 / closes["SPY"]
    assert by["SPY"].quantity == math.floor(spy)
    assert by["SPY"].side is Side.BUY
    assert by["EURUSD"].side is Side.SELL
    assert by["EURUSD"].quantity % 1000 == 0
    assert by["EURUSD"].quantity <= 0.2 * 100_000 / closes["EURUSD"]
    assert by["BTCUSD"].quantity * closes["BTCUSD"] <= 25_000 + 1e-9
    assert res.scale == 1.0
    assert res.skipped == []


def test_gross_above_the_cap_is_scaled_down(closes: dict[str, float]) -> None:
    res = size_orders(
        {"SPY": 0.8, "BTCUSD": 0.7},
        equity=50_000.0,
        prices=closes,
        positions={},
        config=SizingConfig(max_gross_weight=1.0),
        asset_classes=CLASSES,
    )
    assert res.scale == pytest.approx(1 / 1.5)
    gross = sum(i.quantity * closes[i.symbol] for i in res.intents)
    assert gross <= 50_000.0 + 1e-6


def test_crossing_zero_closes_exactly_then_opens(closes: dict[str, float]) -> None:
    res = size_orders(
        {"SPY": -0.1}, equity=100_000.0, prices=closes, positions={"SPY": 12.5}, asset_classes=CLASSES
    )
    close, open_ = res.intents
    assert (close.kind, close.side, close.quantity) == ("close", Side.SELL, 12.5)
    assert (open_.kind, open_.side) == ("open", Side.SELL)
    assert open_.quantity == math.floor(0.1 * 100_000 / closes["SPY"])


def test_pending_orders_are_netted(closes: dict[str, float]) -> None:
    target = math.floor(0.3 * 100_000 / closes["SPY"])
    res = size_orders(
        {"SPY": 0.3},
        equity=100_000.0,
        prices=closes,
        positions={"SPY": 10.0},
        pending={"SPY": target - 10.0},
        asset_classes=CLASSES,
    )
    assert res.intents == []
    assert res.skipped == []


def test_small_changes_and_orders_below_the_minimums_are_reported(closes: dict[str, float]) -> None:
    cfg = SizingConfig(min_trade_weight=0.01, lots={"SPY": LotSpec(lot_size=1.0, min_notional=50_000.0)})
    res = size_orders(
        {"SPY": 0.2, "BTCUSD": 0.105},
        equity=100_000.0,
        prices=closes,
        positions={"BTCUSD": 0.1 * 100_000 / closes["BTCUSD"]},
        config=cfg,
        asset_classes=CLASSES,
    )
    assert res.intents == []
    reasons = {s.symbol: s.reason for s in res.skipped}
    assert "no-trade band" in reasons["BTCUSD"]
    assert "below the instrument's minimum" in reasons["SPY"]


def test_zero_target_closes_odd_lots_exactly(closes: dict[str, float]) -> None:
    res = size_orders({"EURUSD": 0.0}, equity=1e5, prices=closes, positions={"EURUSD": -1234.5})
    (intent,) = res.intents
    assert (intent.side, intent.quantity, intent.kind) == (Side.BUY, 1234.5, "close")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"equity": 0.0}, "equity"),
        ({"prices": {"SPY": float("nan")}}, "price"),
        ({"prices": {}}, "price"),
        ({"weights": {"SPY": float("inf")}}, "finite"),
    ],
)
def test_bad_inputs_are_refused(kwargs: dict, match: str) -> None:
    args = {"weights": {"SPY": 0.5}, "equity": 1e5, "prices": {"SPY": 300.0}, "positions": {}} | kwargs
    weights = args.pop("weights")
    with pytest.raises(DataFormatError, match=match):
        size_orders(weights, **args)


def test_round_to_lot() -> None:
    assert round_to_lot(0.30000000000000004, 0.1) == pytest.approx(0.3)
    assert round_to_lot(2.9999999999, 1.0) == 3.0
    assert round_to_lot(-2.5, 1.0) == -2.0
    assert round_to_lot(-2.5, 1.0, "up") == -3.0
    assert round_to_lot(1234.0, 1000.0) == 1000.0


# ------------------------------------------------------------------ properties


def _whole_lots(q: float, lot: float) -> bool:
    n = q / lot
    return abs(n - round(n)) <= 1e-6 * max(1.0, abs(n))


LOTS = st.sampled_from([1.0, 1000.0, 1e-6, 0.01, 0.5, 25.0])
weights_st = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


@settings(max_examples=1500, deadline=None)
@given(
    w=weights_st,
    price=st.floats(min_value=0.01, max_value=1e5),
    equity=st.floats(min_value=100.0, max_value=1e8),
    position=st.floats(min_value=-1e6, max_value=1e6),
    pending=st.floats(min_value=-1e3, max_value=1e3) | st.just(0.0),
    lot=LOTS,
    band=st.sampled_from([0.0, 1e-3, 0.05]),
)
def test_orders_never_take_the_position_beyond_the_target_and_respect_lots(
    w: float, price: float, equity: float, position: float, pending: float, lot: float, band: float
) -> None:
    cfg = SizingConfig(min_trade_weight=band, lots={"X": LotSpec(lot_size=lot)})
    res = size_orders(
        {"X": w},
        equity=equity,
        prices={"X": price},
        positions={"X": position},
        pending={"X": pending},
        config=cfg,
    )
    target = res.targets["X"]
    raw = w * equity / price
    # The rounded target is whole lots, on the target's side, never beyond the raw target.
    assert abs(target) <= abs(raw) * (1 + 1e-9) + 1e-12
    assert target == 0.0 or math.copysign(1, target) == math.copysign(1, raw)
    assert _whole_lots(target, lot)
    held = position + pending
    after = _after({"X": held}, res.intents)["X"]
    if res.intents:
        # Never beyond the target, never on the wrong side of zero.
        tol = 1e-9 * max(1.0, abs(held), abs(target))
        if target >= 0:
            assert -tol <= after <= target + tol or (held < 0 and after <= tol)
        else:
            assert target - tol <= after <= tol or (held > 0 and after >= -tol)
        if target != 0 and held != 0 and math.copysign(1, held) != math.copysign(1, target):
            assert next(i.kind for i in res.intents) == "close"
        for i in res.intents:
            assert i.quantity > 0
            if i.kind != "close":  # every order except an exact close is whole lots
                assert _whole_lots(i.quantity, lot)
    else:
        # Nothing traded: either already there, or the change was reported as skipped.
        assert held == target or res.skipped
    for skip in res.skipped:
        assert skip.reason
        assert skip.symbol == "X"


@settings(max_examples=400, deadline=None)
@given(
    ws=st.lists(weights_st, min_size=1, max_size=6),
    cap=st.floats(min_value=0.1, max_value=3.0),
    equity=st.floats(min_value=1e3, max_value=1e7),
)
def test_fresh_positions_never_exceed_the_gross_cap(ws: list[float], cap: float, equity: float) -> None:
    symbols = [f"S{i}" for i in range(len(ws))]
    prices = {s: 10.0 + 7.0 * i for i, s in enumerate(symbols)}
    res = size_orders(
        dict(zip(symbols, ws, strict=True)),
        equity=equity,
        prices=prices,
        positions={},
        config=SizingConfig(max_gross_weight=cap, min_trade_weight=0.0, default_lot=LotSpec(lot_size=0.001)),
    )
    gross = sum(i.quantity * prices[i.symbol] for i in res.intents)
    assert gross <= cap * equity * (1 + 1e-9)
