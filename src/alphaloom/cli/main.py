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

from alphaloom.cli.chaos import chaos_app
from alphaloom.cli.results import results_app
from alphaloom.cli.schedule import schedule_app
from alphaloom.core.exceptions import AlphaloomError, ConfigError

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
app.add_typer(results_app, name="results")
app.add_typer(schedule_app, name="schedule")
app.add_typer(chaos_app, name="chaos")

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
    from alphaloom.service.cli import dashboard_hint

    out.print(dashboard_hint(ws), highlight=False)


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


tune_app = typer.Typer(help="Tune hyperparameters with Optuna (resumable studies).", no_args_is_help=True)
app.add_typer(tune_app, name="tune")
UseRay = Annotated[
    bool, typer.Option("--ray", help="Run on a local Ray with this machine's cores (see --workers).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Run on an existing Ray cluster: HEAD:6379, ray://HEAD:10001 or auto (implies --ray).",
        show_default=False,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", help="Ray tasks at once [default: all cores].", show_default=False),
]
Trials = Annotated[int, typer.Option("--trials", help="New trials to run (added to the study's).")]
Storage = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="SQLAlchemy URL of the Optuna storage [default: sqlite:///<data dir>/optuna.db].",
        show_default=False,
    ),
]
Study = Annotated[
    str | None,
    typer.Option("--study", help="Study name; the same name resumes it.", show_default=False),
]


def _print_tuned(result) -> None:
    from alphaloom.jobs import tune

    out.print(tune.tune_table(result))
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    out.print(
        f"study {result.study!r} in {result.storage}: {counts}; {result.n_new} new in {result.seconds:.0f}s"
    )
    if result.best_trial >= 0:
        out.print(
            f"best trial {result.best_trial}: value {result.best_value:.6g}, params {result.best_params}"
        )


