"""The event-driven engine: parity with run_backtest and the MatchingEngine, no look-ahead, order validation.

Tolerances: results are compared to 1e-9 relative (they are usually bit-identical: the same rules and cost
kernels run in both engines, only fsum against plain sums can differ in the last bits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from alphaloom.backtest import CostModel, run_backtest
from alphaloom.backtest.event import (
    ACCOUNT_N_ORDERS,
    ACCOUNT_POSITION,
    BarContext,
    CompiledStrategy,
    EventConfig,
    EventEngine,
    EventResult,
    LookAheadError,
    OrderKind,
    Strategy,
    put_order,
    run_event_backtest,
)
from alphaloom.core.exceptions import ConfigError, DataFormatError, OrderRejectedError
from alphaloom.core.types import Bar, Order, OrderStatus, OrderType, Side, TimeInForce
from alphaloom.data.connectors.matching import MatchingConfig, MatchingEngine, TimeInForceCode
from alphaloom.data.sample import load_sample

COSTS = CostModel(commission_bps=1.0, slippage_bps=2.0)
FEES = CostModel(commission_bps=5.0, slippage_bps=3.0, spread_bps=2.0, min_commission=1.0)
RTOL = 1e-9
MakeBars = Callable[..., pd.DataFrame]
_RESULT_FIELDS = (
    "equity",
    "cash",
    "units",
    "traded_units",
    "costs",
    "returns",
    "weights",
    "open_weights",
    "trade_weights",
    "targets",
)
_KIND_OF = {
    OrderKind.MARKET: OrderType.MARKET,
    OrderKind.LIMIT: OrderType.LIMIT,
    OrderKind.STOP: OrderType.STOP,
    OrderKind.STOP_LIMIT: OrderType.STOP_LIMIT,
}


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    """Bitstamp BTCUSD daily bars 2015-2019 (real, shipped sample)."""
    panel = load_sample("crypto_daily")
    rows = panel[(panel["symbol"] == "BTCUSD") & panel["ts"].between("2015-01-01", "2019-12-31")]
    return rows.reset_index(drop=True)


def hourly_bars(seed: int, n: int) -> pd.DataFrame:
    """A seeded hourly walk with wicks and volume (hourly, so DAY orders live for several bars)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.004, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.006, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.006, n)))
    volume = rng.integers(0, 400, n).astype(np.float64)
    volume[rng.random(n) < 0.1] = np.nan  # unknown volume: no participation cap on that bar
    ts = pd.date_range("2024-03-04 20:00", periods=n, freq="h", tz="UTC", name="ts")
    return pd.DataFrame(
        {"symbol": "SYN", "ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def random_targets(
    seed: int, n: int, levels: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.choice(levels, size=n)
    changes = rng.random(n) < 0.2
    changes[0] = True
    return pd.Series(np.where(changes, picks, np.nan)).ffill().to_numpy()


# ----------------------------------------------------------------------- scripted strategies

Script = list[tuple[int, int, float, float, float, int]]  # (bar, kind, size, limit, stop, tif)


def random_script(seed: int, bars: pd.DataFrame, *, targets: bool = False, n_orders: int = 80) -> Script:
    """Random orders of every kind around the current price, with some cancels of earlier orders."""
    rng = np.random.default_rng(seed)
    n = len(bars)
    close = bars["close"].to_numpy()
    script: Script = []
    placed = 0
    for t in np.sort(rng.integers(0, n, n_orders)):
        px = close[t]
        kinds = [0, 1, 2, 3] + ([4] if targets else [])
        kind = int(rng.choice(kinds))
        if placed and rng.random() < 0.1:
            script.append(
                (int(t), int(OrderKind.CANCEL), float(rng.integers(0, placed)), math.nan, math.nan, 0)
            )
            continue
        size = float(rng.choice([-1.0, 1.0]) * rng.integers(1, 300))
        tif = int(rng.choice(4, p=[0.55, 0.25, 0.1, 0.1]))
        limit = stop = math.nan
        if kind == OrderKind.LIMIT:
            limit = px * (1.0 + rng.normal(0.0, 0.01))
        elif kind == OrderKind.STOP:
            stop = px * (1.0 + np.sign(size) * abs(rng.normal(0.0, 0.01)))
        elif kind == OrderKind.STOP_LIMIT:
            stop = px * (1.0 + np.sign(size) * abs(rng.normal(0.0, 0.01)))
            limit = stop * (1.0 + np.sign(size) * rng.normal(0.002, 0.004))
        elif kind == OrderKind.TARGET_PERCENT:
            size = float(rng.choice([-0.5, 0.0, 0.5, 1.0]))
        script.append((int(t), kind, size, limit, stop, tif))
        placed += 1
    return script


class Scripted(Strategy):
    """Places a fixed list of orders at their bars through the public order methods."""

    def __init__(self, script: Script) -> None:
        self.by_bar: dict[int, list[tuple[int, float, float, float, int]]] = {}
        for t, *order in script:
            self.by_bar.setdefault(t, []).append(tuple(order))  # type: ignore[arg-type]

    def on_bar(self, ctx: BarContext) -> None:
        for kind, size, limit, stop, tif in self.by_bar.get(ctx.t, []):
            tif_name = TimeInForce(TimeInForceCode(tif).name.lower())
            if kind == OrderKind.MARKET:
                (self.buy if size > 0 else self.sell)(abs(size), time_in_force=tif_name)
            elif kind == OrderKind.LIMIT:
                self.limit(size, limit, time_in_force=tif_name)
            elif kind == OrderKind.STOP:
                self.stop(size, stop, time_in_force=tif_name)
            elif kind == OrderKind.STOP_LIMIT:
                self.stop(size, stop, limit_price=limit, time_in_force=tif_name)
            elif kind == OrderKind.TARGET_PERCENT:
                self.order_target_percent(size)
            else:
                self.cancel(int(size))


@njit(cache=True)
def scripted_decide(t, open_, high, low, close, volume, account, params, state, orders):
    """params: rows of (bar, kind, size, limit, stop, tif) sorted by bar, flattened; state[0]: next row."""
    rows = params.shape[0] // 6
    i = int(state[0])
    n = 0
    while i < rows and params[6 * i] == t and n < orders.shape[0]:
        base = 6 * i
        put_order(orders, n, int(params[base + 1]), params[base + 2], params[base + 3], params[base + 4],
                  int(params[base + 5]))  # fmt: skip
        n += 1
        i += 1
    state[0] = i
    return n


def compiled_script(script: Script) -> CompiledStrategy:
    params = np.array(script, dtype=np.float64).reshape(-1) if script else np.zeros(0)
    return CompiledStrategy(scripted_decide, params=params, state=np.zeros(1), max_orders_per_bar=16)


class Targets(Strategy):
    def __init__(self, targets: np.ndarray) -> None:
        self.targets = targets

    def on_bar(self, ctx: BarContext) -> None:
        self.order_target_percent(self.targets[ctx.t])


@njit(cache=True)
def target_decide(t, open_, high, low, close, volume, account, params, state, orders):
    put_order(orders, 0, OrderKind.TARGET_PERCENT, params[t])
    return 1


def assert_results_equal(a: EventResult, b: EventResult) -> None:
    for name in _RESULT_FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=RTOL, atol=1e-9, err_msg=name)
    pd.testing.assert_frame_equal(a.fills, b.fills, rtol=RTOL)
    pd.testing.assert_frame_equal(a.orders, b.orders, rtol=RTOL)


# ----------------------------------------------------------------------- parity with run_backtest


@pytest.mark.parametrize("path", ["python", "compiled"])
@pytest.mark.parametrize("band", [0.0, 1e-4])
@pytest.mark.parametrize("data", ["spy", "btc"])
def test_target_orders_equal_run_backtest_on_real_bars(
    request: pytest.FixtureRequest, data: str, band: float, path: str
) -> None:
    bars = request.getfixturevalue(data)
    close = bars["close"]
    targets = np.where(close > close.rolling(20).mean(), 1.0, -0.5)
    targets[::7] = random_targets(5, len(bars))[::7]  # some rebalances between the crossings
    costs = FEES if data == "btc" else COSTS
    expected = run_backtest(bars, targets, costs=costs, min_trade_weight=band, initial_cash=50_000.0)
    strategy = Targets(targets) if path == "python" else CompiledStrategy(target_decide, params=targets)
    config = EventConfig(initial_cash=50_000.0, costs=costs, min_trade_weight=band)
    got = run_event_backtest(bars, strategy, config).to_backtest_result()
    assert got.ts.equals(expected.ts)
    assert got.n_trades == expected.n_trades > 50
    for name in _RESULT_FIELDS:
        np.testing.assert_allclose(
            getattr(got, name), getattr(expected, name), rtol=RTOL, atol=1e-9, err_msg=name
        )
    assert got.stats() == pytest.approx(expected.stats(), rel=RTOL, nan_ok=True)


@pytest.mark.parametrize("path", ["python", "compiled"])
def test_ruin_matches_run_backtest(synthetic: MakeBars, path: str) -> None:
    bars = synthetic(4, 60)
    price = 10.0 * 1.5 ** np.arange(60)  # up 50 % a bar: a 3x short loses everything
    bars = bars.assign(open=price, close=price, high=price, low=price)
    targets = np.full(60, -3.0)
    expected = run_backtest(bars, targets, costs=COSTS)
    strategy = Targets(targets) if path == "python" else CompiledStrategy(target_decide, params=targets)
    result = run_event_backtest(bars, strategy, EventConfig(costs=COSTS))
    got = result.to_backtest_result()
    for name in ("equity", "cash", "units", "traded_units", "costs", "returns", "weights"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=RTOL, atol=1e-9)
    ruined = int(np.flatnonzero(result.equity == 0.0)[0])
    later = result.orders[result.orders["bar"] >= ruined]
    assert (later["status"] != "filled").all()
    assert later["message"].str.contains("ruined").any()


# ----------------------------------------------------------------------- parity with the MatchingEngine


def matching_engine_fills(
    bars: pd.DataFrame, script: Script, config: MatchingConfig, costs: CostModel
) -> tuple[list[tuple[int, int, float, float, float]], list[OrderStatus]]:
    """Drive the paper exchange's MatchingEngine with the same bars and orders: fills and final statuses."""
    engine = MatchingEngine(config, costs)
    ts = list(bars["ts"])
    index = {t: k for k, t in enumerate(ts)}
    ids: list[str] = []
    fills = []
    by_bar: dict[int, list[tuple[int, float, float, float, int]]] = {}
    for t, *order in script:
        by_bar.setdefault(t, []).append(tuple(order))  # type: ignore[arg-type]
    for t, row in enumerate(bars.itertuples(index=False)):
        volume = None if math.isnan(row.volume) else row.volume
        bar = Bar(
            symbol="SYN", ts=ts[t], open=row.open, high=row.high, low=row.low, close=row.close, volume=volume
        )
        for fill in engine.on_bar(bar):
            side = 1.0 if fill.side is Side.BUY else -1.0
            fills.append(
                (ids.index(fill.client_order_id), index[fill.ts], side * fill.quantity, fill.price, fill.fee)
            )
        now = ts[t] + timedelta(hours=1)  # the close of bar t: decisions are submitted then
        for kind, size, limit, stop, tif in by_bar.get(t, []):
            if kind == OrderKind.CANCEL:
                engine.cancel(ids[int(size)], now)
                continue
            order = Order(
                symbol="SYN",
                side=Side.BUY if size > 0 else Side.SELL,
                quantity=abs(size),
                order_type=_KIND_OF[OrderKind(kind)],
                limit_price=None if math.isnan(limit) else limit,
                stop_price=None if math.isnan(stop) else stop,
                time_in_force=TimeInForce(TimeInForceCode(tif).name.lower()),
                client_order_id=f"o{len(ids)}",
                ts=now,
            )
            ids.append(order.client_order_id)
            engine.submit(order, now=now)
    statuses = [engine.get(cid).status for cid in ids]  # type: ignore[union-attr]
    return fills, statuses


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    rate=st.sampled_from([None, 0.05, 0.5]),
    latency=st.sampled_from([0, 0, 2]),
    path=st.sampled_from(["python", "compiled"]),
)
def test_orders_fill_as_the_matching_engine_fills_them(
    seed: int, rate: float | None, latency: int, path: str
) -> None:
    """Market, limit, stop and stop-limit orders, every time in force, partial fills, cancels and latency."""
    bars = hourly_bars(seed, 150)
    script = random_script(seed, bars)
    matching = MatchingConfig(participation_rate=rate, latency_bars=latency)
    expected_fills, expected_status = matching_engine_fills(bars, script, matching, FEES)
    strategy = Scripted(script) if path == "python" else compiled_script(script)
    result = run_event_backtest(bars, strategy, EventConfig(costs=FEES, matching=matching))
    got = result.fills
    assert len(got) == len(expected_fills)
    if expected_fills:
        expected = np.array(expected_fills)
        signed = np.where(got["side"] == "buy", 1.0, -1.0) * got["quantity"].to_numpy()
        np.testing.assert_array_equal(got["order_id"].to_numpy(), expected[:, 0])
        np.testing.assert_array_equal(got["bar"].to_numpy(), expected[:, 1])
        np.testing.assert_allclose(signed, expected[:, 2], rtol=RTOL)
        np.testing.assert_allclose(got["price"].to_numpy(), expected[:, 3], rtol=RTOL)
        np.testing.assert_allclose(got["fee"].to_numpy(), expected[:, 4], rtol=RTOL, atol=1e-12)
    assert list(result.orders["status"]) == [s.value for s in expected_status]


