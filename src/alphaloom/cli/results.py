"""``alphaloom results``: list, show and compare the persisted results of past runs without recomputing.

Thin: options are parsed here and the work is done by :mod:`alphaloom.jobs.results`. Errors are
:class:`~alphaloom.core.exceptions.AlphaloomError`, printed by ``alphaloom``'s entry point as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["results_app"]

results_app = typer.Typer(
    help="Persisted results (features, predictions, backtests, live performance): list, show, compare.",
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
Dsn = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="ALPHALOOM_RESULTS_DSN",
        help="PostgreSQL results store (no password in it: use passfile=...); default: the workspace's "
        "DuckDB file, or the DSN in the file named by $ALPHALOOM_RESULTS_DSN_FILE.",
        show_default=False,
    ),
]
Schema = Annotated[
    str | None,
    typer.Option(
        "--schema",
        envvar="ALPHALOOM_RESULTS_SCHEMA",
        help="PostgreSQL schema of the results [default: alphaloom].",
        show_default=False,
    ),
]
Stat = Annotated[
    list[str] | None,
    typer.Option("--stat", help="Statistic to show (repeatable), or 'all'; default: the headline ones."),
]


def _workspace(data_dir: Path | None):
    from alphaloom.jobs.workspace import Workspace

    return Workspace.resolve(data_dir)


@results_app.command("list")
def results_list(
    data_dir: DataDir = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="Only this kind: features, predictions, backtest, live.", show_default=False
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Show at most this many (newest first); 0 = all.")
    ] = 50,
    dsn: Dsn = None,
    schema: Schema = None,
) -> None:
    """List recorded runs, newest first: id, kind, what produced them, config hash, data fingerprint."""
    from alphaloom.jobs import results

    runs = results.list_runs(_workspace(data_dir), kind=kind, dsn=dsn, schema=schema)
    out.print(results.list_table(runs if limit <= 0 else runs[:limit], kind=kind))


@results_app.command("show")
def results_show(
    run_id: Annotated[
        str, typer.Argument(help="A run id from `alphaloom results list` (or its unique start).")
    ],
    data_dir: DataDir = None,
    stat: Stat = None,
    dsn: Dsn = None,
    schema: Schema = None,
) -> None:
    """Show one run: what produced it, its statistics and a summary of each equity curve."""
    from alphaloom.jobs import results

    details = results.show(_workspace(data_dir), run_id, dsn=dsn, schema=schema)
    for table in results.show_tables(details, stats=stat):
        out.print(table)


@results_app.command("compare")
def results_compare(
    run_ids: Annotated[
        list[str], typer.Argument(help="Two or more run ids; differences are from the first.")
    ],
    data_dir: DataDir = None,
    stat: Stat = None,
    symbols: Annotated[
        str | None, typer.Option("--symbols", help="Only these symbols, comma-separated.", show_default=False)
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Also write an HTML page plotting the runs' equity curves.", dir_okay=False
        ),
    ] = None,
    dsn: Dsn = None,
    schema: Schema = None,
) -> None:
    """Compare runs side by side: their settings and statistics, and each run's difference from the first."""
    from alphaloom.jobs import results

    chosen = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    comparison = results.compare(
        _workspace(data_dir), run_ids, stats=stat, symbols=chosen, report=report, dsn=dsn, schema=schema
    )
    for table in results.compare_tables(comparison):
        out.print(table)
    if comparison.report is not None:
        out.print(f"report: {comparison.report}")


@results_app.command("migrate")
def results_migrate(data_dir: DataDir = None, dsn: Dsn = None, schema: Schema = None) -> None:
    """Create or upgrade the results tables (numbered migrations; safe to run again). Run it after an upgrade,
    before starting the service, when the results live in PostgreSQL."""
    from alphaloom.jobs import results

    location, version, applied = results.migrate(_workspace(data_dir), dsn=dsn, schema=schema)
    done = f"applied {', '.join(map(str, applied))}" if applied else "already current"
    out.print(f"results schema at {location}: version {version} ({done})", highlight=False)
