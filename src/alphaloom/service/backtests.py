"""Backtests as background jobs: ``POST /api/v1/backtests`` queues one, a worker thread runs it.

A job backtests the workspace's trained strategies (buy-and-hold, each RL agent, the RL ensemble) on the
chosen symbols' untouched test segment, exactly as ``alphaloom backtest`` does (same observations, costs,
engine and no-trade band), and writes its own offline HTML tearsheet to
``<data-dir>/reports/jobs/<id>.html``. It does not overwrite the workspace's stored backtest.

Jobs run one at a time on a single worker thread (the machine's cores are for the service); their state
lives in memory: a restarted service forgets finished jobs, their reports stay on disk.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, did_you_mean
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace

__all__ = ["STRATEGIES", "BacktestJobs", "Job", "run_backtest_job"]

logger = logging.getLogger(__name__)
STRATEGIES = ("buy_and_hold", "ppo", "sac", "td3", "rainbow", "ensemble")
_MAX_JOBS = 200


@dataclass
class Job:
    id: str
    symbols: list[str]
    strategy: str
    status: str = "queued"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    stats: list[dict[str, Any]] | None = None
    error: str | None = None
    report: Path | None = None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "symbols": self.symbols,
            "strategy": self.strategy,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "stats": self.stats,
            "error": self.error,
        }


def _finite(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def run_backtest_job(
    ws: Workspace, config: RunConfig, symbols: Sequence[str], strategy: str, out: Path
) -> list[dict]:
    """Backtest ``strategy`` (or ``"all"``) on ``symbols``; write the tearsheet to ``out``; return stats."""
    from alphaloom.backtest.engine import buy_and_hold, periods_per_year_for, run_backtest
    from alphaloom.backtest.report import write_html_report
    from alphaloom.jobs import stages
    from alphaloom.rl import EnsembleConfig, RLEnsemble, SingleAssetTradingEnv

    cfg = config.replace(symbols=list(symbols))
    observations = stages.load_observations(ws, cfg)
    wanted = set(STRATEGIES) if strategy == "all" else {strategy}
    agents = stages.load_agents(ws) if wanted - {"buy_and_hold"} else []
    with ws.require_store() as store:
        instruments = store.instruments()
    env_cfg = stages.env_config(cfg, episode_len=None)
    results = []
    for o in observations:
        obs, opens, closes, rows = o.segment("test")
        bars = o.data.bars.iloc[rows].reset_index(drop=True)
        inst = instruments.get(o.data.symbol)
        ppy = periods_per_year_for(inst.calendar) if inst is not None else 252
        common: dict[str, Any] = {
            "costs": cfg.costs,
            "initial_cash": cfg.initial_cash,
            "periods_per_year": ppy,
        }
        results.append(buy_and_hold(bars, **common))  # always: the report's benchmark
        common["min_trade_weight"] = stages.MIN_TRADE_WEIGHT
        env = SingleAssetTradingEnv(obs, opens, closes, env_cfg)
        for agent in agents:
            if agent.name in wanted:
                roll = env.rollout(lambda x, a=agent: a.predict(x, deterministic=True))
                results.append(run_backtest(bars, roll.targets, name=agent.name, **common))
        if "ensemble" in wanted:
            ensemble = RLEnsemble(
                agents,
                EnsembleConfig(
                    method=cfg.ensemble_method,
                    window=cfg.ensemble_window,
                    confidence_threshold=cfg.ensemble_confidence,
                    seed=cfg.seed,
                ),
            )
            roll = stages.ensemble_rollout(env, ensemble, o.data.symbol, pd.DatetimeIndex(bars["ts"]))
            results.append(run_backtest(bars, roll.targets, name=f"ensemble_{cfg.ensemble_method}", **common))
    write_html_report(
        out,
        results,
        title=f"alphaloom backtest job {out.stem}",
        notes=[
            "Out-of-sample test segment of each symbol; decisions at each bar's close fill at the next open, "
            f"with {cfg.costs.commission_bps} bps commission and {cfg.costs.slippage_bps} bps slippage."
        ],
    )
    rows = []
    for r in results:
        s = r.stats()
        rows.append(
            {
                "symbol": r.symbol,
                "strategy": r.name,
                **{k: _finite(s[k]) for k in ("total_return", "cagr", "sharpe", "max_drawdown", "turnover")},
                "n_trades": int(s["n_trades"]),
                "final_equity": _finite(s["final_equity"]),
            }
        )
    return rows


class BacktestJobs:
    """The job table and its single worker thread."""

    def __init__(self, ws: Workspace, config: RunConfig) -> None:
        self.ws = ws
        self.config = config
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alphaloom-backtest")
        self._tasks: set[asyncio.Future[Any]] = set()

    def submit(self, symbols: Sequence[str] | None, strategy: str, known: Sequence[str]) -> Job:
        chosen = list(dict.fromkeys(symbols or self.config.symbols))
        unknown = [s for s in chosen if s not in self.config.symbols]
        if unknown:
            raise DataNotFoundError(
                f"no trained strategies for {unknown} in this workspace.{did_you_mean(unknown[0], known)} "
                f"The run's symbols are {', '.join(self.config.symbols)}."
            )
        if strategy != "all" and strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose all or one of {', '.join(STRATEGIES)}.")
        job = Job(secrets.token_hex(6), chosen, strategy)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > _MAX_JOBS:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].status in ("queued", "running"):
                    break
                del self._jobs[oldest]
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._run, job)
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)
        return job

    def _run(self, job: Job) -> None:
        job.status = "running"
        out = self.ws.reports_dir / "jobs" / f"{job.id}.html"
        try:
            job.stats = run_backtest_job(self.ws, self.config, job.symbols, job.strategy, out)
            job.report = out
            job.status = "done"
        except Exception as exc:  # a failed job is data: its error is shown, the service goes on
            logger.exception("backtest job %s failed", job.id)
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "failed"
        finally:
            job.finished_at = datetime.now(UTC)

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise DataNotFoundError(f"no backtest job {job_id!r}; GET /api/v1/backtests lists them.")
        return job

    def list(self) -> list[Job]:
        return list(reversed(self._jobs.values()))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