def test_each_order_type_fills_where_the_matching_engine_says() -> None:
    bars = pd.DataFrame(
        {
            "ts": pd.date_range("2024-03-04", periods=4, freq="D", tz="UTC"),
            "open": [100.0, 103.0, 94.0, 101.0],
            "high": [105.0, 106.0, 106.0, 108.0],
            "low": [99.0, 102.0, 93.0, 100.0],
            "close": [104.0, 105.0, 105.0, 107.0],
            "volume": [1e6, 1e6, 1e6, 1000.0],
        }
    )
    script: Script = [
        (0, int(OrderKind.MARKET), 10.0, math.nan, math.nan, 0),  # next open: 103 plus slippage
        (0, int(OrderKind.LIMIT), 10.0, 95.0, math.nan, 0),  # bar 2 gaps below 95: fills at its open, 94
        (0, int(OrderKind.LIMIT), -10.0, 104.0, math.nan, 0),  # bar 1 trades up through 104: at 104
        (1, int(OrderKind.STOP), 10.0, math.nan, 107.0, 0),  # bar 3 reaches 107: at 107 plus slippage
        (2, int(OrderKind.MARKET), 250.0, math.nan, math.nan, 0),  # 10 % of 1000 = 100 units on bar 3
    ]
    free = CostModel(commission_bps=0.0, slippage_bps=10.0)
    config = EventConfig(costs=free, matching=MatchingConfig(participation_rate=0.1))
    fills = run_event_backtest(bars, Scripted(script), config).fills
    assert list(fills["order_id"]) == [0, 2, 1, 3, 4]
    assert list(fills["bar"]) == [1, 1, 2, 3, 3]
    assert list(fills["quantity"]) == [10.0, 10.0, 10.0, 10.0, 90.0]  # the last: what the stop left of 100
    expected_prices = [103.0 * 1.001, 104.0, 94.0, 107.0 * 1.001, 101.0 * 1.001]
    np.testing.assert_allclose(fills["price"], expected_prices, rtol=1e-12)


