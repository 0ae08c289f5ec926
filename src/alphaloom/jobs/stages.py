"""The stages of the main job, each callable alone on a data directory.

ingest -> validate -> features -> train forecaster -> train agents -> backtest -> report.

Every stage reads what it needs from the store (or the models directory) and writes its output back, so
``alphaloom demo`` and the per-stage subcommands produce the same results. torch-using modules are imported
inside the stages that need them, so listing or validating data stays light.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import ConfigError, DataNotFoundError, EmptyRangeError
from alphaloom.core.timeutil import parse_utc
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.splits import split_segments
from alphaloom.jobs.venues import make_connector
from alphaloom.jobs.workspace import Workspace
from alphaloom.risk import measures

__all__ = [
    "AGENT_NAMES",
    "FORECAST_COLUMNS",
    "MIN_TRADE_WEIGHT",
    "Observations",
    "SymbolData",
    "build_report",
    "collapse_summary",
    "compute_features",
    "ensemble_rollout",
    "env_config",
    "ingest",
    "ingest_table",
    "list_table",
    "load_agents",
    "load_observations",
    "load_symbol_bars",
    "make_agent",
    "metrics_table",
    "quarantine_table",
    "run_backtests",
    "summary_table",
    "symbol_data",
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
    venue: str | None = None,
    venue_symbols: Sequence[str] = (),
    venue_config_file: Path | None = None,
    start: str | None = None,
    end: str | None = None,
    progress: StageProgress | None = None,
) -> list[dict[str, Any]]:
    """Load shipped sample sets and/or bar files into the store. Returns one row of counts per source.

    Each source is validated on the way in: rows that fail a row check (bad prices, inconsistent OHLC,
    duplicates) go to the quarantine table with their reason instead of the bars table, so one bad row
    neither blocks a file nor disappears.
    """
    from alphaloom.data.instruments import SAMPLE_INSTRUMENTS
    from alphaloom.data.loaders import read_bars_file
    from alphaloom.data.sample import SAMPLE_SETS, load_sample
    from alphaloom.data.validator import DataValidator, ValidatorConfig

    progress = progress or NullProgress()
    names = list(samples) if samples else ([] if files or venue else list(SAMPLE_SETS))
    sources: list[tuple[str, Any]] = [(f"sample:{n}", n) for n in names] + [(str(f), f) for f in files]
    if venue:
        source = _VenueSource(venue, venue_symbols, start, end, timeframe, venue_config_file)
        sources.append((f"venue:{venue}", source))
    task = progress.task("ingest", total=len(sources))
    validator = DataValidator(ValidatorConfig())
    rows = []
    with ws.open_store() as store:
        store.write_instruments(list(SAMPLE_INSTRUMENTS.values()))
        instruments = store.instruments()
        for label, src in sources:
            t0 = time.perf_counter()
            if isinstance(src, _VenueSource):
                bars = src.fetch(progress)
            elif isinstance(src, str):
                bars = load_sample([src])
            else:
                bars = read_bars_file(src, symbol=symbol)
            checked = validator.validate(bars, instruments)
            res = store.write_bars(checked.clean, timeframe=timeframe, source=label)
            quarantined = (
                store.quarantine(checked.quarantined, timeframe=timeframe) if len(checked.quarantined) else 0
            )
            rows.append(
                {
                    "source": label,
                    "rows": len(bars),
                    "symbols": bars["symbol"].nunique(),
                    "inserted": res.inserted,
                    "updated": res.updated,
                    "unchanged": res.unchanged,
                    "quarantined": len(checked.quarantined),
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            if quarantined:
                progress.log(
                    f"{label}: {len(checked.quarantined)} row(s) quarantined; see `alphaloom data quarantine`"
                )
            task.advance()
    ws.record("ingest", {"sources": rows})
    return rows


class _VenueSource:
    """History of ``symbols`` from a venue's ``get_historical_data``, one request sequence per symbol."""

    def __init__(
        self,
        venue: str,
        symbols: Sequence[str],
        start: str | None,
        end: str | None,
        timeframe: str,
        config_file: Path | None = None,
    ) -> None:
        self.config_file = config_file
        if not symbols:
            raise ConfigError(f"ingesting from --venue {venue} needs --symbols, e.g. --symbols SPY,EURUSD.")
        if start is None:
            raise ConfigError(f"ingesting from --venue {venue} needs --start (and optionally --end).")
        self.venue, self.symbols, self.timeframe = venue, list(symbols), timeframe
        self.start = parse_utc(start, name="--start")
        self.end = parse_utc(end, name="--end") if end else datetime.now(UTC)
        if self.start >= self.end:
            raise EmptyRangeError(f"the date range {start} .. {end} is empty; --start must be before --end.")

    def fetch(self, progress: StageProgress) -> pd.DataFrame:
        task = progress.task(f"fetch {self.venue}", total=len(self.symbols))

        async def run() -> pd.DataFrame:
            frames = []
            connector = make_connector(self.venue, self.symbols, config_file=self.config_file, history=True)
            async with connector:
                for sym in self.symbols:
                    frames.append(
                        await connector.get_historical_data(sym, self.timeframe, self.start, self.end)
                    )
                    task.advance()
            return pd.concat(frames, ignore_index=True)

        return asyncio.run(run())


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
        # Exclude a stored bar only if it *is* a quarantined row (same values): a bad duplicate quarantined
        # at ingest must not take the good bar stored for the same time with it.
        cols = ["symbol", "ts", "open", "high", "low", "close"]
        hit = bars[cols].merge(quarantined[cols].drop_duplicates(), on=cols, how="left", indicator=True)
        bars = bars[(hit["_merge"] == "left_only").to_numpy()].reset_index(drop=True)
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
        # Quarantine is keyed (symbol, timeframe, ts, check), so re-validating adds nothing twice, and rows
        # quarantined at ingest (never stored as bars) keep their record.
        n_quarantined = store.quarantine(result.quarantined) if len(result.quarantined) else 0
        summary = result.summary()
        store.write_frame(ISSUES_TABLE, summary.astype({c: str for c in summary.columns if c != "count"}))
    ws.record(
        "validate",
        {"rows": len(bars), "quarantined": n_quarantined, "issues": len(result.issues)},
    )
    return result


