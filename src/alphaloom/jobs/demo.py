"""``alphaloom demo``: the main job end to end on the shipped real data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from alphaloom.jobs import stages
from alphaloom.jobs.bias import bias_all
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.workspace import Workspace

__all__ = ["DemoResult", "print_summary", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    summary: pd.DataFrame
    report_path: Path
    wall_s: float
    stage_s: dict[str, float]
    validation_issues: int
    quarantined: int


def run_demo(ws: Workspace, config: RunConfig, progress: StageProgress | None = None) -> DemoResult:
    """Run every stage in order; deterministic for a given ``config.seed``."""
    progress = progress or NullProgress()
    ws.ensure()
    ws.save_config(config)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 2)
        progress.log(f"{name} done in {timings[name]:.1f}s")
        return out

    timed("ingest", stages.ingest, ws, progress=progress)
    validation = timed("validate", stages.validate, ws, config)
    timed("features", stages.compute_features, ws, config, progress)
    timed("train cnn-lstm", stages.train_forecaster, ws, config, progress)
    timed("train rl", stages.train_agents, ws, config, progress)
    summary = timed("backtest", stages.run_backtests, ws, config, progress)
    timed("bias", bias_all, ws, progress=progress)  # every registered model, by market slice
    report = timed("report", stages.build_report, ws, config)
    wall = round(time.perf_counter() - t_all, 2)
    ws.record("demo", {"wall_s": wall, "stage_s": timings, "report": str(report)})
    return DemoResult(
        summary=summary,
        report_path=report,
        wall_s=wall,
        stage_s=timings,
        validation_issues=len(validation.issues),
        quarantined=len(validation.quarantined),
    )


def print_summary(result: DemoResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(stages.summary_table(result.summary))
    console.print(
        f"validation: {result.validation_issues} issues, {result.quarantined} rows quarantined  |  "
        f"wall time {result.wall_s:.1f}s ("
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_s.items())
        + ")"
    )
    console.print(f"report: [link=file://{result.report_path}]{result.report_path}[/link]")
