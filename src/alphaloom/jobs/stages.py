"""The stages of the main job, each callable alone on a data directory.

ingest -> validate -> features -> train forecaster -> train agents -> backtest -> report.

Every stage reads what it needs from the store (or the models directory) and writes its output back, so
``alphaloom demo`` and the per-stage subcommands produce the same results. torch-using modules are imported
inside the stages that need them, so listing or validating data stays light.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import DataNotFoundError, EmptyRangeError
from alphaloom.core.timeutil import parse_utc
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.workspace import Workspace

__all__ = [
    "build_report",
    "compute_features",
    "ingest",
    "ingest_table",
    "list_table",
    "load_symbol_bars",
    "metrics_table",
    "run_backtests",
    "summary_table",
    "train_agents",
    "train_forecaster",
    "validate",
    "validation_table",
]

FEATURES_TABLE = "features"
FORECASTS_TABLE = "forecasts"
RESULTS_TABLE = "backtest_bars"
STATS_TABLE = "backtest_stats"
ISSUES_TABLE = "validation_issues"


# ----------------------------------------------------------------------------------------------- data
def ingest(
    ws: Workspace,
    *,
    samples: Sequence[str] | None = None,
    files: Sequence[Path] = (),
    symbol: str | None = None,
    timeframe: str = "1d",
    progress: StageProgress | None = None,
) -> list[dict[str, Any]]:
    """Load shipped sample sets and/or bar files into the store. Returns one row of counts per source."""
    from alphaloom.data.instruments import SAMPLE_INSTRUMENTS
    from alphaloom.data.loaders import read_bars_file
    from alphaloom.data.sample import SAMPLE_SETS, load_sample

    progress = progress or NullProgress()
    names = list(samples) if samples else ([] if files else list(SAMPLE_SETS))
    sources: list[tuple[str, Any]] = [(f"sample:{n}", n) for n in names] + [(str(f), f) for f in files]
    task = progress.task("ingest", total=len(sources))
    rows = []
    with ws.open_store() as store:
        store.write_instruments(list(SAMPLE_INSTRUMENTS.values()))
        for label, src in sources:
            t0 = time.perf_counter()
            bars = load_sample([src]) if isinstance(src, str) else read_bars_file(src, symbol=symbol)
            res = store.write_bars(bars, timeframe=timeframe, source=label)
            rows.append(
                {
                    "source": label,
                    "rows": len(bars),
                    "symbols": bars["symbol"].nunique(),
                    "inserted": res.inserted,
                    "updated": res.updated,
                    "unchanged": res.unchanged,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            task.advance()
    ws.record("ingest", {"sources": rows})
    return rows


def ingest_table(rows: list[dict[str, Any]]) -> Table:
    return _table("Ingested", pd.DataFrame(rows))


def list_table(ws: Workspace) -> Table:
    with ws.require_store() as store:
        summary = store.summary()
    return _table("Store contents", summary)


def _date_bounds(config: RunConfig) -> tuple[Any, Any]:
    start = parse_utc(config.start, name="--start") if config.start else None
    end = parse_utc(config.end, name="--end") if config.end else None
    if start is not None and end is not None and start >= end:
        raise EmptyRangeError(
            f"the date range {config.start} .. {config.end} is empty; --start must be before --end."
        )
    return start, end


def load_symbol_bars(ws: Workspace, config: RunConfig, *, exclude_quarantined: bool = True) -> pd.DataFrame:
    """The run's bars from the store, minus quarantined rows, trimmed to ``max_bars_per_symbol``."""
    start, end = _date_bounds(config)
    with ws.require_store() as store:
        bars = store.read_bars(list(config.symbols), start, end)
        quarantined = store.read_quarantine(list(config.symbols)) if exclude_quarantined else None
    if quarantined is not None and len(quarantined):
        key = pd.MultiIndex.from_frame(bars[["symbol", "ts"]])
        bad = pd.MultiIndex.from_frame(quarantined[["symbol", "ts"]])
        bars = bars[~key.isin(bad)].reset_index(drop=True)
    if config.max_bars_per_symbol:
        bars = bars.groupby("symbol", sort=False).tail(config.max_bars_per_symbol).reset_index(drop=True)
    return bars


def validate(ws: Workspace, config: RunConfig, *, all_symbols: bool = False):
    """Run the validator over the stored bars; quarantine what fails, record every issue."""
    from alphaloom.data.validator import DataValidator, ValidatorConfig

    start, end = _date_bounds(config)
    with ws.require_store() as store:
        symbols = None if all_symbols else list(config.symbols)
        bars = store.read_bars(symbols, start, end)
        result = DataValidator(ValidatorConfig()).validate(bars, store.instruments())
        store.clear_quarantine(sorted(bars["symbol"].unique()))
        n_quarantined = store.quarantine(result.quarantined) if len(result.quarantined) else 0
        summary = result.summary()
        store.write_frame(ISSUES_TABLE, summary.astype({c: str for c in summary.columns if c != "count"}))
    ws.record(
        "validate",
        {"rows": len(bars), "quarantined": n_quarantined, "issues": len(result.issues)},
    )
    return result


def validation_table(result) -> Table:
    return _table(
        f"Validation: {len(result.clean)} clean rows, {len(result.quarantined)} quarantined",
        result.summary(),
    )


# ------------------------------------------------------------------------------------------- features
def compute_features(ws: Workspace, config: RunConfig, progress: StageProgress | None = None) -> dict:
    """Compute the feature set per symbol (batch mode) and store it in the ``features`` table."""
    from alphaloom.features import FeatureConfig, FeatureEngineer

    progress = progress or NullProgress()
    bars = load_symbol_bars(ws, config)
    symbols = list(dict.fromkeys(bars["symbol"]))
    task = progress.task("features", total=len(symbols))
    frames = []
    names: list[str] = []
    for sym in symbols:
        sym_bars = bars[bars["symbol"] == sym].reset_index(drop=True)
        fe = FeatureEngineer(FeatureConfig()).fit(sym_bars)
        feats = fe.transform(sym_bars)
        names = list(feats.columns)
        frame = feats.reset_index()
        frame.insert(0, "symbol", sym)
        frames.append(frame)
        task.advance()
    table = pd.concat(frames, ignore_index=True)
    with ws.open_store() as store:
        store.write_frame(FEATURES_TABLE, table)
    ws.save_config(config)
    info = {"symbols": symbols, "n_features": len(names), "feature_names": names, "rows": len(table)}
    ws.record("features", info)
    return info


def _table(title: str, frame: pd.DataFrame, *, float_fmt: str = "{:.4g}") -> Table:
    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(float_fmt.format(v) if isinstance(v, float | np.floating) else str(v) for v in row))
    return table


def metrics_table(rows: list[dict[str, Any]] | pd.DataFrame, title: str) -> Table:
    return _table(title, pd.DataFrame(rows))


def summary_table(summary: pd.DataFrame) -> Table:
    return _table("Out-of-sample backtest (after commissions and slippage)", summary)


def _missing(ws: Workspace, what: str, command: str) -> DataNotFoundError:
    return DataNotFoundError(f"no {what} in {ws.root}; run `alphaloom {command} --data-dir {ws.root}` first.")