def validation_table(result) -> Table:
    """Issues grouped by check and severity: how many, on which symbols, and the first example."""
    summary = result.summary()
    title = f"Validation: {len(result.clean):,} clean rows, {len(result.quarantined):,} quarantined"
    if summary.empty:
        return _table(title + " (no issues)", summary)
    grouped = (
        summary.groupby(["severity", "check"], sort=True)
        .agg(
            issues=("message", "size"),
            rows=("count", "sum"),
            symbols=("symbol", lambda s: ", ".join(sorted(set(s)))),
            example=("message", "first"),
        )
        .reset_index()
    )
    grouped["example"] = grouped["example"].str.slice(0, 90)
    return _table(title, grouped)


def quarantine_table(
    ws: Workspace, symbols: Sequence[str] | None, *, limit: int = 50, export: Path | None = None
) -> tuple[Table, int]:
    """The quarantined rows (newest first), and optionally all of them written to a CSV file."""
    with ws.require_store() as store:
        rows = store.read_quarantine(symbols)
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(export, index=False)
    shown = rows if limit <= 0 else rows.head(limit)
    title = f"Quarantine: {len(rows):,} rows" + (f" (first {len(shown)})" if len(shown) < len(rows) else "")
    return _table(title, shown), len(rows)


# ------------------------------------------------------------------------------------------- features
def compute_features(ws: Workspace, config: RunConfig, progress: StageProgress | None = None) -> dict:
    """Compute the feature set per symbol (batch mode) and store it in the ``features`` table."""
    from alphaloom.features import FeatureEngineer

    progress = progress or NullProgress()
    bars = load_symbol_bars(ws, config)
    symbols = list(dict.fromkeys(bars["symbol"]))
    task = progress.task("features", total=len(symbols))
    engineer = FeatureEngineer(config.features)
    table = engineer.transform_panel(bars, on_symbol=lambda _: task.advance())
    names = [c for c in table.columns if c not in ("symbol", "ts")]
    with ws.open_store() as store:
        store.write_frame(FEATURES_TABLE, table)
    ws.save_config(config)
    info = {"symbols": symbols, "n_features": len(names), "feature_names": names, "rows": len(table)}
    from alphaloom.jobs.results import record_features  # persisted results (alphaloom results list)

    info["results_run"] = record_features(ws, config, table, bars)
    ws.record("features", info)
    return info


