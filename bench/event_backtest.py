"""The event-driven engine against backtesting.py and backtrader: one MA-crossover strategy, us per bar.

The strategy, the same in every engine: SMA 10 and SMA 30 of the close; when the fast one crosses above the
slow one, go long with (nearly) all equity; when it crosses below, go flat. Orders placed at a bar's close
fill at the next bar's open. Bars are one seeded random walk (OHLCV); each engine runs on a prefix of it:

- alphaloom, compiled path: a ``CompiledStrategy`` (numba ``decide``) in the engine's compiled loop, orders
  through the shared matching rules and cost kernels; 1,000,000 bars;
- alphaloom, Python path: a ``Strategy`` subclass whose ``on_bar`` computes the two means from ``ctx.close``;
  100,000 bars;
- backtesting.py 0.6: ``Strategy`` with ``self.I`` SMAs and ``crossover``, ``buy()`` / ``position.close()``
  (its ``run`` includes its statistics; its tqdm progress bar is switched off); 20,000 bars;
- backtrader 1.9: ``Cerebro`` with a ``PandasData`` feed, ``SMA`` and ``CrossOver`` indicators,
  ``order_target_percent`` / ``close``, ``stdstats=False``; 10,000 bars.

Measured: median wall time of repeats after a warm-up, divided by the bars run, including result building.
Before timing, the compiled and Python paths must agree (equity to 1e-9 relative, same fills), and every
engine must trade the same crossovers on the common prefix. Then, in fresh processes, the first call of the
compiled path (import plus first run on 1,000 bars) with the numba cache warm (``__pycache__``) and cold (an
empty ``NUMBA_CACHE_DIR``).

Targets (issue): compiled at least 10x faster per bar than backtesting.py and 100x faster than backtrader.
``--quick`` divides every size by 10.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from numba import njit

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.backtest.costs import CostModel
from alphaloom.backtest.event import (
    ACCOUNT_POSITION,
    CompiledStrategy,
    EventConfig,
    OrderKind,
    Strategy,
    put_order,
    run_event_backtest,
)

FAST, SLOW = 10, 30
INIT_CASH = 1_000_000.0
COMMISSION = 0.001  # 10 bp, every engine
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar: off, so it is timed at its best
CONFIG = EventConfig(
    initial_cash=INIT_CASH, costs=CostModel(commission_bps=COMMISSION * 1e4, slippage_bps=0.0)
)

_FIRST_CALL = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, "bench")
from event_backtest import compiled_strategy, make_bars, CONFIG
from alphaloom.backtest.event import run_event_backtest
bars = make_bars(1000)
t1 = time.perf_counter()
run_event_backtest(bars, compiled_strategy(), CONFIG)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def make_bars(n: int, seed: int = 7) -> pd.DataFrame:
    """Seeded random-walk OHLCV bars, one minute apart, prices near 100."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 2e-4, n))
    wick = np.abs(rng.normal(0.0, 5e-4, n))
    high = np.maximum(open_, close) * (1.0 + wick)
    low = np.minimum(open_, close) * (1.0 - wick)
    volume = rng.integers(1_000, 100_000, n).astype(np.float64)
    ts = pd.date_range("2020-01-01", periods=n, freq="min", tz="UTC", name="ts")
    return pd.DataFrame(
        {"symbol": "SYN", "ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


# ----------------------------------------------------------------------------- alphaloom, compiled


@njit(cache=True)
def ma_cross_decide(t, open_, high, low, close, volume, account, params, state, orders):
    fast_n, slow_n = int(params[0]), int(params[1])
    if t + 1 < slow_n:
        return 0
    fast = close[t + 1 - fast_n : t + 1].mean()
    slow = close[t + 1 - slow_n : t + 1].mean()
    prev_fast, prev_slow = state[0], state[1]
    state[0], state[1] = fast, slow
    if math.isnan(prev_fast):
        return 0
    if fast > slow and prev_fast <= prev_slow and account[ACCOUNT_POSITION] <= 0.0:
        put_order(orders, 0, OrderKind.TARGET_PERCENT, 0.999)
        return 1
    if fast < slow and prev_fast >= prev_slow and account[ACCOUNT_POSITION] > 0.0:
        put_order(orders, 0, OrderKind.TARGET_PERCENT, 0.0)
        return 1
    return 0


def compiled_strategy() -> CompiledStrategy:
    return CompiledStrategy(
        ma_cross_decide, params=np.array([FAST, SLOW], dtype=np.float64), state=np.full(2, np.nan)
    )


# ----------------------------------------------------------------------------- alphaloom, Python


class MaCross(Strategy):
    def __init__(self) -> None:
        self.prev: tuple[float, float] | None = None

    def on_bar(self, ctx) -> None:
        close = ctx.close
        if len(close) < SLOW:
            return
        fast, slow = close[-FAST:].mean(), close[-SLOW:].mean()
        prev, self.prev = self.prev, (fast, slow)
        if prev is None:
            return
        if fast > slow and prev[0] <= prev[1] and ctx.position <= 0.0:
            self.order_target_percent(0.999)
        elif fast < slow and prev[0] >= prev[1] and ctx.position > 0.0:
            self.order_target_percent(0.0)


# ----------------------------------------------------------------------------- peers


def backtesting_py(bars: pd.DataFrame) -> int:
    from backtesting import Backtest
    from backtesting import Strategy as BtStrategy
    from backtesting.lib import crossover

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class SmaCross(BtStrategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, FAST)
            self.slow = self.I(sma, self.data.Close, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = bars.set_index(bars["ts"].dt.tz_localize(None))[["open", "high", "low", "close", "volume"]]
    frame.columns = ["Open", "High", "Low", "Close", "Volume"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(frame, SmaCross, cash=INIT_CASH, commission=COMMISSION, finalize_trades=True).run()
    return int(stats["# Trades"])


def backtrader(bars: pd.DataFrame) -> int:
    import backtrader as bt

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=FAST), bt.ind.SMA(period=SLOW))
            self.entries = 0

        def next(self) -> None:
            if self.cross > 0 and not self.position:
                self.order_target_percent(target=0.999)
                self.entries += 1
            elif self.cross < 0 and self.position:
                self.close()

    frame = bars.set_index(bars["ts"].dt.tz_localize(None))[["open", "high", "low", "close", "volume"]]
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(INIT_CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    (strategy,) = cerebro.run()
    return strategy.entries


def first_call_seconds(env: dict[str, str] | None = None) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    imports, call = out.stdout.strip().splitlines()[-1].split()
    return float(imports), float(call)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    scale = 10 if args.quick else 1
    n_compiled, n_python, n_btpy, n_bt = (n // scale for n in (1_000_000, 100_000, 20_000, 10_000))
    bars = make_bars(n_compiled)
    prefix = {n: bars.iloc[:n].reset_index(drop=True) for n in (n_python, n_btpy, n_bt)}

    # Agreement before timing: the two paths of ours fill identically; every engine sees the same entries.
    compiled = run_event_backtest(prefix[n_python], compiled_strategy(), CONFIG)
    python = run_event_backtest(prefix[n_python], MaCross(), CONFIG)
    np.testing.assert_allclose(python.equity, compiled.equity, rtol=1e-9)
    pd.testing.assert_frame_equal(python.fills, compiled.fills)
    ours_entries = {
        n: int((run_event_backtest(prefix[n], compiled_strategy(), CONFIG).fills["side"] == "buy").sum())
        for n in (n_btpy, n_bt)
    }
    btpy_trades, bt_entries = backtesting_py(prefix[n_btpy]), backtrader(prefix[n_bt])
    if abs(btpy_trades - ours_entries[n_btpy]) > 1 or abs(bt_entries - ours_entries[n_bt]) > 1:
        raise AssertionError(
            f"entries differ: ours {ours_entries}, backtesting.py {btpy_trades}, backtrader {bt_entries}"
        )

    t_compiled = best_of(lambda: run_event_backtest(bars, compiled_strategy(), CONFIG), 5) / n_compiled
    t_python = best_of(lambda: run_event_backtest(prefix[n_python], MaCross(), CONFIG), 3) / n_python
    t_btpy = best_of(lambda: backtesting_py(prefix[n_btpy]), 3) / n_btpy
    t_bt = best_of(lambda: backtrader(prefix[n_bt]), 3) / n_bt

    first_call_seconds()  # make sure the default cache holds the kernels
    warm = min((first_call_seconds() for _ in range(3)), key=lambda x: x[1])
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = first_call_seconds({"NUMBA_CACHE_DIR": cache_dir})

    us = 1e6
    figs = Figures("Event-driven backtest, MA 10/30 crossover, microseconds per bar")
    figs.add(
        "alphaloom", "compiled_us_per_bar", t_compiled * us, "us", f"CompiledStrategy, {n_compiled:,} bars"
    )
    figs.add("alphaloom", "python_us_per_bar", t_python * us, "us", f"Strategy subclass, {n_python:,} bars")
    figs.add("backtesting.py", "us_per_bar", t_btpy * us, "us", f"Backtest.run, {n_btpy:,} bars")
    figs.add("backtrader", "us_per_bar", t_bt * us, "us", f"Cerebro.run, {n_bt:,} bars")
    figs.add("alphaloom", "backtesting_py_vs_compiled", t_btpy / t_compiled, "x", "target >= 10")
    figs.add("alphaloom", "backtrader_vs_compiled", t_bt / t_compiled, "x", "target >= 100")
    figs.add("alphaloom", "backtesting_py_vs_python", t_btpy / t_python, "x", "higher is better")
    figs.add("alphaloom", "backtrader_vs_python", t_bt / t_python, "x", "higher is better")
    figs.add(
        "alphaloom", "first_call_warm_cache_s", warm[1], "s", f"fresh process, after {warm[0]:.2f} s import"
    )
    figs.add(
        "alphaloom", "first_call_cold_cache_s", cold[1], "s", f"empty NUMBA_CACHE_DIR, {cold[0]:.2f} s import"
    )
    figs.add(
        "alphaloom", "paths_parity_rel", float(np.max(np.abs(python.equity / compiled.equity - 1))), "", ""
    )
    figs.emit(args.json)


if __name__ == "__main__":
    main()
