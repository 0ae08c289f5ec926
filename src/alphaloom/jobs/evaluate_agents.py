"""``alphaloom evaluate agents``: the RL agents, the ensembles and two rules compared out of sample.

For each symbol the bars after the forecaster segment (where the stored CNN+LSTM forecasts are out of
sample) are cut into anchored walk-forward folds. For each fold and seed, PPO, SAC, TD3 and Rainbow DQN are
trained on the fold's training bars of every symbol (observations standardised on those bars only), then each
agent, each ensemble method, buy-and-hold and the CNN+LSTM-only rule (long when ``p_up > p_down``, short when
below) trade the fold's test window through the backtester, after commission and slippage. Each run gets
Sharpe, Sortino, max drawdown, turnover, time in market and collapse flags
(:func:`alphaloom.rl.diagnostics.collapse_report`); the table averages them over folds and symbols per seed,
then reports the mean and the standard deviation across seeds.

Needs ``alphaloom features`` and ``alphaloom train cnn-lstm`` to have run in the workspace.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field
from rich.table import Table

from alphaloom.backtest.walkforward import WalkForwardConfig, walk_forward_splits
from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataNotFoundError, EmptyRangeError
from alphaloom.distributed import Executor
from alphaloom.jobs import stages
from alphaloom.jobs.config import RLBudget, RunConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.workspace import Workspace
from alphaloom.risk import measures

__all__ = [
    "AGENT_COMPARISON_TABLE",
    "AgentEvaluation",
    "AgentEvaluationConfig",
    "agent_comparison_table",
    "evaluate_agents",
]

AGENT_COMPARISON_TABLE = "agent_comparison"
RUNS_TABLE = "agent_comparison_runs"
METRICS = ("sharpe", "sortino", "max_drawdown", "turnover", "time_in_market")

EnsembleMethod = Literal["performance", "thompson", "meta"]


class AgentEvaluationConfig(ComponentConfig):
    """Settings of :func:`evaluate_agents`.

    Parameters
    ----------
    n_folds
        Anchored walk-forward folds over the bars after the forecaster segment.
    seeds
        Agent seeds; every fold trains one set of agents per seed.
    budget
        Training timesteps per agent and fold.
    methods
        Ensemble methods to run over the trained agents.
    max_symbols
        Use only the first this many of the run's symbols (``None``: all).
    min_train_bars
        Fewest training bars of the first fold.
    episode_len
        Bars per training episode (capped by the training bars).
    """

    n_folds: int = Field(default=3, ge=1, le=100)
    seeds: tuple[int, ...] = Field(default=(0, 1, 2), min_length=1)
    budget: RLBudget = RLBudget(ppo=20_000, sac=5_000, td3=5_000, rainbow=6_000)
    methods: tuple[EnsembleMethod, ...] = ("performance", "thompson", "meta")
    max_symbols: int | None = Field(default=None, ge=1)
    min_train_bars: int = Field(default=100, ge=20)
    episode_len: int = Field(default=64, ge=8)

    @classmethod
    def quick(cls) -> AgentEvaluationConfig:
        """Tiny budgets, one fold, two seeds, one symbol: seconds, for tests and smoke runs."""
        return cls(
            n_folds=1,
            seeds=(0, 1),
            budget=RLBudget(ppo=64, sac=64, td3=64, rainbow=64),
            max_symbols=1,
            min_train_bars=60,
            episode_len=32,
        )


class AgentEvaluation(NamedTuple):
    """The outcome of :func:`evaluate_agents`.

    ``table``: one row per strategy, ``<metric>_mean`` and ``<metric>_std`` across seeds, the share of runs
    with a collapse flag and the flags seen most. ``runs``: one row per (fold, seed, symbol, strategy).
    ``notes``: what was skipped and why.
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    notes: tuple[str, ...]
    seconds: float


class _Region(NamedTuple):
    symbol: str
    raw: np.ndarray
    bars: pd.DataFrame
    has_forecasts: bool
    periods_per_year: float


