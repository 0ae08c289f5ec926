"""Persisted results of the pipeline's stages, and ``alphaloom results list|show|compare|migrate``.

The stages record what they compute, once, as they compute it: the features stage its feature vectors, the
forecaster stage its predictions and out-of-sample metrics, the backtest stage every strategy's statistics,
equity curve and trades, and a trading run its performance. Each becomes a run in the
:class:`~alphaloom.data.storage.ResultsStore` with the hash of the config and the fingerprint of the bars it
came from, so past work can be listed, shown and compared without recomputing anything.

Where the results live: the workspace's DuckDB file (``<data dir>/alphaloom.duckdb``) by default; a PostgreSQL
schema when a DSN is given (``--dsn``, ``$ALPHALOOM_RESULTS_DSN``, or a file named by
``$ALPHALOOM_RESULTS_DSN_FILE``, e.g. a container secret), in the schema ``--schema`` /
``$ALPHALOOM_RESULTS_SCHEMA`` (``alphaloom`` by default).
"""

from __future__ import annotations

import hashlib
import html
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, StorageError
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.workspace import Workspace
from alphaloom.risk import measures

if TYPE_CHECKING:
    from alphaloom.backtest.engine import BacktestResult
    from alphaloom.data.storage.results import ResultRun, ResultsStore

__all__ = [
    "RESULTS_DSN_ENV",
    "RESULTS_DSN_FILE_ENV",
    "RESULTS_SCHEMA_ENV",
    "Comparison",
    "ResultsLocation",
    "RunDetails",
    "compare",
    "compare_tables",
    "list_runs",
    "list_table",
    "migrate",
    "open_results",
    "record_backtest",
    "record_features",
    "record_predictions",
    "record_trading_run",
    "show",
    "show_tables",
    "write_compare_report",
]

RESULTS_DSN_ENV = "ALPHALOOM_RESULTS_DSN"
RESULTS_DSN_FILE_ENV = "ALPHALOOM_RESULTS_DSN_FILE"
RESULTS_SCHEMA_ENV = "ALPHALOOM_RESULTS_SCHEMA"
_DEFAULT_SCHEMA = "alphaloom"

#: Statistics ``alphaloom results show`` prints by default, by run kind (``--stat all`` shows every one).
HEADLINE_STATS: Mapping[str, tuple[str, ...]] = {
    "backtest": ("total_return", "cagr", "sharpe", "max_drawdown", "turnover", "n_trades", "final_equity"),
    "predictions": ("n", "accuracy", "balanced_accuracy", "log_loss", "ic", "rank_ic"),
    "features": ("rows", "nan_fraction"),
    "live": (),
}
#: Statistics ``alphaloom results compare`` prints by default (one row each per symbol and label).
COMPARE_STATS: Mapping[str, tuple[str, ...]] = {
    "backtest": ("total_return", "sharpe", "max_drawdown", "final_equity"),
    "predictions": ("accuracy", "log_loss", "ic"),
    "features": ("rows", "nan_fraction"),
    "live": (),
}


# ----------------------------------------------------------------------------------------- location
@dataclass(frozen=True)
class ResultsLocation:
    """Which results store to open: a PostgreSQL DSN and schema, or the workspace's DuckDB file."""

    dsn: str | None
    schema: str
    path: Path

    @classmethod
    def resolve(cls, ws: Workspace, *, dsn: str | None = None, schema: str | None = None) -> ResultsLocation:
        """``dsn``, else the file named by ``$ALPHALOOM_RESULTS_DSN_FILE``, else ``$ALPHALOOM_RESULTS_DSN``,
        else the workspace's DuckDB file."""
        chosen = dsn.strip() if dsn and dsn.strip() else None
        if chosen is None and (dsn_file := os.environ.get(RESULTS_DSN_FILE_ENV)):
            path = Path(dsn_file).expanduser()
            try:
                chosen = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"${RESULTS_DSN_FILE_ENV} names {path}, which cannot be read ({exc.strerror}); point it "
                    f"at a file holding the PostgreSQL DSN, or unset it to use the workspace's DuckDB file."
                ) from exc
            if not chosen:
                raise ConfigError(
                    f"${RESULTS_DSN_FILE_ENV} names {path}, which is empty; write the DSN into it."
                )
        if chosen is None:
            chosen = os.environ.get(RESULTS_DSN_ENV, "").strip() or None
        return cls(
            dsn=chosen,
            schema=schema or os.environ.get(RESULTS_SCHEMA_ENV) or _DEFAULT_SCHEMA,
            path=ws.store_path,
        )

    @property
    def backend(self) -> str:
        return "postgres" if self.dsn else "duckdb"