@tune_app.command("cnn-lstm")
def tune_cnn_lstm(
    trials: Trials = 20,
    data_dir: DataDir = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="2 symbols, 700 bars, a tiny CNN (seconds per trial).")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A TOML or YAML file of CNN tuning settings.", show_default=False),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", help="stocks, forex, crypto or a sample set [default: stocks].", show_default=False
        ),
    ] = None,
    storage: Storage = None,
    study: Study = None,
    ray: UseRay = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Search CNN+LSTM hyperparameters: validation log loss on a purged walk-forward fold, median pruning
    on per-epoch validation loss; best parameters printed and recorded in the manifest."""
    from alphaloom.jobs import tune

    ws = _workspace(data_dir)
    cfg = tune.load_tune_config("cnn_lstm", quick=quick, config_file=config, dataset=dataset)
    progress = _progress()
    with (
        tune.open_executor(ws, ray=ray, address=ray_address, workers=workers) as executor,
        progress.running(),
    ):
        result = tune.tune_cnn_lstm(
            ws,
            cfg,  # type: ignore[arg-type]
            trials=trials,
            study=study or "cnn_lstm",
            storage=storage,
            executor=executor,
            progress=progress,
        )
    _print_tuned(result)


@tune_app.command("agent")
def tune_agent(
    agent: Annotated[str, typer.Argument(help="ppo, sac, td3 or rainbow.")] = "ppo",
    trials: Trials = 20,
    data_dir: DataDir = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="512 steps per trial, one symbol (seconds per trial).")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A TOML or YAML file of agent tuning settings.", show_default=False),
    ] = None,
    timesteps: Annotated[
        int | None, typer.Option("--timesteps", help="Training steps per trial.", show_default=False)
    ] = None,
    storage: Storage = None,
    study: Study = None,
    ray: UseRay = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Search an agent's hyperparameters: Sharpe of its deterministic policy on a forward validation tail of
    the agent segment, median pruning on checks during training (needs `features` and `train cnn-lstm`)."""
    from alphaloom.jobs import tune

    if agent not in tune.AGENT_SEARCH_NAMES:
        from alphaloom.core.exceptions import did_you_mean

        raise ConfigError(
            f"unknown agent {agent!r}.{did_you_mean(agent, tune.AGENT_SEARCH_NAMES)} Choose one of "
            f"{', '.join(tune.AGENT_SEARCH_NAMES)}."
        )
    ws = _workspace(data_dir)
    cfg = tune.load_tune_config("agent", quick=quick, config_file=config, agent=agent, timesteps=timesteps)
    progress = _progress()
    with (
        tune.open_executor(ws, ray=ray, address=ray_address, workers=workers) as executor,
        progress.running(),
    ):
        result = tune.tune_agent(
            ws,
            cfg,  # type: ignore[arg-type]
            trials=trials,
            study=study,
            storage=storage,
            executor=executor,
            progress=progress,
        )
    _print_tuned(result)


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
    ray: UseRay = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Compare the CNN+LSTM with persistence, logistic regression and LightGBM on purged walk-forward folds;
    print the table and write reports/forecasters.html. --ray runs the fits (folds x models x seeds) as Ray
    tasks with the same results."""
    from alphaloom.jobs import evaluate, tune

    ws = _workspace(data_dir)
    sym_list = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    cfg = evaluate.load_evaluation_config(
        config_file=config, quick=quick, folds=folds, seeds=seeds, symbols=sym_list
    )
    progress = _progress()
    with (
        tune.open_executor(ws, ray=ray, address=ray_address, workers=workers) as executor,
        progress.running(),
    ):
        run = evaluate.run_evaluation(
            ws, cfg, dataset=dataset, input_path=input_file, progress=progress, executor=executor
        )
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
    symbols: Annotated[
        str | None,
        typer.Option(
            "--symbols",
            help="Comma-separated symbols to compare on (of the workspace's run) [default: all of them].",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", help="Store the table as agent_comparison_<tag> (e.g. stocks, fx).", show_default=False
        ),
    ] = None,
    ray: UseRay = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
) -> None:
    """Compare the RL agents, the ensembles, buy-and-hold and the CNN+LSTM-only rule on walk-forward folds,
    after costs; print mean and spread across seeds (needs `features` and `train cnn-lstm` first)."""
    from alphaloom.core.config import read_config_file
    from alphaloom.core.exceptions import ConfigError
    from alphaloom.jobs import evaluate_agents as ea
    from alphaloom.jobs import tune

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
    run = _run_config(ws, symbols=symbols)
    progress = _progress()
    with (
        tune.open_executor(ws, ray=ray, address=ray_address, workers=workers) as executor,
        progress.running(),
    ):
        result = ea.evaluate_agents(ws, cfg, run, progress=progress, tag=tag, executor=executor)
    out.print(ea.agent_comparison_table(result.table))
    out.print(
        f"{cfg.n_folds} fold(s) x {len(cfg.seeds)} seed(s) in {result.seconds:.0f}s; "
        f"stored as table {ea.AGENT_COMPARISON_TABLE + (f'_{tag}' if tag else '')!r}"
    )


@train_app.command("rl")
def train_rl(
    data_dir: DataDir = None,
    quick: Quick = False,
    seed: Seed = None,
    config: ConfigFile = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            help="Train each agent with this many seeds (seed, seed+1, ...) on the agent segment less a "
            "forward validation tail and keep the best on that tail; the spread is reported.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train PPO, SAC, TD3 and Rainbow DQN on the agent segment."""
    from alphaloom.jobs import stages

    ws = _workspace(data_dir)
    cfg = _run_config(ws, quick=quick, seed=seed, config_file=config)
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds is the number of seeds and must be at least 1, got {seeds}.")
        cfg = cfg.replace(rl_seeds=seeds)
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


portfolio_app = typer.Typer(
    help="Optimise portfolio weights and compare rebalancing policies.", no_args_is_help=True
)
app.add_typer(portfolio_app, name="portfolio")
Lookback = Annotated[int, typer.Option("--lookback", help="Daily returns the optimiser is fitted on.")]