def _regions(ws: Workspace, run: RunConfig, notes: list[str]) -> list[_Region]:
    from alphaloom.backtest.engine import periods_per_year_for

    data = stages.symbol_data(ws, run)
    with ws.require_store() as store:
        forecasts = (
            store.read_frame(stages.FORECASTS_TABLE, list(run.symbols))
            if store.has_frame(stages.FORECASTS_TABLE)
            else None
        )
        instruments = store.instruments()
    if forecasts is None:
        raise DataNotFoundError(
            f"no forecasts in {ws.root}; run `alphaloom train cnn-lstm --data-dir {ws.root}` first."
        )
    out = []
    for d in data:
        fc = forecasts[forecasts["symbol"] == d.symbol].set_index("ts")
        fc = fc.reindex(columns=list(stages.FORECAST_COLUMNS)).reindex(d.ts)
        raw = pd.concat([fc, d.features], axis=1).to_numpy(dtype=np.float64)
        has_forecasts = bool(np.isfinite(fc[["p_up", "p_down"]].to_numpy()[d.segments.agent]).any())
        if not has_forecasts:
            notes.append(f"{d.symbol}: no stored forecasts; the CNN+LSTM-only rule is skipped.")
            raw = d.features.to_numpy(dtype=np.float64)
        start = d.segments.agent.start
        finite = np.isfinite(raw[start:]).all(axis=1)
        if not finite.any():
            raise EmptyRangeError(f"{d.symbol}: no bars after the forecaster segment have all inputs.")
        first = start + int(np.argmax(finite))
        inst = instruments.get(d.symbol)
        ppy = float(periods_per_year_for(inst.calendar)) if inst is not None else 252.0
        rows = slice(first, len(raw))
        out.append(_Region(d.symbol, raw[rows], d.bars.iloc[rows].reset_index(drop=True), has_forecasts, ppy))
    return out


