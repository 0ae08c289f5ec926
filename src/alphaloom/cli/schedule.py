"""``alphaloom schedule list|run``: the cron-style batch jobs of :mod:`alphaloom.jobs.schedule`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from alphaloom.core.exceptions import ConfigError

__all__ = ["schedule_app"]

schedule_app = typer.Typer(
    help="Scheduled jobs: nightly ingestion, feature refresh, retraining to challenger, bias reports.",
    no_args_is_help=True,
)
out = Console()

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="ALPHALOOM_DATA_DIR",
        help="Where the store, models and reports live [default: ./.alphaloom].",
        show_default=False,
    ),
]
ScheduleFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The schedule (TOML/YAML) [default: <data dir>/schedule.toml]; see examples/schedule.toml.",
        show_default=False,
    ),
]
JobName = Annotated[
    str | None,
    typer.Option("--job", help="Only this job (with --once: run it now, due or not).", show_default=False),
]


def _scheduler(data_dir: Path | None, config: Path | None, *, progress=None):
    from alphaloom.jobs.schedule import Scheduler, load_schedule
    from alphaloom.jobs.workspace import Workspace

    ws = Workspace.resolve(data_dir)
    path = config or ws.root / "schedule.toml"
    if not path.exists():
        raise ConfigError(
            f"no schedule at {path}; pass --config FILE (e.g. --config examples/schedule.toml) or copy one "
            "there."
        )
    return Scheduler(ws, load_schedule(path), progress=progress)


@schedule_app.command("list")
def schedule_list(data_dir: DataDir = None, config: ScheduleFile = None) -> None:
    """Show the jobs: action, cron, whether due now, next run, and the last run's outcome."""
    from alphaloom.jobs.schedule import jobs_table

    out.print(jobs_table(_scheduler(data_dir, config)))


@schedule_app.command("run")
def schedule_run(
    data_dir: DataDir = None,
    config: ScheduleFile = None,
    once: Annotated[bool, typer.Option("--once", help="Run the jobs due now, then exit.")] = False,
    job: JobName = None,
) -> None:
    """Run the schedule: every job at its cron time, until interrupted (or, with --once, what is due now).
    Each run is logged; a failed run alerts and leaves the champion models in place. Exit 1 if a run
    failed (with --once)."""
    from alphaloom.jobs.progress import RichProgress
    from alphaloom.jobs.schedule import runs_table

    progress = RichProgress()
    scheduler = _scheduler(data_dir, config, progress=progress)
    if once:
        with progress.running():
            records = scheduler.run_once(job)
        if not records:
            out.print("no job is due; `alphaloom schedule list` shows when each runs next", highlight=False)
            return
        out.print(runs_table(records, title=f"Scheduled runs (log: {scheduler.runs.path})"))
        if any(r.outcome == "failed" for r in records):
            out.print(f"alerts: {scheduler.alerts.path}", highlight=False)
            raise typer.Exit(code=1)
        return
    out.print(f"scheduler running on {scheduler.ws.root}; Ctrl-C to stop; log: {scheduler.runs.path}")
    try:
        with progress.running():
            scheduler.run_forever(job)
    except KeyboardInterrupt:
        out.print("scheduler stopped")