# ----------------------------------------------------------------------- both paths, one engine


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_python_and_compiled_paths_agree(seed: int) -> None:
    bars = hourly_bars(seed, 300)
    script = random_script(seed, bars, targets=True, n_orders=150)
    config = EventConfig(costs=FEES, matching=MatchingConfig(participation_rate=0.2, latency_bars=1))
    a = run_event_backtest(bars, Scripted(script), config)
    b = run_event_backtest(bars, compiled_script(script), config)
    assert_results_equal(a, b)
    assert len(a.fills) > 20
    closes = bars["close"].to_numpy()
    np.testing.assert_allclose(a.equity, a.cash + a.units * closes, rtol=1e-12)
    np.testing.assert_allclose(a.units, np.cumsum(a.traded_units), atol=1e-9)
    assert set(a.orders["status"]) <= {s.value for s in OrderStatus}


# ----------------------------------------------------------------------- no look-ahead


class Peeker(Strategy):
    def on_bar(self, ctx: BarContext) -> None:
        if ctx.close[ctx.t + 1] > ctx.close[-1]:  # tomorrow's close: not known yet
            self.buy(1.0)


def test_a_python_strategy_that_peeks_fails_with_a_clear_error(spy: pd.DataFrame) -> None:
    with pytest.raises(LookAheadError, match=r"index 1 is past the current bar: at bar t=0") as info:
        run_event_backtest(spy, Peeker())
    assert isinstance(info.value, DataFormatError)
    assert isinstance(info.value, IndexError)