@portfolio_app.command("optimize")
def portfolio_optimize(
    data_dir: DataDir = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="min_variance, max_sharpe, risk_parity, hrp, black_litterman (views from stored forecasts), "
            "factor or equal_weight.",
        ),
    ] = "min_variance",
    symbols: Symbols = None,
    start: Start = None,
    end: End = None,
    lookback: Lookback = 504,
) -> None:
    """Optimise weights on the stored panel's latest returns; print and store them."""
    from alphaloom.jobs.portfolio import optimize, weights_table

    ws = _workspace(data_dir)
    cfg = _run_config(ws, symbols=symbols, start=start, end=end)
    out.print(weights_table(optimize(ws, cfg, method=method, lookback=lookback)))


@portfolio_app.command("rebalance")
def portfolio_rebalance(
    data_dir: DataDir = None,
    policy: Annotated[
        str, typer.Option("--policy", help="Comma-separated: calendar, drift, vol_target, band; or all.")
    ] = "all",
    method: Annotated[str, typer.Option("--method", help="Optimiser that sets the targets.")] = "risk_parity",
    symbols: Symbols = None,
    start: Start = None,
    end: End = None,
    lookback: Lookback = 252,
    every: Annotated[int, typer.Option("--every", help="Bars between re-optimisations of the targets.")] = 21,
) -> None:
    """Backtest rebalancing policies against each other on the stored panel; write an HTML report."""
    from alphaloom.jobs.portfolio import POLICIES, rebalance, rebalance_table

    ws = _workspace(data_dir)
    cfg = _run_config(ws, symbols=symbols, start=start, end=end)
    chosen = POLICIES if policy == "all" else tuple(p.strip() for p in policy.split(",") if p.strip())
    summary = rebalance(ws, cfg, policies=chosen, method=method, lookback=lookback, reoptimize_every=every)
    out.print(rebalance_table(summary))
    out.print(f"report: {summary.attrs['report']}")