# ----------------------------------------------------------------------------------------- segments
class SymbolData:
    """One symbol's bars, features and walk-forward segments, aligned on the bar index."""

    def __init__(self, symbol: str, bars: pd.DataFrame, features: pd.DataFrame, config: RunConfig) -> None:
        self.symbol = symbol
        self.bars = bars.reset_index(drop=True)
        ts = pd.DatetimeIndex(self.bars["ts"])
        feats = features.set_index("ts").drop(columns=["symbol"], errors="ignore")
        missing = ts.difference(feats.index)
        if len(missing):
            raise DataNotFoundError(
                f"features for {symbol} are missing {len(missing)} bars (first {missing[0].isoformat()}); "
                "re-run `alphaloom features` after ingesting or validating."
            )
        self.features = feats.reindex(ts)
        self.segments = split_segments(ts, config.split)

    @property
    def ts(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.bars["ts"])

    def frame_with_close(self) -> pd.DataFrame:
        out = self.features.copy()
        out["close"] = self.bars["close"].to_numpy()
        return out


def symbol_data(ws: Workspace, config: RunConfig) -> list[SymbolData]:
    """Each of the run's symbols' bars (quarantine excluded), stored features and walk-forward segments."""
    bars = load_symbol_bars(ws, config)
    with ws.require_store() as store:
        if not store.has_frame(FEATURES_TABLE):
            raise _missing(ws, "features", "features")
        feats = store.read_frame(FEATURES_TABLE, list(config.symbols))
    out = []
    for sym in config.symbols:
        sym_feats = feats[feats["symbol"] == sym]
        if sym_feats.empty:
            raise _missing(ws, f"features for {sym}", "features")
        out.append(SymbolData(sym, bars[bars["symbol"] == sym], sym_feats, config))
    return out


# ----------------------------------------------------------------------------------------- forecaster
def _forecaster_config(config: RunConfig):
    from alphaloom.models import CNNLSTMConfig

    return CNNLSTMConfig(
        window=config.cnn_window,
        lstm_hidden=config.cnn_hidden,
        epochs=config.cnn_epochs,
        seed=config.seed,
    )


def train_forecaster(
    ws: Workspace, config: RunConfig, progress: StageProgress | None = None, *, register: bool = True
) -> dict:
    """Fit the CNN+LSTM on each symbol's forecaster segment; store forecasts for every bar.

    Forecasts at bar ``t`` use feature rows up to ``t`` only; the model never saw the agent or test segments,
    so the forecasts there are out of sample. Metrics are reported on those two segments. With ``register``
    the model is registered as a candidate in the workspace's model registry, with its lineage.
    """
    from alphaloom.models import CNNLSTMForecaster

    progress = progress or NullProgress()
    data = symbol_data(ws, config)
    train_frames = {d.symbol: d.frame_with_close().iloc[d.segments.forecaster] for d in data}
    cfg = _forecaster_config(config)
    task = progress.task("train cnn-lstm", total=cfg.epochs)
    t0 = time.perf_counter()

    def on_epoch(epoch: int, n_epochs: int, metrics: dict) -> None:
        note = f"val loss {metrics.get('val_loss', float('nan')):.4f}"
        task.update(epoch, total=n_epochs, note=note)

    model = CNNLSTMForecaster(cfg).fit(train_frames, progress=on_epoch)
    fit_s = time.perf_counter() - t0
    model.save(ws.models_dir / "cnn_lstm")
    frames, metrics = [], []
    for d in data:
        full = d.frame_with_close()
        pred = model.predict(full)
        frame = pred.reset_index()
        frame.insert(0, "symbol", d.symbol)
        frames.append(frame)
        for seg in ("agent", "test"):
            sl = getattr(d.segments, seg)
            m = _segment_metrics(model, full, pred, sl, cfg.horizon)
            metrics.append({"symbol": d.symbol, "segment": seg, **m})
    with ws.open_store() as store:
        store.write_frame(FORECASTS_TABLE, pd.concat(frames, ignore_index=True))
        store.write_frame("forecast_metrics", pd.DataFrame(metrics))
    info = {
        "fit_seconds": round(fit_s, 2),
        "epochs_run": len(model.history_.epochs),
        "best_epoch": model.history_.best_epoch,
        "fit_windows": model.history_.n_fit_windows,
        "val_nll_before_after_calibration": [model.history_.val_nll_before, model.history_.val_nll_after],
        "segments": {d.symbol: d.segments.bounds() for d in data},
        "metrics": metrics,
        "config_hash": cfg.config_hash(),
    }
    if register:
        from alphaloom.jobs.registry import register_forecaster

        bars = pd.concat([d.bars.iloc[d.segments.forecaster] for d in data], ignore_index=True)
        info["registered"] = register_forecaster(ws, config, info, bars, cfg).ref
    from alphaloom.jobs.results import record_predictions  # persisted results (alphaloom results list)

    info["results_run"] = record_predictions(ws, config, pd.concat(frames, ignore_index=True), info)
    ws.record("train_cnn_lstm", info)
    return info


