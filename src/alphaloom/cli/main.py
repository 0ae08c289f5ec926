"""The ``alphaloom`` command line. Thin: it parses options and calls :mod:`alphaloom.jobs`.

Every subcommand accepts ``--data-dir`` (or ``$ALPHALOOM_DATA_DIR``; default ``./.alphaloom``). Errors that
alphaloom raises on purpose are printed as one line with a hint and exit with code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from alphaloom.core.exceptions import AlphaloomError

app = typer.Typer(
    name="alphaloom",
    help="alphaloom: an AI trading platform from market data to orders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Ingest, list and validate market data.", no_args_is_help=True)
train_app = typer.Typer(help="Train the CNN+LSTM forecaster and the RL agents.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Compare models out of sample.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

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
Quick = Annotated[bool, typer.Option("--quick", help="A small, fast setting (about a minute).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed; same seed, same results.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="A TOML or YAML file of run settings.", show_default=False)
]
Symbols = Annotated[
    str | None, typer.Option("--symbols", help="Comma-separated symbols, e.g. SPY,EURUSD,BTCUSD.")
]
VenueConfig = Annotated[
    Path | None,
    typer.Option(
        "--venue-config",
        help="TOML/YAML connector settings (environment, base_url, ...); credentials stay in env vars.",
        show_default=False,
    ),
]
Start = Annotated[str | None, typer.Option("--start", help="First date (inclusive), e.g. 2010-01-01.")]
End = Annotated[str | None, typer.Option("--end", help="Last date (exclusive), e.g. 2020-01-01.")]


def _workspace(data_dir: Path | None):
    from alphaloom.jobs.workspace import Workspace

    return Workspace.resolve(data_dir)


def _run_config(
    ws,
    *,
    quick: bool = False,
    seed: int | None = None,
    config_file: Path | None = None,
    symbols: str | None = None,
    start: str | None = None,
    end: str | None = None,
    fresh: bool = False,
):
    from alphaloom.core.config import read_config_file
    from alphaloom.jobs.config import RunConfig

    if config_file is not None:
        cfg = RunConfig.from_dict(read_config_file(config_file), source=str(config_file))
    elif quick:
        cfg = RunConfig.quick()
    elif not fresh and (saved := ws.load_config()) is not None:
        cfg = saved
    else:
        cfg = RunConfig()
    changes: dict[str, object] = {}
    if seed is not None:
        changes["seed"] = seed
    if symbols:
        changes["symbols"] = tuple(s.strip() for s in symbols.split(",") if s.strip())
    if start is not None:
        changes["start"] = start
    if end is not None:
        changes["end"] = end
    return cfg.replace(**changes) if changes else cfg


def _progress():
    from alphaloom.jobs.progress import RichProgress

    return RichProgress()


@app.command()
def demo(
    data_dir: DataDir = None,
    quick: Quick = False,
    seed: Seed = None,
    config: ConfigFile = None,
    symbols: Symbols = None,
    start: Start = None,
    end: End = None,
) -> None:
    """Run the main job end to end: ingest, validate, features, CNN+LSTM, RL agents, ensemble, backtest,
    report."""
    from alphaloom.jobs.demo import print_summary, run_demo

    ws = _workspace(data_dir)
    cfg = _run_config(
        ws, quick=quick, seed=seed, config_file=config, symbols=symbols, start=start, end=end, fresh=True
    )
    progress = _progress()
    with progress.running():
        result = run_demo(ws, cfg, progress)
    print_summary(result, out)


@data_app.command("ingest")
def data_ingest(
    data_dir: DataDir = None,
    sample: Annotated[
        list[str] | None,
        typer.Option("--sample", help="A shipped sample set (repeatable); default: all of them."),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option("--file", help="A CSV, CSV.gz or Parquet bar file to ingest (repeatable)."),
    ] = None,
    symbol: Annotated[
        str | None, typer.Option("--symbol", help="Symbol for --file files that have no symbol column.")
    ] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", help="Bar size of the data.")] = "1d",
    venue: Annotated[
        str | None,
        typer.Option("--venue", help="Fetch history from a venue: paper, oanda, coinbase, ccxt, robinhood."),
    ] = None,
    symbols: Symbols = None,
    start: Start = None,
    end: End = None,
    venue_config: VenueConfig = None,
) -> None:
    """Load bars from sample sets, files or a venue into the store; re-ingesting changes nothing."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    sym_list = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else []
    progress = _progress()
    with progress.running():
        report = stages.ingest(
            ws,
            samples=sample,
            files=file or [],
            symbol=symbol,
            timeframe=timeframe,
            venue=venue,
            venue_symbols=sym_list,
            venue_config_file=venue_config,
            start=start,
            end=end,
            progress=progress,
        )
    out.print(stages.ingest_table(report))


