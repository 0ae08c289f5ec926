"""``alphaloom trade``: the trading engine live against the paper venue (replaying stored real bars) or a
real venue.

Paper trading (``--paper``) replays the workspace's stored bars for the run's symbols through a
:class:`~alphaloom.data.connectors.paper.PaperExchange` whose journal (``<data-dir>/trade/``) makes the venue
outlive the process, as a real venue would. The engine's progress is checkpointed in the store and its
orders, fills and audit log go to the store's relational tables, so a killed ``alphaloom trade --paper``
restarted with the same options resumes where it stopped: it reconciles with the venue, re-decides the bar it
was on, and neither loses nor duplicates an order. ``--fresh`` abandons the run and starts a new one.

The primary signal source is the workspace's trained RL ensemble (observations built from the stored
features and forecasts, as ``alphaloom backtest`` builds them); when the agents or forecasts are missing the
run says so and trades the fallback trend rule, recorded as degraded. Whenever the ensemble fails for a
symbol and bar, the engine falls back to the trend rule for that decision.

Orders, fills and the audit log go to the workspace's DuckDB file, or to PostgreSQL when
``[trade] records_dsn`` is set; there, by default, a :class:`~alphaloom.data.storage.JournaledRelationalStore`
journals the writes while the database is unreachable and replays them when it is back
(docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    EmptyRangeError,
    UnknownSymbolError,
)
from alphaloom.core.timeutil import parse_utc
from alphaloom.core.types import AssetClass, TradingSignal
from alphaloom.execution import (
    EngineHealth,
    PaperFeed,
    SignalSource,
    StoreEngineCheckpoint,
    StreamFeed,
    TradingEngine,
    TrendRule,
)
from alphaloom.jobs.config import RunConfig
from alphaloom.jobs.progress import NullProgress, StageProgress
from alphaloom.jobs.results import record_trading_run
from alphaloom.jobs.workspace import Workspace

__all__ = [
    "RLEnsembleSource",
    "open_records",
    "paper_run_path",
    "records_journal_path",
    "summary_table",
    "trade",
]

logger = logging.getLogger(__name__)


def paper_run_path(ws: Workspace) -> Path:
    """The file describing the workspace's current paper run (its id, window and generation)."""
    return ws.root / "trade" / "paper_run.json"


class RLEnsembleSource(SignalSource):
    """The trained RL agents' ensemble as a signal source, one :class:`~alphaloom.rl.RLEnsemble` per symbol.

    Observations are the stored forecasts and features, standardised as for training
    (:class:`alphaloom.jobs.stages.Observations`), looked up by the decision bar's time. The ensemble learns
    online from each decision's realised return; a restarted process re-plays the decisions from ``start``
    to the bar before the first one it is asked for, so its state equals that of an uninterrupted run.

    Parameters
    ----------
    observations
        One ``Observations`` per symbol.
    agents
        The trained agents (``stages.load_agents``).
    ensemble_config
        The ensemble's settings.
    start
        The first decision bar of the run (aware).
    """

    name = "rl_ensemble"
    lookback = 1

    def __init__(
        self, observations: Sequence[Any], agents: Sequence[Any], ensemble_config: Any, start: datetime
    ):
        from alphaloom.rl import RLEnsemble

        self._make = lambda: RLEnsemble(agents, ensemble_config)
        self._start = pd.Timestamp(start)
        self._data: dict[str, tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]] = {}
        for o in observations:
            d = o.data
            self._data[d.symbol] = (d.ts, o.values, d.bars["close"].to_numpy(dtype=np.float64))
        self._ensembles: dict[str, Any] = {}
        self._last: dict[str, int] = {}
        self.model_version = self._make().model_version

    def _decide(self, symbol: str, ts: datetime, bars: pd.DataFrame) -> tuple[TradingSignal, np.ndarray]:
        if symbol not in self._data:
            raise DataNotFoundError(
                f"{self.name} has no observations for {symbol}; run `alphaloom features`."
            )
        index, values, closes = self._data[symbol]
        bar_ts = pd.Timestamp(bars["ts"].iloc[-1])
        i = index.get_indexer([bar_ts])[0]
        if i < 0:
            raise DataNotFoundError(
                f"{self.name} has no observation for {symbol} at {bar_ts.isoformat()}; the stored features "
                "and forecasts do not cover this bar (re-run `alphaloom features` and `train cnn-lstm`)."
            )
        obs = values[i]
        if not np.isfinite(obs).all():
            raise DataFormatError(
                f"{self.name}: the observation of {symbol} at {bar_ts.isoformat()} has NaN."
            )
        ensemble = self._ensembles.get(symbol)
        if ensemble is None:
            ensemble = self._ensembles[symbol] = self._make()
            first = int(index.searchsorted(self._start))
            for k in range(first, i):  # catch up with the decisions of an earlier process
                if np.isfinite(values[k]).all():
                    self._act(symbol, ensemble, k, values[k], closes, index[k].to_pydatetime())
        _, signal_ = self._act(symbol, ensemble, i, obs, closes, ts)
        return signal_, obs

    def _act(self, symbol: str, ensemble: Any, k: int, obs: np.ndarray, closes: np.ndarray, ts: datetime):
        prev = self._last.get(symbol)
        if prev is not None and prev < k:
            ensemble.update(float(closes[k] / closes[prev] - 1.0))
        self._last[symbol] = k
        return ensemble.act(obs, ts=ts, symbol=symbol)


