"""The vectorised backtest engine against vectorbt and a plain numpy simulation, signals to final equity.

Two sizes, both a moving-average crossover on a seeded random walk with the signals precomputed (the same
arrays go to every engine), fees 10 bp and slippage 5 bp, filled at the signal bar's close (vectorbt's
convention, so the results are comparable):

- 1,000,000 bars of one asset, MA 50/200;
- a panel of 2,520 days x 100 assets, MA 10/50, each asset its own account (vectorbt's ungrouped columns).

Measured, median of repeats after a warm-up call (compiled code is warm):

- ``alphaloom.backtest.vectorized.from_signals(...).final_equity`` (input checks, the kernel, the result);
- vectorbt ``Portfolio.from_signals(...).final_value()`` with each engine it has: ``numba`` and, when the
  ``vectorbt-rust`` package is installed, ``rust``; the fastest is the one we compare with;
- a plain numpy simulation (state from the signals, close-to-close returns, costs on position changes).

Before timing, the final equities of ours and vectorbt's must agree to 1e-9 relative. Then, in fresh
subprocesses, the first call's time (import plus first simulation on a small input): ours with the numba
cache warm (``__pycache__``) and cold (an empty ``NUMBA_CACHE_DIR``), and vectorbt's with each engine.

Target (issue): ours at most 1.0x vectorbt's fastest engine on both sizes. ``--quick`` uses 100,000 bars and a
252 x 20 panel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import vectorbt as vbt

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.backtest import vectorized as vz

FEES = 0.001
SLIPPAGE = 0.0005
INIT_CASH = 100_000.0
REPO = Path(__file__).resolve().parents[1]

_FIRST_CALL_OURS = """
import time
t0 = time.perf_counter()
import numpy as np
from alphaloom.backtest import vectorized as vz
close = 100.0 + np.arange(100.0)
entries = np.zeros(100, dtype=bool); entries[10] = True
exits = np.zeros(100, dtype=bool); exits[50] = True
vz.from_signals(None, close, entries, exits, fees=0.001, slippage=0.0005, fill="close").final_equity
print(time.perf_counter() - t0)
"""

_FIRST_CALL_VBT = """
import time
t0 = time.perf_counter()
import numpy as np
import vectorbt as vbt
close = 100.0 + np.arange(100.0)
entries = np.zeros(100, dtype=bool); entries[10] = True
exits = np.zeros(100, dtype=bool); exits[50] = True
vbt.Portfolio.from_signals(close, entries, exits, fees=0.001, slippage=0.0005, engine=ENGINE).final_value()
print(time.perf_counter() - t0)
"""


def random_walk(n_bars: int, n_assets: int, seed: int = 1) -> np.ndarray:
    """Seeded geometric random walk closes, shape ``(n_bars, n_assets)``."""
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(
        np.cumsum(rng.normal(0.0, 1e-2 / np.sqrt(n_bars / 2520), (n_bars, n_assets)), axis=0)
    )


def crossover(close: np.ndarray, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries where the fast mean crosses above the slow one, exits where it crosses below."""
    frame = pd.DataFrame(close)
    f, s = frame.rolling(fast).mean(), frame.rolling(slow).mean()
    entries = (f > s) & (f.shift() <= s.shift())
    exits = (f < s) & (f.shift() >= s.shift())
    return np.ascontiguousarray(entries.to_numpy()), np.ascontiguousarray(exits.to_numpy())


def ours(close: np.ndarray, entries: np.ndarray, exits: np.ndarray) -> float:
    result = vz.from_signals(
        None,
        close,
        entries,
        exits,
        fees=FEES,
        slippage=SLIPPAGE,
        initial_cash=INIT_CASH,
        fill="close",
        cash_sharing=False,
    )
    return result.final_equity


def vectorbt(close: np.ndarray, entries: np.ndarray, exits: np.ndarray, engine: str) -> float:
    pf = vbt.Portfolio.from_signals(
        close, entries, exits, fees=FEES, slippage=SLIPPAGE, init_cash=INIT_CASH, engine=engine
    )
    return float(np.sum(pf.final_value()))