def test_the_future_is_not_in_memory_a_strategy_can_reach(spy: pd.DataFrame) -> None:
    seen = []

    class Digger(Strategy):
        def on_bar(self, ctx: BarContext) -> None:
            buffer = ctx.close
            while buffer.base is not None:  # up to the memory behind the view
                buffer = buffer.base
            assert buffer.shape == (5, 50)
            seen.append(np.isnan(buffer[:, ctx.t + 1 :]).all() and not np.isnan(buffer[:, : ctx.t + 1]).any())

    run_event_backtest(spy.iloc[:50], Digger())
    assert len(seen) == 50
    assert all(seen)


@njit(cache=True)
def peeking_decide(t, open_, high, low, close, volume, account, params, state, orders):
    if t + 1 < params.shape[0] and not math.isnan(close[t + 1]):  # reads past its array: no bounds check
        put_order(orders, 0, OrderKind.MARKET, 1.0)
        return 1
    return 0


@njit(cache=True, boundscheck=True)
def checked_peeking_decide(t, open_, high, low, close, volume, account, params, state, orders):
    return 1 if close[t + 1] > close[t] else 0


def test_a_compiled_strategy_that_peeks_sees_nothing(spy: pd.DataFrame) -> None:
    result = run_event_backtest(spy, CompiledStrategy(peeking_decide, params=np.zeros(len(spy))))
    assert result.orders.empty  # every read past bar t found NaN: the future is not there
    with pytest.raises(IndexError):
        run_event_backtest(spy, CompiledStrategy(checked_peeking_decide))