@data_app.command("list")
def data_list(data_dir: DataDir = None) -> None:
    """List the symbols in the store with their date ranges."""
    from alphaloom.jobs import stages

    out.print(stages.list_table(_workspace(data_dir)))


@data_app.command("validate")
def data_validate(
    data_dir: DataDir = None,
    symbols: Symbols = None,
    start: Start = None,
    end: End = None,
) -> None:
    """Check the stored bars; bad rows go to the quarantine table with a reason."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    cfg = _run_config(ws, symbols=symbols, start=start, end=end)
    result = stages.validate(ws, cfg, all_symbols=symbols is None)
    out.print(stages.validation_table(result))


@data_app.command("quarantine")
def data_quarantine(
    data_dir: DataDir = None,
    symbols: Symbols = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show (0 = all).")] = 50,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write every quarantined row to this CSV file.")
    ] = None,
) -> None:
    """Show the rows the validator quarantined, with the reason for each."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    sym_list = [s.strip() for s in symbols.split(",")] if symbols else None
    table, n = stages.quarantine_table(ws, sym_list, limit=limit, export=export)
    out.print(table)
    if export is not None:
        out.print(f"quarantine: {n} rows written to {export}")


@data_app.command("stream")
def data_stream(
    data_dir: DataDir = None,
    venue: Annotated[
        str, typer.Option("--venue", help="paper, oanda, coinbase, robinhood or ccxt.")
    ] = "paper",
    symbols: Symbols = None,
    timeframe: Annotated[str, typer.Option("--timeframe", help="Bar size of the stream.")] = "1d",
    speed: Annotated[
        float, typer.Option("--speed", help="Paper replay speed: 0 = as fast as possible, 1 = real time.")
    ] = 0.0,
    start: Start = None,
    end: End = None,
    bus: Annotated[
        str, typer.Option("--bus", help="memory (in-process) or redis (Redis Streams).")
    ] = "memory",
    redis_url: Annotated[str, typer.Option("--redis-url", help="Redis for --bus redis.")] = (
        "redis://127.0.0.1:6379/0"
    ),
    venue_config: VenueConfig = None,
) -> None:
    """Live ingestion: venue -> validator -> store and bus; a restart resumes with no loss or duplicates."""
    from alphaloom.jobs import stages
    from alphaloom.jobs.streaming import stream

    ws = _workspace(data_dir)
    sym_list = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else []
    progress = _progress()
    with progress.running():
        info = stream(
            ws,
            venue=venue,
            symbols=sym_list,
            timeframe=timeframe,
            speed=speed,
            start=start,
            end=end,
            bus=bus,  # type: ignore[arg-type]
            redis_url=redis_url,
            venue_config_file=venue_config,
            progress=progress,
        )
    out.print(stages.metrics_table([info], "Stream"))


@app.command()
def features(
    data_dir: DataDir = None,
    quick: Quick = False,
    symbols: Symbols = None,
    start: Start = None,
    end: End = None,
    config: ConfigFile = None,
) -> None:
    """Compute the feature set for the run's symbols and store it."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    cfg = _run_config(ws, quick=quick, symbols=symbols, start=start, end=end, config_file=config)
    progress = _progress()
    with progress.running():
        info = stages.compute_features(ws, cfg, progress)
    out.print(f"features: {info['n_features']} features for {len(info['symbols'])} symbols stored")


@train_app.command("cnn-lstm")
def train_cnn_lstm(
    data_dir: DataDir = None, quick: Quick = False, seed: Seed = None, config: ConfigFile = None
) -> None:
    """Train the CNN+LSTM forecaster on the forecaster segment and store its forecasts."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    cfg = _run_config(ws, quick=quick, seed=seed, config_file=config)
    progress = _progress()
    with progress.running():
        info = stages.train_forecaster(ws, cfg, progress)
    out.print(stages.metrics_table(info["metrics"], "CNN+LSTM out-of-sample forecast metrics"))
    from alphaloom.jobs import evaluate

    comparison = evaluate.stored_comparison(ws)
    if comparison is not None:
        out.print(
            evaluate.comparison_table(
                comparison, "Stored comparison with the baselines (last `evaluate forecasters`)"
            )
        )