def _primary_source(ws: Workspace, cfg: RunConfig, start: datetime) -> tuple[SignalSource | None, str]:
    """The RL ensemble source, or ``None`` and why it cannot be used."""
    from alphaloom.jobs import stages

    try:
        observations = stages.load_observations(ws, cfg)
        agents = stages.load_agents(ws)
    except (DataNotFoundError, EmptyRangeError, UnknownSymbolError) as exc:
        return None, str(exc)
    from alphaloom.rl import EnsembleConfig

    ens_cfg = EnsembleConfig(
        method=cfg.ensemble_method,
        window=cfg.ensemble_window,
        confidence_threshold=cfg.ensemble_confidence,
        seed=cfg.seed,
    )
    return RLEnsembleSource(observations, agents, ens_cfg, start), ""


def _run_id(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _paper_window(
    store, symbols: Sequence[str], n_bars: int, lookback: int, end: datetime | None
) -> tuple[datetime, datetime | None]:
    bars = store.read_bars(list(symbols), None, end)
    stamps = np.unique(bars["ts"].to_numpy(dtype="datetime64[ns]"))
    if len(stamps) < n_bars + lookback:
        raise EmptyRangeError(
            f"the store holds {len(stamps)} bar times for {', '.join(symbols)}; trading {n_bars} bars needs "
            f"{n_bars + lookback} (with {lookback} of history before the first decision). Lower --bars or "
            "ingest more data."
        )
    start = pd.Timestamp(stamps[-n_bars], tz="UTC").to_pydatetime()
    return start, end


def _load_run(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); delete it or pass --fresh.") from exc


def _asset_classes(store, symbols: Sequence[str]) -> dict[str, AssetClass]:
    from alphaloom.data.instruments import SAMPLE_INSTRUMENTS

    known = {**SAMPLE_INSTRUMENTS, **store.instruments()}
    return {s: known[s].asset_class for s in symbols if s in known}


def records_journal_path(ws: Workspace) -> Path:
    """The journal of the workspace's PostgreSQL records (writes waiting for the database)."""
    return ws.root / "trade" / "records.journal"


def open_records(ws: Workspace, config: RunConfig):  # -> RelationalStore; imported lazily
    """The relational store a trading run writes its orders, fills and audit log to.

    The workspace's DuckDB file by default; PostgreSQL when ``config.trade.records_dsn`` is set, wrapped in
    a :class:`~alphaloom.data.storage.JournaledRelationalStore` unless ``records_journal`` is off.
    """
    tcfg = config.trade
    if not tcfg.records_dsn:
        from alphaloom.data.storage.relational import DuckDBRelationalStore

        return DuckDBRelationalStore(ws.store_path)
    from alphaloom.data.storage.relational import PostgresRelationalStore

    dsn = tcfg.records_dsn
    if not tcfg.records_journal:
        return PostgresRelationalStore(dsn)
    from alphaloom.data.storage.journal import JournaledRelationalStore

    return JournaledRelationalStore(
        lambda: PostgresRelationalStore(dsn), records_journal_path(ws), retry_after_s=tcfg.records_retry_s
    )


def _records_summary(records) -> dict[str, Any]:
    health = getattr(records, "health", None)
    if health is None:
        return {}
    with contextlib.suppress(Exception):  # a last chance to replay before the summary is taken
        records.replay()
    h = health()
    return {
        "records": h.status,
        "records_journaled": h.journaled,
        "records_replayed": h.replayed,
        "records_pending": h.pending,
        "records_rejected": h.rejected,
    }


def trade(
    ws: Workspace,
    config: RunConfig,
    *,
    paper: bool = True,
    venue: str | None = None,
    venue_config_file: Path | None = None,
    bars: int | None = None,
    speed: float | None = None,
    fresh: bool = False,
    progress: StageProgress | None = None,
) -> dict[str, Any]:
    """Run the trading engine until the paper replay ends (or, live, until SIGINT/SIGTERM).

    Parameters
    ----------
    ws, config
        The workspace (its store holds the bars) and the run settings (``symbols``, ``[risk]``, ``[trade]``).
    paper, venue
        Paper trading (the default), or the name of a real venue's connector (``oanda``, ``coinbase``, ...).
    venue_config_file
        The real venue's connector settings (credentials come from environment variables).
    bars
        Paper only: bar times to trade (``config.trade.bars`` when ``None``): the last ones in the store
        before ``config.end`` (all of it when ``None``).
    speed
        Paper only: replay speed (0 = as fast as possible).
    fresh
        Abandon the workspace's paper run and start a new one.

    Returns
    -------
    dict
        What the run did: run id, bars, orders, fills, positions, equity, degradations, reconciliation.
    """
    progress = progress or NullProgress()
    if paper == (venue is not None):
        raise ConfigError("choose one venue: --paper, or --venue NAME for a real connector.")
    symbols = list(config.symbols)
    if not symbols:
        raise ConfigError("trade needs symbols; pass --symbols, e.g. --symbols SPY,EURUSD,BTCUSD.")
    tcfg = config.trade
    if paper:
        return _trade_paper(
            ws, config, symbols, bars or tcfg.bars, tcfg.speed if speed is None else speed, fresh, progress
        )
    return _trade_live(ws, config, symbols, venue or "", venue_config_file, progress)


def _make_risk(config: RunConfig, records, clock, classes):
    from alphaloom.risk import RiskManager

    return RiskManager(config.risk, audit=records, clock=clock, instruments=classes)


def _trade_paper(
    ws: Workspace,
    config: RunConfig,
    symbols: list[str],
    n_bars: int,
    speed: float,
    fresh: bool,
    progress: StageProgress,
) -> dict[str, Any]:
    from alphaloom.data.connectors.paper import PaperConfig, PaperExchange

    if n_bars < 1:
        raise ConfigError(f"--bars must be at least 1, got {n_bars}.")
    if speed < 0 or not math.isfinite(speed):
        raise ConfigError(f"--speed must be >= 0 (0 = as fast as possible), got {speed}.")
    tcfg = config.trade
    fallback = TrendRule(tcfg.fallback)
    run_file = paper_run_path(ws)
    with ws.require_store() as store:
        previous = _load_run(run_file)
        generation = 0 if previous is None else int(previous.get("generation", 0))
        if previous is not None and fresh:
            generation += 1
            previous = None
        end = parse_utc(config.end, name="--end") if config.end else None
        settings = {
            "symbols": symbols,
            "bars": n_bars,
            "end": None if end is None else end.isoformat(),
            "initial_cash": config.initial_cash,
            "costs": config.costs.model_dump(mode="json"),
        }
        if previous is not None and previous["settings"] != settings:
            raise ConfigError(
                f"the paper run {previous['run_id']} in {ws.root} was started with {previous['settings']}, "
                f"not {settings}; resume it with the same options, or pass --fresh to start a new run."
            )
        if previous is None:
            start, _ = _paper_window(store, symbols, n_bars, fallback.lookback, end)
            run_id = _run_id({**settings, "start": start, "generation": generation})
            run = {
                "run_id": run_id,
                "generation": generation,
                "settings": settings,
                "start": start.isoformat(),
            }
            run_file.parent.mkdir(parents=True, exist_ok=True)
            run_file.write_text(json.dumps(run, indent=2, sort_keys=True))
        else:
            run = previous
        run_id = run["run_id"]
        start = datetime.fromisoformat(run["start"])
        classes = _asset_classes(store, symbols)
        primary, why = _primary_source(ws, config, start)
        exchange = PaperExchange(
            PaperConfig(
                symbols=tuple(symbols),
                start=start,
                end=end,
                speed=speed,
                initial_cash=config.initial_cash,
                account_id=f"paper-{run_id}",
                journal=run_file.parent / f"paper-{run_id}.sqlite",
                faults=tcfg.paper_faults,
            ),
            store=store,
            fees=config.costs,
        )
        records = open_records(ws, config)
        try:
            risk = _make_risk(config, records, exchange.clock, classes)
            engine = TradingEngine(
                tcfg.engine,
                connector=exchange,
                risk=risk,
                primary=primary if primary is not None else fallback,
                fallback=fallback,
                symbols=symbols,
                run_id=run_id,
                records=records,
                checkpoint=StoreEngineCheckpoint(store, f"paper_{run_id}"),
                asset_classes=classes,
            )
            if primary is None:
                logger.warning(
                    "no RL ensemble to trade (%s); trading the fallback trend rule (degraded)", why
                )
                progress.log(f"degraded: no RL ensemble ({why}); trading the fallback trend rule")
                engine.health.degraded.add("model:primary_unavailable")
                records.append_audit(
                    engine.actor,
                    "execution.degraded",
                    {
                        "run_id": run_id,
                        "component": "model",
                        "failed": "rl_ensemble",
                        "error": why,
                        "using": fallback.name,
                    },
                )
            feed = PaperFeed(exchange, symbols, speed=speed)
            total = exchange.steps_left
            task = progress.task(f"trade paper {run_id}", total=total)
            health = asyncio.run(_drive(engine, exchange, feed, task))
            summary = _summary(engine, health, exchange.portfolio, venue="paper", finished=exchange.finished)
            summary["primary"] = engine.primary.name
            summary.update(_records_summary(records))
        finally:
            records.close()
    ws.record("trade", summary)
    summary["results_run"] = record_trading_run(ws, config, summary)
    return summary


async def _drive(engine: TradingEngine, connector, feed, task) -> EngineHealth:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, engine.stop)
    async with connector:
        try:
            await engine.start()
            return await engine.run(feed, on_bar=lambda _report: task.advance())
        finally:
            await feed.aclose()