class LimitTrader(Strategy):
    """Uses highs, lows and closes up to now: limit and stop orders around a moving average, and targets."""

    def on_bar(self, ctx: BarContext) -> None:
        close = ctx.close
        if len(close) < 10:
            return
        mean = close[-10:].mean()
        if ctx.t % 3 == 0:
            self.limit(5.0 if close[-1] > mean else -5.0, float(ctx.low[-1]), time_in_force="day")
        if ctx.t % 5 == 0:
            self.stop(-3.0, float(ctx.low[-5:].min()))
        if ctx.t % 11 == 0:
            self.order_target_percent(0.5 if close[-1] > mean else 0.0)


@njit(cache=True)
def limit_trader_decide(t, open_, high, low, close, volume, account, params, state, orders):
    if t < 9:
        return 0
    mean = close[t - 9 : t + 1].mean()
    n = 0
    if t % 3 == 0:
        size = 5.0 if close[t] > mean else -5.0
        put_order(orders, n, OrderKind.LIMIT, size, low[t], np.nan, TimeInForceCode.DAY)
        n += 1
    if t % 5 == 0:
        put_order(orders, n, OrderKind.STOP, -3.0, np.nan, low[t - 4 : t + 1].min())
        n += 1
    if t % 11 == 0:
        put_order(orders, n, OrderKind.TARGET_PERCENT, 0.5 if close[t] > mean else 0.0)
        n += 1
    return n


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(0, 118),
    factor=st.floats(0.5, 2.0),
    path=st.sampled_from(["python", "compiled"]),
)
def test_results_up_to_a_bar_ignore_every_later_bar(seed: int, k: int, factor: float, path: str) -> None:
    bars = hourly_bars(seed, 120)
    altered = bars.copy()
    later = altered.index > k
    altered.loc[later, ["open", "high", "low", "close"]] *= factor
    altered.loc[later, "volume"] = 7.0
    config = EventConfig(costs=FEES, matching=MatchingConfig(participation_rate=0.3))

    def run(frame: pd.DataFrame) -> EventResult:
        strategy = LimitTrader() if path == "python" else CompiledStrategy(limit_trader_decide)
        return run_event_backtest(frame, strategy, config)

    a, b = run(bars), run(altered)
    for name in _RESULT_FIELDS:
        np.testing.assert_array_equal(getattr(a, name)[: k + 1], getattr(b, name)[: k + 1], err_msg=name)
    pd.testing.assert_frame_equal(a.fills[a.fills["bar"] <= k], b.fills[b.fills["bar"] <= k])
    decided = ["order_id", "bar", "ts", "kind", "target_weight", "limit_price", "stop_price", "time_in_force"]
    decided_a = a.orders.loc[a.orders["bar"] <= k, decided]
    decided_b = b.orders.loc[b.orders["bar"] <= k, decided]
    pd.testing.assert_frame_equal(decided_a, decided_b)