def numpy_simulation(close: np.ndarray, entries: np.ndarray, exits: np.ndarray) -> float:
    """Long-only state from the signals, compounded close-to-close, costs charged on each change."""
    signal = np.where(entries, 1.0, np.where(exits, 0.0, np.nan))
    state = pd.DataFrame(signal).ffill().fillna(0.0).to_numpy()
    held = np.vstack([np.zeros((1, close.shape[1])), state[:-1]])
    growth = np.ones_like(close)
    growth[1:] = close[1:] / close[:-1]
    change = np.abs(np.diff(state, axis=0, prepend=0.0))
    factor = (1.0 + held * (growth - 1.0)) * (1.0 - change * (FEES + SLIPPAGE))
    return float(np.sum(INIT_CASH * np.prod(factor, axis=0)))


def first_call_seconds(code: str, env: dict[str, str] | None = None) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    return float(out.stdout.strip().splitlines()[-1])


def vbt_engines() -> list[str]:
    engines = ["numba"]
    try:
        import vectorbt_rust  # noqa: F401
    except ImportError:
        return engines
    return [*engines, "rust"]


def measure(figs: Figures, label: str, close: np.ndarray, fast: int, slow: int, repeats: int) -> None:
    entries, exits = crossover(close, fast, slow)
    engines = vbt_engines()
    theirs = vectorbt(close, entries, exits, engines[-1])
    mine = ours(close, entries, exits)
    if abs(mine / theirs - 1.0) > 1e-9:
        raise AssertionError(f"{label}: final equity {mine!r} vs vectorbt {theirs!r}")
    t_ours = best_of(lambda: ours(close, entries, exits), repeats)
    t_vbt = {
        engine: best_of(lambda e=engine: vectorbt(close, entries, exits, e), repeats) for engine in engines
    }
    t_numpy = best_of(lambda: numpy_simulation(close, entries, exits), repeats)
    fastest = min(t_vbt, key=t_vbt.__getitem__)
    shape = f"{close.shape[0]:,} x {close.shape[1]}"
    figs.add("alphaloom", f"{label}_ms", t_ours * 1e3, "ms", f"{shape}, {int(entries.sum()):,} entries")
    for engine, seconds in t_vbt.items():
        figs.add(f"vectorbt_{engine}", f"{label}_ms", seconds * 1e3, "ms", "from_signals + final_value")
    figs.add("numpy", f"{label}_ms", t_numpy * 1e3, "ms", "plain numpy simulation")
    figs.add(
        "alphaloom", f"{label}_vs_vectorbt", t_ours / t_vbt[fastest], "x", f"vs {fastest}; target <= 1.0"
    )
    figs.add("alphaloom", f"{label}_vs_numpy", t_ours / t_numpy, "x", "lower is better")
    figs.add("alphaloom", f"{label}_parity_rel", abs(mine / theirs - 1.0), "", "final equity vs vectorbt")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_bars, (n_days, n_assets) = (100_000, (252, 20)) if args.quick else (1_000_000, (2520, 100))
    repeats = 7
    figs = Figures(f"Vectorised backtest, signals to final equity ({n_bars:,} bars; {n_days:,} x {n_assets})")
    measure(figs, "single", random_walk(n_bars, 1), 50, 200, repeats)
    measure(figs, "panel", random_walk(n_days, n_assets, seed=2), 10, 50, repeats)

    first_call_seconds(_FIRST_CALL_OURS)  # make sure the default cache holds the kernels
    warm = min(first_call_seconds(_FIRST_CALL_OURS) for _ in range(3))
    with tempfile.TemporaryDirectory() as cache_dir:
        t0 = time.perf_counter()
        cold = first_call_seconds(_FIRST_CALL_OURS, {"NUMBA_CACHE_DIR": cache_dir})
        cold_wall = time.perf_counter() - t0
    figs.add("alphaloom", "first_call_warm_cache_s", warm, "s", "fresh process: import + first call")
    figs.add(
        "alphaloom", "first_call_cold_cache_s", cold, "s", f"empty NUMBA_CACHE_DIR ({cold_wall:.1f} s wall)"
    )
    for engine in vbt_engines():
        code = _FIRST_CALL_VBT.replace("ENGINE", repr(engine))
        seconds = first_call_seconds(code)
        figs.add(f"vectorbt_{engine}", "first_call_s", seconds, "s", "fresh process: import + first call")
    figs.emit(args.json)


if __name__ == "__main__":
    main()