def _trade_live(
    ws: Workspace,
    config: RunConfig,
    symbols: list[str],
    venue: str,
    venue_config_file: Path | None,
    progress: StageProgress,
) -> dict[str, Any]:
    from alphaloom.jobs.venues import make_connector

    tcfg = config.trade
    connector = make_connector(venue, symbols, config_file=venue_config_file)
    fallback = TrendRule(tcfg.fallback)
    run_id = _run_id({"venue": venue, "symbols": symbols, "account": connector.config.venue})
    with ws.open_store() as store:
        classes = _asset_classes(store, symbols)
        primary, why = _primary_source(ws, config, datetime.now(UTC))
        records = open_records(ws, config)
        try:
            engine = TradingEngine(
                tcfg.engine,
                connector=connector,
                risk=_make_risk(config, records, connector.clock, classes),
                primary=primary if primary is not None else fallback,
                fallback=fallback,
                symbols=symbols,
                run_id=run_id,
                records=records,
                checkpoint=StoreEngineCheckpoint(store, f"{venue}_{run_id}"),
                asset_classes=classes,
            )
            if primary is None:
                progress.log(f"degraded: no RL ensemble ({why}); trading the fallback trend rule")
                engine.health.degraded.add("model:primary_unavailable")
            feed = StreamFeed(connector.get_real_time_data(symbols), grace_s=tcfg.grace_s)
            task = progress.task(f"trade {venue} {run_id}", total=None)
            health = asyncio.run(_drive(engine, connector, feed, task))
            summary = _summary(engine, health, engine.portfolio, venue=venue, finished=False)
            summary.update(_records_summary(records))
        finally:
            records.close()
    ws.record("trade", summary)
    summary["results_run"] = record_trading_run(ws, config, summary)
    return summary