# ----------------------------------------------------------------------- validation


class BadOrder(Strategy):
    def __init__(self, action: Callable[[Strategy], object]) -> None:
        self.action = action

    def on_bar(self, ctx: BarContext) -> None:
        if ctx.t == 3:
            self.action(self)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (lambda s: s.limit(math.nan, 100.0), r"order at bar 3 .* \(LIMIT\) has size nan; expected a finite"),
        (lambda s: s.limit(5.0, -1.0), r"\(LIMIT\) has limit price -1.0; expected a finite price > 0"),
        (lambda s: s.stop(5.0, math.inf), r"\(STOP\) has stop price inf"),
        (lambda s: s.stop(5.0, 100.0, limit_price=0.0), r"\(STOP_LIMIT\) has limit price 0.0"),
        (lambda s: s.buy(-5.0), r"buy\(\) and sell\(\) take a finite number of units > 0, got -5.0"),
        (lambda s: s.sell(math.nan), r"got nan"),
        (lambda s: s.order_target_percent(math.nan), r"TARGET_PERCENT\) has weight nan"),
        (lambda s: s.cancel(7), r"cancels order id 7.0, which does not exist"),
        (lambda s: s.buy(1.0, time_in_force="forever"), r"time_in_force must be one of gtc, day, ioc, fok"),
    ],
)
def test_bad_orders_are_rejected_with_clear_errors(
    spy: pd.DataFrame, action: Callable[[Strategy], object], match: str
) -> None:
    with pytest.raises(OrderRejectedError, match=match):
        run_event_backtest(spy.iloc[:20], BadOrder(action))


@njit(cache=True)
def bad_decide(t, open_, high, low, close, volume, account, params, state, orders):
    if t == 4:
        put_order(orders, 0, int(params[0]), params[1], params[2], params[3], int(params[4]))
        return 1
    return 0


@njit(cache=True)
def overflowing_decide(t, open_, high, low, close, volume, account, params, state, orders):
    return orders.shape[0] + 1


@pytest.mark.parametrize(
    ("order", "match"),
    [
        ((0, math.nan, math.nan, math.nan, 0), r"order at bar 4 .* \(MARKET\) has size nan"),
        ((1, 5.0, -2.0, math.nan, 0), r"\(LIMIT\) has limit price -2.0"),
        ((2, 5.0, math.nan, math.nan, 0), r"\(STOP\) has stop price nan"),
        ((9, 5.0, math.nan, math.nan, 0), r"has kind 9.0; expected an OrderKind code 0..6"),
        ((0, 5.0, math.nan, math.nan, 7), r"has time in force 7.0; expected a TimeInForceCode 0..3"),
    ],
)
def test_bad_compiled_orders_are_rejected_with_clear_errors(
    spy: pd.DataFrame, order: tuple[float, ...], match: str
) -> None:
    with pytest.raises(OrderRejectedError, match=match):
        run_event_backtest(spy.iloc[:20], CompiledStrategy(bad_decide, params=np.array(order)))
    with pytest.raises(OrderRejectedError, match=r"decide\(\) returned 5 orders at bar 0"):
        run_event_backtest(spy.iloc[:20], CompiledStrategy(overflowing_decide))