audit_app = typer.Typer(help="Verify and export the hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command()
def trade(
    data_dir: DataDir = None,
    paper: Annotated[
        bool, typer.Option("--paper", help="Trade on the paper venue, replaying the stored real bars.")
    ] = False,
    venue: Annotated[
        str | None,
        typer.Option("--venue", help="Trade on a real venue instead: oanda, coinbase, ccxt, robinhood."),
    ] = None,
    config: ConfigFile = None,
    symbols: Symbols = None,
    bars: Annotated[
        int | None,
        typer.Option("--bars", help="Paper: how many of the last stored bar times to trade [default: 250]."),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option("--speed", help="Paper replay speed: 0 = as fast as possible, 1 = real time."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Abandon the workspace's paper run and start a new one.")
    ] = False,
    end: End = None,
    venue_config: VenueConfig = None,
) -> None:
    """Run the trading engine: signals -> orders -> risk manager -> venue, with reconciliation and an audit
    trail. A killed run restarted with the same options resumes without losing or duplicating an order."""
    from alphaloom.jobs.trade import summary_table
    from alphaloom.jobs.trade import trade as run_trade

    ws = _workspace(data_dir)
    cfg = _run_config(ws, config_file=config, symbols=symbols, end=end)
    progress = _progress()
    with progress.running():
        summary = run_trade(
            ws,
            cfg,
            paper=paper,
            venue=venue,
            venue_config_file=venue_config,
            bars=bars,
            speed=speed,
            fresh=fresh,
            progress=progress,
        )
    out.print(summary_table(summary))


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = None,
    head_hash: Annotated[
        str | None,
        typer.Option("--head-hash", help="A record hash kept elsewhere that must still be in the log."),
    ] = None,
) -> None:
    """Check every audit record against the hash chain; exit 1 and list the problems when it is broken."""
    from alphaloom.jobs.audit import verification_table, verify

    result = verify(_workspace(data_dir), head_hash=head_hash)
    out.print(verification_table(result))
    if not result.ok:
        raise typer.Exit(code=1)


@audit_app.command("export")
def audit_export(
    out_path: Annotated[Path, typer.Option("--out", help="File to write.", dir_okay=False)],
    data_dir: DataDir = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
) -> None:
    """Write the regulatory report: orders and fills with timestamps, venue and decision trail."""
    from alphaloom.jobs.audit import export_report

    info = export_report(_workspace(data_dir), fmt=fmt, out=out_path)
    out.print(
        f"audit export: {info['orders']} orders, {info['fills']} fills, {info['audit_records']} audit "
        f"records (chain {'intact' if info['chain_ok'] else 'BROKEN'}) written to {info['path']}"
    )


models_app = typer.Typer(
    help="The model registry: list, show, promote and roll back models.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
ab_app = typer.Typer(help="A/B comparison of a challenger with the champion.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")
ApproverName = Annotated[str, typer.Option("--approver", help="Who approves (recorded in the audit log).")]
ApproverRole = Annotated[str, typer.Option("--role", help="The approver's role: viewer, trader or admin.")]


@models_app.command("list")
def models_list(
    data_dir: DataDir = None,
    name: Annotated[str | None, typer.Option("--name", help="Only this model.", show_default=False)] = None,
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage", help="Only this stage: candidate, challenger, champion, archived.", show_default=False
        ),
    ] = None,
) -> None:
    """List registered model versions with their stage, aliases, data hash and parents."""
    from alphaloom.jobs import registry

    out.print(registry.list_table(_workspace(data_dir), name, stage))


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. cnn_lstm, ppo, ensemble.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
    data_dir: DataDir = None,
) -> None:
    """Show one version's lineage (data fingerprint, feature and training config, code version, parents),
    metrics and stage."""
    from alphaloom.jobs import registry

    out.print(registry.show_table(_workspace(data_dir), name, version))


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model.")],
    version: Annotated[int, typer.Argument(help="Version to move one stage up.")],
    approver: ApproverName,
    role: ApproverRole,
    data_dir: DataDir = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="Backtest strategy that trades this model [default: its tag].",
            show_default=False,
        ),
    ] = None,
    comparison: Annotated[
        str,
        typer.Option("--comparison", help="no_significant_loss or significantly_better (vs the champion)."),
    ] = "no_significant_loss",
    min_dsr: Annotated[
        float, typer.Option("--min-dsr", help="Smallest deflated Sharpe ratio accepted.")
    ] = 0.95,
    note: Annotated[str, typer.Option("--note", help="Recorded with the decision.")] = "",
    min_slice_hit_rate: Annotated[
        float | None,
        typer.Option(
            "--min-slice-hit-rate",
            help="Floor on the worst slice's hit rate (bias report).",
            show_default=False,
        ),
    ] = None,
    min_slice_sharpe: Annotated[
        float | None,
        typer.Option(
            "--min-slice-sharpe",
            help="Floor on the worst slice's Sharpe ratio (bias report).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Promote candidate -> challenger, or challenger -> champion through the promotion gate (out-of-sample
    evidence from the stored backtest); exit 1 when the gate rejects it. Every decision is audited."""
    from alphaloom.jobs import registry
    from alphaloom.jobs.registry import Approver, PromotionGateConfig

    gate = PromotionGateConfig.from_dict(
        {
            "comparison": comparison,
            "min_deflated_sharpe": min_dsr,
            "min_slice_hit_rate": min_slice_hit_rate,
            "min_slice_sharpe": min_slice_sharpe,
        },
        source="options",
    )
    result = registry.promote(
        _workspace(data_dir),
        name,
        version,
        Approver(approver, role),
        strategy=strategy,
        gate_config=gate,
        note=note,
    )
    out.print(result.decision.summary(), highlight=False)
    for key, value in result.decision.statistics.items():
        out.print(
            f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}", highlight=False
        )
    if not result.accepted:
        raise typer.Exit(code=1)
    out.print(f"{result.model.ref} is now {result.model.stage.value} (audit record {result.audit_id})")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model.")],
    approver: ApproverName,
    role: ApproverRole,
    data_dir: DataDir = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded in the audit log.")] = "",
) -> None:
    """Restore the previous champion (the current one is archived)."""
    from alphaloom.jobs import registry
    from alphaloom.jobs.registry import Approver

    restored = registry.rollback(_workspace(data_dir), name, Approver(approver, role), reason=reason)
    out.print(f"{restored.ref} is champion again")


@models_app.command("bias")
def models_bias(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. cnn_lstm, ppo, ensemble.")],
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            help="Version [default: the one the workspace's predictions are of].",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    min_slice_size: Annotated[
        int, typer.Option("--min-slice-size", help="Fewest bars a slice needs to be tested.")
    ] = 30,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--out", help="HTML file [default: reports/bias_NAME.html].", show_default=False, dir_okay=False
        ),
    ] = None,
) -> None:
    """Bias and fairness by market slice (asset class, symbol, volatility and trend regime, time of day and
    week) with disparity tests; stored with the model in the registry and written as HTML."""
    from alphaloom.jobs.bias import BiasConfig, bias_tables, model_bias

    cfg = BiasConfig.from_dict({"min_slice_size": min_slice_size}, source="options")
    result = model_bias(_workspace(data_dir), name, version, config=cfg, path=report_path)
    for table in bias_tables(result):
        out.print(table)
    for note in result.report.notes:
        out.print(f"note: {note}", highlight=False)
    out.print(f"stored with {result.model.ref} in the registry; report: {result.path}", highlight=False)


@ab_app.command("report")
def ab_report(
    challenger: Annotated[
        str, typer.Option("--challenger", help="Backtest strategy of the challenger, e.g. ppo.")
    ],
    champion: Annotated[
        str, typer.Option("--champion", help="Backtest strategy of the champion.")
    ] = "ensemble_meta",
    data_dir: DataDir = None,
    alpha: Annotated[float, typer.Option("--alpha", help="One-sided significance level.")] = 0.05,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")] = 2000,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--out", help="HTML file [default: reports/ab_report.html].", show_default=False, dir_okay=False
        ),
    ] = None,
) -> None:
    """Compare a challenger with the champion on the stored out-of-sample backtest: paired tests, minimum
    sample size, attribution by asset, regime and agent, and a decision (promote, keep, need more data)."""
    from alphaloom.jobs.ab import ABTestConfig, ab_tables
    from alphaloom.jobs.ab import ab_report as run_report

    cfg = ABTestConfig.from_dict({"alpha": alpha, "n_resamples": resamples}, source="options")
    report = run_report(_workspace(data_dir), champion, challenger, config=cfg, path=report_path)
    for table in ab_tables(report):
        out.print(table)
    out.print(f"decision: {report.comparison.decision}: {report.comparison.reason}", highlight=False)
    out.print(f"report: {report.path}")


# ------------------------------------------------------------------ logging and secrets

secrets_app = typer.Typer(
    help="Credentials in the encrypted keystore or Vault: set, get, list, rotate. Values are never printed "
    "without --reveal and never taken from the command line.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")

Backend = Annotated[
    str, typer.Option("--backend", help="keystore (the encrypted local file) or vault.", show_default=True)
]
KeystorePath = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        envvar="ALPHALOOM_KEYSTORE",
        help="The keystore file [default: <data dir>/secrets.keystore].",
        show_default=False,
    ),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="A file holding the keystore passphrase (else $ALPHALOOM_KEYSTORE_PASSPHRASE, else a prompt).",
        show_default=False,
    ),
]
VaultConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--vault-config", help="TOML/YAML Vault settings (url, mount, path, auth).", show_default=False
    ),
]
ValueFile = Annotated[
    Path | None,
    typer.Option(
        "--value-file",
        help="Read the value from this file (else standard input, else a prompt).",
        show_default=False,
    ),
]


@app.callback()
def _logging_setup(
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="ALPHALOOM_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "WARNING",
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar="ALPHALOOM_LOG_FILE",
            help="Also append log records to this file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """alphaloom: an AI trading platform from market data to orders."""
    from alphaloom.jobs.secrets import configure_logging

    configure_logging(log_level, log_file)  # every handler masks credentials


def _secrets_store(backend, keystore, data_dir, vault_config, passphrase_file):
    from alphaloom.jobs.secrets import SecretsLocation, open_store

    location = SecretsLocation.resolve(
        backend=backend, keystore=keystore, data_dir=data_dir, vault_config=vault_config
    )
    return open_store(location, passphrase_file=passphrase_file, prompt=_hidden_prompt)


def _hidden_prompt(label: str) -> str:
    if not sys.stdin.isatty():
        raise ConfigError(f"no {label}: not a terminal to prompt on; use a file or environment variable.")
    return typer.prompt(label, hide_input=True)


def _new_value(name: str, value_file: Path | None):
    from alphaloom.jobs.secrets import read_secret_value

    stdin = None if value_file is not None or sys.stdin.isatty() else sys.stdin.read
    return read_secret_value(value_file, stdin_text=stdin, prompt=_hidden_prompt, name=name)


@secrets_app.command("init")
def secrets_init(
    data_dir: DataDir = None, keystore: KeystorePath = None, passphrase_file: PassphraseFile = None
) -> None:
    """Create an empty encrypted keystore (mode 0600)."""
    from alphaloom.jobs.secrets import SecretsLocation, init_keystore

    location = SecretsLocation.resolve(keystore=keystore, data_dir=data_dir)
    store = init_keystore(location, passphrase_file=passphrase_file, prompt=_hidden_prompt)
    out.print(f"keystore created: {store.path}")


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="Entry name, e.g. oanda.token.")],
    value_file: ValueFile = None,
    backend: Backend = "keystore",
    data_dir: DataDir = None,
    keystore: KeystorePath = None,
    passphrase_file: PassphraseFile = None,
    vault_config: VaultConfigFile = None,
) -> None:
    """Store a secret (the value from --value-file, standard input or a hidden prompt)."""
    store = _secrets_store(backend, keystore, data_dir, vault_config, passphrase_file)
    version = store.set(name, _new_value(name, value_file))
    out.print(f"{name}: stored (version {version})", highlight=False)


@secrets_app.command("get")
def secrets_get(
    name: Annotated[str, typer.Argument(help="Entry name, e.g. oanda.token.")],
    reveal: Annotated[bool, typer.Option("--reveal", help="Print the value itself (default: ***).")] = False,
    backend: Backend = "keystore",
    data_dir: DataDir = None,
    keystore: KeystorePath = None,
    passphrase_file: PassphraseFile = None,
    vault_config: VaultConfigFile = None,
) -> None:
    """Show a secret: masked unless --reveal is given."""
    store = _secrets_store(backend, keystore, data_dir, vault_config, passphrase_file)
    value = store.get(name)
    if reveal:
        typer.echo(value.reveal())
    else:
        out.print(f"{name}: {value} (--reveal to print it)", highlight=False)


@secrets_app.command("list")
def secrets_list(
    backend: Backend = "keystore",
    data_dir: DataDir = None,
    keystore: KeystorePath = None,
    passphrase_file: PassphraseFile = None,
    vault_config: VaultConfigFile = None,
) -> None:
    """List entry names and versions, never values."""
    from rich.table import Table

    from alphaloom.jobs.secrets import list_entries

    store = _secrets_store(backend, keystore, data_dir, vault_config, passphrase_file)
    table = Table("name", "version", "key", "updated")
    for entry in list_entries(store):
        if isinstance(entry, tuple):
            table.add_row(entry[0], str(entry[1]), "vault", "")
        else:
            table.add_row(
                entry.name, str(entry.version), entry.key_id, entry.updated_at.isoformat(timespec="seconds")
            )
    out.print(table)


@secrets_app.command("rotate-key")
def secrets_rotate_key(
    data_dir: DataDir = None, keystore: KeystorePath = None, passphrase_file: PassphraseFile = None
) -> None:
    """Re-encrypt every keystore entry under a new key and retire the old key; readers keep working."""
    from alphaloom.jobs.secrets import rotate_key

    report = rotate_key(_secrets_store("keystore", keystore, data_dir, None, passphrase_file))
    out.print(
        f"re-encrypted {report.reencrypted} entries under key {report.active_key_id}; retired "
        f"{', '.join(report.retired_key_ids)}",
        highlight=False,
    )


@secrets_app.command("rotate")
def secrets_rotate(
    name: Annotated[str, typer.Argument(help="The credential to replace, e.g. oanda.token.")],
    value_file: ValueFile = None,
    backend: Backend = "keystore",
    data_dir: DataDir = None,
    keystore: KeystorePath = None,
    passphrase_file: PassphraseFile = None,
    vault_config: VaultConfigFile = None,
) -> None:
    """Replace a venue credential; running connectors use the new one at their next request."""
    from alphaloom.jobs.secrets import rotate

    store = _secrets_store(backend, keystore, data_dir, vault_config, passphrase_file)
    result = rotate(store, name, _new_value(name, value_file))
    out.print(
        f"{name}: rotated to version {result.version}; connectors pick it up at their next request",
        highlight=False,
    )


serve_app = typer.Typer(
    help="Run the API and dashboard (`alphaloom serve`), and manage its API keys (`alphaloom serve keys`).",
    invoke_without_command=True,
)
keys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed in the data dir).", no_args_is_help=True
)
serve_app.add_typer(keys_app, name="keys")
app.add_typer(serve_app, name="serve")


@serve_app.callback()
def serve(
    ctx: typer.Context,
    data_dir: DataDir = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Interface to listen on (default: the config's, else 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port (default: the config's, else 8000).")
    ] = None,
    trade_paper: Annotated[
        bool | None,
        typer.Option(
            "--trade-paper/--no-trade-paper",
            help="Run a live paper-trading session in the service (default: the config's, else on).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML/YAML file with a \\[service] table of ServiceSettings.",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            envvar="ALPHALOOM_TLS_CERT",
            help="PEM certificate (chain): serve HTTPS. Needs --tls-key.",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            envvar="ALPHALOOM_TLS_KEY",
            help="PEM private key of --tls-cert.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the API at http://HOST:PORT/api/v1 and the dashboard at http://HOST:PORT/ (https with TLS)."""
    if ctx.invoked_subcommand is not None:
        return
    from alphaloom.service.cli import run_server

    run_server(
        data_dir=data_dir,
        host=host,
        port=port,
        trade_paper=trade_paper,
        config_file=config,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


@keys_app.command("create")
def serve_keys_create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key (unique among active keys).")],
    role: Annotated[str, typer.Option("--role", help="viewer, trader or admin.")] = "viewer",
    data_dir: DataDir = None,
) -> None:
    """Create an API key; it is printed once and stored only as a salted hash."""
    from alphaloom.service.cli import create_key

    key, info = create_key(_workspace(data_dir), name, role)
    out.print(
        f"created {info.role.value} key {info.name!r} (id {info.key_id}); it is shown only now:",
        highlight=False,
    )
    print(key)


@keys_app.command("list")
def serve_keys_list(data_dir: DataDir = None) -> None:
    """List the API keys (names, roles, ids; never the keys)."""
    from alphaloom.service.cli import keys_table

    out.print(keys_table(_workspace(data_dir)))


@keys_app.command("revoke")
def serve_keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name or id.")], data_dir: DataDir = None
) -> None:
    """Revoke a key; it and the tokens issued for it stop working at once."""
    from alphaloom.service.cli import revoke_key

    info = revoke_key(_workspace(data_dir), name)
    out.print(f"revoked key {info.name!r} (id {info.key_id})", highlight=False)


def main() -> None:
    """Console entry point: alphaloom errors become one line on stderr and exit code 2."""
    try:
        app()  # standalone: usage errors print typer's message and exit 2
    except AlphaloomError as exc:
        from alphaloom.jobs.secrets import redact

        Console(stderr=True).print(f"[bold red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