def _summary(engine: TradingEngine, health: EngineHealth, portfolio, *, venue: str, finished: bool) -> dict:
    positions = (
        {} if portfolio is None else {s: p.quantity for s, p in portfolio.positions.items() if p.quantity}
    )
    return {
        "run_id": engine.run_id,
        "venue": venue,
        "finished": finished,
        "bars_processed": health.bars_processed,
        "last_bar": None if health.last_bar_ts is None else health.last_bar_ts.isoformat(),
        "orders_sent": health.orders_sent,
        "orders_refused": health.orders_refused,
        "orders_rejected_by_venue": health.orders_rejected_by_venue,
        "fills": health.fills,
        "signal_fallbacks": health.signal_fallbacks,
        "reconciliations": health.reconciliations,
        "reconcile_differences": health.reconcile_differences,
        "degraded": sorted(health.degraded),
        "positions": positions,
        "cash": None if portfolio is None else round(portfolio.cash, 2),
        "equity": None if portfolio is None else round(portfolio.total_value, 2),
        "risk_state": str(engine.risk.state),
    }


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Trading run {summary['run_id']} on {summary['venue']}")
    table.add_column("item")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key in ("run_id", "venue"):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:g}" for k, v in sorted(value.items())) or "flat"
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        table.add_row(key, str(value))
    return table
