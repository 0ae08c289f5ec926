"""Trading environment throughput: env steps per second of the vectorised environments against the Python one.

Measured, median of repeats after a warm-up, random actions generated before timing, env steps counted as
``n_envs x step calls``:

- ``VecTradingEnv``, 64 single-asset environments over a panel of 8 assets, 20 features, in ``"decision"``
  mode (one step = one decision, which executes its 1..5-bar holding period) and in ``"bar"`` mode;
- ``VecPortfolioEnv``, 64 environments of 30 assets (10 features each, so 332 observation columns);
- ``SingleAssetTradingEnv`` (the Python environment, one ``execute_bar`` call per bar) and ``FastTradingEnv``
  (one environment on the vectorised kernel), one environment each.

Every environment charges the default :class:`~alphaloom.backtest.costs.CostModel` and the default reward
(``log_return_dd``), with auto-reset of 256-bar episodes. Targets (issue): at least 1,000,000 steps/s for 64
single-asset environments and 200,000 for 64 portfolio environments of 30 assets. FinRL is not installed
here; the issue measured its ``StockTradingEnv`` on this machine at about 1,300 steps/s with one asset and
155 with 30, quoted as reference rows. ``--quick`` runs fewer steps.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import Figures, best_of, parse_args
from alphaloom.rl import SingleAssetTradingEnv, TradingEnvConfig
from alphaloom.rl.portfolio_env import PortfolioEnvConfig, VecPortfolioEnv
from alphaloom.rl.vec_env import FastTradingEnv, VecTradingEnv, VecTradingEnvConfig

N_ENVS = 64
FINRL_ONE_ASSET = 1_300.0
FINRL_30_ASSETS = 155.0


def make_panel(n_assets: int, n_bars: int, n_features: int, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded lognormal walks: obs (n_assets, n_bars, n_features) float32; open, close (n_assets, n_bars)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (n_assets, n_bars)), axis=1))
    opn = close * np.exp(rng.normal(0.0, 0.003, (n_assets, n_bars)))
    obs = rng.normal(size=(n_assets, n_bars, n_features)).astype(np.float32)
    return obs, opn, close


def single_actions(n_calls: int, n_envs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 1.0, (n_calls, n_envs, 2)).astype(np.float32)
    a[..., 0] = a[..., 0] * 2.0 - 1.0
    return a


def vec_rate(vec: VecTradingEnv | VecPortfolioEnv, actions: np.ndarray, repeats: int) -> float:
    vec.reset()

    def run() -> None:
        for a in actions:
            vec.step_async(a)
            vec.step_wait()

    return actions.shape[0] * actions.shape[1] / best_of(run, repeats)


def gym_rate(env: SingleAssetTradingEnv | FastTradingEnv, actions: np.ndarray, repeats: int) -> float:
    def run() -> None:
        env.reset(seed=0)
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()

    return actions.shape[0] / best_of(run, repeats)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_calls = 500 if args.quick else 4_000
    repeats = 3 if args.quick else 7
    figures = Figures("RL environment throughput (env steps per second)")
    load = os.getloadavg()[0]

    obs, opn, close = make_panel(8, 5_000, 20, seed=1)
    actions = single_actions(n_calls, N_ENVS, seed=2)
    for mode in ("decision", "bar"):
        cfg = VecTradingEnvConfig(n_envs=N_ENVS, step_mode=mode)
        rate = vec_rate(VecTradingEnv(obs, opn, close, cfg, seed=0), actions, repeats)
        figures.add("alphaloom", f"vec_single_64_{mode}", rate, "steps/s", "target >= 1,000,000")

    pobs, popn, pclose = make_panel(30, 5_000, 10, seed=3)
    pobs = np.ascontiguousarray(pobs.transpose(1, 0, 2))  # (T, assets, features)
    rng = np.random.default_rng(4)
    p_actions = rng.uniform(-1.0, 1.0, (n_calls // 4, N_ENVS, 31)).astype(np.float32)
    pvec = VecPortfolioEnv(pobs, popn.T, pclose.T, PortfolioEnvConfig(n_envs=N_ENVS), seed=0)
    figures.add(
        "alphaloom", "vec_portfolio_64x30", vec_rate(pvec, p_actions, repeats), "steps/s", "target >= 200,000"
    )

    one = single_actions(2_000 if args.quick else 10_000, 1, seed=5)[:, 0]
    cfg1 = TradingEnvConfig()
    py_rate = gym_rate(SingleAssetTradingEnv(obs[0], opn[0], close[0], cfg1), one, repeats)
    figures.add("alphaloom", "SingleAssetTradingEnv_1", py_rate, "steps/s", "Python env, execute_bar per bar")
    fast_rate = gym_rate(FastTradingEnv(obs[0], opn[0], close[0], cfg1), one, repeats)
    figures.add("alphaloom", "FastTradingEnv_1", fast_rate, "steps/s", "one env on the kernel")
    figures.add("finrl", "StockTradingEnv_1", FINRL_ONE_ASSET, "steps/s", "quoted from the issue, not run")
    figures.add("finrl", "StockTradingEnv_30", FINRL_30_ASSETS, "steps/s", "quoted from the issue, not run")
    figures.add("machine", "load_avg_1min", load, "", "other jobs share the 2 cores")
    figures.emit(args.json)


if __name__ == "__main__":
    main()