@njit(cache=True)
def wrong_arity_decide(t, close, orders):
    return 0


def test_orders_outside_a_run_and_bad_inputs_are_refused(spy: pd.DataFrame) -> None:
    with pytest.raises(OrderRejectedError, match="only be placed from on_bar"):
        Targets(np.ones(3)).buy(1.0)
    with pytest.raises(ConfigError, match="must be a numba @njit function"):
        CompiledStrategy(lambda *a: 0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"must compile as decide\(t: int, open, high, low, close"):
        run_event_backtest(spy, CompiledStrategy(wrong_arity_decide))
    with pytest.raises(ConfigError, match="takes a Strategy subclass instance or a CompiledStrategy"):
        EventEngine().run(spy, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"use matching\.latency_bars"):
        EventConfig(matching=MatchingConfig(latency_s=5.0))
    two = pd.concat([spy.iloc[:5], spy.iloc[:5].assign(symbol="QQQ")])
    with pytest.raises(DataFormatError, match="hold 2 symbols"):
        run_event_backtest(two, Targets(np.ones(10)))
    with pytest.raises(DataFormatError, match="'low' must be finite and > 0"):
        run_event_backtest(spy.iloc[:5].assign(low=-1.0), Targets(np.ones(5)))


# ----------------------------------------------------------------------- results


def test_results_hold_the_account_per_bar_and_a_trade_list(spy: pd.DataFrame) -> None:
    class BuyThenCancel(Strategy):
        def on_bar(self, ctx: BarContext) -> None:
            if ctx.t == 0:
                self.buy(100.0)
                self.resting = self.limit(50.0, float(ctx.close[-1]) * 0.5)  # far below: never fills
            if ctx.t == 1:
                assert ctx.position == 100.0
                assert ctx.working_orders == (self.resting,)
                assert ctx.order_status(0) is OrderStatus.FILLED
                self.cancel(self.resting)
            if ctx.t == 2:
                assert ctx.working_orders == ()
                self.order_target_percent(0.0)

    result = run_event_backtest(spy.iloc[:10], BuyThenCancel(), EventConfig(costs=COSTS))
    assert list(result.fills.columns) == [
        "order_id",
        "bar",
        "ts",
        "side",
        "quantity",
        "price",
        "fee",
        "ref_price",
    ]
    assert list(result.fills["side"]) == ["buy", "sell"]
    assert list(result.fills["bar"]) == [1, 3]
    assert list(result.orders["status"]) == ["filled", "cancelled", "filled"]
    assert result.orders["message"][1] == "cancelled by client"
    assert result.units[1] == 100.0
    assert result.units[3] == 0.0
    assert result.equity[0] == 100_000.0
    assert result.returns[0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        result.equity[0] = 1.0
    converted = result.to_backtest_result(name="demo", periods_per_year=252)
    assert len(converted.ts) == 9
    assert (converted.name, converted.symbol) == ("demo", "SPY")
    assert converted.n_trades == 2
    assert "EventResult(symbol='SPY', bars=10" in repr(result)


@njit(cache=True)
def account_decide(t, open_, high, low, close, volume, account, params, state, orders):
    state[0] += 1.0  # works on a copy of the strategy's state
    if t == 0:
        put_order(orders, 0, OrderKind.MARKET, params[0])
        return 1
    if t == 2:  # position 10 and one order so far: buys 11 more
        put_order(orders, 0, OrderKind.MARKET, account[ACCOUNT_POSITION] + account[ACCOUNT_N_ORDERS])
        return 1
    return 0


def test_a_compiled_strategy_sees_its_account_and_a_run_changes_nothing_it_holds(spy: pd.DataFrame) -> None:
    strategy = CompiledStrategy(account_decide, params=np.array([10.0]), state=np.zeros(1))
    result = run_event_backtest(spy.iloc[:5], strategy)
    assert list(result.units) == [0.0, 10.0, 10.0, 21.0, 21.0]
    assert strategy.state[0] == 0.0
    assert strategy.params[0] == 10.0