def _segment_metrics(model, full: pd.DataFrame, pred: pd.DataFrame, sl: slice, horizon: int) -> dict:
    """Out-of-sample metrics of forecasts whose bar lies in ``sl`` and whose label lies inside it too."""
    from alphaloom.models.cnn_lstm.dataset import class_labels

    close = full["close"].to_numpy()
    fwd = np.full(len(close), np.nan)
    fwd[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    seg_ts = full.index[sl.start : max(sl.stop - horizon, sl.start)]
    p = pred.reindex(seg_ts).dropna()
    y = pd.Series(fwd, index=full.index).reindex(p.index).to_numpy()
    labels = class_labels(y, model.flat_threshold_)
    proba = p[["p_down", "p_flat", "p_up"]].to_numpy()
    guess = proba.argmax(axis=1)
    n = len(labels)
    if n == 0:
        return {"n": 0}
    recalls = [float(np.mean(guess[labels == k] == k)) for k in range(3) if np.any(labels == k)]
    eps = 1e-12
    logloss = float(-np.mean(np.log(np.clip(proba[np.arange(n), labels], eps, 1.0))))
    pr = p["pred_return"].to_numpy()
    ic = float(np.corrcoef(pr, y)[0, 1]) if n > 2 and np.std(pr) > 0 and np.std(y) > 0 else float("nan")
    ric = float(pd.Series(pr).rank().corr(pd.Series(y).rank())) if n > 2 else float("nan")
    return {
        "n": n,
        "accuracy": float(np.mean(guess == labels)),
        "balanced_accuracy": float(np.mean(recalls)),
        "log_loss": logloss,
        "ic": ic,
        "rank_ic": ric,
    }


# ----------------------------------------------------------------------------------------- RL agents
FORECAST_COLUMNS = ("p_down", "p_flat", "p_up", "pred_return")


class Observations:
    """Market observations for the agents: forecasts and features, standardised per symbol.

    The scaler is fitted on the symbol's agent segment (the agents' training data) and applied unchanged to
    the test segment; values are clipped to +-10 so a regime change cannot produce extreme inputs.
    """

    def __init__(self, d: SymbolData, forecasts: pd.DataFrame) -> None:
        fc = forecasts.set_index("ts").drop(columns=["symbol"], errors="ignore").reindex(d.ts)
        raw = pd.concat([fc, d.features], axis=1)
        self.columns = list(raw.columns)
        values = raw.to_numpy(dtype=np.float64)
        fit = values[d.segments.agent]
        fit = fit[np.isfinite(fit).all(axis=1)]
        if len(fit) < 10:
            raise EmptyRangeError(
                f"{d.symbol}: only {len(fit)} agent-segment bars have forecasts and features; widen the "
                "date range or lower cnn_window."
            )
        self.mean_ = fit.mean(axis=0)
        std = fit.std(axis=0)
        self.std_ = np.where(std > 1e-12, std, 1.0)
        self.values = np.clip((values - self.mean_) / self.std_, -10.0, 10.0).astype(np.float32)
        self.data = d

    def segment(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, slice]:
        """Observations, opens and closes of the finite rows of one segment, and their bar slice."""
        sl = getattr(self.data.segments, name)
        finite = np.isfinite(self.values[sl]).all(axis=1)
        first = sl.start + int(np.argmax(finite)) if finite.any() else sl.stop
        if not np.isfinite(self.values[first : sl.stop]).all():
            raise EmptyRangeError(
                f"{self.data.symbol}: the {name} segment has bars without forecasts or features after its "
                "warm-up; re-run `alphaloom features` and `alphaloom train cnn-lstm`."
            )
        rows = slice(first, sl.stop)
        bars = self.data.bars.iloc[rows]
        return (
            self.values[rows],
            bars["open"].to_numpy(dtype=np.float64),
            bars["close"].to_numpy(dtype=np.float64),
            rows,
        )


def load_observations(ws: Workspace, config: RunConfig) -> list[Observations]:
    """The agents' observations (stored forecasts + features, standardised on the agent segment)."""
    data = symbol_data(ws, config)
    with ws.require_store() as store:
        if not store.has_frame(FORECASTS_TABLE):
            raise _missing(ws, "forecasts", "train cnn-lstm")
        forecasts = store.read_frame(FORECASTS_TABLE, list(config.symbols))
    return [Observations(d, forecasts[forecasts["symbol"] == d.symbol]) for d in data]


def env_config(config: RunConfig, *, episode_len: int | None):
    """The trading-environment settings of a run: its costs and cash, ``episode_len`` bars per episode
    (``None``: the whole series, for evaluation)."""
    from alphaloom.rl import TradingEnvConfig

    return TradingEnvConfig(
        costs=config.costs,
        episode_len=episode_len,
        initial_cash=config.initial_cash,
        min_trade_weight=MIN_TRADE_WEIGHT,
    )


MIN_TRADE_WEIGHT = 1e-3
AGENT_NAMES = ("ppo", "sac", "td3", "rainbow")


def make_agent(name: str, seed: int):
    """A fresh agent of the kind ``name`` (one of :data:`AGENT_NAMES`) with the run's default settings."""
    from alphaloom.rl.agents import (
        PPOAgent,
        PPOConfig,
        RainbowConfig,
        RainbowDQNAgent,
        SACAgent,
        SACConfig,
        TD3Agent,
        TD3Config,
    )

    if name == "ppo":
        return PPOAgent(PPOConfig(seed=seed))
    if name == "sac":
        return SACAgent(SACConfig(seed=seed, learning_starts=200))
    if name == "td3":
        return TD3Agent(TD3Config(seed=seed, learning_starts=200))
    return RainbowDQNAgent(RainbowConfig(seed=seed, learning_starts=200))


def train_agents(
    ws: Workspace, config: RunConfig, progress: StageProgress | None = None, *, register: bool = True
) -> dict:
    """Train PPO, SAC, TD3 and Rainbow DQN across the symbols' agent segments (one env per symbol).

    With ``config.rl_seeds == 1`` each agent trains once, on the whole agent segment, with ``config.seed``.
    With more seeds, each agent trains once per seed (``seed, seed + 1, ...``) on the first part of the agent
    segment and is scored out of sample on its last ``rl_validation_fraction`` (after an embargo): a forward
    split, so the selection never looks at the test segment. The seed with the best mean validation Sharpe
    across symbols is kept; every seed's validation Sharpe, and their mean and spread, are recorded, because
    RL results that hold for one seed only are not results.
    """
    from alphaloom.rl import make_vec_env

    progress = progress or NullProgress()
    observations = load_observations(ws, config)
    segs = [o.segment("agent") for o in observations]
    seeds = [config.seed + i for i in range(config.rl_seeds)]
    if len(seeds) > 1:
        pairs = [_forward_split(s, o, config) for s, o in zip(segs, observations, strict=True)]
        fit_segs, val_segs = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        ppy = _periods_per_year(ws, [o.data.symbol for o in observations])
    else:
        fit_segs, val_segs, ppy = tuple(segs), (), []
    env_cfg = env_config(config, episode_len=min(config.rl_episode_len, min(len(s[0]) for s in fit_segs) - 1))
    rows = []
    agents_dir = ws.models_dir / "rl"
    trained = []  # the kept agent of each kind, registered below
    for name in AGENT_NAMES:
        budget = getattr(config.rl_budget, name)
        best: tuple[float, int, Any] | None = None
        val_sharpes: list[float] = []
        secs = 0.0
        for seed in seeds:
            label = f"train {name}" + (f" (seed {seed})" if len(seeds) > 1 else "")
            task = progress.task(label, total=budget)
            vec = make_vec_env(
                [s[0] for s in fit_segs],
                [s[1] for s in fit_segs],
                [s[2] for s in fit_segs],
                env_cfg,
                seed=seed,
            )
            agent = make_agent(name, seed)
            t0 = time.perf_counter()
            agent.train(vec, budget, progress=lambda done, total, t=task: t.update(done, total=total))
            secs += time.perf_counter() - t0
            vec.close()
            score = _validation_sharpe(agent, val_segs, ppy, config) if val_segs else 0.0
            val_sharpes.append(score)
            if best is None or score > best[0]:
                best = (score, seed, agent)
        assert best is not None
        _, chosen_seed, agent = best
        agent.save(agents_dir / name)
        trained.append(agent)
        row: dict[str, Any] = {
            "agent": name,
            "timesteps": budget,
            "seconds": round(secs, 2),
            "steps_per_s": round(budget * len(seeds) / secs, 1),
        }
        if len(seeds) > 1:
            row |= {
                "seed": chosen_seed,
                "val_sharpe_best": round(best[0], 4),
                "val_sharpe_mean": round(float(np.mean(val_sharpes)), 4),
                "val_sharpe_std": round(float(np.std(val_sharpes, ddof=1)), 4),
                "val_sharpe_by_seed": [round(v, 4) for v in val_sharpes],
            }
        rows.append(row | collapse_summary(agent, segs, config))
    info = {
        "agents": rows,
        "seeds": seeds,
        "observation_columns": observations[0].columns,
        "n_symbols": len(segs),
    }
    if register:  # each agent and their ensemble, as candidates with lineage
        from alphaloom.jobs.registry import register_agents

        bars = pd.concat([o.data.bars.iloc[s[3]] for o, s in zip(observations, segs, strict=True)])
        info["registered"] = [m.ref for m in register_agents(ws, config, info, bars, trained)]
    ws.record("train_rl", info)
    return info


def _forward_split(seg, obs: Observations, config: RunConfig):
    values, opens, closes, rows = seg
    n = len(values)
    n_val = round(n * config.rl_validation_fraction)
    n_fit = n - n_val - config.split.embargo_bars
    if n_val < 20 or n_fit < 40:
        raise EmptyRangeError(
            f"{obs.data.symbol}: the agent segment has {n} usable bars, too few to hold out "
            f"{config.rl_validation_fraction:.0%} for choosing among {config.rl_seeds} seeds (need at least "
            "20 validation and 40 training bars); use rl_seeds = 1, a longer date range or a larger "
            "agent_fraction."
        )
    fit = (values[:n_fit], opens[:n_fit], closes[:n_fit], slice(rows.start, rows.start + n_fit))
    val = (values[n - n_val :], opens[n - n_val :], closes[n - n_val :], slice(rows.stop - n_val, rows.stop))
    return fit, val


def _periods_per_year(ws: Workspace, symbols: Sequence[str]) -> list[float]:
    from alphaloom.backtest.engine import periods_per_year_for

    with ws.require_store() as store:
        instruments = store.instruments()
    return [
        float(periods_per_year_for(instruments[s].calendar)) if s in instruments else 252.0 for s in symbols
    ]


def _validation_sharpe(agent, val_segs, ppy: Sequence[float], config: RunConfig) -> float:
    from alphaloom.rl import SingleAssetTradingEnv

    cfg = env_config(config, episode_len=None)
    scores = []
    for (obs, opens, closes, _), p in zip(val_segs, ppy, strict=True):
        env = SingleAssetTradingEnv(obs, opens, closes, cfg)
        roll = env.rollout(lambda x, a=agent: a.predict(x, deterministic=True))
        sharpe = measures.sharpe_ratio(roll.returns[1:], p)
        scores.append(sharpe if np.isfinite(sharpe) else 0.0)  # never in the market: no risk, no reward
    return float(np.mean(scores))


def collapse_summary(agent, segs, config: RunConfig) -> dict:
    """Action entropy, turnover, time in market and collapse flags of a trained agent on its training bars.

    The deterministic policy is rolled out over each symbol's agent segment; the measures are averaged over
    symbols and the flags (never trades, always flat, buy-and-hold, constant action) are the union.
    """
    from alphaloom.rl import SingleAssetTradingEnv
    from alphaloom.rl.diagnostics import collapse_report

    env_cfg = env_config(config, episode_len=None)
    reports = []
    for obs, opens, closes, _ in segs:
        env = SingleAssetTradingEnv(obs, opens, closes, env_cfg)
        roll = env.rollout(lambda x, a=agent: a.predict(x, deterministic=True))
        reports.append(collapse_report(roll.weights, roll.targets))
    flags = sorted({flag for r in reports for flag in r.flags})
    return {
        "action_entropy": round(float(np.nanmean([r.entropy for r in reports])), 4),
        "turnover": round(float(np.mean([r.turnover for r in reports])), 5),
        "time_in_market": round(float(np.mean([r.time_in_market for r in reports])), 4),
        "collapse_flags": ", ".join(flags) if flags else "-",
    }


def load_agents(ws: Workspace):
    """The trained agents saved by :func:`train_agents`, in :data:`AGENT_NAMES` order."""
    from alphaloom.rl.agents import Agent

    agents = []
    for name in AGENT_NAMES:
        path = ws.models_dir / "rl" / name
        if not path.exists():
            raise _missing(ws, f"trained {name} agent", "train rl")
        agents.append(Agent.load(path))
    return agents


# ----------------------------------------------------------------------------------------- backtest
def ensemble_rollout(env, ensemble, symbol: str, ts: pd.DatetimeIndex):
    """Run the ensemble over ``env``'s series (see :meth:`alphaloom.rl.RLEnsemble.rollout`)."""
    return ensemble.rollout(env, symbol=symbol, ts=[t.to_pydatetime() for t in ts])


def run_backtests(ws: Workspace, config: RunConfig, progress: StageProgress | None = None) -> pd.DataFrame:
    """Backtest each agent, the ensemble and buy-and-hold on every symbol's untouched test segment."""
    from alphaloom.backtest.engine import buy_and_hold, periods_per_year_for, run_backtest
    from alphaloom.rl import EnsembleConfig, RLEnsemble, SingleAssetTradingEnv

    progress = progress or NullProgress()
    observations = load_observations(ws, config)
    agents = load_agents(ws)
    with ws.require_store() as store:
        instruments = store.instruments()
    env_cfg = env_config(config, episode_len=None)
    task = progress.task("backtest", total=len(observations) * (len(agents) + 2))
    results = []
    weights_rows = []
    for o in observations:
        obs, opens, closes, rows = o.segment("test")
        bars = o.data.bars.iloc[rows].reset_index(drop=True)
        sym = o.data.symbol
        inst = instruments.get(sym)
        ppy = periods_per_year_for(inst.calendar) if inst is not None else 252
        env = SingleAssetTradingEnv(obs, opens, closes, env_cfg)
        common = {"costs": config.costs, "initial_cash": config.initial_cash, "periods_per_year": ppy}
        results.append(buy_and_hold(bars, **common))
        # Agents' targets replay through the engine with the env's own no-trade band, so the equity each
        # agent earned in its rollout is exactly what the backtest reports.
        common["min_trade_weight"] = MIN_TRADE_WEIGHT
        task.advance()
        for agent in agents:
            roll = env.rollout(lambda x, a=agent: a.predict(x, deterministic=True))
            results.append(run_backtest(bars, roll.targets, name=agent.name, **common))
            task.advance()
        ensemble = RLEnsemble(
            agents,
            EnsembleConfig(
                method=config.ensemble_method,
                window=config.ensemble_window,
                confidence_threshold=config.ensemble_confidence,
                seed=config.seed,
            ),
        )
        roll = ensemble_rollout(env, ensemble, sym, pd.DatetimeIndex(bars["ts"]))
        res = run_backtest(bars, roll.targets, name=f"ensemble_{config.ensemble_method}", **common)
        results.append(res)
        for step in ensemble.steps_:
            weights_rows.append(
                {
                    "symbol": sym,
                    "step": step.step,
                    **{n: float(w) for n, w in zip(ensemble.names_, step.weights, strict=True)},
                }
            )
        task.advance()
    _store_results(ws, results)
    with ws.open_store() as store:
        store.write_frame("ensemble_weights", pd.DataFrame(weights_rows))
    from alphaloom.jobs.results import record_backtest  # persisted results (alphaloom results list)

    run_id = record_backtest(ws, config, results)
    summary = _summary(results)
    ws.record("backtest", {"rows": summary.to_dict(orient="records"), "results_run": run_id})
    return summary


def _summary(results) -> pd.DataFrame:
    rows = []
    for r in results:
        s = r.stats()
        rows.append(
            {
                "symbol": r.symbol,
                "strategy": r.name,
                "total_return": s["total_return"],
                "cagr": s["cagr"],
                "sharpe": s["sharpe"],
                "max_drawdown": s["max_drawdown"],
                "turnover": s["turnover"],
                "exposure": s["exposure"],
                "n_trades": int(s["n_trades"]),
                "final_equity": s["final_equity"],
            }
        )
    return pd.DataFrame(rows)


def _store_results(ws: Workspace, results) -> None:
    frames = []
    for r in results:
        f = r.to_frame().reset_index()
        f.insert(0, "strategy", r.name)
        f.insert(0, "symbol", r.symbol)
        f["initial_cash"] = r.initial_cash
        f["periods_per_year"] = r.periods_per_year
        frames.append(f)
    with ws.open_store() as store:
        store.write_frame(RESULTS_TABLE, pd.concat(frames, ignore_index=True), replace_symbols=False)


def load_results(ws: Workspace) -> list:
    """Rebuild the stored backtest results (for the report stage)."""
    from alphaloom.backtest.engine import BacktestResult

    with ws.require_store() as store:
        if not store.has_frame(RESULTS_TABLE):
            raise _missing(ws, "backtest results", "backtest")
        frame = store.read_frame(RESULTS_TABLE)
    out = []
    for (sym, name), g in frame.groupby(["symbol", "strategy"], sort=False):
        g = g.sort_values("ts")
        arrays = {
            c: g[c].to_numpy()
            for c in g.columns
            if c not in ("symbol", "strategy", "ts", "initial_cash", "periods_per_year")
        }
        out.append(
            BacktestResult(
                name=name,
                symbol=sym,
                ts=pd.DatetimeIndex(g["ts"]),
                initial_cash=float(g["initial_cash"].iloc[0]),
                periods_per_year=float(g["periods_per_year"].iloc[0]),
                **arrays,
            )
        )
    return out


# ----------------------------------------------------------------------------------------- report
def build_report(ws: Workspace, config: RunConfig | None = None) -> Path:
    """Write ``reports/report.html`` from the stored backtest, validation and model tables."""
    from alphaloom.backtest.report import write_html_report

    results = load_results(ws)
    extra: dict[str, pd.DataFrame] = {}
    with ws.require_store() as store:
        for title, name in (
            ("CNN+LSTM out-of-sample forecast metrics", "forecast_metrics"),
            ("Forecasters compared on purged walk-forward folds", "forecaster_comparison"),
            ("Data validation issues", ISSUES_TABLE),
            ("Bias and fairness: worst market slice of each model (alphaloom models bias)", "bias_summary"),
        ):
            if store.has_frame(name):
                extra[title] = store.read_frame(name)
    manifest = ws.manifest()
    if "train_rl" in manifest:
        extra["RL agent training"] = pd.DataFrame(manifest["train_rl"]["agents"])
    notes = [
        "Decisions use data up to each bar's close and are filled at the next bar's open, with commission "
        "and slippage charged on every trade.",
        "Segments per symbol: forecaster training | agent training | out-of-sample test (this report).",
    ]
    if config is not None:
        notes.append(
            f"Costs: {config.costs.commission_bps} bps commission + {config.costs.slippage_bps} bps "
            "slippage; "
            f"seed {config.seed}; ensemble method {config.ensemble_method}."
        )
    path = write_html_report(
        ws.reports_dir / "report.html",
        results,
        title="alphaloom: out-of-sample backtest",
        extra_tables=extra,
        notes=notes,
    )
    ws.record("report", {"path": str(path)})
    return path


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
