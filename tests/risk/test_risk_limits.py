"""Risk limits: the config (TOML, validation that teaches), and each pre-trade check with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from alphaloom.core.config import load_config
from alphaloom.core.exceptions import ConfigError
from alphaloom.core.types import AssetClass, Order, OrderType, Side
from alphaloom.data import load_sample
from alphaloom.risk import (
    FOREX_HOURS,
    US_EQUITY_HOURS,
    ExposureLimits,
    RiskLimits,
    RiskSnapshot,
    SymbolLimits,
    TradingHours,
    TradingState,
    check_order,
    is_risk_reducing,
)
from alphaloom.risk.limits import limit_name

NOW = datetime(2020, 3, 16, 15, 0, tzinfo=UTC)  # a Monday, 11:00 in New York
CLASSES = {
    "SPY": AssetClass.ETF,
    "BTCUSD": AssetClass.CRYPTO,
    "ETHUSD": AssetClass.CRYPTO,
    "EURUSD": AssetClass.FOREX,
}


def _last_close(symbol: str, day: str = "2020-03-13") -> float:
    bars = load_sample()
    sel = bars[(bars["symbol"] == symbol) & (bars["ts"] <= day)]
    return float(sel["close"].iloc[-1])


PRICES = {s: _last_close(s, "2018-06-29") for s in CLASSES}  # real closes (forex ends mid 2018)


def book(
    quantities: dict[str, float] | None = None,
    *,
    cash: float = 1_000_000.0,
    state: TradingState = TradingState.NORMAL,
    now: datetime = NOW,
    recent: tuple[datetime, ...] = (),
    prices: dict[str, float] | None = None,
) -> RiskSnapshot:
    return RiskSnapshot(state, cash, quantities or {}, prices or PRICES, CLASSES, now, recent)


def order(symbol: str = "SPY", side: Side = Side.BUY, quantity: float = 10.0, **kw: object) -> Order:
    return Order(symbol=symbol, side=side, quantity=quantity, ts=NOW, **kw)  # type: ignore[arg-type]


def only(reasons: tuple[str, ...]) -> str:
    assert len(reasons) == 1, reasons
    return reasons[0]


# ---------------------------------------------------------------------- config


def test_limits_load_from_the_risk_table_of_a_toml_run_config(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        """
seed = 7
[risk]
allowed_symbols = ["SPY", "BTCUSD"]
max_position = 1000
max_leverage = 2.0
reduce_drawdown_pct = 10
halt_drawdown_pct = 20
[risk.symbols.BTCUSD]
max_position = 5
[risk.asset_classes.crypto]
max_gross = 100000
[risk.trading_hours.etf]
timezone = "America/New_York"
open = 09:30:00
close = 16:00:00
weekdays = [0, 1, 2, 3, 4]
""",
        encoding="utf-8",
    )
    limits = load_config(RiskLimits, path, "risk")
    assert limits.position_limit("BTCUSD") == 5
    assert limits.position_limit("SPY") == 1000
    assert limits.asset_classes[AssetClass.CRYPTO].max_gross == 100_000
    assert limits.trading_hours[AssetClass.ETF] == US_EQUITY_HOURS
    assert limits.config_hash() == RiskLimits.from_dict(limits.model_dump()).config_hash()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_postion": 5}, "Did you mean 'max_position'"),
        ({"reduce_drawdown_pct": 20, "halt_drawdown_pct": 10}, "reduces before it halts"),
        ({"allowed_symbols": []}, "refuse every order"),
        (
            {"allowed_symbols": ["SPY"], "symbols": {"BTCUSD": {"max_position": 1}}},
            "allowed_symbols does not",
        ),
        ({"max_leverage": -1}, "max_leverage"),
        ({"day_timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"trading_hours": {"stock": {"weekdays": [7]}}}, "weekdays must be"),
        ({"trading_hours": {"bonds": {}}}, "trading_hours"),
        ({"halt_drawdown_pct": 100}, "halt_drawdown_pct"),
    ],
)
def test_bad_limits_are_refused_with_a_message_that_teaches(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RiskLimits.from_dict(data)


def test_limits_are_frozen() -> None:
    limits = RiskLimits(max_position=3)
    with pytest.raises(ValueError, match="frozen"):
        limits.max_position = 5  # type: ignore[misc]
    assert limits.replace(max_position=5).max_position == 5


# ---------------------------------------------------------------------- one example per check


def test_every_limit_off_approves_everything() -> None:
    assert check_order(order(quantity=1e9), book(), RiskLimits()) == ()


def test_allowed_symbols_suggests_the_closest() -> None:
    limits = RiskLimits(allowed_symbols=("SPY", "BTCUSD"))
    reason = only(check_order(order("SPX"), book(prices={**PRICES, "SPX": 1.0}), limits))
    assert limit_name(reason) == "allowed_symbols"
    assert "Did you mean 'SPY'" in reason
    assert check_order(order("SPY"), book(), limits) == ()


def test_max_position_per_symbol_with_override() -> None:
    limits = RiskLimits(max_position=100, symbols={"BTCUSD": SymbolLimits(max_position=2)})
    reason = only(check_order(order("SPY", quantity=30), book({"SPY": 80}), limits))
    assert reason.startswith("max_position: the SPY position would be 110 units, the limit is 100")
    assert "at most 20 units" in reason
    assert check_order(order("SPY", quantity=20), book({"SPY": 80}), limits) == ()
    assert limit_name(only(check_order(order("BTCUSD", quantity=3), book(), limits))) == "max_position"
    # Shorts count by their size.
    assert check_order(order("SPY", Side.SELL, 101), book(), limits)


def test_max_notional_uses_the_last_trade() -> None:
    spy = PRICES["SPY"]
    limits = RiskLimits(max_notional=100 * spy)
    assert check_order(order(quantity=100), book(), limits) == ()
    reason = only(check_order(order(quantity=101), book(), limits))
    assert limit_name(reason) == "max_notional"


def test_max_order_notional_is_a_fat_finger_size_check_on_new_risk_only() -> None:
    limits = RiskLimits(max_order_notional=50_000)
    reason = only(check_order(order(quantity=1_000), book(), limits))
    assert limit_name(reason) == "max_order_notional"
    assert "a typo?" in reason
    # Closing a big position in one order is allowed: it removes risk.
    assert check_order(order(side=Side.SELL, quantity=1_000), book({"SPY": 1_000}), limits) == ()


def test_gross_and_net_exposure_in_total_and_per_asset_class() -> None:
    spy, btc = PRICES["SPY"], PRICES["BTCUSD"]
    held = {"SPY": 1_000.0}
    limits = RiskLimits(max_gross_exposure=1_000 * spy + 5 * btc, max_net_exposure=1_000 * spy + 2 * btc)
    assert check_order(order("BTCUSD", quantity=2), book(held), limits) == ()
    reason = only(check_order(order("BTCUSD", quantity=3), book(held), limits))
    assert limit_name(reason) == "max_net_exposure"
    # Shorting BTC hedges the net but adds gross.
    assert check_order(order("BTCUSD", Side.SELL, 5), book(held), limits) == ()
    assert limit_name(only(check_order(order("BTCUSD", Side.SELL, 6), book(held), limits))) == (
        "max_gross_exposure"
    )
    per_class = RiskLimits(
        asset_classes={AssetClass.CRYPTO: ExposureLimits(max_gross=3 * btc, max_net=2 * btc)}
    )
    assert limit_name(only(check_order(order("BTCUSD", quantity=2.5), book(), per_class))) == (
        "asset_classes.crypto.max_net"
    )
    eth_short = {"ETHUSD": -2 * btc / PRICES["ETHUSD"]}  # a short in the same class: nets, but adds gross
    assert check_order(order("BTCUSD", quantity=1), book(eth_short), per_class) == ()
    assert limit_name(only(check_order(order("BTCUSD", quantity=1.5), book(eth_short), per_class))) == (
        "asset_classes.crypto.max_gross"
    )
    assert check_order(order("SPY", quantity=1_000), book(), per_class) == ()  # other classes unaffected


def test_leverage_and_concentration_are_shares_of_equity() -> None:
    spy = PRICES["SPY"]
    limits = RiskLimits(max_leverage=1.5, max_concentration_pct=60)
    equity = 100_000.0
    assert check_order(order(quantity=0.6 * equity / spy * 0.999), book(cash=equity), limits) == ()
    reason = only(check_order(order(quantity=0.7 * equity / spy), book(cash=equity), limits))
    assert reason.startswith("max_concentration_pct: SPY would be 70")
    spread = {"SPY": 0.55 * equity / spy, "BTCUSD": 0.55 * equity / PRICES["BTCUSD"]}
    cash = equity - 1.1 * equity
    reason = only(
        check_order(
            order("EURUSD", quantity=0.5 * equity / PRICES["EURUSD"]), book(spread, cash=cash), limits
        )
    )
    assert limit_name(reason) == "max_leverage"
    assert "1.6" in reason


def test_no_positive_equity_allows_only_reducing_orders() -> None:
    limits = RiskLimits(max_leverage=2)
    broke = book({"SPY": 10.0}, cash=-20 * PRICES["SPY"])
    assert limit_name(only(check_order(order(quantity=1), broke, limits))) == "equity"
    assert check_order(order(side=Side.SELL, quantity=5), broke, limits) == ()


def test_order_rate_over_a_rolling_window() -> None:
    limits = RiskLimits(max_orders=3, order_window_s=60)
    recent = (
        datetime(2020, 3, 16, 14, 58, 59, tzinfo=UTC),
        *[datetime(2020, 3, 16, 14, 59, s, tzinfo=UTC) for s in (10, 20)],
    )
    assert check_order(order(), book(recent=recent), limits) == ()  # the first left the window
    recent = (*recent[1:], datetime(2020, 3, 16, 14, 59, 30, tzinfo=UTC))
    reason = only(check_order(order(), book(recent=recent), limits))
    assert reason.startswith("max_orders: 3 orders were approved in the last 60 s")


def test_price_band_against_the_last_trade() -> None:
    spy = PRICES["SPY"]
    limits = RiskLimits(price_band_pct=5)
    ok = order(order_type=OrderType.LIMIT, limit_price=spy * 1.049)
    assert check_order(ok, book(), limits) == ()
    typo = order(order_type=OrderType.LIMIT, limit_price=spy * 10)
    reason = only(check_order(typo, book(), limits))
    assert reason.startswith("price_band_pct: the limit price")
    stop = order(side=Side.SELL, order_type=OrderType.STOP, stop_price=spy * 0.5)
    assert limit_name(only(check_order(stop, book(), limits))) == "price_band_pct"


def test_prices_are_needed_when_a_limit_depends_on_them() -> None:
    limits = RiskLimits(max_notional=1e6)
    reason = only(check_order(order("QQQ"), book(), limits))
    assert reason.startswith("no_price: there is no last trade price for 'QQQ'")
    assert check_order(order("QQQ"), book(), RiskLimits(max_position=50)) == ()  # units need no price


def test_trading_state_lets_only_risk_reducing_orders_through() -> None:
    for state in (TradingState.REDUCING, TradingState.HALTED):
        snap = book({"SPY": 10.0}, state=state)
        assert check_order(order(side=Side.SELL, quantity=10), snap, RiskLimits()) == ()
        assert limit_name(only(check_order(order(side=Side.SELL, quantity=11), snap, RiskLimits()))) == (
            "trading_state"
        )
        reason = only(check_order(order(quantity=1), snap, RiskLimits()))
        assert state.value.upper() in reason


def test_never_worse_lets_a_book_over_its_limit_shrink_but_not_grow() -> None:
    limits = RiskLimits(max_notional=1_000 * PRICES["SPY"])
    crashed_up = book({"SPY": 1_000.0}, prices={**PRICES, "SPY": PRICES["SPY"] * 1.2})  # over after a rally
    assert check_order(order(side=Side.SELL, quantity=10), crashed_up, limits) == ()
    assert limit_name(only(check_order(order(quantity=1), crashed_up, limits))) == "max_notional"


@pytest.mark.parametrize(
    ("position", "trade", "reducing"),
    [
        (10, -5, True),
        (10, -10, True),
        (10, -11, False),
        (-3, 2, True),
        (-3, -1, False),
        (0, 1, False),
        (5, 1, False),
    ],
)
def test_risk_reducing_means_towards_flat_without_flipping(
    position: float, trade: float, reducing: bool
) -> None:
    assert is_risk_reducing(position, trade) is reducing


# ---------------------------------------------------------------------- trading hours


@pytest.mark.parametrize(
    ("ts", "is_open"),
    [
        (datetime(2020, 1, 6, 14, 30, tzinfo=UTC), True),  # Monday 09:30 EST: the open
        (datetime(2020, 1, 6, 14, 29, tzinfo=UTC), False),
        (datetime(2020, 1, 6, 20, 59, tzinfo=UTC), True),
        (datetime(2020, 1, 6, 21, 0, tzinfo=UTC), False),  # 16:00 EST: closed
        (datetime(2020, 7, 6, 13, 45, tzinfo=UTC), True),  # 09:45 EDT: daylight saving moves the session
        (datetime(2020, 1, 6, 13, 45, tzinfo=UTC), False),  # 08:45 EST
        (datetime(2020, 1, 4, 15, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_us_equity_hours_follow_new_york_time(ts: datetime, is_open: bool) -> None:
    assert US_EQUITY_HOURS.is_open(ts) is is_open


@pytest.mark.parametrize(
    ("ts", "is_open"),
    [
        (datetime(2020, 1, 5, 22, 30, tzinfo=UTC), True),  # Sunday 17:30 EST: the week opens
        (datetime(2020, 1, 5, 21, 30, tzinfo=UTC), False),
        (datetime(2020, 1, 8, 3, 0, tzinfo=UTC), True),  # overnight mid-week
        (datetime(2020, 1, 10, 21, 30, tzinfo=UTC), True),  # Friday 16:30 EST
        (datetime(2020, 1, 10, 22, 30, tzinfo=UTC), False),  # Friday 17:30 EST: the week closed
        (datetime(2020, 1, 11, 12, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_forex_hours_run_sunday_to_friday(ts: datetime, is_open: bool) -> None:
    assert FOREX_HOURS.is_open(ts) is is_open


def test_trading_hours_per_asset_class_crypto_around_the_clock() -> None:
    limits = RiskLimits(trading_hours={AssetClass.ETF: US_EQUITY_HOURS, AssetClass.FOREX: FOREX_HOURS})
    saturday = datetime(2020, 3, 14, 12, 0, tzinfo=UTC)
    reason = only(check_order(order("SPY"), book(now=saturday), limits))
    assert reason.startswith("trading_hours: etf trades 09:30-16:00 America/New_York")
    assert check_order(order("BTCUSD", quantity=0.1), book(now=saturday), limits) == ()
    assert check_order(order("SPY"), book(), limits) == ()
    unknown = RiskSnapshot(TradingState.NORMAL, 1e6, {}, {"XYZ": 1.0}, {}, NOW, ())
    assert "asset class of 'XYZ' is unknown" in only(check_order(order("XYZ"), unknown, limits))
    with pytest.raises(ConfigError, match="offset"):
        TradingHours.from_dict({"open": time(9, 30, tzinfo=UTC)})
