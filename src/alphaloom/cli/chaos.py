"""``alphaloom chaos``: the chaos suite of :mod:`alphaloom.jobs.chaos` (faults, kills, database restarts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["chaos_app"]

chaos_app = typer.Typer(
    help="Chaos suite: paper-trade real data while the venue fails, the process is SIGKILLed and PostgreSQL "
    "and Redis restart; compare with an undisturbed run.",
    invoke_without_command=True,
)
out = Console()


@chaos_app.callback()
def chaos(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="The short form CI runs (about a minute).")] = False,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seeds the schedule and the venue's faults.")
    ] = None,
    bars: Annotated[int | None, typer.Option("--bars", help="Bar times to trade.")] = None,
    kills: Annotated[int | None, typer.Option("--kills", help="SIGKILLs of the trading process.")] = None,
    db_restarts: Annotated[int | None, typer.Option("--db-restarts", help="PostgreSQL crashes.")] = None,
    redis_restarts: Annotated[int | None, typer.Option("--redis-restarts", help="Redis SIGKILLs.")] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir",
            help="Keep the workspaces and logs here (new or empty directory).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the chaos suite; print the counts and exit 1 on any mismatch with the undisturbed run."""
    if ctx.invoked_subcommand is not None:
        return
    from alphaloom.jobs.chaos import ChaosConfig, chaos_table
    from alphaloom.jobs.chaos import chaos as run_chaos
    from alphaloom.jobs.progress import RichProgress

    cfg = ChaosConfig.quick() if quick else ChaosConfig()
    changes = {
        k: v
        for k, v in {
            "seed": seed,
            "bars": bars,
            "trader_kills": kills,
            "db_restarts": db_restarts,
            "redis_restarts": redis_restarts,
        }.items()
        if v is not None
    }
    if changes:
        cfg = cfg.replace(**changes)
    progress = RichProgress()
    with progress.running():
        report = run_chaos(cfg, work_dir=work_dir, progress=progress)
    out.print(chaos_table(report))
    for event in report.events:
        out.print(f"  {event}", highlight=False)
    if not report.ok:
        for failure in report.failures:
            out.print(f"[red]mismatch:[/] {failure.name}: {failure.detail}", highlight=False)
        out.print(f"workspaces and logs kept in {report.work_dir}", highlight=False)
        raise typer.Exit(code=1)