def _standardise(raw: np.ndarray, train: np.ndarray) -> np.ndarray:
    fit = raw[train]
    std = fit.std(axis=0)
    scaled = (raw - fit.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    return np.clip(np.nan_to_num(scaled), -10.0, 10.0).astype(np.float32)


def _run_row(result, targets: np.ndarray, actions: np.ndarray, **keys: Any) -> dict[str, Any]:
    from alphaloom.rl.diagnostics import collapse_report

    r, ppy = result.returns, result.periods_per_year
    report = collapse_report(targets, actions)
    stats = result.stats()
    return {
        **keys,
        "sharpe": measures.sharpe_ratio(r, ppy),
        "sortino": measures.sortino_ratio(r, ppy),
        "max_drawdown": measures.max_drawdown(r),
        "turnover": stats["turnover"],
        "time_in_market": stats["exposure"],
        "entropy": report.entropy,
        "flags": ",".join(report.flags),
    }


class _AgentInputs(NamedTuple):
    # What every (fold, seed) run reads; an executor ships it once (Ray's object store).
    regions: list[_Region]
    folds: dict[str, list[Any]]
    obs: list[dict[str, np.ndarray]]  # per fold: observations standardised on its training bars
    config: AgentEvaluationConfig
    run: RunConfig


def _fold_seed_rows(
    unit: tuple[int, int], inputs: _AgentInputs, advance: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    # One fold and seed: train the agents on the fold's training bars, trade its test window.
    from alphaloom.backtest.engine import buy_and_hold, run_backtest
    from alphaloom.rl import EnsembleConfig, RLEnsemble, SingleAssetTradingEnv, make_vec_env

    k, seed = unit
    regions, folds, obs, config, run = inputs.regions, inputs.folds, inputs.obs[k], inputs.config, inputs.run
    advance = advance or (lambda: None)
    train = [(obs[r.symbol], r, folds[r.symbol][k].train_idx) for r in regions]
    shortest = min(len(idx) for _, _, idx in train)
    train_cfg = stages.env_config(run, episode_len=min(config.episode_len, shortest - 1))
    test_cfg = stages.env_config(run, episode_len=None)
    rows: list[dict[str, Any]] = []
    agents = []
    for name in stages.AGENT_NAMES:
        vec = make_vec_env(
            [o[idx] for o, _, idx in train],
            [r.bars["open"].to_numpy(dtype=np.float64)[idx] for _, r, idx in train],
            [r.bars["close"].to_numpy(dtype=np.float64)[idx] for _, r, idx in train],
            train_cfg,
            seed=seed,
        )
        agent = stages.make_agent(name, seed)
        agent.train(vec, getattr(config.budget, name))
        vec.close()
        agents.append(agent)
        advance()
    for r in regions:
        idx = folds[r.symbol][k].test_idx
        bars = r.bars.iloc[idx].reset_index(drop=True)
        env = SingleAssetTradingEnv(
            obs[r.symbol][idx],
            bars["open"].to_numpy(dtype=np.float64),
            bars["close"].to_numpy(dtype=np.float64),
            test_cfg,
        )
        common = {
            "costs": run.costs,
            "initial_cash": run.initial_cash,
            "periods_per_year": r.periods_per_year,
        }
        keys = {"fold": k, "seed": seed, "symbol": r.symbol}
        hold = buy_and_hold(bars, **common)
        rows.append(_run_row(hold, hold.targets, hold.targets, strategy="buy_and_hold", **keys))
        common["min_trade_weight"] = stages.MIN_TRADE_WEIGHT
        if r.has_forecasts:
            p = r.raw[idx]
            rule = np.sign(p[:, 2] - p[:, 0])  # columns: p_down, p_flat, p_up, pred_return
            res = run_backtest(bars, rule, name="cnn_lstm_rule", **common)
            rows.append(_run_row(res, rule, rule, strategy="cnn_lstm_rule", **keys))
        for agent in agents:
            roll = env.rollout(lambda x, a=agent: a.predict(x, deterministic=True))
            res = run_backtest(bars, roll.targets, name=agent.name, **common)
            actions = roll.targets[roll.decision_bars]
            rows.append(_run_row(res, roll.targets, actions, strategy=agent.name, **keys))
        for method in config.methods:
            ensemble = RLEnsemble(
                agents,
                EnsembleConfig(
                    method=method,
                    window=run.ensemble_window,
                    confidence_threshold=run.ensemble_confidence,
                    seed=seed,
                ),
            )
            roll = stages.ensemble_rollout(env, ensemble, r.symbol, pd.DatetimeIndex(bars["ts"]))
            name = f"ensemble_{method}"
            res = run_backtest(bars, roll.targets, name=name, **common)
            actions = roll.targets[roll.decision_bars]
            rows.append(_run_row(res, roll.targets, actions, strategy=name, **keys))
        advance()
    return rows


def evaluate_agents(
    ws: Workspace,
    config: AgentEvaluationConfig,
    run: RunConfig | None = None,
    progress: StageProgress | None = None,
    *,
    tag: str | None = None,
    executor: Executor | None = None,
) -> AgentEvaluation:
    """Train and compare the agents, ensembles and rules on walk-forward folds; store and return the table.

    Parameters
    ----------
    ws
        Workspace with features and CNN+LSTM forecasts; the table is stored there as ``agent_comparison``
        (per-run rows as ``agent_comparison_runs``).
    config
        Folds, seeds, budgets and ensemble methods.
    run
        The run's settings (symbols, costs, ensemble settings); the workspace's saved config by default.
    progress
        Progress display.
    tag
        Name of this comparison (e.g. ``"stocks"``): stored as ``agent_comparison_<tag>`` and
        ``evaluate_agents_<tag>`` in the manifest, so comparisons of different symbol sets sit side by side.
    executor
        Where the (fold, seed) runs go, e.g. a Ray executor from
        :func:`alphaloom.distributed.open_executor`; ``None`` runs them one after the other here. Every run
        is seeded and trains single-threaded, so the table does not depend on it.
    """
    progress = progress or NullProgress()
    if tag is not None and not (tag.isidentifier() and tag.isascii()):
        raise ConfigError(f"tag must be letters, digits and underscores (a table name suffix), got {tag!r}.")
    t0 = time.perf_counter()
    run = run or ws.load_config() or RunConfig()
    if config.max_symbols is not None:
        run = run.replace(symbols=run.symbols[: config.max_symbols])
    notes: list[str] = []
    regions = _regions(ws, run, notes)
    wf = WalkForwardConfig(n_folds=config.n_folds, min_train_size=config.min_train_bars, label_horizon=1)
    folds = {r.symbol: walk_forward_splits(len(r.raw), wf) for r in regions}
    n_agents = len(stages.AGENT_NAMES)
    task = progress.task(
        "evaluate agents", total=config.n_folds * len(config.seeds) * (n_agents + len(regions))
    )
    inputs = _AgentInputs(
        regions=regions,
        folds=folds,
        obs=[
            {r.symbol: _standardise(r.raw, folds[r.symbol][k].train_idx) for r in regions}
            for k in range(config.n_folds)
        ],
        config=config,
        run=run,
    )
    units = [(k, seed) for k in range(config.n_folds) for seed in config.seeds]
    if executor is None or executor.backend == "serial":
        parts = [_fold_seed_rows(unit, inputs, task.advance) for unit in units]
    else:
        task.update(
            0, note=f"{len(units)} fold x seed runs on {executor.backend} ({executor.n_workers} workers)"
        )
        steps = n_agents + len(regions)
        parts = executor.map(
            _fold_seed_rows, units, shared=inputs, on_result=lambda i, r: task.advance(steps)
        )
    rows = [row for part in parts for row in part]
    runs = pd.DataFrame(rows)
    table = _aggregate(runs)
    seconds = time.perf_counter() - t0
    suffix = f"_{tag}" if tag else ""
    with ws.open_store() as store:
        store.write_frame(AGENT_COMPARISON_TABLE + suffix, table)
        store.write_frame(RUNS_TABLE + suffix, runs, replace_symbols=False)
    ws.record(
        "evaluate_agents" + suffix,
        {
            "config": config.model_dump(mode="json"),
            "symbols": [r.symbol for r in regions],
            "notes": notes,
            "seconds": round(seconds, 2),
            "executor": executor.info() if executor is not None else {"backend": "serial", "workers": 1},
            "table": table.to_dict(orient="records"),
        },
    )
    for note in notes:
        progress.log(note)
    return AgentEvaluation(table, runs, tuple(notes), seconds)


def _aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    order = list(dict.fromkeys(runs["strategy"]))
    per_seed = runs.groupby(["strategy", "seed"], sort=False)[list(METRICS)].mean()
    grouped = per_seed.groupby(level="strategy", sort=False)
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")  # NaN with a single seed
    table = pd.concat([mean, std], axis=1)
    table = table[[f"{m}_{s}" for m in METRICS for s in ("mean", "std")]]
    table = table.reindex(order)
    flagged = runs.assign(collapsed=runs["flags"] != "").groupby("strategy", sort=False)
    table["collapsed"] = flagged["collapsed"].mean().reindex(order)
    table["flags"] = [_common_flags(runs.loc[runs["strategy"] == s, "flags"]) for s in order]
    table["n_runs"] = runs.groupby("strategy", sort=False).size().reindex(order).astype(np.int64)
    return table.reset_index().rename(columns={"index": "strategy"})


def _common_flags(flags: Sequence[str]) -> str:
    counts = Counter(f for entry in flags for f in entry.split(",") if f)
    return ",".join(name for name, _ in counts.most_common())


def agent_comparison_table(table: pd.DataFrame, title: str | None = None) -> Table:
    """The comparison as a rich table (metric ``mean ± std`` across seeds; NaN shown as a dash)."""
    out = Table(title=title or "Agents out of sample (walk-forward, after costs; mean ± std across seeds)")
    out.add_column("strategy", justify="left")
    for m in METRICS:
        out.add_column(m, justify="right")
    for col in ("collapsed", "flags"):
        out.add_column(col, justify="right" if col == "collapsed" else "left")
    for row in table.to_dict(orient="records"):
        cells = [str(row["strategy"])]
        for m in METRICS:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            text = "-" if not np.isfinite(mean) else f"{mean:.3f}"
            if np.isfinite(mean) and np.isfinite(std):
                text += f" ± {std:.3f}"
            cells.append(text)
        cells.append(f"{row['collapsed']:.0%}")
        cells.append(str(row["flags"]) or "-")
        out.add_row(*cells)
    return out