@contextmanager
def open_results(
    ws: Workspace, *, dsn: str | None = None, schema: str | None = None, read_only: bool = False
) -> Iterator[ResultsStore]:
    """The results store of ``ws`` (see the module docstring for where it lives), closed after the block.

    ``read_only`` opens the DuckDB file without write access and creates nothing, so several readers can
    list and compare at once; it raises :class:`DataNotFoundError` when the workspace has no store yet.
    """
    from alphaloom.data.storage.results import DuckDBResultsStore, PostgresResultsStore

    loc = ResultsLocation.resolve(ws, dsn=dsn, schema=schema)
    store: ResultsStore
    if loc.dsn is not None:
        store = PostgresResultsStore(loc.dsn, schema=loc.schema, migrate=not read_only)
    else:
        if not read_only:
            ws.ensure()
        elif not loc.path.is_file():
            raise DataNotFoundError(
                f"no results in {ws.root}: the store {loc.path} does not exist yet; results are recorded "
                f"by `alphaloom demo`, `alphaloom features`, `alphaloom train cnn-lstm` and "
                f"`alphaloom backtest`."
            )
        store = DuckDBResultsStore(loc.path, read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def migrate(
    ws: Workspace, *, dsn: str | None = None, schema: str | None = None
) -> tuple[str, int, list[int]]:
    """Bring the results schema up to date: ``(location, version, versions applied now)``."""
    with open_results(ws, dsn=dsn, schema=schema) as store:
        applied = store.migrate()
        return store.location, store.schema_version(), applied


# ----------------------------------------------------------------------------------------- recording
def _fingerprint(ws: Workspace, config: RunConfig, bars: pd.DataFrame | None) -> str:
    from alphaloom.jobs.stages import load_symbol_bars
    from alphaloom.registry.lineage import DataFingerprint

    frame = load_symbol_bars(ws, config) if bars is None else bars
    return DataFingerprint.from_bars(frame).sha256


def _code_version() -> str:
    from alphaloom.registry.lineage import code_version

    return code_version()


def _new_run(kind: str, name: str, **fields: Any) -> ResultRun:
    from alphaloom.data.storage.results import ResultRun, make_run_id

    now = datetime.now(UTC)
    run_id = fields.pop("run_id", None) or make_run_id(kind, now)
    return ResultRun(
        run_id=run_id, kind=kind, name=name, created_at=now, code_version=_code_version(), **fields
    )


def record_features(
    ws: Workspace, config: RunConfig, table: pd.DataFrame, bars: pd.DataFrame | None = None
) -> str:
    """Record the feature vectors the features stage computed; returns the run id.

    The id is made of the feature config's hash, the bars' fingerprint and the code version
    (``feat-<config>-<data>-<code>``), so the same features of the same data computed by the same code are
    stored once however often the stage runs.

    Parameters
    ----------
    table
        The stage's features frame: ``symbol``, ``ts`` and one float column per feature.
    bars
        The bars they were computed from (read again from the store when ``None``).
    """
    config_hash = config.features.config_hash()
    fingerprint = _fingerprint(ws, config, bars)
    code = hashlib.sha256(_code_version().encode()).hexdigest()
    run_id = f"feat-{config_hash[:8]}-{fingerprint[:8]}-{code[:4]}"
    values = table.drop(columns=["symbol", "ts"])
    stats = []
    for symbol, group in table.groupby("symbol", sort=True):
        block = group.drop(columns=["symbol", "ts"]).to_numpy(dtype=np.float64)
        stats.append((symbol, "", "rows", float(len(group))))
        stats.append((symbol, "", "nan_fraction", float(np.isnan(block).mean()) if block.size else math.nan))
    with open_results(ws) as store:
        if store.has_run(run_id):
            return run_id
        run = _new_run(
            "features",
            "features",
            run_id=run_id,
            config_hash=config_hash,
            data_fingerprint=fingerprint,
            summary={
                "n_symbols": int(table["symbol"].nunique()),
                "rows": len(table),
                "n_features": values.shape[1],
                "nan_fraction": float(np.isnan(values.to_numpy(dtype=np.float64)).mean()),
            },
            params={
                "symbols": sorted(table["symbol"].unique()),
                "features": config.features.model_dump(mode="json"),
            },
        )
        store.write(
            run, stats=pd.DataFrame(stats, columns=["symbol", "label", "stat", "value"]), vectors=table
        )
    return run_id


def record_predictions(
    ws: Workspace,
    config: RunConfig,
    forecasts: pd.DataFrame,
    info: Mapping[str, Any],
    bars: pd.DataFrame | None = None,
) -> str:
    """Record the forecaster's predictions for every bar and its out-of-sample metrics; returns the run id.

    Parameters
    ----------
    forecasts
        ``symbol``, ``ts`` and the model's outputs (``p_down``, ``p_flat``, ``p_up``, ``pred_return``,
        ``emb_*``), as the forecaster stage stores them.
    info
        What the stage reported: ``metrics`` (one row per symbol and segment), ``config_hash`` and, when the
        model was registered, ``registered`` (``"name/version"``).
    """
    registered = info.get("registered")
    model, _, version = str(registered or "cnn_lstm").partition("/")
    metrics = pd.DataFrame(list(info.get("metrics", [])))
    stats = []
    for row in metrics.to_dict(orient="records"):
        for key, value in row.items():
            if (
                key not in ("symbol", "segment")
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                stats.append((row["symbol"], row.get("segment", ""), key, float(value)))
    summary: dict[str, Any] = {"n_symbols": int(forecasts["symbol"].nunique()), "rows": len(forecasts)}
    if len(metrics) and "segment" in metrics:
        test = metrics[metrics["segment"] == "test"]
        for key in ("accuracy", "balanced_accuracy", "ic", "log_loss"):
            if key in test:
                summary[f"test_{key}"] = float(pd.to_numeric(test[key], errors="coerce").mean())
    features_run = ws.manifest().get("features", {}).get("results_run")
    run = _new_run(
        "predictions",
        model,
        config_hash=str(info.get("config_hash", "")),
        data_fingerprint=_fingerprint(ws, config, bars),
        summary=summary,
        params={
            "model": model,
            "model_version": version or None,
            "registered": registered,
            "features_run": features_run,
            "symbols": sorted(forecasts["symbol"].unique()),
        },
    )
    with open_results(ws) as store:
        store.write(
            run, stats=pd.DataFrame(stats, columns=["symbol", "label", "stat", "value"]), vectors=forecasts
        )
    return run.run_id


def record_backtest(
    ws: Workspace,
    config: RunConfig,
    results: Sequence[BacktestResult],
    *,
    name: str = "demo",
    bars: pd.DataFrame | None = None,
) -> str:
    """Record backtests: every result's statistics, equity curve and round-trip trades; returns the run id.

    The statistics are :meth:`BacktestResult.stats` and the trades
    :func:`~alphaloom.backtest.report.trade_list` of the results already computed; nothing is re-run. The run
    links the features and predictions runs and the registered models of the same workspace (its manifest).
    """
    from alphaloom.backtest.report import trade_list

    if not results:
        raise ConfigError("record_backtest() got no backtest results; run at least one backtest first.")
    stats, equity, trades = [], [], []
    for r in results:
        stats.extend((r.symbol, r.name, k, float(v)) for k, v in r.stats().items())
        equity.append(
            pd.DataFrame(
                {
                    "symbol": r.symbol,
                    "label": r.name,
                    "ts": r.ts,
                    "equity": r.equity,
                    "returns": r.returns,
                    "weight": r.weights,
                }
            )
        )
        t = trade_list(r).rename(columns={"return": "trade_return", "open": "is_open"})
        t.insert(0, "label", r.name)
        t.insert(0, "symbol", r.symbol)
        trades.append(t)
    stats_frame = pd.DataFrame(stats, columns=["symbol", "label", "stat", "value"])
    by_strategy = stats_frame.pivot_table(index="label", columns="stat", values="value", aggfunc="mean")
    best = by_strategy["sharpe"].idxmax() if by_strategy["sharpe"].notna().any() else None
    summary = {
        "n_symbols": len({r.symbol for r in results}),
        "n_strategies": len({r.name for r in results}),
        "mean_sharpe": float(np.nanmean(by_strategy["sharpe"]))
        if by_strategy["sharpe"].notna().any()
        else None,
        "mean_total_return": float(by_strategy["total_return"].mean()),
        "worst_max_drawdown": float(stats_frame.loc[stats_frame["stat"] == "max_drawdown", "value"].max()),
        "best_strategy": best,
        "best_mean_sharpe": None if best is None else float(by_strategy.loc[best, "sharpe"]),
    }
    manifest = ws.manifest()
    run = _new_run(
        "backtest",
        name,
        config_hash=config.config_hash(),
        data_fingerprint=_fingerprint(ws, config, bars),
        summary=summary,
        params={
            "symbols": sorted({r.symbol for r in results}),
            "strategies": sorted({r.name for r in results}),
            "seed": config.seed,
            "costs": config.costs.model_dump(mode="json"),
            "initial_cash": config.initial_cash,
            "ensemble_method": config.ensemble_method,
            "features_run": manifest.get("features", {}).get("results_run"),
            "predictions_run": manifest.get("train_cnn_lstm", {}).get("results_run"),
            "models": [
                m
                for m in (
                    manifest.get("train_cnn_lstm", {}).get("registered"),
                    *manifest.get("train_rl", {}).get("registered", []),
                )
                if m
            ],
        },
    )
    with open_results(ws) as store:
        store.write(
            run,
            stats=stats_frame,
            equity=pd.concat(equity, ignore_index=True),
            trades=pd.concat(trades, ignore_index=True),
        )
    return run.run_id


def record_trading_run(
    ws: Workspace, config: RunConfig, summary: Mapping[str, Any], *, equity: pd.DataFrame | None = None
) -> str:
    """Record the performance of a paper or live trading run (``alphaloom trade``'s summary); returns the id.

    The id is ``live-<the trading run's id>``, so a resumed run updates its record instead of adding one.
    Numeric items of the summary become statistics of the venue (``symbol`` empty); positions become one
    ``quantity`` statistic per symbol. ``equity``, when given, is the account's equity curve (columns ``ts``
    and ``equity``).
    """
    venue = str(summary.get("venue", "live"))
    stats = [
        ("", venue, str(k), float(v))
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    stats.extend(
        (str(sym), "position", "quantity", float(q)) for sym, q in dict(summary.get("positions", {})).items()
    )
    curve = None
    if equity is not None:
        eq = equity.loc[:, ["ts", "equity"]].copy()
        eq["returns"] = eq["equity"].pct_change().fillna(0.0)
        curve = eq.assign(symbol="", label=venue, weight=np.nan)
    run = _new_run(
        "live",
        venue,
        run_id=f"live-{summary.get('run_id')}",
        config_hash=config.config_hash(),
        summary={k: v for k, v in summary.items() if not isinstance(v, dict | list)},
        params={"symbols": list(config.symbols), "degraded": list(summary.get("degraded", []))},
    )
    with open_results(ws) as store:
        store.write(
            run,
            stats=pd.DataFrame(stats, columns=["symbol", "label", "stat", "value"]),
            equity=curve,
            replace=True,
        )
    return run.run_id


# ----------------------------------------------------------------------------------------- querying
def list_runs(
    ws: Workspace, *, kind: str | None = None, dsn: str | None = None, schema: str | None = None
) -> list[ResultRun]:
    """Recorded runs, newest first; none when the workspace has recorded nothing yet."""
    from alphaloom.data.storage.results import ResultKind, parse_kind

    chosen: ResultKind | None = None if kind is None else parse_kind(kind)
    try:
        with open_results(ws, dsn=dsn, schema=schema, read_only=True) as store:
            return store.runs(chosen)
    except DataNotFoundError:
        return []


def _short(value: str, n: int = 8) -> str:
    return value[:n] if value else "-"


#: Summary items ``alphaloom results list`` shows first, by run kind (JSON keeps no order of its own).
SUMMARY_FIRST: Mapping[str, tuple[str, ...]] = {
    "backtest": ("best_strategy", "best_mean_sharpe", "mean_sharpe", "mean_total_return"),
    "predictions": ("test_accuracy", "test_ic", "n_symbols", "rows"),
    "features": ("n_features", "n_symbols", "rows", "nan_fraction"),
    "live": ("equity", "bars_processed", "fills", "risk_state"),
}


def _summary_text(run: ResultRun, limit: int = 4) -> str:
    summary = run.summary
    keys = [k for k in SUMMARY_FIRST.get(run.kind.value, ()) if k in summary]
    keys += [k for k in summary if k not in keys]
    parts = []
    for key in keys:
        value = summary[key]
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif value is not None and not isinstance(value, dict | list):
            parts.append(f"{key}={value}")
        if len(parts) == limit:
            break
    return ", ".join(parts) or "-"


def list_table(runs: Sequence[ResultRun], *, kind: str | None = None) -> Table:
    what = f"{kind} runs" if kind else "Result runs"
    table = Table(title=f"{what}: {len(runs)}" + ("" if runs else " (record some with `alphaloom demo`)"))
    for col in ("run id", "kind", "name", "created (UTC)", "config", "data", "summary"):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(
            r.run_id,
            r.kind.value,
            r.name,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            _short(r.config_hash),
            _short(r.data_fingerprint),
            _summary_text(r),
        )
    return table


@dataclass(frozen=True)
class RunDetails:
    """What ``alphaloom results show`` prints: the run, its statistics and its equity curves' summary."""

    run: ResultRun
    stats: pd.DataFrame
    equity_summary: pd.DataFrame
    n_trades: int


def _equity_summary(equity: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (symbol, label), g in equity.groupby(["symbol", "label"], sort=True):
        r = g["returns"].to_numpy(dtype=np.float64)
        eq = g["equity"].to_numpy(dtype=np.float64)
        rows.append(
            {
                "symbol": symbol or "-",
                "label": label,
                "first": g["ts"].iloc[0].strftime("%Y-%m-%d"),
                "last": g["ts"].iloc[-1].strftime("%Y-%m-%d"),
                "bars": len(g),
                # equity before the first bar: the first close's equity without the first bar's return
                "start_equity": float(eq[0] / (1.0 + r[0]))
                if np.isfinite(r[0]) and r[0] > -1
                else float(eq[0]),
                "final_equity": float(eq[-1]),
                "low": float(eq.min()),
                "high": float(eq.max()),
                "max_drawdown": measures.max_drawdown(r[np.isfinite(r)]),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "symbol",
            "label",
            "first",
            "last",
            "bars",
            "start_equity",
            "final_equity",
            "low",
            "high",
            "max_drawdown",
        ],
    )


def show(ws: Workspace, run_id: str, *, dsn: str | None = None, schema: str | None = None) -> RunDetails:
    """One run with its statistics and a summary of each equity curve (first and last bar, start and final
    equity, low, high, max drawdown).

    Raises
    ------
    DataNotFoundError
        No such run; the message suggests the closest recorded id.
    """
    with open_results(ws, dsn=dsn, schema=schema, read_only=True) as store:
        run = store.run(run_id)
        stats = store.stats(run.run_id)
        equity = store.equity(run.run_id)
        n_trades = len(store.trades(run.run_id))
    return RunDetails(run, stats, _equity_summary(equity), n_trades)


def _chosen_stats(
    stats: pd.DataFrame, kind: str, wanted: Sequence[str] | None, defaults: Mapping[str, tuple[str, ...]]
) -> list[str]:
    present = list(dict.fromkeys(stats["stat"]))
    if wanted and list(wanted) != ["all"]:
        unknown = [s for s in wanted if s not in present]
        if unknown:
            from alphaloom.core.exceptions import did_you_mean

            raise ConfigError(
                f"no statistic {unknown[0]!r} in these runs.{did_you_mean(unknown[0], present)} "
                f"Recorded: {', '.join(sorted(present))}."
            )
        return list(wanted)
    if wanted == ["all"]:
        return present
    headline = [s for s in defaults.get(kind, ()) if s in present]
    return headline or present


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _frame_table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    return table


def _run_table(runs: Sequence[ResultRun]) -> Table:
    table = Table(title="Runs" if len(runs) > 1 else f"Run {runs[0].run_id}")
    table.add_column("item")
    for r in runs:
        table.add_column(r.run_id if len(runs) > 1 else "value", overflow="fold")
    items: list[tuple[str, list[str]]] = [
        ("kind", [r.kind.value for r in runs]),
        ("name", [r.name for r in runs]),
        ("created (UTC)", [r.created_at.isoformat(timespec="seconds") for r in runs]),
        ("config hash", [r.config_hash or "-" for r in runs]),
        ("data fingerprint", [_short(r.data_fingerprint, 16) for r in runs]),
        ("code version", [r.code_version or "-" for r in runs]),
    ]
    keys = list(dict.fromkeys(k for r in runs for k in r.summary))
    items += [
        (k, [_fmt(r.summary.get(k, "")) if r.summary.get(k) is not None else "-" for r in runs]) for k in keys
    ]
    links = ("features_run", "predictions_run", "registered", "models")
    items += [
        (
            k,
            [
                ", ".join(map(str, v)) if isinstance(v := r.params.get(k), list) else str(v or "-")
                for r in runs
            ],
        )
        for k in links
        if any(r.params.get(k) for r in runs)
    ]
    for label, values in items:
        if len(runs) > 1:
            label = label if len(set(values)) == 1 else f"{label} [yellow](differs)[/]"
        table.add_row(label, *values)
    return table


def show_tables(details: RunDetails, *, stats: Sequence[str] | None = None) -> list[Table]:
    """The run's metadata, its statistics (one row per symbol and label) and its equity curves' summary."""
    out = [_run_table([details.run])]
    frame = details.stats
    if len(frame):
        chosen = _chosen_stats(frame, details.run.kind.value, stats, HEADLINE_STATS)
        wide = (
            frame[frame["stat"].isin(chosen)]
            .pivot_table(
                index=["symbol", "label"], columns="stat", values="value", aggfunc="first", dropna=False
            )
            .reindex(columns=chosen)
            .reset_index()
        )
        wide["symbol"] = wide["symbol"].replace("", "-")
        out.append(
            _frame_table(
                f"Statistics ({len(frame['stat'].unique())} recorded; --stat all for every one)", wide
            )
        )
    if len(details.equity_summary):
        out.append(
            _frame_table(f"Equity curves ({details.n_trades} trades recorded)", details.equity_summary)
        )
    return out


@dataclass(frozen=True)
class Comparison:
    """What ``alphaloom results compare`` prints: the runs and their statistics side by side."""

    runs: list[ResultRun]
    table: pd.DataFrame
    equity: dict[str, pd.DataFrame]
    report: Path | None = None


def compare(
    ws: Workspace,
    run_ids: Sequence[str],
    *,
    stats: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    report: Path | None = None,
    dsn: str | None = None,
    schema: str | None = None,
) -> Comparison:
    """Compare two or more runs: their statistics side by side with each run's difference from the first.

    Parameters
    ----------
    run_ids
        Run ids or unique prefixes; the first is the reference of the differences.
    stats
        Statistics to keep (``["all"]`` for every one); the headline statistics of the first run's kind by
        default.
    symbols
        Keep only these symbols.
    report
        Also write an HTML page with the equity curves of every run, strategy and symbol (and the table).

    Raises
    ------
    ConfigError
        Fewer than two distinct runs, or an unknown statistic.
    DataNotFoundError
        An unknown run id (with the closest recorded id).
    """
    with open_results(ws, dsn=dsn, schema=schema, read_only=True) as store:
        table = store.compare(run_ids)
        ids = [c for c in table.columns if c not in ("symbol", "label", "stat") and not c.startswith("diff ")]
        runs = [store.run(i) for i in ids]
        equity = {i: store.equity(i) for i in ids} if report is not None else {}
    chosen = _chosen_stats(table, runs[0].kind.value, stats, COMPARE_STATS)
    table = table[table["stat"].isin(chosen)]
    if symbols:
        table = table[table["symbol"].isin(list(symbols))]
    order = {s: i for i, s in enumerate(chosen)}
    table = table.sort_values(
        ["symbol", "label", "stat"], key=lambda c: c.map(order) if c.name == "stat" else c
    )
    table = table.reset_index(drop=True)
    out = Comparison(runs, table, equity)
    if report is not None:
        if symbols:
            equity = {k: v[v["symbol"].isin(list(symbols))] for k, v in equity.items()}
        path = write_compare_report(report, runs, table, equity)
        out = Comparison(runs, table, equity, path)
    return out


def compare_tables(comparison: Comparison) -> list[Table]:
    frame = comparison.table.copy()
    frame["symbol"] = frame["symbol"].replace("", "-")
    n = len(comparison.runs)
    title = f"Statistics of {n} runs side by side; diff = run minus {comparison.runs[0].run_id}"
    return [_run_table(comparison.runs), _frame_table(title, frame)]


def write_compare_report(
    path: Path, runs: Sequence[ResultRun], table: pd.DataFrame, equity: Mapping[str, pd.DataFrame]
) -> Path:
    """Write an offline HTML page: the equity curves of the compared runs, one chart per symbol, and the
    side-by-side statistics.

    Written here rather than with :func:`alphaloom.backtest.report.write_html_report`, whose tearsheet is
    built from full :class:`BacktestResult` objects (units, cash, costs) that a stored run does not keep;
    this page needs only the stored equity curves.
    """
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    symbols = sorted({s for frame in equity.values() for s in frame["symbol"].unique()})
    if not symbols:
        raise DataNotFoundError(
            "none of the compared runs has an equity curve (features and predictions runs have none); "
            "compare backtest or live runs to plot equity."
        )
    # One colour per strategy, one dash style per run, so the same strategy of two runs reads as a pair.
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
    labels = sorted({str(x) for frame in equity.values() for x in frame["label"].unique()})
    colour = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    charts = []
    for i, symbol in enumerate(symbols):
        fig = go.Figure()
        for k, run in enumerate(runs):
            frame = equity.get(run.run_id)
            if frame is None:
                continue
            part = frame[frame["symbol"] == symbol]
            for label, g in part.groupby("label", sort=True):
                fig.add_trace(
                    go.Scatter(
                        x=g["ts"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(),
                        y=g["equity"].to_numpy(),
                        mode="lines",
                        name=f"{run.run_id} / {label}",
                        line={"dash": dashes[k % len(dashes)], "color": colour[str(label)]},
                    )
                )
        fig.update_layout(
            title=f"{symbol or 'portfolio'}: equity",
            template="plotly_white",
            height=480,
            legend={"orientation": "h", "y": -0.2},
            margin={"l": 60, "r": 20, "t": 50, "b": 40},
        )
        charts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"equity-{i}"))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    listing = "".join(
        f"<li><b>{html.escape(r.run_id)}</b>: {html.escape(r.kind.value)} {html.escape(r.name)}, "
        f"{html.escape(r.created_at.isoformat(timespec='seconds'))}, "
        f"config {html.escape(r.config_hash or '-')}, "
        f"data {html.escape(_short(r.data_fingerprint, 16))}</li>"
        for r in runs
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>alphaloom: results compared</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>Results compared</h1><ul>{listing}</ul>{''.join(charts)}"
        f"<h2>Statistics</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></body></html>"
    )
    out = Path(path).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"cannot write the comparison report {out}: {exc.strerror}.") from exc
    return out