@evaluate_app.command("forecasters")
def evaluate_forecasters(
    data_dir: DataDir = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="2 symbols, 700 bars, 2 folds, a tiny CNN (seconds).")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A TOML or YAML file of evaluation settings.", show_default=False),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="A shipped data set: stocks, forex, crypto (or a sample set name). Default: the store.",
            show_default=False,
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input", help="A bar file (CSV, CSV.gz, Parquet) with a symbol column.", show_default=False
        ),
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", help="Walk-forward folds [default: 5].", show_default=False)
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Number of seeds (0 .. N-1) [default: 1].", show_default=False),
    ] = None,
    symbols: Symbols = None,
) -> None:
    """Compare the CNN+LSTM with persistence, logistic regression and LightGBM on purged walk-forward folds;
    print the table and write reports/forecasters.html."""
    from alphaloom.jobs import evaluate

    ws = _workspace(data_dir)
    sym_list = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    cfg = evaluate.load_evaluation_config(
        config_file=config, quick=quick, folds=folds, seeds=seeds, symbols=sym_list
    )
    progress = _progress()
    with progress.running():
        run = evaluate.run_evaluation(ws, cfg, dataset=dataset, input_path=input_file, progress=progress)
    out.print(evaluate.comparison_table(run.table))
    out.print(
        f"{len(run.symbols)} symbols from {run.source}, {cfg.walk_forward.n_folds} folds x "
        f"{len(cfg.seeds)} seed(s) in {run.info['seconds']:.0f}s; report: {run.report_path}"
    )


@evaluate_app.command("agents")
def evaluate_agents(
    data_dir: DataDir = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="1 symbol, 1 fold, 2 seeds, tiny training budgets (seconds).")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="A TOML or YAML file of agent-evaluation settings.", show_default=False
        ),
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", help="Walk-forward folds [default: 3].", show_default=False)
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Number of seeds (0 .. N-1) [default: 3].", show_default=False),
    ] = None,
) -> None:
    """Compare the RL agents, the ensembles, buy-and-hold and the CNN+LSTM-only rule on walk-forward folds,
    after costs; print mean and spread across seeds (needs `features` and `train cnn-lstm` first)."""
    from alphaloom.core.config import read_config_file
    from alphaloom.core.exceptions import ConfigError
    from alphaloom.jobs import evaluate_agents as ea

    ws = _workspace(data_dir)
    cfg = ea.AgentEvaluationConfig.quick() if quick else ea.AgentEvaluationConfig()
    if config is not None:
        merged = {**cfg.model_dump(), **read_config_file(config)}
        cfg = ea.AgentEvaluationConfig.from_dict(merged, source=str(config))
    if folds is not None and folds < 1:
        raise ConfigError(f"--folds must be at least 1, got {folds}.")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds is the number of seeds and must be at least 1, got {seeds}.")
    if folds is not None:
        cfg = cfg.replace(n_folds=folds)
    if seeds is not None:
        cfg = cfg.replace(seeds=tuple(range(seeds)))
    progress = _progress()
    with progress.running():
        result = ea.evaluate_agents(ws, cfg, progress=progress)
    out.print(ea.agent_comparison_table(result.table))
    out.print(
        f"{cfg.n_folds} fold(s) x {len(cfg.seeds)} seed(s) in {result.seconds:.0f}s; "
        f"stored as table {ea.AGENT_COMPARISON_TABLE!r}"
    )


@train_app.command("rl")
def train_rl(
    data_dir: DataDir = None, quick: Quick = False, seed: Seed = None, config: ConfigFile = None
) -> None:
    """Train PPO, SAC, TD3 and Rainbow DQN on the agent segment."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    cfg = _run_config(ws, quick=quick, seed=seed, config_file=config)
    progress = _progress()
    with progress.running():
        info = stages.train_agents(ws, cfg, progress)
    out.print(stages.metrics_table(info["agents"], "RL agents trained"))


@app.command()
def backtest(
    data_dir: DataDir = None,
    quick: Quick = False,
    config: ConfigFile = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write the HTML tearsheet (equity, drawdown, rolling Sharpe, monthly returns, trades, "
            "statistics) to this file; it opens offline.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Backtest the ensemble, each agent and buy-and-hold on the out-of-sample segment."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    cfg = _run_config(ws, quick=quick, config_file=config)
    progress = _progress()
    with progress.running():
        summary = stages.run_backtests(ws, cfg, progress)
    out.print(stages.summary_table(summary))
    if report is not None:
        import shutil

        written = stages.build_report(ws, cfg)
        target = report.expanduser()
        if target.resolve() != written.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(written, target)
        out.print(f"report: {target}")


@app.command()
def report(data_dir: DataDir = None) -> None:
    """Write the HTML report (equity, drawdown, positions, statistics) from the stored backtest."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    path = stages.build_report(ws, _run_config(ws))
    out.print(f"report: {path}")


def main() -> None:
    """Console entry point: alphaloom errors become one line on stderr and exit code 2."""
    try:
        app()  # standalone: usage errors print typer's message and exit 2
    except AlphaloomError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
