"""The event-driven backtest engine: bar by bar, orders matched by the paper exchange's rules.

A strategy decides at the close of each bar with the data up to that bar; its orders are matched on the
following bars by the rule functions of :mod:`alphaloom.data.connectors.matching`, the same functions the
paper exchange's :class:`~alphaloom.data.connectors.matching.MatchingEngine` calls, and priced by the
``*_nb`` kernels of :mod:`alphaloom.backtest.costs`. So a strategy fills here as it fills in paper trading:

- **Market** orders fill at the next bar's open, with slippage.
- **Limit** orders fill when a bar trades through the limit (at the open on a gap, else at the limit).
- **Stop** orders trigger when a bar reaches the stop and fill there (at the open on a gap) with slippage;
  **stop-limit** orders trigger the same way, then work as limits.
- **Partial fills**: per bar at most ``matching.participation_rate * volume`` units fill across all orders
  in submission order (no cap when the rate is ``None`` or the volume NaN), and no more than the cost model's
  ``max_participation`` allows. Commission is charged on an order's cumulative fills.
- **Time in force** GTC, DAY (expires at the first bar of a later UTC date), IOC and FOK; ``latency_bars``
  delays acceptance as in the matching engine. (``latency_s`` is not supported: the engine counts bars.)
- **Target orders**: ``order_target_percent(w)`` becomes, at the next bar's open, a market order for
  ``w * equity / open - position`` units with equity marked at that open, then fills like one; what the
  participation cap leaves unfilled is cancelled (the next target recomputes it). A trade smaller than
  ``min_trade_weight`` of equity is skipped. This is the rule of
  :func:`~alphaloom.backtest.execution.execute_bar`, so target strategies reproduce
  :func:`~alphaloom.backtest.engine.run_backtest` (to 1e-9, tested).

Accounting follows :mod:`alphaloom.backtest.engine`: equity is ``cash + position * close`` at every close;
there is no margin check (leverage and shorts are allowed); if equity falls to zero or below the account is
ruined, the position is closed at that close without cost, working orders are cancelled and later orders are
rejected.

Two ways to write a strategy
----------------------------
- :class:`Strategy`: subclass it and implement ``on_bar(ctx)``; ``ctx`` is a :class:`BarContext` whose
  arrays end at the current bar, and orders go through the validated methods :meth:`Strategy.buy`,
  :meth:`~Strategy.sell`, :meth:`~Strategy.limit`, :meth:`~Strategy.stop`,
  :meth:`~Strategy.order_target_percent` and :meth:`~Strategy.cancel`. Flexible; Python speed.
- :class:`CompiledStrategy`: a numba function ``decide(t, open, high, low, close, volume, account, params,
  state, orders) -> n_orders`` run inside one compiled loop with the same matching step: about 0.1 us per
  bar of engine work plus the strategy's own. It writes up to ``orders.shape[0]`` rows of ``(kind, size,
  limit_price, stop_price, time_in_force)`` (see :class:`OrderKind` and :func:`put_order`) and returns how
  many it wrote.

No look-ahead, by construction: the engine copies bar ``t`` into the strategy's buffers just before the
strategy runs at ``t``, so bars after ``t`` are not in any memory it can reach (the buffers hold NaN there).
A Python strategy indexing past the current bar gets a :class:`LookAheadError`; a compiled one finds NaN
there (numba does not check bounds unless the function is compiled with ``boundscheck=True``, which raises
``IndexError``). An order decided at bar ``t`` can first fill at bar ``t + 1``.

Examples
--------
>>> class Cross(Strategy):
...     def on_bar(self, ctx):
...         if len(ctx.close) >= 50:
...             fast, slow = ctx.close[-10:].mean(), ctx.close[-50:].mean()
...             self.order_target_percent(1.0 if fast > slow else 0.0)
>>> result = run_event_backtest(bars, Cross(), EventConfig(costs=CostModel()))  # doctest: +SKIP
>>> result.to_backtest_result().stats()["sharpe"]                               # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import NumbaError
from numba.extending import intrinsic
from pydantic import Field, model_validator

from alphaloom.backtest import costs as _costs
from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.engine import BacktestResult
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    EmptyRangeError,
    OrderRejectedError,
)
from alphaloom.core.types import Fill, Order, OrderStatus, OrderType, Portfolio, Side, TimeInForce
from alphaloom.data.connectors import matching as _rules
from alphaloom.data.connectors.matching import MatchingConfig, OrderTypeCode, TimeInForceCode
from alphaloom.risk.limits import RiskLimits
from alphaloom.risk.manager import RiskManager

__all__ = [
    "ACCOUNT_CASH",
    "ACCOUNT_EQUITY",
    "ACCOUNT_N_ORDERS",
    "ACCOUNT_N_WORKING",
    "ACCOUNT_POSITION",
    "BarContext",
    "CompiledStrategy",
    "EventConfig",
    "EventEngine",
    "EventResult",
    "LookAheadError",
    "OrderKind",
    "Strategy",
    "put_order",
    "run_event_backtest",
]


class LookAheadError(DataFormatError, IndexError):
    """A strategy asked for data after the current bar (an ``IndexError`` too, as numpy would raise)."""


class OrderKind(IntEnum):
    """Order codes of the compiled protocol (the first four are the matching engine's order types)."""

    MARKET = OrderTypeCode.MARKET
    LIMIT = OrderTypeCode.LIMIT
    STOP = OrderTypeCode.STOP
    STOP_LIMIT = OrderTypeCode.STOP_LIMIT
    TARGET_PERCENT = 4
    """``size`` is the target exposure as a fraction of equity."""
    CANCEL = 5
    """``size`` is the id of the order to cancel."""
    CANCEL_ALL = 6
    """Cancel every working order."""


# Columns of the ``account`` vector a compiled strategy receives (a copy: writing to it changes nothing).
ACCOUNT_CASH = 0
ACCOUNT_POSITION = 1
ACCOUNT_EQUITY = 2
ACCOUNT_N_ORDERS = 3
"""Orders submitted so far: the next order gets this id."""
ACCOUNT_N_WORKING = 4
_N_ACCOUNT = 5

# Columns of a compiled strategy's ``orders`` rows.
_O_KIND, _O_SIZE, _O_LIMIT, _O_STOP, _O_TIF = 0, 1, 2, 3, 4
_N_ORDER_COLS = 5

# Columns of the order book, one row per order.
_B_KIND = 0  # OrderKind
_B_BUY = 1  # 1.0 buy, 0.0 sell (NaN for a target not yet resolved)
_B_QTY = 2  # units ordered (> 0); a target's units once resolved
_B_LIMIT = 3
_B_STOP = 4
_B_TIF = 5  # TimeInForceCode
_B_STATUS = 6
_B_BAR = 7  # bar at whose close it was decided
_B_WAIT = 8  # eligible bars still to pass before acceptance
_B_TRIGGERED = 9
_B_FILLED = 10
_B_NOTIONAL = 11  # sum of quantity * price over its fills
_B_FEES = 12
_B_SESSION = 13  # UTC day number of its first eligible bar, -1 before
_B_DONE_BAR = 14  # bar it became terminal, -1 while working
_B_REASON = 15
_B_WEIGHT = 16  # a target order's weight
_N_BOOK_COLS = 17

# Order status codes in the book.
_NEW, _ACCEPTED, _PARTIAL, _FILLED, _CANCELLED, _REJECTED = 0, 1, 2, 3, 4, 5
_STATUS = (
    OrderStatus.NEW,
    OrderStatus.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED,
    OrderStatus.CANCELLED,
    OrderStatus.REJECTED,
)
_R_NONE, _R_CLIENT, _R_DAY, _R_FIRST_EVENT, _R_BAND, _R_RUIN, _R_RISK = 0, 1, 2, 3, 4, 5, 6
_REASONS = (
    "",
    "cancelled by client",
    "DAY order expired at the end of its session",
    "order filled what it could on its first eligible bar; rest cancelled",
    "target within the no-trade band (min_trade_weight) or no equity: nothing to trade",
    "account ruined (equity <= 0): position closed, orders cancelled",
    "refused by the risk manager (reasons in EventResult.refused)",
)

# Columns of EventResult.refused.
_REFUSED_COLUMNS = ("order_id", "bar", "ts", "kind", "side", "quantity", "reasons")

# Columns of the fill list.
_F_ORDER, _F_BAR, _F_UNITS, _F_PRICE, _F_FEE, _F_REF = 0, 1, 2, 3, 4, 5
_N_FILL_COLS = 6

# Counters.
_C_N_ORDERS, _C_N_WORKING, _C_N_FILLS, _C_RUINED, _C_ERROR, _C_ERROR_BAR, _C_ERROR_ROW = range(7)
_N_COUNTERS = 7

# Account state between bars.
_A_CASH, _A_UNITS, _A_EQUITY_PREV = 0, 1, 2

# Settings vector.
_S_RATE, _S_MIN_TRADE_WEIGHT, _S_LATENCY = 0, 1, 2

# Per-bar output rows.
_OUT_FIELDS = (
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
_EQUITY, _CASH, _UNITS, _TRADED, _COSTS, _RETURNS, _WEIGHTS, _OPEN_W, _TRADE_W, _TARGETS = range(10)

# The codes as plain ints for the kernels.
_K_MARKET, _K_LIMIT, _K_STOP, _K_STOP_LIMIT = (int(c) for c in OrderTypeCode)
_K_TARGET, _K_CANCEL, _K_CANCEL_ALL = (
    int(OrderKind.TARGET_PERCENT),
    int(OrderKind.CANCEL),
    int(OrderKind.CANCEL_ALL),
)
_TIF_IOC, _TIF_FOK = int(TimeInForceCode.IOC), int(TimeInForceCode.FOK)

# Error codes from the kernels.
_E_KIND, _E_SIZE, _E_WEIGHT, _E_LIMIT, _E_STOP, _E_TIF, _E_CANCEL, _E_PRICE, _E_COUNT = range(1, 10)

# The matching rules, compiled from the very functions the MatchingEngine calls.
_participation_capacity = njit(cache=True)(_rules.participation_capacity)
_acceptance_step = njit(cache=True)(_rules.acceptance_step)
_day_order_expired = njit(cache=True)(_rules.day_order_expired)
_reference_price = njit(cache=True)(_rules.reference_price)
_fill_quantity = njit(cache=True)(_rules.fill_quantity)
_cumulative_fill = njit(cache=True)(_rules.cumulative_fill)
_commission_due = njit(cache=True)(_rules.commission_due)
_order_complete = njit(cache=True)(_rules.order_complete)
_cancels_rest = njit(cache=True)(_rules.cancels_rest)


# --------------------------------------------------------------------------------------------------------
# Kernels shared by both paths
#
# The per-bar kernels allocate nothing, so they are compiled without numba's runtime (``_nrt=False``, the
# compiler option numba's own ``register_jitable`` docs show for this): with it, every call would increment
# and decrement the reference count of each array argument atomically, which costs more than the bar's work.
# --------------------------------------------------------------------------------------------------------


@njit(cache=True)
def put_order(
    orders: np.ndarray,
    row: int,
    kind: int,
    size: float,
    limit_price: float = np.nan,
    stop_price: float = np.nan,
    time_in_force: int = 0,
) -> None:
    """Write one order into row ``row`` of a compiled strategy's ``orders`` buffer.

    Parameters
    ----------
    orders
        The ``(max_orders_per_bar, 5)`` buffer ``decide`` receives.
    row
        Row to write (``decide`` returns the number of rows written).
    kind
        An :class:`OrderKind`.
    size
        Signed units for market, limit, stop and stop-limit orders (positive buys); the target weight for
        ``TARGET_PERCENT``; the order id for ``CANCEL``.
    limit_price, stop_price
        Prices per unit where the kind needs them.
    time_in_force
        A :class:`~alphaloom.data.connectors.matching.TimeInForceCode` (0 = GTC).
    """
    # ``+ 0`` turns an IntEnum member into an int64, which numba can store as a float (it cannot cast it).
    orders[row, _O_KIND] = kind + 0
    orders[row, _O_SIZE] = size
    orders[row, _O_LIMIT] = limit_price
    orders[row, _O_STOP] = stop_price
    orders[row, _O_TIF] = time_in_force + 0


@njit(cache=True, _nrt=False)
def _check_order(
    kind: float, size: float, limit_price: float, stop_price: float, tif: float, n_orders: int
) -> int:
    if not (kind == math.floor(kind) and 0 <= kind <= _K_CANCEL_ALL):
        return _E_KIND
    if kind == _K_CANCEL_ALL:
        return 0
    if kind == _K_CANCEL:
        return 0 if (size == math.floor(size) and 0 <= size < n_orders) else _E_CANCEL
    if kind == _K_TARGET:
        return 0 if math.isfinite(size) else _E_WEIGHT
    if not (math.isfinite(size) and size != 0.0):
        return _E_SIZE
    if (kind in (_K_LIMIT, _K_STOP_LIMIT)) and not (math.isfinite(limit_price) and limit_price > 0.0):
        return _E_LIMIT
    if (kind in (_K_STOP, _K_STOP_LIMIT)) and not (math.isfinite(stop_price) and stop_price > 0.0):
        return _E_STOP
    if not (tif == math.floor(tif) and 0 <= tif <= _TIF_FOK):
        return _E_TIF
    return 0


@njit(cache=True, _nrt=False)
def _close_order(book: np.ndarray, k: int, status: int, t: int, reason: int) -> None:
    book[k, _B_STATUS] = status
    book[k, _B_DONE_BAR] = t
    book[k, _B_REASON] = reason


@njit(cache=True, _nrt=False)
def _submit(
    book: np.ndarray,
    work: np.ndarray,
    counters: np.ndarray,
    t: int,
    kind: float,
    size: float,
    limit_price: float,
    stop_price: float,
    tif: float,
    latency_bars: int,
) -> int:
    """Validate one order and add it to the book (capacity is the caller's); an error code, 0 if accepted."""
    n_orders = counters[_C_N_ORDERS]
    err = _check_order(kind, size, limit_price, stop_price, tif, n_orders)
    if err != 0:
        return err
    if kind in (_K_CANCEL, _K_CANCEL_ALL):
        n_keep = 0
        for i in range(counters[_C_N_WORKING]):
            k = work[i]
            if kind == _K_CANCEL_ALL or k == size:
                _close_order(book, k, _CANCELLED, t, _R_CLIENT)
            else:
                work[n_keep] = k
                n_keep += 1
        counters[_C_N_WORKING] = n_keep
        return 0
    k = n_orders
    row = book[k]
    row[:] = np.nan
    row[_B_KIND] = kind
    if kind == _K_TARGET:
        row[_B_WEIGHT] = size
        row[_B_QTY] = 0.0
        row[_B_TIF] = _TIF_IOC
    else:
        row[_B_BUY] = 1.0 if size > 0.0 else 0.0
        row[_B_QTY] = abs(size)
        row[_B_TIF] = tif
        if kind in (_K_LIMIT, _K_STOP_LIMIT):
            row[_B_LIMIT] = limit_price
        if kind in (_K_STOP, _K_STOP_LIMIT):
            row[_B_STOP] = stop_price
    row[_B_BAR] = t
    row[_B_WAIT] = latency_bars
    row[_B_TRIGGERED] = 0.0
    row[_B_FILLED] = 0.0
    row[_B_NOTIONAL] = 0.0
    row[_B_FEES] = 0.0
    row[_B_SESSION] = -1.0
    row[_B_DONE_BAR] = -1.0
    row[_B_REASON] = _R_NONE
    counters[_C_N_ORDERS] = n_orders + 1
    if counters[_C_RUINED] != 0:
        row[_B_STATUS] = _REJECTED
        row[_B_DONE_BAR] = t
        row[_B_REASON] = _R_RUIN
        return 0
    row[_B_STATUS] = _NEW if latency_bars > 0 else _ACCEPTED
    work[counters[_C_N_WORKING]] = k
    counters[_C_N_WORKING] += 1
    return 0


@njit(cache=True, _nrt=False)
def _process_bar(
    t: int,
    bars: np.ndarray,
    session: np.ndarray,
    revealed: np.ndarray,
    book: np.ndarray,
    work: np.ndarray,
    fills: np.ndarray,
    counters: np.ndarray,
    acct: np.ndarray,
    out: np.ndarray,
    cost_params: np.ndarray,
    settings: np.ndarray,
) -> None:
    """Match the working orders against bar ``t``, mark to its close, record it and reveal it."""
    op, hi, lo, cl, vol = bars[0, t], bars[1, t], bars[2, t], bars[3, t], bars[4, t]
    cash, units = acct[_A_CASH], acct[_A_UNITS]
    units_before = units
    equity_open = cash + units * op
    traded = 0.0
    cost = 0.0
    target = np.nan
    n_working = counters[_C_N_WORKING]
    if n_working > 0 and counters[_C_RUINED] == 0:
        pool = min(_participation_capacity(vol, settings[_S_RATE]), _costs.max_units_nb(cost_params, vol))
        day = session[t]
        n_keep = 0
        for i in range(n_working):
            k = work[i]
            row = book[k]
            status = int(row[_B_STATUS])
            if row[_B_BAR] >= t:  # decided at this bar's close: the earliest bar that can fill it is the next
                work[n_keep] = k
                n_keep += 1
                continue
            if status == _NEW:
                wait, accepted = _acceptance_step(int(row[_B_WAIT]), True)
                row[_B_WAIT] = wait
                if not accepted:
                    work[n_keep] = k
                    n_keep += 1
                    continue
                status = _ACCEPTED
                row[_B_STATUS] = _ACCEPTED
            tif = int(row[_B_TIF])
            first = int(row[_B_SESSION])
            if _day_order_expired(tif, first, day):
                _close_order(book, k, _CANCELLED, t, _R_DAY)
                continue
            first_event = first < 0
            if first_event:
                row[_B_SESSION] = day
            kind = int(row[_B_KIND])
            if kind == _K_TARGET:
                if first_event:
                    # Resolve at this open, with equity and position as they stand (execute_bar's rule).
                    weight = row[_B_WEIGHT]
                    target = weight
                    equity_now = cash + units * op
                    delta = weight * max(equity_now, 0.0) / op - units
                    if not (
                        equity_now > 0.0
                        and abs(delta) * op > settings[_S_MIN_TRADE_WEIGHT] * equity_now
                        and delta != 0.0
                    ):
                        _close_order(book, k, _CANCELLED, t, _R_BAND)
                        continue
                    row[_B_BUY] = 1.0 if delta > 0.0 else 0.0
                    row[_B_QTY] = abs(delta)
                order_type = _K_MARKET
            else:
                order_type = kind
            buy = row[_B_BUY] > 0.0
            ref, slip, triggered = _reference_price(
                order_type, buy, row[_B_TRIGGERED] > 0.0, op, hi, lo, row[_B_LIMIT], row[_B_STOP]
            )
            row[_B_TRIGGERED] = 1.0 if triggered else 0.0
            if not math.isnan(ref):
                quantity = row[_B_QTY]
                remaining = max(0.0, quantity - row[_B_FILLED])
                qty = _fill_quantity(quantity, remaining, pool, tif == _TIF_FOK)
                if qty > 0.0:
                    pool -= qty
                    signed = qty if buy else -qty
                    if slip:
                        price = _costs.fill_price_nb(cost_params, signed, ref, np.nan, np.nan, np.nan)
                    else:
                        price = ref
                    if not (price > 0.0 and math.isfinite(price)):
                        counters[_C_ERROR] = _E_PRICE
                        counters[_C_ERROR_BAR] = t
                        counters[_C_ERROR_ROW] = k
                        return
                    cum_qty, avg_price = _cumulative_fill(row[_B_FILLED], row[_B_NOTIONAL], qty, price)
                    total = _costs.commission_nb(cost_params, cum_qty if buy else -cum_qty, avg_price)
                    fee = _commission_due(total, row[_B_FEES])
                    row[_B_FILLED] = cum_qty
                    row[_B_NOTIONAL] += qty * price
                    row[_B_FEES] += fee
                    cash -= signed * price + fee
                    units += signed
                    traded += signed
                    cost += qty * abs(price - ref) + fee
                    j = counters[_C_N_FILLS]
                    fills[j, _F_ORDER] = k
                    fills[j, _F_BAR] = t
                    fills[j, _F_UNITS] = signed
                    fills[j, _F_PRICE] = price
                    fills[j, _F_FEE] = fee
                    fills[j, _F_REF] = ref
                    counters[_C_N_FILLS] = j + 1
                    if _order_complete(quantity, cum_qty):
                        _close_order(book, k, _FILLED, t, _R_NONE)
                        continue
                    status = _PARTIAL
                    row[_B_STATUS] = _PARTIAL
            if _cancels_rest(tif, first_event):
                _close_order(book, k, _CANCELLED, t, _R_FIRST_EVENT)
                continue
            work[n_keep] = k
            n_keep += 1
        counters[_C_N_WORKING] = n_keep

    equity = cash + units * cl
    traded_open = traded
    if equity <= 0.0 and counters[_C_RUINED] == 0:
        # Ruin: close the position at this close, cancel what works, stay flat from here on.
        traded -= units
        cash, units, equity = 0.0, 0.0, 0.0
        counters[_C_RUINED] = 1
        for i in range(counters[_C_N_WORKING]):
            _close_order(book, work[i], _CANCELLED, t, _R_RUIN)
        counters[_C_N_WORKING] = 0
    equity_prev = acct[_A_EQUITY_PREV]
    out[_EQUITY, t] = equity
    out[_CASH, t] = cash
    out[_UNITS, t] = units
    out[_TRADED, t] = traded
    out[_COSTS, t] = cost
    out[_RETURNS, t] = equity / equity_prev - 1.0 if equity_prev > 0.0 else 0.0
    out[_WEIGHTS, t] = units * cl / equity if equity > 0.0 else 0.0
    if equity_open > 0.0:
        out[_OPEN_W, t] = (units_before + traded_open) * op / equity_open
        out[_TRADE_W, t] = traded_open * op / equity_open
    else:
        out[_OPEN_W, t] = 0.0
        out[_TRADE_W, t] = 0.0
    out[_TARGETS, t] = out[_OPEN_W, t] if math.isnan(target) else target
    acct[_A_CASH] = cash
    acct[_A_UNITS] = units
    acct[_A_EQUITY_PREV] = equity
    for f in range(5):
        revealed[f, t] = bars[f, t]


@intrinsic
def _borrowed(typingctx: Any, arr: Any) -> Any:
    """``arr`` itself, holding no reference: the caller keeps ``arr`` alive while the view is used."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src = context.make_array(arr)(context, builder, value=args[0])
        dst = context.make_array(arr)(context, builder)
        context.populate_array(
            dst, data=src.data, shape=src.shape, strides=src.strides, itemsize=src.itemsize, meminfo=None
        )
        return dst._getvalue()

    return arr(arr), codegen


@intrinsic
def _borrowed_row(typingctx: Any, matrix: Any, row: Any, length: Any) -> Any:
    """``matrix[row, :length]`` of a C-contiguous matrix, holding no reference (see :func:`_borrowed`)."""
    if not (isinstance(matrix, types.Array) and matrix.ndim == 2 and matrix.layout == "C"):
        return None
    vector = types.Array(matrix.dtype, 1, "C")

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src = context.make_array(matrix)(context, builder, value=args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        size = context.cast(builder, args[2], signature.args[2], types.intp)
        n_cols = cgutils.unpack_tuple(builder, src.shape, 2)[1]
        dst = context.make_array(vector)(context, builder)
        context.populate_array(
            dst,
            data=builder.gep(src.data, [builder.mul(index, n_cols)]),
            shape=[size],
            strides=[src.itemsize],
            itemsize=src.itemsize,
            meminfo=None,
        )
        return dst._getvalue()

    return vector(matrix, row, length), codegen


@njit(cache=True)
def _grow_rows(a: np.ndarray, rows: int) -> np.ndarray:
    grown = np.full((max(rows, 2 * a.shape[0]), a.shape[1]), np.nan)
    grown[: a.shape[0]] = a
    return grown


@njit(cache=True)
def _grow_index(a: np.ndarray, rows: int) -> np.ndarray:
    grown = np.zeros(max(rows, 2 * a.shape[0]), dtype=np.int64)
    grown[: a.shape[0]] = a
    return grown


def _run_compiled(
    decide: Any,
    bars: np.ndarray,
    session: np.ndarray,
    revealed: np.ndarray,
    book: np.ndarray,
    work: np.ndarray,
    fills: np.ndarray,
    counters: np.ndarray,
    acct: np.ndarray,
    out: np.ndarray,
    cost_params: np.ndarray,
    settings: np.ndarray,
    params: np.ndarray,
    state: np.ndarray,
    orders: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = bars.shape[1]
    per_bar = orders.shape[0]
    latency = int(settings[_S_LATENCY])
    account = np.zeros(_N_ACCOUNT)
    # What the strategy receives holds no reference count (the arrays outlive the loop): the atomic
    # increments and decrements of ten arrays per bar would cost more than the strategy and the matching.
    account_view, params_view, state_view, orders_view = (
        _borrowed(account),
        _borrowed(params),
        _borrowed(state),
        _borrowed(orders),
    )
    for t in range(n):
        if counters[_C_N_FILLS] + counters[_C_N_WORKING] > fills.shape[0]:
            fills = _grow_rows(fills, counters[_C_N_FILLS] + counters[_C_N_WORKING])
        _process_bar(
            t, bars, session, revealed, book, work, fills, counters, acct, out, cost_params, settings
        )
        if counters[_C_ERROR] != 0:
            break
        if counters[_C_N_ORDERS] + per_bar > book.shape[0]:
            book = _grow_rows(book, counters[_C_N_ORDERS] + per_bar)
            work = _grow_index(work, book.shape[0])
        account[ACCOUNT_CASH] = acct[_A_CASH]
        account[ACCOUNT_POSITION] = acct[_A_UNITS]
        account[ACCOUNT_EQUITY] = out[_EQUITY, t]
        account[ACCOUNT_N_ORDERS] = counters[_C_N_ORDERS]
        account[ACCOUNT_N_WORKING] = counters[_C_N_WORKING]
        m = t + 1
        n_new = decide(
            t,
            _borrowed_row(revealed, 0, m),
            _borrowed_row(revealed, 1, m),
            _borrowed_row(revealed, 2, m),
            _borrowed_row(revealed, 3, m),
            _borrowed_row(revealed, 4, m),
            account_view,
            params_view,
            state_view,
            orders_view,
        )
        if n_new == 0:
            continue
        if n_new < 0 or n_new > per_bar:
            counters[_C_ERROR] = _E_COUNT
            counters[_C_ERROR_BAR] = t
            counters[_C_ERROR_ROW] = n_new
            break
        for i in range(n_new):
            err = _submit(
                book,
                work,
                counters,
                t,
                orders[i, _O_KIND],
                orders[i, _O_SIZE],
                orders[i, _O_LIMIT],
                orders[i, _O_STOP],
                orders[i, _O_TIF],
                latency,
            )
            if err != 0:
                counters[_C_ERROR] = err
                counters[_C_ERROR_BAR] = t
                counters[_C_ERROR_ROW] = i
                break
            orders[i, _O_KIND] = np.nan
            orders[i, _O_SIZE] = np.nan
            orders[i, _O_LIMIT] = np.nan
            orders[i, _O_STOP] = np.nan
            orders[i, _O_TIF] = 0.0
        if counters[_C_ERROR] != 0:
            break
    return book, work, fills


_F64 = types.Array(types.float64, 1, "C")
_F64_2D = types.Array(types.float64, 2, "C")
_I64 = types.Array(types.int64, 1, "C")
_DECIDE_TYPE = types.FunctionType(
    types.int64(types.int64, _F64, _F64, _F64, _F64, _F64, _F64, _F64, _F64, _F64_2D)
)


@functools.cache
def _compiled_kernel() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    # An explicit signature types ``decide`` as a first-class function, so the loop is compiled once (and
    # cached on disk) for every strategy; with a plain dispatcher argument numba would recompile per process.
    signature = types.Tuple((_F64_2D, _I64, _F64_2D))(
        _DECIDE_TYPE,
        _F64_2D,
        _I64,
        _F64_2D,
        _F64_2D,
        _I64,
        _F64_2D,
        _I64,
        _F64,
        _F64_2D,
        _F64,
        _F64,
        _F64,
        _F64,
        _F64_2D,
    )
    return njit(signature, cache=True)(_run_compiled)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------------
# Configuration, inputs and results
# --------------------------------------------------------------------------------------------------------


class EventConfig(ComponentConfig):
    """Settings of the :class:`EventEngine`.

    Parameters
    ----------
    initial_cash
        Equity before the first bar, in account currency.
    costs
        Commission, spread and slippage (market impact needs a volatility the matching rules do not
        supply, so it is not charged here, as in paper trading). Its ``max_participation`` caps fills too.
    matching
        The paper exchange's matching settings: ``participation_rate`` (``None``, the default here, for no
        cap) and ``latency_bars``. ``latency_s`` must stay 0.
    min_trade_weight
        No-trade band of target orders: a trade below this fraction of equity is skipped (as in
        :func:`~alphaloom.backtest.engine.run_backtest`, whose default it shares).
    """

    initial_cash: float = Field(100_000.0, gt=0.0, allow_inf_nan=False)
    costs: CostModel = CostModel()
    matching: MatchingConfig = MatchingConfig(participation_rate=None)
    min_trade_weight: float = Field(1e-4, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bar_latency_only(self) -> EventConfig:
        if self.matching.latency_s != 0.0:
            raise ValueError(
                f"matching.latency_s={self.matching.latency_s} is not supported by the event engine, which "
                "counts bars; use matching.latency_bars instead"
            )
        return self


@dataclass(frozen=True)
class CompiledStrategy:
    """A strategy as a numba function, run inside the engine's compiled loop.

    Parameters
    ----------
    decide
        An ``@njit`` function ``decide(t, open, high, low, close, volume, account, params, state, orders) ->
        int``, called at the close of every bar ``t``. ``open .. volume`` are float64 arrays of length
        ``t + 1`` (bars 0..t); ``account`` a float64 copy indexed by ``ACCOUNT_CASH``, ``ACCOUNT_POSITION``,
        ``ACCOUNT_EQUITY``, ``ACCOUNT_N_ORDERS`` and ``ACCOUNT_N_WORKING``; ``params`` the read-only
        parameters below; ``state`` a float64 scratch vector kept between bars; ``orders`` a float64 buffer
        of shape ``(max_orders_per_bar, 5)`` for new orders (see :func:`put_order`). Returns the number of
        order rows written.
    params
        Strategy parameters, float64 of shape ``(p,)``.
    state
        Initial scratch state, float64 of shape ``(s,)`` (copied for each run).
    max_orders_per_bar
        Rows of the ``orders`` buffer.
    """

    decide: Callable[..., int]
    params: np.ndarray = field(default_factory=lambda: np.zeros(0))
    state: np.ndarray = field(default_factory=lambda: np.zeros(0))
    max_orders_per_bar: int = 4

    def __post_init__(self) -> None:
        if not hasattr(self.decide, "py_func") or not hasattr(self.decide, "compile"):
            raise ConfigError(
                f"CompiledStrategy.decide must be a numba @njit function, got {type(self.decide).__name__}; "
                "decorate it with @numba.njit (cache=True recommended), or subclass Strategy for Python code."
            )
        for name in ("params", "state"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1:
                raise ConfigError(f"CompiledStrategy.{name} must be one-dimensional, got shape {arr.shape}.")
            object.__setattr__(self, name, arr)
        if not (isinstance(self.max_orders_per_bar, int) and self.max_orders_per_bar >= 1):
            raise ConfigError(
                f"CompiledStrategy.max_orders_per_bar must be an int >= 1, got {self.max_orders_per_bar!r}."
            )


@dataclass(frozen=True, eq=False)
class EventResult:
    """What a strategy did on one symbol, for every bar (arrays of shape ``(n,)``, read-only).

    Row ``t`` is bar ``t`` (bar 0 included: nothing can trade on it). Per-bar fields are those of
    :class:`~alphaloom.backtest.engine.BacktestResult`: ``equity``, ``cash``, ``units`` (position) and
    ``weights`` after the close; ``traded_units`` and ``costs`` (slippage plus commission, account currency)
    over the bar; ``open_weights`` and ``trade_weights`` relative to equity at the open; ``targets`` the
    weight of the target order resolved at the bar's open, else ``open_weights``; ``returns`` close to close.

    Attributes
    ----------
    fills
        The trade list, one row per fill: ``order_id, bar, ts, side, quantity, price, fee, ref_price``.
    orders
        One row per order: ``order_id, bar, ts, kind, side, quantity, target_weight, limit_price,
        stop_price, time_in_force, status, filled_quantity, avg_fill_price, fees, done_bar, message``.
    refused
        Orders the risk manager refused (also in ``orders``, status ``rejected``), one row each:
        ``order_id, bar, ts, kind, side, quantity, reasons`` (``quantity`` of a target order is its estimate
        at the deciding close); empty without a risk manager.
    """

    symbol: str
    ts: pd.DatetimeIndex
    equity: np.ndarray
    cash: np.ndarray
    units: np.ndarray
    traded_units: np.ndarray
    costs: np.ndarray
    returns: np.ndarray
    weights: np.ndarray
    open_weights: np.ndarray
    trade_weights: np.ndarray
    targets: np.ndarray
    fills: pd.DataFrame
    orders: pd.DataFrame
    initial_cash: float
    refused: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(_REFUSED_COLUMNS)))

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])

    def to_backtest_result(self, name: str = "strategy", periods_per_year: float = 252) -> BacktestResult:
        """Bars ``1 .. n - 1`` as a :class:`~alphaloom.backtest.engine.BacktestResult` (bar 0 only decides).

        With target orders placed every bar this equals :func:`~alphaloom.backtest.engine.run_backtest` on
        the same targets.
        """
        return BacktestResult(
            name=name,
            symbol=self.symbol,
            ts=self.ts[1:],
            initial_cash=self.initial_cash,
            periods_per_year=float(periods_per_year),
            **{f: getattr(self, f)[1:] for f in _OUT_FIELDS},
        )

    def __repr__(self) -> str:
        return (
            f"EventResult(symbol={self.symbol!r}, bars={len(self.ts)}, orders={len(self.orders)}, "
            f"fills={len(self.fills)}, final_equity={self.final_equity:,.2f})"
        )


class _Bars:
    __slots__ = ("bars", "session", "symbol", "ts")

    def __init__(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise DataFormatError(f"bars must be a pandas DataFrame, got {type(frame).__name__}.")
        if "ts" not in frame.columns and frame.index.name == "ts":
            frame = frame.reset_index()
        missing = [c for c in ("ts", "open", "high", "low", "close") if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"bars are missing column(s) {', '.join(map(repr, missing))}; the event engine needs the "
                f"canonical bars frame (ts, open, high, low, close, optional volume), got "
                f"{', '.join(map(str, frame.columns))}."
            )
        self.symbol = ""
        if "symbol" in frame.columns:
            symbols = pd.unique(frame["symbol"])
            if len(symbols) > 1:
                raise DataFormatError(
                    f"bars hold {len(symbols)} symbols; the event engine trades one, select it with "
                    "bars[bars.symbol == 'SPY']."
                )
            self.symbol = str(symbols[0]) if len(symbols) else ""
        if not isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
            raise DataFormatError(
                f"bars 'ts' must be timezone-aware UTC datetimes, got dtype {frame['ts'].dtype}; "
                "convert with pd.to_datetime(bars['ts'], utc=True)."
            )
        ts = pd.DatetimeIndex(frame["ts"]).tz_convert("UTC").rename("ts")
        if len(ts) < 1:
            raise EmptyRangeError("the event engine needs at least one bar, got an empty frame.")
        if ts.hasnans or not (np.diff(ts.asi8) > 0).all():
            raise DataFormatError(
                "bars 'ts' must be strictly increasing without missing values; fix with "
                "bars.dropna(subset=['ts']).sort_values('ts').drop_duplicates('ts', keep='last')."
            )
        self.ts = ts
        self.bars = np.empty((5, len(ts)))
        for f, col in enumerate(("open", "high", "low", "close")):
            values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~(np.isfinite(values) & (values > 0.0))
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataFormatError(
                    f"bars '{col}' must be finite and > 0, but {int(bad.sum())} row(s) are not (first at "
                    f"{ts[first].isoformat()}: {values[first]!r}); drop or repair those bars first."
                )
            self.bars[f] = values
        if "volume" in frame.columns:
            volume = frame["volume"].to_numpy(dtype=np.float64, na_value=np.nan)
            if (volume < 0).any():
                raise DataFormatError("bars 'volume' must be >= 0 or NaN (unknown, no participation cap).")
            self.bars[4] = volume
        else:
            self.bars[4] = np.nan
        self.session = ts.as_unit("ns").asi8 // 86_400_000_000_000  # UTC day number, for DAY orders


# --------------------------------------------------------------------------------------------------------
# The Python strategy path
# --------------------------------------------------------------------------------------------------------


class _PastArray(np.ndarray):
    """A view of one field up to the current bar; indexing past its end is a look-ahead."""

    def __getitem__(self, key: Any) -> Any:
        try:
            out = super().__getitem__(key)
        except IndexError as exc:
            n = self.shape[0] if self.ndim else 0
            if isinstance(key, int | np.integer) and key >= n:
                raise LookAheadError(
                    f"index {int(key)} is past the current bar: at bar t={n - 1} a strategy sees bars "
                    f"0..{n - 1} only ({n} values), decided at the close of bar t; the next bar is not known "
                    "yet. Use ctx.close[-1] for the current bar and ctx.close[-k] for earlier ones."
                ) from exc
            raise
        # A slice is a plain array: it cannot reach past this one, and numpy is faster on the base class.
        return out.view(np.ndarray) if type(out) is _PastArray else out


class _Broker:
    """The engine side of a run: the arrays, and order entry for the Python path."""

    def __init__(self, data: _Bars, config: EventConfig, orders_hint: int = 64) -> None:
        n = data.bars.shape[1]
        self.data = data
        self.revealed = np.full((5, n), np.nan)
        self.book = np.full((orders_hint, _N_BOOK_COLS), np.nan)
        self.work = np.zeros(orders_hint, dtype=np.int64)
        self.fills = np.full((max(16, orders_hint), _N_FILL_COLS), np.nan)
        self.counters = np.zeros(_N_COUNTERS, dtype=np.int64)
        self.acct = np.array([config.initial_cash, 0.0, config.initial_cash])
        self.out = np.zeros((len(_OUT_FIELDS), n))
        self.cost_params = config.costs.kernel_params()
        rate = config.matching.participation_rate
        self.settings = np.array(
            [np.nan if rate is None else rate, config.min_trade_weight, float(config.matching.latency_bars)]
        )
        self.latency = config.matching.latency_bars
        self.t = -1
        self.deciding = False
        self.risk: RiskManager | None = None
        self.refused: list[tuple[Any, ...]] = []
        self.fills_booked = 0

    def process(self, t: int) -> None:
        need = int(self.counters[_C_N_FILLS] + self.counters[_C_N_WORKING])
        if need > self.fills.shape[0]:
            self.fills = _grow_rows(self.fills, need)
        _process_bar(
            t,
            self.data.bars,
            self.data.session,
            self.revealed,
            self.book,
            self.work,
            self.fills,
            self.counters,
            self.acct,
            self.out,
            self.cost_params,
            self.settings,
        )
        self.raise_error()
        self.t = t

    def submit(self, kind: int, size: float, limit_price: float, stop_price: float, tif: TimeInForce) -> int:
        if not self.deciding:
            raise OrderRejectedError(
                "orders can only be placed from on_bar() while the engine runs the strategy; "
                "run it with run_event_backtest(bars, strategy)."
            )
        n = int(self.counters[_C_N_ORDERS])
        if n + 1 > self.book.shape[0]:
            self.book = _grow_rows(self.book, n + 1)
            self.work = _grow_index(self.work, self.book.shape[0])
        try:
            tif_code = float(_rules.TIME_IN_FORCE_CODES[TimeInForce(tif)])
        except ValueError:
            raise OrderRejectedError(
                f"time_in_force must be one of {', '.join(v.value for v in TimeInForce)}, got {tif!r}."
            ) from None
        try:
            values = (float(kind), float(size), float(limit_price), float(stop_price), tif_code)
        except (TypeError, ValueError):
            raise OrderRejectedError(
                f"order sizes and prices must be numbers, got size={size!r}, limit_price={limit_price!r}, "
                f"stop_price={stop_price!r}."
            ) from None
        err = _submit(self.book, self.work, self.counters, self.t, *values, self.latency)
        if err:
            raise OrderRejectedError(_order_message(err, self.t, self.data.ts[self.t], *values))
        if self.risk is not None and self.book[n, _B_STATUS] != _REJECTED:
            self._risk_check(n, TimeInForce(tif), *values[:4])
        return n

    # ------------------------------------------------------------------ the risk manager's hook

    @property
    def risk_symbol(self) -> str:
        return self.data.symbol or "ASSET"

    def start_risk(self, risk: RiskManager) -> None:
        self.risk = risk
        risk.sync_portfolio(Portfolio(cash=float(self.acct[_A_CASH]), ts=self.data.ts[0].to_pydatetime()))

    def risk_bar(self, t: int) -> None:
        """Book the bar's fills with the risk manager, mark the close, and queue its protective exits."""
        risk, sym = self.risk, self.risk_symbol
        assert risk is not None
        ts = self.data.ts[t].to_pydatetime()
        fills = self.fills[self.fills_booked : self.counters[_C_N_FILLS]]
        for i, row in enumerate(fills, start=self.fills_booked):
            units = float(row[_F_UNITS])
            risk.on_fill(
                Fill(
                    client_order_id=f"event-{int(row[_F_ORDER])}",
                    fill_id=f"event-fill-{i}",
                    symbol=sym,
                    side=Side.BUY if units > 0 else Side.SELL,
                    quantity=abs(units),
                    price=float(row[_F_PRICE]),
                    fee=float(row[_F_FEE]),
                    ts=self.data.ts[int(row[_F_BAR])].to_pydatetime(),
                )
            )
        self.fills_booked = int(self.counters[_C_N_FILLS])
        if self.counters[_C_RUINED] and risk.positions:  # ruin closes the position without a fill
            risk.sync_portfolio(Portfolio(cash=float(self.acct[_A_CASH]), ts=ts))
        risk.mark({sym: float(self.data.bars[3, t])}, ts)
        exits = risk.protective_orders()
        if exits:
            self.deciding = True
            try:
                for order in exits:
                    self.submit(
                        OrderKind.MARKET, order.signed_quantity, math.nan, math.nan, order.time_in_force
                    )
            finally:
                self.deciding = False

    def _risk_check(
        self, n: int, tif: TimeInForce, kind: float, size: float, limit_price: float, stop_price: float
    ) -> None:
        if kind in (_K_CANCEL, _K_CANCEL_ALL):
            return  # cancelling never adds risk
        assert self.risk is not None
        t, close = self.t, float(self.data.bars[3, self.t])
        if kind == _K_TARGET:
            # Resolved at the next open; checked here on its estimate at this close.
            cash, units = float(self.acct[_A_CASH]), float(self.acct[_A_UNITS])
            size = size * (cash + units * close) / close - units
            if abs(size) * close <= self.settings[1] * max(cash + units * close, 0.0) or size == 0.0:
                return  # inside the no-trade band: the engine skips it, nothing reaches the market
        otype = {
            _K_MARKET: OrderType.MARKET,
            _K_LIMIT: OrderType.LIMIT,
            _K_STOP: OrderType.STOP,
            _K_STOP_LIMIT: OrderType.STOP_LIMIT,
            _K_TARGET: OrderType.MARKET,
        }[int(kind)]
        order = Order(
            symbol=self.risk_symbol,
            side=Side.BUY if size > 0 else Side.SELL,
            quantity=abs(size),
            order_type=otype,
            limit_price=limit_price if otype in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
            stop_price=stop_price if otype in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
            time_in_force=TimeInForce.IOC if kind == _K_TARGET else tif,
            client_order_id=f"event-{n}",
            ts=self.data.ts[t].to_pydatetime(),
        )
        decision = self.risk.check(order)
        if decision.approved:
            return
        _close_order(self.book, n, _REJECTED, t, _R_RISK)
        self.counters[_C_N_WORKING] -= 1  # _submit appended it last to the working list
        self.refused.append(
            (
                n,
                t,
                self.data.ts[t],
                OrderKind(int(kind)).name.lower(),
                order.side.value,
                order.quantity,
                "; ".join(decision.reasons),
            )
        )

    def raise_error(self, orders: np.ndarray | None = None) -> None:
        err = int(self.counters[_C_ERROR])
        if err == 0:
            return
        t, row = int(self.counters[_C_ERROR_BAR]), int(self.counters[_C_ERROR_ROW])
        ts = self.data.ts[t]
        if err == _E_PRICE:
            raise OrderRejectedError(
                f"the cost model priced a fill of order {row} at bar {t} ({ts.isoformat()}) at a price <= 0 "
                "or not finite; check the CostModel (slippage_bps and spread_bps below 10,000 bp)."
            )
        if err == _E_COUNT:
            raise OrderRejectedError(
                f"decide() returned {row} orders at bar {t} ({ts.isoformat()}); it must return the number "
                f"of rows it wrote to its orders buffer, between 0 and max_orders_per_bar."
            )
        assert orders is not None  # order errors come from the compiled path with its buffer
        raise OrderRejectedError(_order_message(err, t, ts, *(float(x) for x in orders[row])))


def _order_message(
    err: int,
    t: int,
    ts: pd.Timestamp,
    kind: float,
    size: float,
    limit_price: float,
    stop_price: float,
    tif: float,
) -> str:
    where = f"order at bar {t} ({ts.isoformat()})"
    name = OrderKind(int(kind)).name if err != _E_KIND else repr(kind)
    if err == _E_KIND:
        return (
            f"{where} has kind {kind!r}; expected an OrderKind code 0..6 "
            f"({', '.join(f'{k.value}={k.name}' for k in OrderKind)})."
        )
    if err == _E_SIZE:
        return (
            f"{where} ({name}) has size {size!r}; expected a finite, non-zero number of units (positive "
            "buys, negative sells)."
        )
    if err == _E_WEIGHT:
        return (
            f"{where} (TARGET_PERCENT) has weight {size!r}; expected a finite fraction of equity (0 = flat)."
        )
    if err == _E_LIMIT:
        return f"{where} ({name}) has limit price {limit_price!r}; expected a finite price > 0."
    if err == _E_STOP:
        return f"{where} ({name}) has stop price {stop_price!r}; expected a finite price > 0."
    if err == _E_TIF:
        return (
            f"{where} ({name}) has time in force {tif!r}; expected a TimeInForceCode 0..3 "
            f"({', '.join(f'{k.value}={k.name}' for k in TimeInForceCode)})."
        )
    return f"{where} cancels order id {size!r}, which does not exist; ids are 0 .. number of orders - 1."


class BarContext:
    """What a strategy sees at the close of bar ``t``: bars ``0..t`` and the account after that close.

    The arrays (``open``, ``high``, ``low``, ``close``, ``volume``) have length ``t + 1`` and end at the
    current bar (``ctx.close[-1]``); an index past the end raises :class:`LookAheadError`.
    """

    __slots__ = ("_broker",)

    def __init__(self, broker: _Broker) -> None:
        self._broker = broker

    def _field(self, f: int) -> np.ndarray:
        b = self._broker
        view = b.revealed[f, : b.t + 1].view(_PastArray)
        view.flags.writeable = False
        return view

    @property
    def t(self) -> int:
        """Index of the current bar (0-based)."""
        return self._broker.t

    @property
    def ts(self) -> pd.Timestamp:
        """UTC open time of the current bar."""
        return self._broker.data.ts[self._broker.t]

    @property
    def open(self) -> np.ndarray:
        return self._field(0)

    @property
    def high(self) -> np.ndarray:
        return self._field(1)

    @property
    def low(self) -> np.ndarray:
        return self._field(2)

    @property
    def close(self) -> np.ndarray:
        return self._field(3)

    @property
    def volume(self) -> np.ndarray:
        """Volume in units (NaN when unknown)."""
        return self._field(4)

    @property
    def cash(self) -> float:
        return float(self._broker.acct[_A_CASH])

    @property
    def position(self) -> float:
        """Signed units held."""
        return float(self._broker.acct[_A_UNITS])

    @property
    def equity(self) -> float:
        """Equity at the current close."""
        return float(self._broker.acct[_A_EQUITY_PREV])

    @property
    def working_orders(self) -> tuple[int, ...]:
        """Ids of the orders still working, in submission order."""
        b = self._broker
        return tuple(int(k) for k in b.work[: b.counters[_C_N_WORKING]])

    def order_status(self, order_id: int) -> OrderStatus:
        """Status of the order ``order_id``."""
        b = self._broker
        if not (0 <= order_id < b.counters[_C_N_ORDERS]):
            raise OrderRejectedError(
                f"no order with id {order_id!r}; ids are 0..{b.counters[_C_N_ORDERS] - 1}."
            )
        return _STATUS[int(b.book[order_id, _B_STATUS])]

    def __repr__(self) -> str:
        return (
            f"BarContext(t={self.t}, ts={self.ts.isoformat()}, position={self.position}, "
            f"equity={self.equity:,.2f})"
        )


class Strategy(ABC):
    """Base class of Python strategies: implement :meth:`on_bar`; the engine owns the loop.

    At the close of every bar the engine calls ``on_bar(ctx)`` with a :class:`BarContext` holding bars up
    to that bar only. Orders are placed with the methods below, which validate them and return the order id;
    an order decided at bar ``t`` can first fill at bar ``t + 1``. Use a fresh instance per run.
    """

    _broker: _Broker | None = None

    @abstractmethod
    def on_bar(self, ctx: BarContext) -> None:
        """Decide at the close of bar ``ctx.t``; place orders with :meth:`buy`, :meth:`sell` and the rest."""

    def _book(self) -> _Broker:
        if self._broker is None:
            raise OrderRejectedError(
                "orders can only be placed from on_bar() while the engine runs the strategy; "
                "run it with run_event_backtest(bars, strategy)."
            )
        return self._broker

    def buy(self, units: float, *, time_in_force: TimeInForce | str = TimeInForce.GTC) -> int:
        """Market order for ``units`` (> 0), filled at the next bar's open with slippage."""
        return self._book().submit(OrderKind.MARKET, _positive(units), math.nan, math.nan, time_in_force)

    def sell(self, units: float, *, time_in_force: TimeInForce | str = TimeInForce.GTC) -> int:
        """Market sell of ``units`` (> 0), filled at the next bar's open with slippage."""
        return self._book().submit(OrderKind.MARKET, -_positive(units), math.nan, math.nan, time_in_force)

    def limit(self, units: float, price: float, *, time_in_force: TimeInForce | str = TimeInForce.GTC) -> int:
        """Limit order for signed ``units`` (positive buys) at ``price`` or better."""
        return self._book().submit(OrderKind.LIMIT, units, price, math.nan, time_in_force)

    def stop(
        self,
        units: float,
        stop_price: float,
        *,
        limit_price: float | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
    ) -> int:
        """Stop order for signed ``units``; a stop-limit when ``limit_price`` is given."""
        if limit_price is None:
            return self._book().submit(OrderKind.STOP, units, math.nan, stop_price, time_in_force)
        return self._book().submit(OrderKind.STOP_LIMIT, units, limit_price, stop_price, time_in_force)

    def order_target_percent(self, weight: float) -> int:
        """Trade at the next open to hold ``weight`` of equity (negative = short; 0.0 = flat)."""
        return self._book().submit(OrderKind.TARGET_PERCENT, weight, math.nan, math.nan, TimeInForce.IOC)

    def cancel(self, order_id: int) -> None:
        """Cancel a working order now (a filled or cancelled one stays as it is)."""
        self._book().submit(OrderKind.CANCEL, order_id, math.nan, math.nan, TimeInForce.GTC)

    def cancel_all(self) -> None:
        """Cancel every working order now."""
        self._book().submit(OrderKind.CANCEL_ALL, 0.0, math.nan, math.nan, TimeInForce.GTC)


def _positive(units: float) -> float:
    if not (isinstance(units, int | float | np.number) and math.isfinite(units) and units > 0):
        raise OrderRejectedError(
            f"buy() and sell() take a finite number of units > 0, got {units!r}; "
            "the method gives the direction."
        )
    return float(units)


# --------------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------------


class EventEngine:
    """Runs a :class:`Strategy` or :class:`CompiledStrategy` bar by bar on one symbol's bars.

    Parameters
    ----------
    config
        Cash, costs, matching settings and the target orders' no-trade band.
    """

    def __init__(self, config: EventConfig | None = None) -> None:
        if config is not None and not isinstance(config, EventConfig):
            raise ConfigError(f"EventEngine takes an EventConfig, got {type(config).__name__}.")
        self.config = config or EventConfig()

    def __repr__(self) -> str:
        return f"EventEngine({self.config!r})"

    def run(
        self,
        bars: pd.DataFrame,
        strategy: Strategy | CompiledStrategy,
        *,
        risk: RiskManager | RiskLimits | None = None,
    ) -> EventResult:
        """Backtest ``strategy`` on ``bars`` (one symbol, canonical bars frame, ``ts`` strictly increasing).

        Parameters
        ----------
        bars, strategy
            As above.
        risk
            A risk manager (or limits to build one with) that every order passes before matching, as in
            paper and live trading: it sees the fills, is marked at every close, and its stop-loss /
            take-profit exits are placed as market orders before the strategy decides. A refused order is
            in ``result.orders`` with status ``rejected`` and in ``result.refused`` with its reasons. A
            target order is checked as a market order for its size estimated at the deciding close. Python
            strategies only (a compiled strategy's orders never leave its numba loop).

        Raises
        ------
        DataFormatError
            Malformed bars.
        OrderRejectedError
            The strategy placed an invalid order (NaN size, a limit price <= 0, an unknown kind, ...).
        LookAheadError
            A Python strategy indexed data past the current bar.
        """
        data = _Bars(bars)
        if isinstance(risk, RiskLimits):
            risk = RiskManager(risk)
        if risk is not None and not isinstance(risk, RiskManager):
            raise ConfigError(f"risk must be a RiskManager, RiskLimits or None, got {type(risk).__name__}.")
        if risk is not None and isinstance(strategy, CompiledStrategy):
            raise ConfigError(
                "risk checks need a Python Strategy: a CompiledStrategy's orders never leave its numba loop. "
                "Port the strategy to a Strategy subclass, or run it without risk."
            )
        if isinstance(strategy, CompiledStrategy):
            broker = _Broker(data, self.config, orders_hint=64 + 4 * strategy.max_orders_per_bar)
            self._run_compiled(broker, strategy)
        elif isinstance(strategy, Strategy):
            broker = _Broker(data, self.config)
            if risk is not None:
                broker.start_risk(risk)
            self._run_python(broker, strategy)
        else:
            raise ConfigError(
                "run() takes a Strategy subclass instance or a CompiledStrategy, got "
                f"{type(strategy).__name__}."
            )
        return _result(broker, self.config)

    @staticmethod
    def _run_python(broker: _Broker, strategy: Strategy) -> None:
        ctx = BarContext(broker)
        on_bar = strategy.on_bar
        strategy._broker = broker
        try:
            for t in range(broker.data.bars.shape[1]):
                broker.process(t)
                if broker.risk is not None:
                    broker.risk_bar(t)
                broker.deciding = True
                on_bar(ctx)
                broker.deciding = False
        finally:
            broker.deciding = False
            strategy._broker = None

    @staticmethod
    def _run_compiled(broker: _Broker, strategy: CompiledStrategy) -> None:
        try:
            strategy.decide.compile(_DECIDE_TYPE.signature)  # type: ignore[attr-defined]
        except (TypeError, NumbaError) as exc:
            raise ConfigError(
                "CompiledStrategy.decide must compile as decide(t: int, open, high, low, close, volume, "
                "account, params, state: float64[:], orders: float64[:, :]) -> int (the number of order rows "
                f"written); numba says: {exc}"
            ) from exc
        orders = np.full((strategy.max_orders_per_bar, _N_ORDER_COLS), np.nan)
        orders[:, _O_TIF] = 0.0
        broker.book, broker.work, broker.fills = _compiled_kernel()(
            strategy.decide,
            broker.data.bars,
            broker.data.session,
            broker.revealed,
            broker.book,
            broker.work,
            broker.fills,
            broker.counters,
            broker.acct,
            broker.out,
            broker.cost_params,
            broker.settings,
            # Copies: a run never changes the strategy, and numba's signature wants writable arrays.
            strategy.params.copy(),
            strategy.state.copy(),
            orders,
        )
        broker.raise_error(orders)


def _labels(codes: np.ndarray, names: list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=names)


def _result(broker: _Broker, config: EventConfig) -> EventResult:
    data = broker.data
    per_bar = {}
    for f, name in enumerate(_OUT_FIELDS):
        arr = broker.out[f]  # a view: the broker's arrays belong to this result alone
        arr.flags.writeable = False
        per_bar[name] = arr
    fills = broker.fills[: broker.counters[_C_N_FILLS]]
    fill_bars = fills[:, _F_BAR].astype(np.int64)
    units = fills[:, _F_UNITS]
    fills_frame = pd.DataFrame(
        {
            "order_id": fills[:, _F_ORDER].astype(np.int64),
            "bar": fill_bars,
            "ts": data.ts[fill_bars],
            "side": _labels(units < 0, ["buy", "sell"]),
            "quantity": np.abs(units),
            "price": fills[:, _F_PRICE],
            "fee": fills[:, _F_FEE],
            "ref_price": fills[:, _F_REF],
        }
    )
    book = broker.book[: broker.counters[_C_N_ORDERS]]
    order_bars = book[:, _B_BAR].astype(np.int64)
    filled = book[:, _B_FILLED]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(filled > 0, book[:, _B_NOTIONAL] / filled, np.nan)
    buy = book[:, _B_BUY]
    orders_frame = pd.DataFrame(
        {
            "order_id": np.arange(len(book), dtype=np.int64),
            "bar": order_bars,
            "ts": data.ts[order_bars],
            "kind": _labels(book[:, _B_KIND], [k.name.lower() for k in OrderKind]),
            "side": _labels(
                np.where(buy > 0, 0, np.where(buy == 0, 1, -1)), ["buy", "sell"]
            ),  # -1: unresolved
            "quantity": book[:, _B_QTY],
            "target_weight": book[:, _B_WEIGHT],
            "limit_price": book[:, _B_LIMIT],
            "stop_price": book[:, _B_STOP],
            "time_in_force": _labels(book[:, _B_TIF], [c.name.lower() for c in TimeInForceCode]),
            "status": _labels(book[:, _B_STATUS], [s.value for s in _STATUS]),
            "filled_quantity": filled,
            "avg_fill_price": avg,
            "fees": book[:, _B_FEES],
            "done_bar": book[:, _B_DONE_BAR].astype(np.int64),
            "message": _labels(book[:, _B_REASON], list(_REASONS)),
        }
    )
    refused = pd.DataFrame(broker.refused, columns=list(_REFUSED_COLUMNS))
    return EventResult(
        symbol=data.symbol,
        ts=data.ts,
        fills=fills_frame,
        orders=orders_frame,
        initial_cash=config.initial_cash,
        refused=refused,
        **per_bar,
    )


def run_event_backtest(
    bars: pd.DataFrame,
    strategy: Strategy | CompiledStrategy,
    config: EventConfig | None = None,
    *,
    risk: RiskManager | RiskLimits | None = None,
) -> EventResult:
    """Backtest ``strategy`` on one symbol's ``bars`` with the event engine; see :meth:`EventEngine.run`.

    With ``risk`` every order passes :meth:`RiskManager.check <alphaloom.risk.manager.RiskManager.check>`
    before matching; refused orders are in ``result.refused``.
    """
    return EventEngine(config).run(bars, strategy, risk=risk)
